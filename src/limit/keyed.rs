//! One limit per key (client address, API token, tenant), in bounded memory.
//!
//! [`Keyed`] runs a rule per key in the key store the rule names
//! (`store/`): at most [`KeyedBuilder::max_keys`] keys, idle keys
//! forgotten first (losslessly), and a [`WhenFull`] policy for a new key
//! that finds its shard (region) full of active ones. Nothing is ever
//! forgotten while it still limits a client.
//!
//! ```text
//!   GCRA (store/tags.rs): state is one word, so no lock for a tracked key
//!   check(key) ── hash once = tag ──► home bucket (8 tags, 8 TATs)
//!       no lock ────► found: read TAT, re-read tag, decide   (allowed: CAS on the TAT)
//!       region lock ► not found (or slot changing): look again
//!                 └─► new: free or idle slot in its window? take it
//!                          table full? sweep idle keys, own region first
//!                          none idle, or window all active? WhenFull
//!
//!   windows (store/entries.rs): state wider than a word
//!   check(key) ── hash once ──► shard (Mutex)
//!       lock ───────► found: rule.decide(state)
//!                 └─► new: as above, per shard
//! ```
//!
//! Why GCRA's table takes no lock, and what identifying keys by 64-bit tags
//! costs: see `store/tags.rs`. Why the windows' table has many small shards,
//! and what the slack of a small shard costs and guarantees: see
//! `store/entries.rs`.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::time::Duration;

use parking_lot::Mutex;

use super::decision::DecisionParts;
use super::gcra_rule::GcraRule;
use super::store::{KeyRule, KeyStore, Outcome, MAX_SHARDS};
use super::{CheckError, Decision, RateLimiter};
use crate::clock::{Clock, SystemClock};

/// Keys tracked by default: about 2.2 MB under GCRA, whatever the key type.
const DEFAULT_MAX_KEYS: usize = 100_000;

/// A GCRA limiter per key.
///
/// ```
/// use surgeguard::limit::{Gcra, KeyedGcra, Quota};
///
/// let per_ip: KeyedGcra<std::net::IpAddr> = Gcra::keyed(Quota::per_second(10)?).build()?;
/// assert!(per_ip.check(&"198.51.100.1".parse()?).is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type KeyedGcra<K, S = ahash::RandomState> = Keyed<K, GcraRule, S>;

/// What a keyed limiter does with a new key when its shard (or the whole
/// table) is full and the shard's keys are all still limiting someone (none
/// idle to forget).
///
/// ```
/// use surgeguard::limit::{Gcra, Quota, WhenFull};
///
/// let limiter = Gcra::keyed(Quota::per_minute(1)?)
///     .max_keys(1)
///     .when_full(WhenFull::DenyNewKeys)
///     .build()?;
/// assert!(limiter.check(&"first").is_allowed());
/// assert!(limiter.check(&"second").is_denied()); // no room, and "first" is active
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Deny the new key; `retry_after` is the earliest time a tracked key
    /// could become idle and make room. Every tracked client keeps an exact
    /// limit. The default: a full table means more active clients than the
    /// limiter was sized for, which is what a key flood looks like.
    #[default]
    DenyNewKeys,
    /// Let all untracked keys share one overflow bucket with the same quota
    /// as a single key: new clients still get some service during a flood,
    /// together no more than one client's worth.
    ShareOverflowBucket,
}

