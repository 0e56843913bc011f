//! The bounded key table behind the keyed window limiters.
//!
//! Keyed GCRA does not live here: its state is one word, and
//! `store/tags.rs` checks it without a lock. This table serves the window
//! rules, whose state is wider than a word, under one lock per shard. (Its
//! unit tests run it with `GcraRule`, whose state is
//! the smallest: the table's mechanics do not depend on the rule.)
//!
//! A key flood (every request from a new address) must not grow memory
//! without bound, must not reset a client that is being limited, and many
//! threads checking a few keys must not queue behind one another. So:
//!
//! * **Fixed size.** `max_keys` is split over the shards and each shard's
//!   hash table is allocated once, at build time, for its *cap* (below): no
//!   rehash on a hot path, no growth under a flood. Shards hold at most
//!   [`TARGET_SHARD_KEYS`] keys, sized to fill three quarters of a
//!   power-of-two table (hashbrown keeps at most 7/8 full), which measures at
//!   about 23 bytes per tracked `u64` key with a one-word state (a window's
//!   counters add their own size).
//! * **One lock per shard.** Each shard is a `parking_lot::Mutex`, taken by
//!   every check: a window's state is several words, updated together.
//! * **As many shards as the cores want, with slack for small ones.** A
//!   lock is one shared write per check, so a few shards cannot serve many
//!   cores: the default is 4 shards per core
//!   (what dashmap, and so governor, uses) down to 16 keys per shard. Keys
//!   hash unevenly, and the smaller a shard's share `m = max_keys / shards`
//!   the more so (a shard's count strays from `m` by about `√m`). Shards
//!   with a share of [`EXACT_SHARE_KEYS`](super::EXACT_SHARE_KEYS) (256) or more hold exactly their
//!   share, as before (`√m ≤ m / 16`; a new key is refused room when *its*
//!   shard is full of active keys, so a large table wants some headroom).
//!   A smaller share gets slack: the shard may hold up to its *cap*, at
//!   least `share + ⌈4√m⌉ + 4` keys (at most `max_keys`; the cap then grows
//!   to all that the shard's power-of-two table holds with an eighth spare,
//!   at no cost in memory), and a table-wide count of free places (`Room`,
//!   on a cache line of its own, touched only when a key is inserted or
//!   forgotten, never by a check of a tracked key) keeps the whole table at
//!   `max_keys`. With at most `max_keys` active keys hashed at random, a
//!   given shard has more active keys than `m + ⌈4√m⌉ + 4` with probability
//!   below 2·10⁻⁵ (the Poisson tail `P[X > m + ⌈4√m⌉ + 4]`, `X ~ Poisson(m)`,
//!   largest near `m = 248`; the binomial tail it approximates is smaller):
//!   that bounds how often a new key is refused by its own shard while the
//!   table as a whole has room. When the whole table is full a new key makes
//!   room by forgetting an idle key, of its own shard first (the sweep
//!   below), else of the others: with its own lock released, it sweeps the
//!   other shards one at a time (one lock at a time, so no deadlock)
//!   until one frees a place, and the places beyond its own go back to the
//!   table. A table-wide lower bound of idle times (lowered by each insert
//!   and refund, raised by a scan of every shard that found none idle)
//!   keeps that O(1) until a key may have gone idle. So a new key is
//!   refused only by a full shard or a table full of active keys (give or
//!   take a narrow race, described at `reclaim_elsewhere`).
//! * **Memory stays O(`max_keys`).** Exact shares cost what they did:
//!   about 23 bytes per key ([`Keyed::allocated_bytes`](crate::limit::Keyed::allocated_bytes)
//!   22.4 to 22.7 at 1,562 to 3,072 keys a shard). A shard with slack
//!   allocates its table for `share + ⌈4√m⌉ + 4` keys plus an eighth, as an
//!   exact share allocates for its share: at most 2.25 times as many keys
//!   for the default's shares (`16 ≤ m < 256`), before hashbrown rounds the
//!   bucket count up to a power of two as it does for every table. Measured
//!   with `u64` keys under GCRA, the whole table (hash tables, shard locks,
//!   room count) takes at most 95 bytes per key of `max_keys` at those
//!   shares (63 at 1,250 keys over 64 shards, 57 over 8, against 28 over the
//!   4 exact shares the default chose before). Shards chosen by hand with
//!   tiny shares cost more per key (each shard has a lock on two cache lines
//!   and a table of at least a few buckets): at most about 450 bytes per
//!   key, at one key a shard. The unit tests check both bounds.
//! * **Idle keys go first, losslessly.** Each rule says when a key's state
//!   is back to "never seen" ([`KeyRule::idle_at`]: a GCRA bucket is full
//!   again, a window has emptied). A new key arriving at a full shard sweeps
//!   the shard from where the last sweep stopped, removing every idle key it
//!   passes, until it has freed one (and looked at 64 buckets, so one sweep
//!   frees a handful) or gone round once.
//! * **Idle keys give their memory back before the table is full.** An
//!   exact window's idle key still holds its whole log (`limit`
//!   timestamps), so waiting for pressure to forget it would keep the table
//!   at its largest. Each insert also moves a hand over the next 4 buckets
//!   of its shard (the sweep's cursor; the hand of Corbató's CLOCK page
//!   replacement, 1968, with a fixed step), forgetting the idle keys there: a
//!   bounded cost per new key, and an idle key is gone once as many new
//!   keys as a quarter of the shard's buckets have come after it.
//! * **No sweep when none can succeed.** The shard keeps a lower bound of
//!   its keys' idle times (exact after a full round, lowered by each insert
//!   and refund; checks only raise idle times). Until
//!   the clock passes it, a new key at a full shard meets the
//!   [`WhenFull`](crate::limit::WhenFull) policy at once, O(1). A full round is at
//!   most 4,096 buckets, and happens at most once per time the bound is
//!   passed.
//! * **Tombstones.** hashbrown marks some removed buckets as deleted rather
//!   than empty; if they used up the table's spare room an insert would grow
//!   it. Before that happens the shard rebuilds its table at the same size.
//!
//! **Why many shards.** Measured on a 16-core Xeon while keyed GCRA still
//! lived here (`SURGEGUARD_BENCH_THREADS=16 cargo bench --bench limiter
//! keyed`, ns per check per thread at 16 threads; `keyed_1k`: random keys
//! out of 1,000; `max_keys` 1,250), with one exclusive lock per check as the
//! windows take it: 4 shards (the default before `872e474`) 5,986 ns, 64
//! shards with slack 189 to 224 ns (governor, dashmap's 64 read-locked
//! shards: 200 to 228). Threads checking the *same* few keys still queue on
//! their shards' locks; for GCRA, whose state is one word, `store/tags.rs`
//! removes the lock altogether.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::bound::Census;
use super::{slack, KeyRule, KeyStore, Outcome, TableTooLarge, MAX_SHARDS};
use crate::limit::Decision;

