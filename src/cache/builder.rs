//! Configuration of a [`Cache`], validated once at build time.
//!
//! Every setting is checked in [`CacheBuilder::build`]; a bad one is a
//! [`BuildError`] that names the setting and what to change, never a surprise
//! under load.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::load::LoadSettings;
use super::{Cache, Config, Weigher};
use crate::clock::{duration_to_nanos, Clock, SystemClock};

/// The longest accepted time-to-live or time-to-idle: 100 years. Anything
/// longer is almost certainly a unit mistake (seconds read as milliseconds...).
///
/// ```
/// use surgeguard::cache::{BuildError, Cache, MAX_DURATION};
/// use std::time::Duration;
///
/// let too_long = MAX_DURATION + Duration::from_secs(1);
/// let err = Cache::<u64, u64>::builder().max_capacity(1).time_to_live(too_long).build();
/// assert!(matches!(err, Err(BuildError::DurationTooLong { .. })));
/// ```
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The most shards a cache may have.
///
/// ```
/// use surgeguard::cache::{BuildError, Cache, MAX_SHARDS};
///
/// let err = Cache::<u64, u64>::builder().max_capacity(1).shards(MAX_SHARDS * 2).build();
/// assert_eq!(err.unwrap_err(), BuildError::InvalidShards(MAX_SHARDS * 2));
/// ```
pub const MAX_SHARDS: usize = 1 << 16;

/// Slab indices are `u32`; keeping them below 2^31 leaves `u32::MAX` (the
/// timer wheel's "no link") well clear, so a shard holds at most 2^31 - 1
/// entries.
pub(crate) const MAX_SHARD_ENTRIES: u64 = (1 << 31) - 1;

/// Default shards per available core: more shards than cores make it less
/// likely that two threads want the same shard's lock at once.
const SHARDS_PER_CORE: usize = 16;
/// The default never splits a cache so finely that a shard holds fewer than
/// this many units of capacity: a tiny shard's eviction policy sees too little
/// history to tell hot from cold. Measured: scarab @ 100k keeps 75.3 % split
/// 32 ways (3,125 per shard) against 75.7 % unsplit (policy lab).
const MIN_SHARD_CAPACITY: u64 = 2048;
/// Upper bound of the default shard count.
const MAX_DEFAULT_SHARDS: usize = 256;
/// Upper bound of the default shard count with a weigher: each shard gets an
/// equal part of the bound and an entry must fit in one, so this keeps the
/// heaviest storable entry at 1/16 of the bound or more.
const MAX_DEFAULT_WEIGHED_SHARDS: usize = 16;

/// Why a [`CacheBuilder`] refused its settings. Each message names the
/// setting and what to change.
///
/// ```
/// use surgeguard::cache::{BuildError, Cache};
///
/// let err = Cache::<u64, u64>::builder().build().unwrap_err();
/// assert_eq!(err, BuildError::NoCapacity);
/// assert!(err.to_string().contains("max_capacity"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Neither bound was set.
    #[error(
        "the cache has no bound: call max_capacity(entries), or max_weight(total) with a weigher"
    )]
    NoCapacity,
    /// Both an entry bound and a weight bound were set.
    #[error("max_capacity and max_weight were both set: keep one (max_weight with a weigher bounds by weight)")]
    ConflictingBounds,
    /// A capacity or weight of zero.
    #[error("{setting} is 0: a cache must be able to hold at least one entry")]
    ZeroCapacity {
        /// `"max_capacity"` or `"max_weight"`.
        setting: &'static str,
    },
    /// `max_weight` without a weigher, or a weigher without `max_weight`.
    #[error("max_weight and weigher go together: set both, or use max_capacity to count entries")]
    WeigherMismatch,
    /// More entries per shard than a shard can index.
    #[error("max_capacity {capacity} needs more than 2^31-1 entries per shard with {shards} shards: use more shards")]
    CapacityTooLarge {
        /// The requested capacity.
        capacity: u64,
        /// The shard count in use.
        shards: usize,
    },
    /// A zero duration (time-to-live, time-to-idle, refresh, a stale window,
    /// the negative TTL or the load timeout).
    #[error("{setting} is zero: leave it unset to turn it off")]
    ZeroDuration {
        /// The setting's builder method, such as `"time_to_live"`.
        setting: &'static str,
    },
    /// A duration over [`MAX_DURATION`].
    #[error("{setting} of {duration:?} is over 100 years: check the unit, or leave it unset to turn it off")]
    DurationTooLong {
        /// The setting's builder method, such as `"time_to_live"`.
        setting: &'static str,
        /// The rejected duration.
        duration: Duration,
    },
    /// A shard count of zero, above [`MAX_SHARDS`], or not a power of two.
    #[error("shards is {0}: use a power of two between 1 and 65536")]
    InvalidShards(usize),
    /// More shards than units of capacity: some shards could hold nothing,
    /// and keys that hash to them would never be cached.
    #[error("shards is {shards} but the capacity is only {capacity}: use at most {capacity} shards, or leave the count to the default")]
    MoreShardsThanCapacity {
        /// The requested shard count.
        shards: usize,
        /// The capacity (entries or weight).
        capacity: u64,
    },
    /// `refresh_after` is not shorter than `time_to_live`.
    #[error(
        "refresh_after must be shorter than time_to_live: an entry would expire before its refresh"
    )]
    RefreshNotBeforeExpiry,
    /// `background_reloads(0)`.
    #[error(
        "background_reloads is 0: allow at least one, or leave it unset for the default of 64"
    )]
    NoBackgroundReloads,
}