/// Why a limiter builder refused its settings. Each message names the
/// setting and what to change.
///
/// ```
/// use surgeguard::limit::{BuildError, Gcra, Quota};
///
/// let err = Gcra::keyed::<u64>(Quota::per_second(1)?).max_keys(0).build().unwrap_err();
/// assert_eq!(err, BuildError::ZeroMaxKeys);
/// assert!(err.to_string().contains("max_keys"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_keys` of zero.
    #[error("max_keys is 0: a keyed limiter must be able to track at least one key")]
    ZeroMaxKeys,
    /// A shard count of zero, over [`MAX_SHARDS`], or over `max_keys`.
    #[error("shards is {shards}: use between 1 and {MAX_SHARDS}, and no more than max_keys ({max_keys})")]
    InvalidShards {
        /// The requested shard count.
        shards: usize,
        /// The `max_keys` in force.
        max_keys: usize,
    },
    /// A stripe count that is not a power of two, over 64, or over the burst.
    #[error(
        "stripes is {stripes}: use a power of two up to 64 and no more than the burst ({burst})"
    )]
    InvalidStripes {
        /// The requested stripe count.
        stripes: usize,
        /// The quota's burst.
        burst: u32,
    },
    /// A window quota with a burst other than its count.
    #[error("a sliding window has no separate burst (got burst {burst} for a count of {count}): set the count, leave the burst")]
    WindowBurst {
        /// The quota's count.
        count: u32,
        /// The quota's burst.
        burst: u32,
    },
    /// `max_keys` so large that the table (reserved up front, so that it never
    /// grows under load) could not be allocated.
    #[error("room for max_keys = {max_keys} keys could not be allocated (the table is reserved up front, tens of bytes per key): lower max_keys")]
    TooManyKeys {
        /// The requested `max_keys`.
        max_keys: usize,
    },
    /// An exact window whose log per key would be too large.
    #[error("an exact window of {limit} per window keeps {limit} timestamps per key: use at most {max}, or the approximate SlidingWindow")]
    ExactWindowTooLarge {
        /// The requested limit.
        limit: u32,
        /// The largest accepted limit.
        max: u32,
    },
}

/// A limiter with one state per key, running a rule `R` on each: GCRA
/// ([`KeyedGcra`], from [`Gcra::keyed`](super::Gcra::keyed)), the
/// approximate sliding window ([`SlidingWindow`](super::SlidingWindow)) or
/// the exact one ([`ExactWindow`](super::ExactWindow)); the rule types are
/// the crate's own and not nameable outside it. Memory is bounded
/// by [`max_keys`](KeyedBuilder::max_keys):
///
/// * The table is split into shards, each allocated once at build time for
///   its equal share of `max_keys`, plus slack when the share is small, and
///   a table-wide count keeps the total at `max_keys`. It never grows,
///   whatever arrives. Under GCRA a key is kept as a 64-bit hash of it and
///   its state, about 22 bytes per key of `max_keys` whatever the key type
///   (two keys whose 64-bit hashes are equal share one limit: with the
///   default randomly seeded hasher, a chance of about `n² / 2⁶⁵` among `n`
///   keys tracked at once); the window rules keep the key itself.
/// * Under GCRA a tracked key is checked without a lock: a denial writes
///   nothing, an allowance is one compare-and-swap, so threads checking the
///   same keys do not wait for one another. The window rules take the
///   shard's lock.
/// * A key whose state is back to "never seen" (a full bucket, an empty
///   window) is *idle* and can be forgotten without changing any decision. A
///   new key that finds its shard (or the table) full sweeps the shard for
///   idle keys and takes the first slot it frees.
/// * If every key in the shard is active, the new key meets the
///   [`WhenFull`] policy. An active key is never forgotten.
///
/// ```
/// use surgeguard::clock::ManualClock;
/// use surgeguard::limit::{Gcra, Quota};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = Gcra::keyed(Quota::per_second(1)?).clock(clock.clone()).build()?;
/// assert!(limiter.check(&"a").is_allowed());
/// assert!(limiter.check(&"a").is_denied());
/// assert!(limiter.check(&"b").is_allowed()); // keys are independent
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(limiter.reclaim_idle(), 2); // both buckets full again
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Keyed<K, R: KeyRule, S = ahash::RandomState> {
    /// The rule's key table ([`KeyRule::Store`]): GCRA's lock-free tag
    /// table, the windows' locked one.
    table: R::Store<K, S>,
    when_full: WhenFull,
    /// The bucket untracked keys share under [`WhenFull::ShareOverflowBucket`].
    overflow: Mutex<R::State>,
    /// A `Box`, not an `Arc`: calling through `Arc<dyn Clock>` first
    /// rounds the data's offset up to the clock's alignment (five more
    /// instructions a check, perf stat on `examples/limiter_loop.rs`).
    clock: Box<dyn Clock>,
}