/// Keys per shard the default shard count aims for: one full sweep of such
/// a shard (4,096 buckets) takes a few microseconds.
pub(crate) const TARGET_SHARD_KEYS: usize = 3072;

/// Default shards per available core: enough that two threads rarely want
/// the same shard's lock (or its reader count) at once; dashmap's default.
const SHARDS_PER_CORE: usize = 4;

/// The default never splits a window limiter's table (`entries.rs`) so finely
/// that a shard's share of `max_keys` is below this (GCRA's regions:
/// `store/tags.rs`). Shares below 256 keys get slack (`entries.rs`),
/// so that keys hashing unevenly do not fill one shard while the table has
/// room; at 16 keys the slack is 20 keys, and a table of such shares takes
/// at most 95 bytes per key of `max_keys` (`u64` keys, one-word state).
const MIN_SHARD_KEYS: usize = 16;

/// Buckets the hand examines on each insert (see `Shard::hand_step`).
const HAND_STEP_BUCKETS: usize = 4;

/// Buckets a sweep examines after freeing its first key, so that one sweep
/// frees several keys for the new keys that follow.
const SWEEP_AFTER_FIRST_FREE: usize = 64;

struct Slot<K, State> {
    key: K,
    state: State,
}

struct Shard<K, State> {
    table: HashTable<Slot<K, State>>,
    /// Keys this shard may hold: its share of `max_keys`, plus slack for a
    /// small share.
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
pub struct Table<K, R: KeyRule, S> {
    shards: Box<[PaddedShard<K, R::State>]>,
    /// The table-wide bound-keeping (`bound.rs`); `None` when the shards
    /// hold exact shares (their caps add up to `max_keys`).
    room: Option<Box<Census>>,
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
    pub(crate) fn new(
        rule: R,
        max_keys: usize,
        shards: usize,
        hasher: S,
    ) -> Result<Self, TableTooLarge> {
        let slack = if shards > 1 {
            slack(max_keys / shards)
        } else {
            0
        };
        // An eighth of spare room beyond the cap keeps tombstone rebuilds at
        // least capacity / 7 removals apart.
        let spared = |capacity: usize| capacity.saturating_add(capacity / 7).saturating_add(1);
        let shards = (0..shards)
            .map(|index| {
                let share = max_keys / shards + usize::from(index < max_keys % shards);
                let mut capacity = share.saturating_add(slack).min(max_keys);
                // Reserved up front, and fallibly: a `max_keys` no allocator
                // can hold is a build error, not an abort.
                let mut table = HashTable::new();
                table
                    .try_reserve(spared(capacity), |_: &Slot<K, R::State>| 0)
                    .map_err(|_| TableTooLarge)?;
                if slack > 0 {
                    // The bucket count is a power of two: a shard with slack
                    // uses all the table holds, at no cost in memory.
                    while capacity < max_keys && spared(capacity + 1) <= table.capacity() {
                        capacity += 1;
                    }
                }
                Ok(PaddedShard(Mutex::new(Shard {
                    table,
                    capacity,
                    reserved: spared(capacity),
                    idle_bound: 0,
                    cursor: 0,
                })))
            })
            .collect::<Result<Box<[_]>, TableTooLarge>>()?;
        Ok(Table {
            shards,
            room: (slack > 0).then(|| Box::new(Census::new(max_keys))),
            hasher,
            rule,
            max_keys,
        })
    }