/// Builds a [`Cache`]; obtained from [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use surgeguard::cache::Cache;
///
/// let cache: Cache<String, String> = Cache::builder()
///     .max_weight(1 << 20)
///     .weigher(|key: &String, value: &String| (key.len() + value.len()) as u32)
///     .time_to_live(Duration::from_secs(60))
///     .build()?;
/// cache.insert("greeting".to_string(), "hello".to_string());
/// assert_eq!(cache.weighted_size(), 13);
/// # Ok::<(), surgeguard::cache::BuildError>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct CacheBuilder<K, V, S = ahash::RandomState> {
    max_capacity: Option<u64>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    time_to_live: Option<Duration>,
    time_to_idle: Option<Duration>,
    shards: Option<usize>,
    clock: Arc<dyn Clock>,
    hasher: S,
    pub(crate) loading: LoadSettings<V>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        CacheBuilder {
            max_capacity: None,
            max_weight: None,
            weigher: None,
            time_to_live: None,
            time_to_idle: None,
            shards: None,
            clock: Arc::new(SystemClock),
            hasher: ahash::RandomState::new(),
            loading: LoadSettings::default(),
            _types: PhantomData,
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    /// Bounds the cache to `entries` entries.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(1_000).build()?;
    /// assert_eq!(cache.capacity(), 1_000);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = Some(entries);
        self
    }

    /// Bounds the cache to a total weight, as measured by [`weigher`](Self::weigher).
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, Vec<u8>> = Cache::builder()
    ///     .max_weight(64 * 1024)
    ///     .weigher(|_, bytes: &Vec<u8>| bytes.len() as u32)
    ///     .build()?;
    /// assert_eq!(cache.capacity(), 64 * 1024);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn max_weight(mut self, total: u64) -> Self {
        self.max_weight = Some(total);
        self
    }

    /// How much an entry weighs; called once per insert, outside any lock. A
    /// weight of 0 counts as 1, so that the entry count stays bounded.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<&'static str, String> = Cache::builder()
    ///     .max_weight(100)
    ///     .weigher(|_, value: &String| value.len() as u32)
    ///     .build()?;
    /// cache.insert("a", "x".repeat(30));
    /// assert_eq!(cache.weighted_size(), 30);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Entries expire this long after they were inserted (default: never).
    /// [`Cache::insert_with_ttl`] overrides it per entry.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.time_to_live = Some(ttl);
        self
    }

    /// Entries also expire when nobody has read or written them for this long.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_idle(Duration::from_secs(300))
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.time_to_idle = Some(tti);
        self
    }

    /// The number of shards, a power of two. The default is 16 per core (at
    /// most 256, or 16 with a weigher), reduced so that each shard holds at
    /// least 2048 units of capacity. Each shard gets an equal part of the
    /// capacity, so an entry heavier than `capacity / shards` is never stored
    /// ([`Cache::max_entry_weight`]); more shards than units of capacity is
    /// [`BuildError::MoreShardsThanCapacity`]. Room reserved at build time is
    /// capped for the cache as a whole, so many shards do not multiply it.
    ///
    /// ```
    /// # use surgeguard::cache::{BuildError, Cache};
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).shards(1).build()?;
    /// assert_eq!(cache.max_entry_weight(), 100);
    /// let too_many = Cache::<u64, u64>::builder().max_capacity(100).shards(128).build();
    /// assert!(matches!(too_many, Err(BuildError::MoreShardsThanCapacity { .. })));
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The clock used for expiry (default: [`SystemClock`]).
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// use surgeguard::clock::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(1))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// cache.insert(1, 1);
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&1), None);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The hasher for keys (default: `ahash::RandomState`, randomly seeded
    /// per cache so that clients cannot aim collisions at it).
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// use std::collections::hash_map::RandomState;
    /// let cache: Cache<u64, u64, RandomState> = Cache::builder()
    ///     .max_capacity(10)
    ///     .hasher(RandomState::new())
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            max_weight: self.max_weight,
            weigher: self.weigher,
            time_to_live: self.time_to_live,
            time_to_idle: self.time_to_idle,
            shards: self.shards,
            clock: self.clock,
            hasher,
            loading: self.loading,
            _types: PhantomData,
        }
    }

    /// Validates the settings and builds the cache.
    ///
    /// ```
    /// # use surgeguard::cache::{BuildError, Cache};
    /// let err = Cache::<u64, u64>::builder().max_capacity(0).build().unwrap_err();
    /// assert_eq!(err, BuildError::ZeroCapacity { setting: "max_capacity" });
    /// ```
    pub fn build(self) -> Result<Cache<K, V, S>, BuildError> {
        let capacity = match (self.max_capacity, self.max_weight, &self.weigher) {
            (None, None, None) => return Err(BuildError::NoCapacity),
            (Some(_), Some(_), _) => return Err(BuildError::ConflictingBounds),
            (Some(_), None, Some(_)) | (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(BuildError::WeigherMismatch)
            }
            (Some(0), None, None) => {
                return Err(BuildError::ZeroCapacity {
                    setting: "max_capacity",
                })
            }
            (None, Some(0), Some(_)) => {
                return Err(BuildError::ZeroCapacity {
                    setting: "max_weight",
                })
            }
            (Some(entries), None, None) => entries,
            (None, Some(total), Some(_)) => total,
        };
        let time_to_live = checked_duration("time_to_live", self.time_to_live)?;
        let time_to_idle = checked_duration("time_to_idle", self.time_to_idle)?;
        let shards = match self.shards {
            Some(n) if n == 0 || n > MAX_SHARDS || !n.is_power_of_two() => {
                return Err(BuildError::InvalidShards(n))
            }
            Some(n) if n as u64 > capacity => {
                return Err(BuildError::MoreShardsThanCapacity {
                    shards: n,
                    capacity,
                })
            }
            Some(n) => n,
            None => default_shards(capacity, self.weigher.is_some()),
        };
        if self.max_capacity.is_some() && capacity.div_ceil(shards as u64) > MAX_SHARD_ENTRIES {
            return Err(BuildError::CapacityTooLarge { capacity, shards });
        }
        let loading = self.loading.validate(time_to_live)?;
        let config = Config {
            hasher: self.hasher,
            clock: self.clock,
            time_to_live,
            time_to_idle,
            weigher: self.weigher,
            loading,
        };
        Ok(Cache::from_parts(capacity, shards, config))
    }
}