impl<K, R, S> Keyed<K, R, S>
where
    K: Hash + Eq + Clone,
    R: KeyRule,
    S: BuildHasher,
{
    /// Takes one unit from `key`'s limit if it has one.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::keyed(Quota::per_hour(1)?).build()?;
    /// assert!(limiter.check(&42u64).is_allowed());
    /// assert!(limiter.check(&42u64).is_denied());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn check(&self, key: &K) -> Decision {
        self.decide(key, 1)
    }

    /// Takes `cost` units from `key`'s limit if they are all there; a cost of
    /// 0 only looks.
    ///
    /// ```
    /// # use surgeguard::limit::{CheckError, Gcra, Quota};
    /// let limiter = Gcra::keyed(Quota::per_second(10)?).build()?;
    /// assert_eq!(limiter.check_n(&7u64, 3)?.remaining(), 7);
    /// assert_eq!(limiter.check_n(&7u64, 11), Err(CheckError::CostExceedsBurst { cost: 11, burst: 10 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn check_n(&self, key: &K, cost: u32) -> Result<Decision, CheckError> {
        let burst = self.table.rule().max_cost();
        if cost > burst {
            return Err(CheckError::CostExceedsBurst { cost, burst });
        }
        Ok(self.decide(key, cost))
    }

    /// Gives back `cost` units an allowed check of `key` took. A key the
    /// table does not track (any more) gets nothing back, and neither does
    /// the shared overflow bucket: a refund cannot tell whether its check
    /// was charged to that bucket or to a key forgotten since, and crediting
    /// a bucket the check never charged would let it admit more than its
    /// burst at once. The cost of that rule is a rare under-admission (a
    /// check charged to the overflow bucket is not given back).
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::keyed(Quota::per_hour(1)?).build()?;
    /// assert!(limiter.check(&1u8).is_allowed());
    /// limiter.refund(&1u8, 1);
    /// assert!(limiter.check(&1u8).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refund(&self, key: &K, cost: u32) {
        let now = self.clock.now().as_nanos();
        // Untracked: see above; the overflow bucket is not credited.
        let _tracked = self.table.refund(key, now, cost);
    }

    /// Keys tracked now (at most [`max_keys`](Self::max_keys)). Takes each
    /// shard's (region's) lock in turn: for monitoring, not for a hot path.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::keyed(Quota::per_second(1)?).build()?;
    /// let _ = limiter.check(&"a");
    /// assert_eq!(limiter.tracked_keys(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn tracked_keys(&self) -> usize {
        self.table.tracked_keys()
    }

    /// Bytes the key tables and shards hold (allocated once, at build time).
    /// Rules whose state owns memory (the exact window's logs) add that per
    /// key.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).max_keys(1_000_000).build()?;
    /// let per_key = limiter.allocated_bytes() as f64 / limiter.max_keys() as f64;
    /// assert!(per_key <= 36.0, "{per_key} bytes per key");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }

    /// Forgets every key that is idle now (a full bucket, an empty window)
    /// and returns how many. Never needed for the memory bound (new keys
    /// reclaim idle ones as they need room); useful to shrink
    /// [`tracked_keys`](Self::tracked_keys) for monitoring.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// # use surgeguard::clock::ManualClock;
    /// # use std::time::Duration;
    /// let clock = ManualClock::new();
    /// let limiter = Gcra::keyed(Quota::per_second(1)?).clock(clock.clone()).build()?;
    /// let _ = limiter.check(&"a");
    /// assert_eq!(limiter.reclaim_idle(), 0);
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(limiter.reclaim_idle(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reclaim_idle(&self) -> usize {
        self.table.reclaim_all_idle(self.clock.now().as_nanos())
    }

    #[inline]
    fn decide(&self, key: &K, cost: u32) -> Decision {
        let now = self.clock.now().as_nanos();
        match self.table.check_tracked(key, now, cost) {
            Ok(decision) => decision,
            Err(hash) => self.decide_exclusive(hash, key, now, cost).into_decision(),
        }
    }

    /// A new key (GCRA), or any check of a window: under a lock.
    /// Out of line, and returning [`DecisionParts`] rather than a
    /// `Decision` (see there why).
    #[inline(never)]
    fn decide_exclusive(&self, hash: u64, key: &K, now: u64, cost: u32) -> DecisionParts {
        match self.table.check_exclusive(hash, key, now, cost) {
            Outcome::Decided(decision) => decision.into(),
            Outcome::Full { next_idle } => self.when_full(now, cost, next_idle).into(),
        }
    }

    #[cold]
    fn when_full(&self, now: u64, cost: u32, next_idle: u64) -> Decision {
        let rule = self.table.rule();
        match self.when_full {
            WhenFull::ShareOverflowBucket => rule.decide(&mut self.overflow.lock(), now, cost),
            WhenFull::DenyNewKeys => {
                let wait = Duration::from_nanos(next_idle.saturating_sub(now));
                Decision::Denied {
                    limit: rule.limit(),
                    remaining: 0,
                    retry_after: wait,
                    reset_after: wait,
                    policy_window: rule.policy_window(),
                }
            }
        }
    }
}

impl<K, R: KeyRule, S> Keyed<K, R, S> {
    /// The most keys tracked at once.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).max_keys(500).build()?;
    /// assert_eq!(limiter.max_keys(), 500);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.table.max_keys()
    }

    /// The number of shards.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).shards(3).build()?;
    /// assert_eq!(limiter.shards(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn shards(&self) -> usize {
        self.table.shard_count()
    }

    /// The rule applied to each key.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let quota = Quota::per_second(3)?;
    /// assert_eq!(Gcra::keyed::<u64>(quota).build()?.rule().quota(), quota);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rule(&self) -> &R {
        self.table.rule()
    }
}