    /// The shard for `hash`, from bits 24..56: hashbrown takes bucket
    /// indices from the low bits and its 7-bit tags from the top ones, so
    /// both stay independent of the shard.
    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        let bits = (hash >> 24) & 0xffff_ffff;
        ((bits * self.shards.len() as u64) >> 32) as usize
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<K, R::State>> {
        &self.shards[self.shard_index(hash)].0
    }

    /// Decides `cost` (at most the rule's `max_cost`) for `key` at `now`.
    /// (`Keyed` hashes the key itself and calls
    /// [`check_exclusive`](Self::check_exclusive).)
    #[cfg(test)]
    pub(crate) fn check(&self, key: &K, now: u64, cost: u32) -> Outcome {
        self.check_exclusive(self.hasher.hash_one(key), key, now, cost)
    }

    /// A check, under the shard's lock: a tracked key is decided, a new one
    /// inserted if there is room (or made).
    pub(crate) fn check_exclusive(&self, hash: u64, key: &K, now: u64, cost: u32) -> Outcome {
        let index = self.shard_index(hash);
        // A place freed in another shard and held for this key: at most one
        // trip to the other shards, so at most two rounds.
        let mut held = false;
        loop {
            let mut shard = self.shards[index].0.lock();
            // Another thread may have inserted the key while this one looked
            // in other shards.
            if let Some(slot) = shard.table.find_mut(hash, |slot| slot.key == *key) {
                self.give_room(usize::from(held));
                return Outcome::Decided(self.rule.decide(&mut slot.state, now, cost));
            }
            if cost == 0 {
                self.give_room(usize::from(held));
                return Outcome::Decided(self.look_untracked(now));
            }
            // Make room before deciding, so that a refused new key costs no
            // state (an exact window's log is allocated on first admission).
            let below_cap = shard.table.len() < shard.capacity;
            if !(below_cap && (held || self.take_room())) {
                let freed = shard.reclaim_idle(now, &self.rule);
                if freed > 0 {
                    // The new key takes one of the places freed; the others
                    // go back to the table (with the one held, if any).
                    self.give_room(freed - 1 + usize::from(held));
                } else if !below_cap || held {
                    self.give_room(usize::from(held));
                    return Outcome::Full {
                        next_idle: shard.idle_bound,
                    };
                } else {
                    // The table is full, and this shard has room but no idle
                    // key: look for one elsewhere, holding no lock meanwhile.
                    drop(shard);
                    match self.reclaim_elsewhere(index, now) {
                        Ok(()) => {
                            held = true;
                            continue;
                        }
                        Err(next_idle) => return Outcome::Full { next_idle },
                    }
                }
            }
            let mut state = self.rule.fresh_state();
            // A fresh state allows any cost up to `max_cost`.
            let decision = self.rule.decide(&mut state, now, cost);
            let idle_at = self.rule.idle_at(&state);
            if idle_at > now {
                shard.insert(hash, key.clone(), state, idle_at, &self.hasher);
                self.lower_idle_bound(idle_at);
                let freed = shard.hand_step(now, &self.rule);
                self.give_room(freed);
            } else {
                self.give_room(1);
            }
            return Outcome::Decided(decision);
        }
    }

