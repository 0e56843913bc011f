//! A sharded, bounded, concurrent cache.
//!
//! ```text
//!   Cache ── hash once ──► shard = hash bits 32.. ──► Shard (RwLock)
//!                                                   ├─ table: hash → slab index
//!                                                   ├─ slab: key, value, policy word (dense)
//!                                                   ├─ policy: eviction (per shard)
//!                                                   ├─ expiry: timer wheel (when used)
//!                                                   └─ flights: loads in progress (load/)
//! ```
//!
//! * **No global lock.** Each key hashes to one shard; a shard has its own
//!   reader-writer lock, table, eviction policy and timer wheel, so reads on
//!   different shards never touch the same memory, and reads on the same shard
//!   share its lock.
//! * **Bounded** by entry count ([`CacheBuilder::max_capacity`]) or by weight
//!   ([`CacheBuilder::max_weight`] with a weigher). Each shard gets an equal
//!   part of the bound.
//! * **Eviction** is W-TinyLFU (Einziger, Friedman, Manes, ACM ToS 2017)
//!   over CLOCK segments, so a hit only bumps a counter in the entry, with
//!   the admission window sized by ARC-style ghost feedback (Megiddo, Modha,
//!   FAST 2003): it follows recency where recency wins and resists scans and
//!   loops where frequency wins. Measured hit ratios on recorded traces
//!   against moka, quick_cache and LRU are in `BENCHMARKS.md`.
//! * **Expiry**: a default time-to-live, a per-entry one
//!   ([`Cache::insert_with_ttl`]) and an optional time-to-idle. An expired
//!   entry is never returned; it is reclaimed by a timer wheel a few entries
//!   at a time, during writes, so no caller pays for a sweep.
//! * **Values are returned by clone.** Store `Arc<V>` for values that are
//!   expensive to clone; the cache then hands out cheap reference-counted
//!   handles.
//!
//!
//! ## Loading
//!
//! [`Cache::get_or_try_load`] (blocking) and `Cache::get_or_try_load_async`
//! (feature `tokio`) load a missing key through the cache with stampede
//! protection:
//!
//! * **One load per key at a time.** Concurrent misses on a key share one
//!   loader call and its value or error ([`LoadError`]); errors are not
//!   cached. A panicking loader fails its waiters with
//!   [`LoadError::Panicked`] and frees the key; an optional
//!   [load timeout](CacheBuilder::load_timeout) bounds every wait.
//! * **Refresh-ahead** ([`CacheBuilder::refresh_after`]): an entry older
//!   than that is returned at once and reloaded in the background, so a hot
//!   key never expires under load. One reload per key at a time; an insert or
//!   remove meanwhile wins; a failed reload keeps the old value.
//! * **Stale windows**, as RFC 5861 defines them for HTTP:
//!   [`stale_while_revalidate`](CacheBuilder::stale_while_revalidate) serves
//!   an expired value at once while one reload runs behind;
//!   [`stale_if_error`](CacheBuilder::stale_if_error) falls back to it while
//!   the origin fails.
//! * **Negative caching** ([`CacheBuilder::negative_caching`]): keep "not
//!   found" for a short time.
//!
//! The blocking loader runs on the first caller's thread (others park);
//! background reloads run on a small pool of threads started on demand, at most
//! [`background_reloads`](CacheBuilder::background_reloads) at once. Async
//! loads run as Tokio tasks of their own, so a cancelled caller never
//! strands the others (unlike moka's `get_with`, moka issue #240).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use surgeguard::cache::Cache;
//!
//! let cache: Cache<u64, Arc<String>> = Cache::builder()
//!     .max_capacity(100_000)
//!     .time_to_live(Duration::from_secs(60))
//!     .refresh_after(Duration::from_secs(45))
//!     .stale_while_revalidate(Duration::from_secs(30))
//!     .stale_if_error(Duration::from_secs(300))
//!     .build()?;
//! let page = cache.get_or_try_load(&7, |id| {
//!     Ok::<_, std::io::Error>(Arc::new(format!("product {id}")))
//! });
//! assert_eq!(page.unwrap().as_str(), "product 7");
//! # Ok::<(), surgeguard::cache::BuildError>(())
//! ```
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use surgeguard::cache::Cache;
//!
//! struct Product { name: String }
//!
//! let cache: Cache<u64, Arc<Product>> = Cache::builder()
//!     .max_capacity(100_000)
//!     .time_to_live(Duration::from_secs(60))
//!     .build()?;
//! cache.insert(7, Arc::new(Product { name: "kettle".into() }));
//! let hit: Option<Arc<Product>> = cache.get(&7);
//! assert_eq!(hit.unwrap().name, "kettle");
//! # Ok::<(), surgeguard::cache::BuildError>(())
//! ```