pub(crate) fn checked_duration(
    setting: &'static str,
    duration: Option<Duration>,
) -> Result<Option<u64>, BuildError> {
    match duration {
        None => Ok(None),
        Some(duration) if duration.is_zero() => Err(BuildError::ZeroDuration { setting }),
        Some(duration) if duration > MAX_DURATION => {
            Err(BuildError::DurationTooLong { setting, duration })
        }
        Some(duration) => Ok(Some(duration_to_nanos(duration))),
    }
}

fn default_shards(capacity: u64, weighed: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let most = if weighed {
        MAX_DEFAULT_WEIGHED_SHARDS
    } else {
        MAX_DEFAULT_SHARDS
    };
    let wanted = (cores * SHARDS_PER_CORE).next_power_of_two().min(most);
    let affordable = (capacity / MIN_SHARD_CAPACITY).max(1);
    // Largest power of two not above `affordable`.
    let affordable = 1usize << (63 - affordable.leading_zeros()).min(16);
    wanted.min(affordable)
}

impl<K, V, S: fmt::Debug> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("max_weight", &self.max_weight)
            .field(
                "weigher",
                &self.weigher.as_ref().map(|_| "Fn(&K, &V) -> u32"),
            )
            .field("time_to_live", &self.time_to_live)
            .field("time_to_idle", &self.time_to_idle)
            .field("shards", &self.shards)
            .field("clock", &self.clock)
            .field("hasher", &self.hasher)
            .field("loading", &self.loading)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn builder() -> CacheBuilder<u64, u64> {
        Cache::builder()
    }

    #[test]
    fn every_bad_setting_is_named() {
        assert_eq!(builder().build().unwrap_err(), BuildError::NoCapacity);
        assert_eq!(
            builder().max_capacity(1).max_weight(1).build().unwrap_err(),
            BuildError::ConflictingBounds
        );
        assert_eq!(
            builder().max_weight(10).build().unwrap_err(),
            BuildError::WeigherMismatch
        );
        assert_eq!(
            builder()
                .max_capacity(10)
                .weigher(|_, _| 1)
                .build()
                .unwrap_err(),
            BuildError::WeigherMismatch
        );
        assert_eq!(
            builder()
                .max_weight(0)
                .weigher(|_, _| 1)
                .build()
                .unwrap_err(),
            BuildError::ZeroCapacity {
                setting: "max_weight"
            }
        );
        assert_eq!(
            builder()
                .max_capacity(1)
                .time_to_live(Duration::ZERO)
                .build()
                .unwrap_err(),
            BuildError::ZeroDuration {
                setting: "time_to_live"
            }
        );
        let too_long = MAX_DURATION + Duration::from_secs(1);
        assert_eq!(
            builder()
                .max_capacity(1)
                .time_to_idle(too_long)
                .build()
                .unwrap_err(),
            BuildError::DurationTooLong {
                setting: "time_to_idle",
                duration: too_long
            }
        );
        for shards in [0, 3, MAX_SHARDS * 2] {
            assert_eq!(
                builder()
                    .max_capacity(10)
                    .shards(shards)
                    .build()
                    .unwrap_err(),
                BuildError::InvalidShards(shards)
            );
        }
        assert_eq!(
            builder()
                .max_capacity(u64::MAX)
                .shards(1)
                .build()
                .unwrap_err(),
            BuildError::CapacityTooLarge {
                capacity: u64::MAX,
                shards: 1
            }
        );
    }

    #[test]
    fn bad_loading_settings_are_named() {
        let ttl = Duration::from_secs(10);
        assert_eq!(
            builder()
                .max_capacity(1)
                .time_to_live(ttl)
                .refresh_after(ttl)
                .build()
                .unwrap_err(),
            BuildError::RefreshNotBeforeExpiry
        );
        for (setting, bad) in [
            ("refresh_after", builder().refresh_after(Duration::ZERO)),
            (
                "stale_while_revalidate",
                builder().stale_while_revalidate(Duration::ZERO),
            ),
            ("stale_if_error", builder().stale_if_error(Duration::ZERO)),
            ("load_timeout", builder().load_timeout(Duration::ZERO)),
            (
                "negative_ttl",
                builder().negative_caching(Duration::ZERO, |_| true),
            ),
        ] {
            assert_eq!(
                bad.max_capacity(1).build().unwrap_err(),
                BuildError::ZeroDuration { setting }
            );
        }
        let too_long = MAX_DURATION * 2;
        assert_eq!(
            builder()
                .max_capacity(1)
                .stale_if_error(too_long)
                .build()
                .unwrap_err(),
            BuildError::DurationTooLong {
                setting: "stale_if_error",
                duration: too_long
            }
        );
        assert_eq!(
            builder()
                .max_capacity(1)
                .background_reloads(0)
                .build()
                .unwrap_err(),
            BuildError::NoBackgroundReloads
        );
        // Refresh without a default TTL is fine: entries refresh, never expire.
        assert!(builder().max_capacity(1).refresh_after(ttl).build().is_ok());
    }

    #[test]
    fn errors_read_as_advice() {
        let message = BuildError::ZeroDuration {
            setting: "time_to_live",
        }
        .to_string();
        assert!(message.contains("time_to_live") && message.contains("leave it unset"));
    }

    #[test]
    fn default_shards_keep_shards_large_enough() {
        assert_eq!(default_shards(100, false), 1);
        assert_eq!(default_shards(2 * MIN_SHARD_CAPACITY - 1, false), 1);
        assert!(default_shards(u64::MAX, true) <= MAX_DEFAULT_WEIGHED_SHARDS);
        let many = default_shards(u64::MAX, false);
        assert!(many.is_power_of_two() && many <= MAX_DEFAULT_SHARDS);
        for capacity in [1u64, 5_000, 100_000, 1 << 40] {
            let shards = default_shards(capacity, false) as u64;
            assert!(shards == 1 || capacity / shards >= MIN_SHARD_CAPACITY);
        }
    }

    #[test]
    fn longest_duration_is_accepted() {
        assert!(builder()
            .max_capacity(1)
            .time_to_live(MAX_DURATION)
            .build()
            .is_ok());
    }
}