    /// The table is full and shard `own` has room but no idle key: the
    /// census sweeps the other shards (see [`Census::reclaim_elsewhere`]).
    #[cold]
    fn reclaim_elsewhere(&self, own: usize, now: u64) -> Result<(), u64> {
        let Some(room) = &self.room else {
            // Exact shares never get here: the shard's cap is the bound.
            return Err(now);
        };
        room.reclaim_elsewhere(own, self.shards.len(), now, |index| {
            let mut shard = self.shards[index].0.lock();
            let freed = shard.reclaim_idle(now, &self.rule);
            (freed, shard.idle_bound)
        })
    }

    /// Keeps the table's lower bound of idle times at or below `idle_at`,
    /// the idle time of a key just inserted or refunded.
    #[inline]
    fn lower_idle_bound(&self, idle_at: u64) {
        if let Some(room) = &self.room {
            room.lower_idle_bound(idle_at);
        }
    }

    /// Only looking: a key never seen has a fresh state, and is not worth
    /// remembering.
    fn look_untracked(&self, now: u64) -> Decision {
        self.rule.decide(&mut self.rule.fresh_state(), now, 0)
    }

    /// Takes one place from the table's room; true if there was one (always
    /// for exact shares, where the shard's own cap is the bound).
    #[inline]
    fn take_room(&self) -> bool {
        self.room.as_ref().is_none_or(|room| room.take_place())
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
        self.lower_idle_bound(idle_at);
        true
    }
}

impl<K, R: KeyRule, S> Table<K, R, S> {
    /// Gives `places` back to the table's room.
    #[inline]
    fn give_room(&self, places: usize) {
        if let Some(room) = &self.room {
            room.give_places(places);
        }
    }

    /// Places the table-wide count holds taken (`None`: exact shares, no
    /// table-wide count).
    #[cfg(all(test, not(surgeguard_loom)))]
    pub(crate) fn places_taken(&self) -> Option<usize> {
        self.room.as_ref().map(|room| room.taken())
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
        let room = self
            .room
            .as_ref()
            .map_or(0, |room| std::mem::size_of_val(&**room));
        tables + std::mem::size_of_val(&*self.shards) + room
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
                let freed = before - shard.table.len();
                self.give_room(freed);
                freed
            })
            .sum()
    }

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