impl<K, R, S> RateLimiter<K> for Keyed<K, R, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    R: KeyRule,
    S: BuildHasher + Send + Sync,
    // Holds for every rule's table when `K` and `S` are `Send + Sync`; said
    // here because a generic `R`'s table type is not known.
    R::Store<K, S>: Send + Sync,
{
    #[inline]
    fn check(&self, key: &K) -> Decision {
        Keyed::check(self, key)
    }

    #[inline]
    fn check_n(&self, key: &K, cost: u32) -> Result<Decision, CheckError> {
        Keyed::check_n(self, key, cost)
    }

    fn refund(&self, key: &K, cost: u32) {
        Keyed::refund(self, key, cost);
    }
}

impl<K, R: KeyRule, S> fmt::Debug for Keyed<K, R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("table", &self.table)
            .field("when_full", &self.when_full)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Keyed`] limiter; obtained from [`Gcra::keyed`](super::Gcra::keyed),
/// [`SlidingWindow::keyed`](super::SlidingWindow::keyed) or
/// [`ExactWindow::keyed`](super::ExactWindow::keyed).
///
/// ```
/// use surgeguard::clock::ManualClock;
/// use surgeguard::limit::{Gcra, Quota, WhenFull};
///
/// let limiter = Gcra::keyed::<u64>(Quota::per_second(100)?)
///     .max_keys(1_000_000)
///     .when_full(WhenFull::ShareOverflowBucket)
///     .clock(ManualClock::new())
///     .build()?;
/// assert_eq!(limiter.max_keys(), 1_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct KeyedBuilder<K, R, S = ahash::RandomState> {
    /// A rule, or why its quota cannot make one (reported by `build`).
    rule: Result<R, BuildError>,
    max_keys: usize,
    shards: Option<usize>,
    when_full: WhenFull,
    clock: Box<dyn Clock>,
    hasher: S,
    _keys: PhantomData<fn(K)>,
}

impl<K, R> KeyedBuilder<K, R> {
    pub(crate) fn new(rule: Result<R, BuildError>) -> Self {
        KeyedBuilder {
            rule,
            max_keys: DEFAULT_MAX_KEYS,
            shards: None,
            when_full: WhenFull::default(),
            clock: Box::new(SystemClock),
            hasher: ahash::RandomState::new(),
            _keys: PhantomData,
        }
    }
}

