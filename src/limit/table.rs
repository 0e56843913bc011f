//! The bounded key table behind every keyed limiter.
//!
//! A key flood (every request from a new address) must not grow memory
//! without bound, and must not reset a client that is being limited. So:
//!
//! * **Fixed size.** `max_keys` is split over the shards and each shard's
//!   hash table is allocated once, at build time, for its share: no rehash on
//!   a hot path, no growth under a flood. Shards hold at most
//!   [`TARGET_SHARD_KEYS`] keys, sized to fill three quarters of a
//!   power-of-two table (hashbrown keeps at most 7/8 full), which measures at
//!   about 23 bytes per tracked `u64` key.
//! * **Idle keys go first, losslessly.** Each rule says when a key's state
//!   is back to "never seen" ([`KeyRule::idle_at`]: a GCRA bucket is full
//!   again, a window has emptied). A new key arriving at a full shard sweeps
//!   the shard from where the last sweep stopped, removing every idle key it
//!   passes, until it has freed one (and looked at 64 buckets, so one sweep
//!   frees a handful) or gone round once.
//! * **No sweep when none can succeed.** The shard keeps a lower bound of
//!   its keys' idle times (exact after a full round, lowered by each insert
//!   and refund). Until the clock passes it, a new key at a full shard meets
//!   the [`WhenFull`](super::WhenFull) policy at once, O(1). A full round is
//!   at most 4,096 buckets, and happens at most once per time the bound is
//!   passed.
//! * **Tombstones.** hashbrown marks some removed buckets as deleted rather
//!   than empty; if they used up the table's spare room an insert would grow
//!   it. Before that happens the shard rebuilds its table at the same size.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::Decision;

/// Keys per shard the default shard count aims for: one full sweep of such
/// a shard (4,096 buckets) takes a few microseconds.
pub(crate) const TARGET_SHARD_KEYS: usize = 3072;

/// Buckets a sweep examines after freeing its first key, so that one sweep
/// frees several keys for the new keys that follow.
const SWEEP_AFTER_FIRST_FREE: usize = 64;

pub(crate) mod sealed {
    /// Only this crate's rules can run in a keyed table.
    pub trait Sealed {}
}

/// The per-key rule a [`Keyed`](super::Keyed) limiter applies: GCRA
/// ([`GcraRule`](super::GcraRule)), the approximate sliding window
/// ([`SlidingWindowRule`](super::SlidingWindowRule)) or the exact one
/// ([`ExactWindowRule`](super::ExactWindowRule)). Sealed: the table's
/// memory bound relies on each rule's idle time being right.
///
/// ```
/// use surgeguard::limit::{Gcra, KeyRule, Quota};
///
/// fn limit_of<R: KeyRule>(rule: &R) -> String { format!("{rule:?}") }
/// let limiter = Gcra::keyed::<u64>(Quota::per_second(1)?).build()?;
/// assert!(limit_of(limiter.rule()).contains("GcraRule"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait KeyRule: sealed::Sealed + Send + Sync + fmt::Debug + 'static {
    /// One key's state.
    #[doc(hidden)]
    type State: Send + fmt::Debug;

    /// The state of a key never seen (or idle).
    #[doc(hidden)]
    fn fresh_state(&self) -> Self::State;

    /// The largest cost one check may ask for.
    #[doc(hidden)]
    fn max_cost(&self) -> u32;

    /// Decides a check of `cost` (at most `max_cost`) at `now`, updating the
    /// state if it is allowed.
    #[doc(hidden)]
    fn decide(&self, state: &mut Self::State, now: u64, cost: u32) -> Decision;

    /// Gives back `cost` units taken by an allowed check.
    #[doc(hidden)]
    fn refund(&self, state: &mut Self::State, now: u64, cost: u32);

    /// From this time on the state decides exactly as a fresh one would, so
    /// the key can be forgotten. Never decreases as checks are made.
    #[doc(hidden)]
    fn idle_at(&self, state: &Self::State) -> u64;

    /// The limit a decision announces.
    #[doc(hidden)]
    fn limit(&self) -> u32;

    /// The policy window a decision announces.
    #[doc(hidden)]
    fn policy_window(&self) -> Duration;
}

struct Slot<K, State> {
    key: K,
    state: State,
}

/// What a lookup found when the key was not in its (full) shard and no idle
/// key could make room.
pub(crate) enum Outcome {
    Decided(Decision),
    /// The shard is full of active keys; none is idle before this time.
    Full {
        next_idle: u64,
    },
}

struct Shard<K, State> {
    table: HashTable<Slot<K, State>>,
    /// Keys this shard may hold: its share of `max_keys`.
    capacity: usize,
    /// Passed to `HashTable::with_capacity` at build and on each rebuild.
    reserved: usize,
    /// No key's idle time is earlier than this.
    idle_bound: u64,
    /// The bucket the next sweep starts at.
    cursor: usize,
}

/// A shard alone on its cache lines, so that two cores working on
/// neighbouring shards do not contend.
#[repr(align(128))]
struct PaddedShard<K, State>(Mutex<Shard<K, State>>);

/// `max_keys` keys at most, in `shards` shards, each keyed by hash.
pub(crate) struct Table<K, R: KeyRule, S> {
    shards: Box<[PaddedShard<K, R::State>]>,
    hasher: S,
    rule: R,
    max_keys: usize,
}