impl<K, R: KeyRule, S> KeyStore<K, S> for Table<K, R, S> {
    type Rule = R;

    fn build(
        rule: R,
        max_keys: usize,
        shards: Option<usize>,
        hasher: S,
    ) -> Result<Self, TableTooLarge>
    where
        K: Hash + Eq + Clone,
        S: BuildHasher,
    {
        let shards = shards.unwrap_or_else(|| default_shards(max_keys));
        Table::new(rule, max_keys, shards, hasher)
    }

    /// Every check of a window takes its shard's lock: nothing is decided
    /// here, only the hash is taken.
    #[inline]
    fn check_tracked(&self, key: &K, _now: u64, _cost: u32) -> Result<Decision, u64>
    where
        K: Hash + Eq + Clone,
        S: BuildHasher,
    {
        Err(self.hasher.hash_one(key))
    }

    #[inline]
    fn check_exclusive(&self, hash: u64, key: &K, now: u64, cost: u32) -> Outcome
    where
        K: Hash + Eq + Clone,
        S: BuildHasher,
    {
        Table::check_exclusive(self, hash, key, now, cost)
    }

    fn refund(&self, key: &K, now: u64, cost: u32) -> bool
    where
        K: Hash + Eq + Clone,
        S: BuildHasher,
    {
        Table::refund(self, key, now, cost)
    }

    fn tracked_keys(&self) -> usize {
        Table::tracked_keys(self)
    }

    fn allocated_bytes(&self) -> usize {
        Table::allocated_bytes(self)
    }

    fn reclaim_all_idle(&self, now: u64) -> usize {
        Table::reclaim_all_idle(self, now)
    }

    fn rule(&self) -> &R {
        Table::rule(self)
    }

    fn max_keys(&self) -> usize {
        Table::max_keys(self)
    }

    fn shard_count(&self) -> usize {
        Table::shard_count(self)
    }
}

/// The default shard count of the locked table .
pub(crate) fn default_shards(max_keys: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let for_cores = (cores * SHARDS_PER_CORE).min(max_keys / MIN_SHARD_KEYS);
    let for_sweeps = max_keys.div_ceil(TARGET_SHARD_KEYS);
    for_cores.max(for_sweeps).clamp(1, MAX_SHARDS)
}

impl<K, State> Shard<K, State> {
    /// One step of the hand that gives idle keys' memory back before the
    /// table is under pressure: removes the idle keys in the
    /// [`HAND_STEP_BUCKETS`] buckets from the cursor on (an exact window's
    /// idle key holds a whole log). Taken on each insert, so it costs a
    /// bounded amount per new key and goes round a shard once per
    /// `buckets / HAND_STEP_BUCKETS` new keys. Returns how many it freed.
    fn hand_step<R: KeyRule<State = State>>(&mut self, now: u64, rule: &R) -> usize {
        if now < self.idle_bound {
            return 0;
        }
        let buckets = self.table.num_buckets();
        let mut freed = 0;
        for _ in 0..HAND_STEP_BUCKETS.min(buckets) {
            let index = self.cursor;
            self.cursor = (self.cursor + 1) & (buckets - 1);
            if let Ok(entry) = self.table.get_bucket_entry(index) {
                if rule.idle_at(&entry.get().state) <= now {
                    entry.remove();
                    freed += 1;
                }
            }
        }
        freed
    }

    /// Sweeps for idle keys from the cursor; returns how many it freed.
    fn reclaim_idle<R: KeyRule<State = State>>(&mut self, now: u64, rule: &R) -> usize {
        if now < self.idle_bound {
            return 0;
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
                return freed;
            }
        }
        // A full round saw every key: the bound is now exact.
        self.idle_bound = earliest_kept;
        freed
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    use super::super::EXACT_SHARE_KEYS;
    use crate::limit::gcra_rule::GcraRule;
    use crate::limit::Quota;