mod builder;
mod expiry;
mod load;
mod policy;
mod shard;
mod stats;
#[cfg(feature = "tokio")]
pub mod tier;

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

pub use builder::{BuildError, CacheBuilder, MAX_DURATION, MAX_SHARDS};
pub use load::LoadError;
pub use stats::CacheStats;
#[cfg(feature = "tokio")]
pub use tier::TieredCache;

use crate::clock::{duration_to_nanos, Clock};
use expiry::{Deadlines, NEVER};
use load::LoadConfig;
use policy::MIN_SIZED;
use shard::Shard;
use stats::LoadCounters;

/// Entries all shards together reserve room for at build time (about 40
/// bytes each for table, slab and policy): the rest is allocated as entries
/// arrive.
const UP_FRONT_ENTRIES: u64 = 1 << 22;

type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync + 'static>;

/// Settings every shard consults.
pub(crate) struct Config<K, V, S> {
    hasher: S,
    clock: Arc<dyn Clock>,
    /// Nanoseconds.
    time_to_live: Option<u64>,
    /// Nanoseconds.
    time_to_idle: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    loading: LoadConfig<V>,
}

impl<K, V, S> Config<K, V, S> {
    #[inline]
    fn now(&self) -> u64 {
        self.clock.now().as_nanos()
    }

    /// The deadlines of `value` written now and living `ttl` nanoseconds
    /// (`None`: no time-to-live). Reads the clock only when needed.
    fn deadlines(&self, value: &V, ttl: Option<u64>) -> Deadlines {
        if ttl.is_none() && !self.loading.uses_clock() {
            return Deadlines::NONE;
        }
        let now = self.now();
        let expire_at = ttl.map_or(NEVER, |ttl| now.saturating_add(ttl));
        self.loading.deadlines(value, now, expire_at)
    }

    /// What `value` weighs under `key`.
    fn weigh(&self, key: &K, value: &V) -> u32 {
        self.weigher
            .as_ref()
            .map_or(1, |weigh| weigh(key, value).max(1))
    }
}

/// A concurrent cache; see the [module documentation](self).
///
/// `Cache` is a cheap handle: clones share the same entries.
///
/// ```
/// use surgeguard::cache::Cache;
///
/// let cache: Cache<&'static str, u32> = Cache::builder().max_capacity(2).build()?;
/// let shared = cache.clone();
/// std::thread::spawn(move || shared.insert("a", 1)).join().unwrap();
/// assert_eq!(cache.get("a"), Some(1));
/// # Ok::<(), surgeguard::cache::BuildError>(())
/// ```
pub struct Cache<K, V, S = ahash::RandomState> {
    inner: Arc<Inner<K, V, S>>,
}

struct Inner<K, V, S> {
    shards: Box<[CacheLinePadded<Shard<K, V>>]>,
    shard_mask: u64,
    capacity: u64,
    config: Config<K, V, S>,
    loads: LoadCounters,
    /// Background reloads running now, at most `config.loading.background_reloads`.
    background_reloads: std::sync::atomic::AtomicUsize,
}

impl<K, V, S> Inner<K, V, S> {
    fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.0.len()).sum()
    }
}