impl<K, R, S> KeyedBuilder<K, R, S>
where
    K: Hash + Eq + Clone,
    R: KeyRule,
    S: BuildHasher,
{
    /// The most keys tracked at once (default 100,000). The table for them
    /// is allocated at build time: about 22 bytes per key under GCRA,
    /// whatever the key type. A `max_keys` whose table cannot be allocated is
    /// [`BuildError::TooManyKeys`], not an abort.
    ///
    /// ```
    /// # use surgeguard::limit::{BuildError, Gcra, Quota};
    /// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).max_keys(10).build()?;
    /// assert_eq!(limiter.max_keys(), 10);
    /// let absurd = Gcra::keyed::<u64>(Quota::per_second(1)?).max_keys(usize::MAX).build();
    /// assert!(matches!(absurd, Err(BuildError::TooManyKeys { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// The number of shards, each with its own lock and an equal part of
    /// `max_keys`. Under GCRA a shard is a *region* of the table whose lock
    /// only inserts, sweeps and refunds take (checks of tracked keys take
    /// none); a region has room for at least a third more than its part. A
    /// new key is refused room when *its* shard is full of active keys: for
    /// the window rules, with parts of 256 keys or more, keep some headroom
    /// in `max_keys`; smaller parts get slack (a shard may hold
    /// `part + ⌈4√part⌉ + 4` keys, the table as a whole still `max_keys`), so
    /// that uneven hashing alone refuses a new key with probability below
    /// 2·10⁻⁵. The default is 4 per core while each shard still gets at
    /// least 16 keys (GCRA: 48), raised so that no shard holds more than
    /// 3,072 keys (which bounds one sweep for idle keys).
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).max_keys(10).shards(1).build()?;
    /// assert_eq!(limiter.shards(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// What happens to a new key when its shard is full of active keys
    /// (default [`WhenFull::DenyNewKeys`]).
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota, WhenFull};
    /// let limiter = Gcra::keyed(Quota::per_minute(2)?)
    ///     .max_keys(1)
    ///     .when_full(WhenFull::ShareOverflowBucket)
    ///     .build()?;
    /// assert!(limiter.check(&1u32).is_allowed());
    /// assert!(limiter.check(&2u32).is_allowed()); // overflow bucket
    /// assert!(limiter.check(&3u32).is_allowed()); // the same overflow bucket
    /// assert!(limiter.check(&4u32).is_denied());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = policy;
        self
    }

    /// The clock (default: [`SystemClock`]).
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// use surgeguard::clock::ManualClock;
    /// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).clock(ManualClock::new()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The hasher for keys (default: `ahash::RandomState`, seeded randomly
    /// per limiter so that clients cannot aim collisions at one shard).
    ///
    /// Under GCRA the 64-bit hash *is* the key's identity (the table keeps
    /// the hash, not the key): two keys whose hashes are equal share one
    /// limit. Use a hasher with a full 64-bit output and, where clients
    /// choose the keys, a random seed; the default has both.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// use std::collections::hash_map::RandomState;
    /// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).hasher(RandomState::new()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> KeyedBuilder<K, R, S2> {
        KeyedBuilder {
            rule: self.rule,
            max_keys: self.max_keys,
            shards: self.shards,
            when_full: self.when_full,
            clock: self.clock,
            hasher,
            _keys: PhantomData,
        }
    }

    /// Validates the settings and builds the limiter.
    ///
    /// ```
    /// # use surgeguard::limit::{BuildError, Gcra, Quota};
    /// let err = Gcra::keyed::<u64>(Quota::per_second(1)?).max_keys(2).shards(3).build();
    /// assert_eq!(err.unwrap_err(), BuildError::InvalidShards { shards: 3, max_keys: 2 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Keyed<K, R, S>, BuildError> {
        let rule = self.rule?;
        if self.max_keys == 0 {
            return Err(BuildError::ZeroMaxKeys);
        }
        let shards = match self.shards {
            Some(shards) if shards == 0 || shards > MAX_SHARDS || shards > self.max_keys => {
                return Err(BuildError::InvalidShards {
                    shards,
                    max_keys: self.max_keys,
                })
            }
            shards => shards,
        };
        let overflow = Mutex::new(rule.fresh_state());
        Ok(Keyed {
            table: R::Store::<K, S>::build(rule, self.max_keys, shards, self.hasher).map_err(
                |_| BuildError::TooManyKeys {
                    max_keys: self.max_keys,
                },
            )?,
            when_full: self.when_full,
            overflow,
            clock: self.clock,
        })
    }
}

impl<K, R: fmt::Debug, S: fmt::Debug> fmt::Debug for KeyedBuilder<K, R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBuilder")
            .field("rule", &self.rule)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .field("when_full", &self.when_full)
            .field("clock", &self.clock)
            .field("hasher", &self.hasher)
            .finish()
    }
}