    fn gcra_table(max_keys: usize, shards: usize) -> Table<u64, GcraRule, ahash::RandomState> {
        let rule = GcraRule::new(Quota::per_second(1_000).unwrap());
        Table::new(rule, max_keys, shards, ahash::RandomState::new()).unwrap()
    }

    fn free_places(table: &Table<u64, GcraRule, ahash::RandomState>) -> usize {
        table
            .room
            .as_ref()
            .map(|room| table.max_keys - room.taken())
            .unwrap()
    }

    #[test]
    fn slack_is_four_deviations_and_four_below_exact_shares() {
        assert_eq!(slack(1), 8);
        assert_eq!(slack(16), 20);
        assert_eq!(slack(17), 21); // ⌈4√17⌉ = ⌈16.49⌉
        assert_eq!(slack(255), 68);
        assert_eq!(slack(EXACT_SHARE_KEYS), 0);
        assert!(gcra_table(1_000, 1).room.is_none());
        assert!(gcra_table(1_024, 4).room.is_none());
        assert!(gcra_table(1_020, 4).room.is_some());
    }

    #[test]
    fn caps_cover_the_slack_and_exact_shares_add_up() {
        for (max_keys, shards) in [(1_250, 64), (1_250, 8), (100, 6), (7, 7), (1_000, 4)] {
            let table = gcra_table(max_keys, shards);
            let caps: Vec<usize> = table.shards.iter().map(|s| s.0.lock().capacity).collect();
            let share = max_keys / shards;
            if table.room.is_some() {
                assert!(caps.iter().all(|&cap| {
                    cap >= (share + slack(share)).min(max_keys) && cap <= max_keys
                }));
            } else {
                assert_eq!(caps.iter().sum::<usize>(), max_keys);
            }
        }
    }

    /// The documented memory bounds, with `u64` keys under GCRA: at most 95
    /// bytes per key of `max_keys` for the default's shares (16 to 255), and
    /// about 450 for any split chosen by hand.
    #[test]
    fn memory_stays_linear_in_max_keys() {
        for shards in [2, 8, 64] {
            for share in (16..EXACT_SHARE_KEYS + 64).step_by(3) {
                let max_keys = share * shards + shards / 2;
                let per_key =
                    gcra_table(max_keys, shards).allocated_bytes() as f64 / max_keys as f64;
                assert!(
                    per_key <= 95.0,
                    "{per_key} bytes per key: {max_keys} keys, {shards} shards"
                );
            }
        }
        for max_keys in 1..100 {
            for shards in 1..=max_keys.min(16) {
                let per_key =
                    gcra_table(max_keys, shards).allocated_bytes() as f64 / max_keys as f64;
                assert!(
                    per_key <= 450.0,
                    "{per_key} bytes per key: {max_keys} keys, {shards} shards"
                );
            }
        }
    }