/// Keeps neighbouring shards' locks off each other's cache lines (128 bytes
/// covers the adjacent-line prefetcher on x86).
#[repr(align(128))]
struct CacheLinePadded<T>(T);

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts configuring a cache.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, String> = Cache::builder().max_capacity(10).build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::default()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    fn from_parts(capacity: u64, shards: usize, config: Config<K, V, S>) -> Self {
        let count_bound = config.weigher.is_none();
        let (base, extra) = (capacity / shards as u64, capacity % shards as u64);
        // Each shard reserves room for up to 2^16 entries at build time (no
        // rehash on the way to full), but all shards together for at most
        // 2^22: a cache with many shards and a capacity it may never reach
        // would otherwise reserve gigabytes before its first insert (the
        // builders fuzz target found 32,768 weighed shards taking 17 GB).
        let up_front = (UP_FRONT_ENTRIES / shards as u64).min(MIN_SIZED);
        let shards: Box<[_]> = (0..shards as u64)
            .map(|i| {
                let capacity = base + u64::from(i < extra);
                CacheLinePadded(Shard::new(capacity, count_bound, up_front))
            })
            .collect();
        Cache {
            inner: Arc::new(Inner {
                shard_mask: shards.len() as u64 - 1,
                shards,
                capacity,
                config,
                loads: LoadCounters::default(),
                background_reloads: Default::default(),
            }),
        }
    }

    /// The value for `key`, if present and not expired.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<String, u32> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert("a".to_string(), 1);
    /// assert_eq!(cache.get("a"), Some(1)); // borrowed forms work
    /// assert_eq!(cache.get("b"), None);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        shard.get(hash, key, &self.inner.config)
    }

    /// Whether `key` is present and not expired. Unlike [`get`](Self::get),
    /// this neither counts as a use for the eviction policy nor in the stats.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert(1, 1);
    /// assert!(cache.contains_key(&1));
    /// assert!(!cache.contains_key(&2));
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        shard.contains(hash, key, &self.inner.config)
    }

    /// Stores `value` under `key` with the cache's default time-to-live,
    /// replacing any previous value. The eviction policy may decline to keep a
    /// new entry it judges colder than what it would have to evict; an entry
    /// heavier than [`max_entry_weight`](Self::max_entry_weight) is never
    /// kept (counted in [`CacheStats::rejected`]) and removes the key's older
    /// value.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, &str> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert(1, "one");
    /// cache.insert(1, "uno");
    /// assert_eq!(cache.get(&1), Some("uno"));
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn insert(&self, key: K, value: V) {
        self.insert_living(key, value, self.inner.config.time_to_live);
    }

    /// Stores `value` under `key`, expiring after `ttl` instead of the default.
    /// A zero `ttl` stores nothing (the value would already be expired) and
    /// removes any older value; a `ttl` too long to represent (about 584
    /// years) means "never".
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// use std::time::Duration;
    /// use surgeguard::clock::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).clock(clock.clone()).build()?;
    /// cache.insert_with_ttl(1, 10, Duration::from_secs(5));
    /// clock.advance(Duration::from_secs(4));
    /// assert_eq!(cache.get(&1), Some(10));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&1), None);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            drop(self.remove(&key));
            return;
        }
        self.insert_living(key, value, Some(duration_to_nanos(ttl)));
    }

    /// Inserts with a time-to-live of `ttl` nanoseconds (`None`: forever).
    fn insert_living(&self, key: K, value: V, ttl: Option<u64>) {
        let config = &self.inner.config;
        let weight = config.weigh(&key, &value);
        let deadlines = config.deadlines(&value, ttl);
        let (hash, shard) = self.locate(&key);
        let displaced = shard.insert(hash, key, value, weight, deadlines, config);
        // Dropped here, after the shard's lock is released.
        drop(displaced);
    }

    /// Removes `key`, returning its value if it was present and not expired.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert(1, 10);
    /// assert_eq!(cache.remove(&1), Some(10));
    /// assert_eq!(cache.remove(&1), None);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        shard.remove(hash, key, &self.inner.config)
    }

    /// Removes every entry. Each shard is cleared under its own lock, one
    /// after the other; the entries are dropped after each lock is released.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert(1, 10);
    /// cache.invalidate_all();
    /// assert!(cache.is_empty());
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn invalidate_all(&self) {
        for shard in self.inner.shards.iter() {
            shard.0.clear();
        }
    }

    /// The number of stored entries, including expired ones not yet
    /// reclaimed. Read without locks, so only a snapshot under concurrency.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert(1, 10);
    /// assert_eq!(cache.len(), 1);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether [`len`](Self::len) is zero.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// assert!(cache.is_empty());
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total weight of stored entries (their count, without a weigher).
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, String> = Cache::builder()
    ///     .max_weight(1_000)
    ///     .weigher(|_, s: &String| s.len() as u32)
    ///     .build()?;
    /// cache.insert(1, "four".into());
    /// assert_eq!(cache.weighted_size(), 4);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn weighted_size(&self) -> u64 {
        self.inner.shards.iter().map(|shard| shard.0.weight()).sum()
    }

    /// The configured bound: entries, or total weight with a weigher.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// assert_eq!(cache.capacity(), 10);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The heaviest entry the cache will store: the smallest shard's share of
    /// the capacity.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(64).shards(4).build()?;
    /// assert_eq!(cache.max_entry_weight(), 16);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn max_entry_weight(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.0.capacity())
            .min()
            .unwrap_or(0)
    }

    /// Counters of hits, misses, inserts, evictions, expirations and
    /// rejections since the cache was built.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// cache.get(&1);
    /// assert_eq!(cache.stats().misses, 1);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn stats(&self) -> CacheStats {
        let mut total = CacheStats::default();
        for shard in self.inner.shards.iter() {
            shard.0.add_stats_to(&mut total);
        }
        self.inner.loads.add_to(&mut total);
        total
    }

    /// Reclaims expired entries on every shard, a bounded number per shard,
    /// skipping shards whose lock is busy. Writes do this on their own; call
    /// it from a timer if the cache may go a long time without writes.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// use std::time::Duration;
    /// use surgeguard::clock::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(10)
    ///     .time_to_live(Duration::from_secs(1))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// cache.insert(1, 1);
    /// clock.advance(Duration::from_secs(2));
    /// cache.run_maintenance();
    /// assert_eq!(cache.len(), 0);
    /// assert_eq!(cache.stats().expirations, 1);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn run_maintenance(&self) {
        for shard in self.inner.shards.iter() {
            shard.0.try_maintain(&self.inner.config);
        }
    }

    /// Loads in progress right now (one per key, however many callers wait
    /// on it), refreshes included. Zero whenever no load is running: a
    /// figure that stays above zero with the origin idle is a leaked load,
    /// which the soak test (`examples/soak.rs`) checks for. Takes each
    /// shard's read lock in turn, so it is for monitoring, not hot paths.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// let during = cache.get_or_load(&1, |_| 7);
    /// assert_eq!(during, Ok(7));
    /// assert_eq!(cache.loads_in_flight(), 0, "the load ended with the call");
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn loads_in_flight(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.0.loads_in_flight())
            .sum()
    }

    /// The number of shards.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).shards(2).build()?;
    /// assert_eq!(cache.shard_count(), 2);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The load timeout this cache was built with.
    #[cfg(feature = "tokio")]
    pub(crate) fn load_timeout(&self) -> Option<Duration> {
        self.inner.config.loading.load_timeout
    }

    /// The refresh age this cache was built with.
    #[cfg(feature = "tokio")]
    pub(crate) fn refresh_after(&self) -> Option<Duration> {
        self.inner.config.loading.refresh_after()
    }

    #[inline]
    fn locate<Q>(&self, key: &Q) -> (u64, &Shard<K, V>)
    where
        Q: Hash + ?Sized,
    {
        let hash = self.inner.config.hasher.hash_one(key);
        (hash, self.shard_for(hash))
    }

    /// The shard of a key hashing to `hash`.
    #[inline]
    fn shard_for(&self, hash: u64) -> &Shard<K, V> {
        // Bits 32.. pick the shard: the table uses the low bits for the bucket
        // and the top 7 for its tag, so the shard choice stays independent of
        // both.
        let index = (hash >> 32) & self.inner.shard_mask;
        &self.inner.shards[index as usize].0
    }
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.inner.len())
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Random operations at a scale the property tests do not reach, with the
    /// shards' internal structures cross-checked as they go.
    #[test]
    fn internal_structures_stay_consistent() {
        let clock = ManualClock::new();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_weight(3_000)
            .weigher(|key, _| 1 + (*key % 7) as u32)
            .time_to_idle(Duration::from_millis(400))
            .shards(2)
            .clock(clock.clone())
            .build()
            .unwrap();
        let check = || {
            for shard in cache.inner.shards.iter() {
                shard.0.assert_consistent(&cache.inner.config.hasher);
            }
        };
        let mut state = 0x1234_5678_9ABC_DEF1_u64;
        for step in 0..60_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = (state >> 16) % 2_000;
            match state % 16 {
                0..=6 => drop(cache.get(&key)),
                7..=10 => cache.insert(key, step),
                11..=12 => cache.insert_with_ttl(key, step, Duration::from_millis(state % 300 + 1)),
                13 => drop(cache.remove(&key)),
                14 => clock.advance(Duration::from_millis(state % 5)),
                _ => cache.run_maintenance(),
            }
            if step % 997 == 0 {
                check();
            }
        }
        check();
        cache.invalidate_all();
        check();
    }
}