impl<K, R, S> Table<K, R, S>
where
    K: Hash + Eq + Clone,
    R: KeyRule,
    S: BuildHasher,
{
    /// `shards` must be between 1 and `max_keys` (the builder checks).
    pub(crate) fn new(rule: R, max_keys: usize, shards: usize, hasher: S) -> Self {
        let shards = (0..shards)
            .map(|index| {
                let capacity = max_keys / shards + usize::from(index < max_keys % shards);
                // An eighth of spare room beyond the share keeps tombstone
                // rebuilds at least capacity / 7 removals apart.
                let reserved = capacity + capacity / 7 + 1;
                PaddedShard(Mutex::new(Shard {
                    table: HashTable::with_capacity(reserved),
                    capacity,
                    reserved,
                    idle_bound: 0,
                    cursor: 0,
                }))
            })
            .collect();
        Table {
            shards,
            hasher,
            rule,
            max_keys,
        }
    }

    /// The shard for `hash`, from bits 24..56: hashbrown takes bucket
    /// indices from the low bits and its 7-bit tags from the top ones, so
    /// both stay independent of the shard.
    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<K, R::State>> {
        let bits = (hash >> 24) & 0xffff_ffff;
        let index = (bits * self.shards.len() as u64) >> 32;
        &self.shards[index as usize].0
    }

    /// Decides `cost` (at most the rule's `max_cost`) for `key` at `now`.
    #[inline]
    pub(crate) fn check(&self, key: &K, now: u64, cost: u32) -> Outcome {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        if let Some(slot) = shard.table.find_mut(hash, |slot| slot.key == *key) {
            return Outcome::Decided(self.rule.decide(&mut slot.state, now, cost));
        }
        if cost == 0 {
            // Only looking: a key never seen has a fresh state, and is not
            // worth remembering.
            let decision = self.rule.decide(&mut self.rule.fresh_state(), now, 0);
            return Outcome::Decided(decision);
        }
        // Make room before deciding, so that a refused new key costs no
        // state (an exact window's log is allocated on first admission).
        if shard.table.len() >= shard.capacity && !shard.reclaim_idle(now, &self.rule) {
            return Outcome::Full {
                next_idle: shard.idle_bound,
            };
        }
        let mut state = self.rule.fresh_state();
        // A fresh state allows any cost up to `max_cost`.
        let decision = self.rule.decide(&mut state, now, cost);
        let idle_at = self.rule.idle_at(&state);
        if idle_at > now {
            shard.insert(hash, key.clone(), state, idle_at, &self.hasher);
        }
        Outcome::Decided(decision)
    }

    /// Gives back `cost` to `key`; returns false if the key is not tracked.
    pub(crate) fn refund(&self, key: &K, now: u64, cost: u32) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        let Some(slot) = shard.table.find_mut(hash, |slot| slot.key == *key) else {
            return false;
        };
        self.rule.refund(&mut slot.state, now, cost);
        let idle_at = self.rule.idle_at(&slot.state);
        shard.idle_bound = shard.idle_bound.min(idle_at);
        true
    }

    pub(crate) fn tracked_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.0.lock().table.len())
            .sum()
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        let tables: usize = self
            .shards
            .iter()
            .map(|shard| shard.0.lock().table.allocation_size())
            .sum();
        tables + std::mem::size_of_val(&*self.shards)
    }

    /// Forgets every idle key now; returns how many.
    pub(crate) fn reclaim_all_idle(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.0.lock();
                let before = shard.table.len();
                let mut bound = u64::MAX;
                shard.table.retain(|slot| {
                    let idle_at = self.rule.idle_at(&slot.state);
                    bound = bound.min(idle_at);
                    idle_at > now
                });
                shard.idle_bound = bound;
                before - shard.table.len()
            })
            .sum()
    }
}

impl<K, R: KeyRule, S> Table<K, R, S> {
    pub(crate) fn rule(&self) -> &R {
        &self.rule
    }

    pub(crate) fn max_keys(&self) -> usize {
        self.max_keys
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

impl<K, State> Shard<K, State> {
    /// Sweeps for idle keys from the cursor; true if it freed at least one.
    fn reclaim_idle<R: KeyRule<State = State>>(&mut self, now: u64, rule: &R) -> bool {
        if now < self.idle_bound {
            return false;
        }
        let buckets = self.table.num_buckets();
        let mut freed = 0usize;
        let mut earliest_kept = u64::MAX;
        for examined in 1..=buckets {
            let index = self.cursor;
            // hashbrown's bucket count is a power of two.
            self.cursor = (self.cursor + 1) & (buckets - 1);
            if let Ok(entry) = self.table.get_bucket_entry(index) {
                let idle_at = rule.idle_at(&entry.get().state);
                if idle_at <= now {
                    entry.remove();
                    freed += 1;
                } else {
                    earliest_kept = earliest_kept.min(idle_at);
                }
            }
            if freed > 0 && examined >= SWEEP_AFTER_FIRST_FREE && examined < buckets {
                // Stopped early: the old bound is still a lower bound.
                return true;
            }
        }
        // A full round saw every key: the bound is now exact.
        self.idle_bound = earliest_kept;
        freed > 0
    }

    fn insert<S: BuildHasher>(&mut self, hash: u64, key: K, state: State, idle_at: u64, hasher: &S)
    where
        K: Hash,
    {
        let rehash = |slot: &Slot<K, State>| hasher.hash_one(&slot.key);
        // `capacity()` counts spare room left by tombstones too; when it is
        // used up, hashbrown would grow the table on this insert.
        if self.table.len() >= self.table.capacity() {
            let mut fresh = HashTable::with_capacity(self.reserved);
            for slot in self.table.drain() {
                fresh.insert_unique(rehash(&slot), slot, rehash);
            }
            self.table = fresh;
            self.cursor = 0;
        }
        self.table.insert_unique(hash, Slot { key, state }, rehash);
        self.idle_bound = self.idle_bound.min(idle_at);
    }
}

impl<K, R: KeyRule, S> fmt::Debug for Table<K, R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("rule", &self.rule)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}