    /// Threads insert, sweep and check while the clock moves; whatever the
    /// interleaving, the places the table counts as free are exactly
    /// `max_keys` less the keys tracked.
    ///
    /// Why it cannot flake: it asserts only that invariant and the bound,
    /// after every thread has joined. Each thread runs a fixed number of
    /// steps (the first one moves the clock and sweeps as it goes), so the
    /// test's length does not depend on how the threads are scheduled.
    #[test]
    fn room_accounting_stays_exact() {
        const STEPS: u64 = 2_000;
        let table = gcra_table(200, 8);
        let now = AtomicU64::new(0);
        // All start together, so that they mostly run at the same time.
        let start = std::sync::Barrier::new(4);
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let (table, now, start) = (&table, &now, &start);
                scope.spawn(move || {
                    start.wait();
                    let mut key = thread;
                    for step in 1..=STEPS {
                        if thread == 0 {
                            now.store(step * 100_000, Ordering::Relaxed);
                            if step % 500 == 0 {
                                table.reclaim_all_idle(step * 100_000);
                            }
                        }
                        key = key.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1) % 1_000;
                        let _ = table.check(&key, now.load(Ordering::Relaxed), 1);
                        if key % 97 == 0 {
                            table.refund(&key, now.load(Ordering::Relaxed), 1);
                        }
                    }
                });
            }
        });
        let tracked = table.tracked_keys();
        assert!(tracked <= 200);
        assert_eq!(free_places(&table) + tracked, 200);
        table.reclaim_all_idle(u64::MAX);
        assert_eq!(table.tracked_keys(), 0);
        assert_eq!(free_places(&table), 200);
    }

    const MS: u64 = 1_000_000;

    /// `count` keys from `from` on that land in `shard`.
    fn keys_in(
        table: &Table<u64, GcraRule, ahash::RandomState>,
        shard: usize,
        count: usize,
    ) -> Vec<u64> {
        (0u64..)
            .filter(|key| table.shard_index(table.hasher.hash_one(key)) == shard)
            .take(count)
            .collect()
    }

    fn allowed(outcome: Outcome) -> bool {
        matches!(outcome, Outcome::Decided(decision) if decision.is_allowed())
    }

    fn refused_until(outcome: Outcome) -> Option<u64> {
        match outcome {
            Outcome::Full { next_idle } => Some(next_idle),
            Outcome::Decided(_) => None,
        }
    }

    /// A full table whose idle keys all sit in another shard still takes a
    /// new key: it sweeps the other shard.
    #[test]
    fn a_full_table_frees_idle_keys_of_other_shards() {
        // Shares of 20, caps of 40 (all of max_keys): one shard can hold all.
        let table = gcra_table(40, 2);
        let (zeros, ones) = (keys_in(&table, 0, 11), keys_in(&table, 1, 30));
        for key in &ones {
            assert!(allowed(table.check(key, 0, 1))); // idle at 1 ms
        }
        for key in &zeros[..10] {
            assert!(allowed(table.check(key, 10 * MS, 1))); // idle at 11 ms
        }
        assert_eq!(free_places(&table), 0);
        assert!(allowed(table.check(&zeros[10], 10 * MS + 1, 1)));
        assert_eq!(table.tracked_keys(), 11, "shard 1's idle keys were swept");
        assert_eq!(free_places(&table) + table.tracked_keys(), 40);
    }

    /// A table full of active keys refuses at once until the earliest of
    /// them goes idle, then takes the new key in its place.
    #[test]
    fn a_table_full_of_active_keys_refuses_until_the_earliest_goes_idle() {
        let table = gcra_table(40, 2);
        let (zeros, ones) = (keys_in(&table, 0, 22), keys_in(&table, 1, 22));
        for key in &ones[..20] {
            assert!(allowed(table.check(key, 0, 10))); // idle at 10 ms
        }
        for key in &zeros[..20] {
            assert!(allowed(table.check(key, 5 * MS, 1))); // idle at 6 ms
        }
        // Shard 1 is active till 10 ms, shard 0 till 6 ms: retry at 6 ms.
        assert_eq!(
            refused_until(table.check(&ones[20], 5 * MS, 1)),
            Some(6 * MS)
        );
        let bound = table.room.as_ref().unwrap().idle_bound();
        assert_eq!(bound, 6 * MS, "the scan raised the table's bound");
        // Before it, a refusal is O(1): the bound answers.
        assert_eq!(
            refused_until(table.check(&zeros[20], 5 * MS + MS / 2, 1)),
            Some(6 * MS)
        );
        // From it, shard 1's new key takes an idle place of shard 0.
        assert!(allowed(table.check(&ones[20], 6 * MS, 1)));
        assert_eq!(table.tracked_keys(), 21);
        assert_eq!(free_places(&table), 19);
    }
}
