//! One shard: a hash table of slab indices, the slab of entries, the eviction
//! policy and the expiry wheel, behind one reader-writer lock.
//!
//! Lookups take the read lock: they find the slab index in the table, check
//! the deadline, tell the policy about the hit with a relaxed atomic store,
//! and clone the value. Writes take the write lock and do a bounded amount of
//! housekeeping (evict down to capacity, reclaim at most
//! [`MAINTENANCE_BUDGET`] expired entries) before releasing it.
//!
//! The slab is kept dense: removing entry `i` moves the last entry into slot
//! `i` (`swap_remove`) and repoints the table, the policy and the wheel. There
//! are no holes, no free list and no per-entry tag, which is what keeps the
//! memory per entry small.
//!
//! Loads in flight (stampede protection) sit in a second, usually empty,
//! table beside the first, under the same lock; [`load`] holds the shard's
//! side of loading, and any explicit write to a key supersedes its flight.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard};

use super::builder::MAX_SHARD_ENTRIES;
use super::expiry::{Deadlines, Expiry};
use super::load::Flight;
use super::policy::{Entries, EntryMeta, Policy};
use super::stats::{CacheStats, LookupCounters, WriteCounters};
use super::Config;

mod load;

pub(crate) use load::{Lookup, Role};

/// Expired entries reclaimed (or cascaded) at most per write. Each stored
/// entry expires once and cascades through at most a few wheel levels, so a
/// budget of 16 per write keeps up with any insert rate.
pub(crate) const MAINTENANCE_BUDGET: u32 = 16;

/// One entry: key, value and the policy's per-entry word and weight, so a
/// hit reads and writes one cache line.
///
/// No stored hash: it would cost 8 bytes per entry, and only removal and
/// table growth need it, where hashing the key again is cheap next to the
/// rest of the work.
struct Slot<K, V> {
    key: K,
    value: V,
    meta: EntryMeta,
}

impl<K, V> Entries for Vec<Slot<K, V>> {
    #[inline]
    fn meta(&self, index: u32) -> &EntryMeta {
        &self[index as usize].meta
    }
}

/// `repr(C)` keeps the fields a lookup reads (table, slab) first, on the
/// same cache line as the lock word.
#[repr(C)]
struct State<K, V> {
    table: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    policy: Policy,
    /// Allocated when the shard first stores an entry that can expire.
    expiry: Option<Expiry>,
    writes: WriteCounters,
    /// Loads in flight, by key; empty (and unallocated) unless loading.
    flights: HashTable<Arc<Flight<K, V>>>,
}

/// A shard of the cache.
///
/// `repr(C)` with the hit/miss counters right before the lock: a lookup
/// already owns the lock's cache line (taking a read lock writes to it), so
/// counting the hit there costs no extra line transfer between cores.
#[repr(C)]
pub(crate) struct Shard<K, V> {
    lookups: LookupCounters,
    state: RwLock<State<K, V>>,
    capacity: u64,
    len: AtomicUsize,
    weight: AtomicU64,
}

impl<K: Hash + Eq, V: Clone> Shard<K, V> {
    /// `up_front`: the most entries this shard reserves room for at build
    /// time (see `Cache::from_parts`).
    pub(crate) fn new(capacity: u64, count_bound: bool, up_front: u64) -> Self {
        // Count-bounded shards size their table once, so no insert ever pays
        // for a rehash (capped, so a huge never-filled capacity costs nothing).
        let presize = if count_bound {
            capacity.min(up_front) as usize
        } else {
            0
        };
        // An insert pushes before it evicts, so a full shard briefly holds
        // one entry more than its capacity: reserve it, or the slab doubles.
        let reserve = presize + usize::from(presize > 0);
        Shard {
            state: RwLock::new(State {
                table: HashTable::with_capacity(reserve),
                slots: Vec::with_capacity(reserve),
                policy: Policy::new(capacity, up_front),
                expiry: None,
                writes: WriteCounters::default(),
                flights: HashTable::new(),
            }),
            lookups: LookupCounters::default(),
            capacity,
            len: AtomicUsize::new(0),
            weight: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn get<Q, S: BuildHasher>(
        &self,
        hash: u64,
        key: &Q,
        config: &Config<K, V, S>,
    ) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let state = self.state.read();
        let Some(&index) = state.find(hash, key) else {
            drop(state);
            self.lookups.miss();
            return None;
        };
        if state
            .expiry
            .as_ref()
            .is_some_and(|expiry| expiry.may_expire(index))
        {
            return self.get_expiring(state, index, config);
        }
        self.hit(state, index)
    }

    /// A hit on live entry `index`: tells the policy, counts it, and returns
    /// a clone of the value, releasing the lock before counting.
    #[inline]
    fn hit(&self, state: RwLockReadGuard<'_, State<K, V>>, index: u32) -> Option<V> {
        let slot = &state.slots[index as usize];
        slot.meta.record_hit();
        let value = slot.value.clone();
        drop(state);
        self.lookups.hit();
        Some(value)
    }

    /// The rest of [`get`](Self::get) for an entry that may have expired:
    /// out of line, so that a hit on an entry without a deadline (every
    /// entry of a cache without time-to-live) runs a smaller function.
    #[inline(never)]
    fn get_expiring<S: BuildHasher>(
        &self,
        state: RwLockReadGuard<'_, State<K, V>>,
        index: u32,
        config: &Config<K, V, S>,
    ) -> Option<V> {
        let now = config.now();
        if let Some(expiry) = &state.expiry {
            if expiry.is_expired(index, now) {
                drop(state);
                self.lookups.miss();
                self.try_maintain(config);
                return None;
            }
            expiry.record_access(index, now);
        }
        self.hit(state, index)
    }

    pub(crate) fn contains<Q, S>(&self, hash: u64, key: &Q, config: &Config<K, V, S>) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let state = self.state.read();
        match state.find(hash, key) {
            None => false,
            Some(&index) => match &state.expiry {
                Some(expiry) if expiry.may_expire(index) => !expiry.is_expired(index, config.now()),
                _ => true,
            },
        }
    }

    /// Stores `key → value` with `deadlines`, superseding any load of the
    /// key in flight. Returns the overwritten value, to drop outside the
    /// lock.
    pub(crate) fn insert<S: BuildHasher>(
        &self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        deadlines: Deadlines,
        config: &Config<K, V, S>,
    ) -> Option<V> {
        let mut state = self.state.write();
        state.supersede(hash, &key);
        let displaced = state.store(self.capacity, hash, key, value, weight, deadlines, config);
        self.publish_size(&state);
        displaced
    }

    pub(crate) fn remove<Q, S: BuildHasher>(
        &self,
        hash: u64,
        key: &Q,
        config: &Config<K, V, S>,
    ) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut state = self.state.write();
        state.supersede(hash, key);
        let removed = state.take(hash, key, config);
        self.publish_size(&state);
        removed
    }

    /// Drops every entry, freeing them after the lock is released.
    pub(crate) fn clear(&self) {
        let mut state = self.state.write();
        // Keep the reserved room: refilling must not pay for regrowth.
        let room = state.slots.capacity();
        let slots = mem::replace(&mut state.slots, Vec::with_capacity(room));
        state.table.clear();
        state.flights.clear();
        state.policy.clear();
        if let Some(expiry) = &mut state.expiry {
            expiry.clear();
        }
        self.publish_size(&state);
        drop(state);
        drop(slots);
    }

    /// Reclaims expired entries if the lock is free right now; never waits.
    pub(crate) fn try_maintain<S: BuildHasher>(&self, config: &Config<K, V, S>) {
        if let Some(mut state) = self.state.try_write() {
            if state.expiry.is_some() {
                state.reclaim_expired(config.now(), MAINTENANCE_BUDGET, &config.hasher);
                self.publish_size(&state);
            }
        }
    }

    fn publish_size(&self, state: &State<K, V>) {
        self.len.store(state.slots.len(), Ordering::Relaxed);
        self.weight.store(state.policy.weight(), Ordering::Relaxed);
    }
}

impl<K, V> Shard<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Loads registered for this shard's keys right now (takes the read
    /// lock: for monitoring, not for hot paths).
    pub(crate) fn loads_in_flight(&self) -> usize {
        self.state.read().flights.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Adds this shard's counters to `total`.
    pub(crate) fn add_stats_to(&self, total: &mut CacheStats) {
        self.lookups.add_to(total);
        self.state.read().writes.add_to(total);
    }
}

impl<K: Hash + Eq, V> State<K, V> {
    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<&u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.find(hash, |&index| {
            self.slots[index as usize].key.borrow() == key
        })
    }

    /// Stores `key → value` (see [`Shard::insert`]) under the held lock,
    /// then evicts and reclaims within budget.
    #[allow(clippy::too_many_arguments)]
    fn store<S: BuildHasher>(
        &mut self,
        capacity: u64,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        deadlines: Deadlines,
        config: &Config<K, V, S>,
    ) -> Option<V> {
        if u64::from(weight) > capacity {
            self.writes.rejected += 1;
            // The new value supersedes any older one, which must not be served.
            return self.take(hash, &key, config);
        }
        // Time matters once anything here can expire or refresh: deadlines
        // now, ones stored earlier, or time-to-idle.
        let needs_time =
            deadlines != Deadlines::NONE || self.expiry.is_some() || config.time_to_idle.is_some();
        let now = if needs_time { config.now() } else { 0 };
        let Some(&index) = self.find(hash, &key) else {
            self.store_new(
                capacity, hash, key, value, weight, deadlines, config, needs_time, now,
            );
            return None;
        };
        let slot = &mut self.slots[index as usize];
        let old = mem::replace(&mut slot.value, value);
        let old_weight = slot.meta.weight();
        slot.meta.set_weight(weight);
        self.policy.update(&self.slots, index, old_weight);
        self.writes.inserts += 1;
        if needs_time {
            self.expiry_or_init(config, now)
                .reset(index, deadlines, now);
        }
        // An overwrite that weighs no more than the old value cannot take
        // the shard over capacity (the common case: same key, new value).
        if weight > old_weight {
            self.evict_to(capacity, &config.hasher);
        }
        if needs_time {
            self.reclaim_expired(now, MAINTENANCE_BUDGET, &config.hasher);
        }
        Some(old)
    }

    /// [`store`](Self::store) of a key not resident: a new slot, then
    /// evictions. Kept out of line so that overwrites, the common case
    /// under a hot key set, run a smaller function (callgrind on
    /// `examples/op_loop`'s inserts: 408 to 404 instructions per insert,
    /// with the skipped eviction loop above).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn store_new<S: BuildHasher>(
        &mut self,
        capacity: u64,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        deadlines: Deadlines,
        config: &Config<K, V, S>,
        needs_time: bool,
        now: u64,
    ) {
        if needs_time {
            // The wheel runs parallel to the slab: its next node is the
            // new slot's.
            self.expiry_or_init(config, now).push(deadlines, now);
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            key,
            value,
            meta: EntryMeta::new(weight),
        });
        let slots = &self.slots;
        self.table.insert_unique(hash, index, |&i| {
            config.hasher.hash_one(&slots[i as usize].key)
        });
        self.policy.insert(&self.slots, index, hash);
        self.writes.inserts += 1;
        self.evict_to(capacity, &config.hasher);
        if needs_time {
            self.reclaim_expired(now, MAINTENANCE_BUDGET, &config.hasher);
        }
    }

    /// An explicit write to `key` wins over a load of it in flight: the
    /// flight leaves the table, so its result will not be stored (its
    /// waiters still receive it).
    fn supersede<Q>(&mut self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.flights.is_empty() {
            return;
        }
        if let Ok(entry) = self
            .flights
            .find_entry(hash, |flight| flight.key().borrow() == key)
        {
            entry.remove();
        }
    }

    /// Removes `key` if present; returns its value unless it had expired.
    /// Also reclaims a budget of expired entries.
    fn take<Q, S: BuildHasher>(&mut self, hash: u64, key: &Q, config: &Config<K, V, S>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = if self.expiry.is_some() {
            config.now()
        } else {
            0
        };
        let removed = self.find(hash, key).copied().and_then(|index| {
            let expired = self
                .expiry
                .as_ref()
                .is_some_and(|expiry| expiry.is_expired(index, now));
            self.policy.remove(&self.slots, index);
            let slot = self.remove_slot(index, hash, &config.hasher);
            if expired {
                self.writes.expirations += 1;
                None
            } else {
                Some(slot.value)
            }
        });
        if self.expiry.is_some() {
            self.reclaim_expired(now, MAINTENANCE_BUDGET, &config.hasher);
        }
        removed
    }

    fn expiry_or_init<S>(&mut self, config: &Config<K, V, S>, now: u64) -> &mut Expiry {
        let resident = self.slots.len();
        self.expiry.get_or_insert_with(|| {
            Expiry::new(resident, config.time_to_idle, config.loading.grace(), now)
        })
    }

    /// Evicts until the policy's weight fits `capacity` and the slab's
    /// indices fit their `u32` (a weighted shard could otherwise hold more
    /// than [`MAX_SHARD_ENTRIES`] light entries).
    fn evict_to(&mut self, capacity: u64, hasher: &impl BuildHasher) {
        while self.policy.weight() > capacity || self.slots.len() as u64 > MAX_SHARD_ENTRIES {
            let Some(victim) = self.policy.evict(&self.slots) else {
                break;
            };
            let hash = hasher.hash_one(&self.slots[victim as usize].key);
            drop(self.remove_slot(victim, hash, hasher));
            self.writes.evictions += 1;
        }
    }

    /// Reclaims up to `budget` wheel steps' worth of expired entries.
    fn reclaim_expired(&mut self, now: u64, mut budget: u32, hasher: &impl BuildHasher) {
        while let Some(index) = self
            .expiry
            .as_mut()
            .and_then(|expiry| expiry.next_expired(now, &mut budget))
        {
            self.policy.remove(&self.slots, index);
            let hash = hasher.hash_one(&self.slots[index as usize].key);
            drop(self.remove_slot(index, hash, hasher));
            self.writes.expirations += 1;
        }
    }

    /// Takes the entry at `index` (whose key hashes to `hash`) out of the
    /// table, the policy, the wheel and the slab (the policy must already have
    /// chosen or detached it), moving the last entry into the hole.
    fn remove_slot(&mut self, index: u32, hash: u64, hasher: &impl BuildHasher) -> Slot<K, V> {
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == index) {
            entry.remove();
        }
        if let Some(expiry) = &mut self.expiry {
            expiry.swap_remove(index);
        }
        let last = (self.slots.len() - 1) as u32;
        let slot = self.slots.swap_remove(index as usize);
        if index != last {
            let moved_hash = hasher.hash_one(&self.slots[index as usize].key);
            if let Some(moved) = self.table.find_mut(moved_hash, |&i| i == last) {
                *moved = index;
            }
            self.policy.relocate(&self.slots, last, index);
        }
        slot
    }
}

#[cfg(test)]
impl<K: Hash + Eq, V: Clone> Shard<K, V> {
    /// Panics unless table, slab, policy and wheel describe the same entries.
    pub(crate) fn assert_consistent(&self, hasher: &impl BuildHasher) {
        let state = self.state.read();
        assert_eq!(state.table.len(), state.slots.len(), "table vs slab");
        for (index, slot) in state.slots.iter().enumerate() {
            let hash = hasher.hash_one(&slot.key);
            let found = state.table.find(hash, |&i| i as usize == index);
            assert_eq!(
                found.copied(),
                Some(index as u32),
                "slot {index} unreachable"
            );
            assert!(
                state
                    .find(hash, &slot.key)
                    .is_some_and(|&i| i as usize == index),
                "key of slot {index} maps elsewhere"
            );
        }
        assert_eq!(state.policy.len(), state.slots.len(), "policy vs slab");
        assert!(state.policy.weight() <= self.capacity, "over capacity");
        assert_eq!(self.len(), state.slots.len(), "published len");
        assert_eq!(self.weight(), state.policy.weight(), "published weight");
        if let Some(expiry) = &state.expiry {
            assert_eq!(expiry.len(), state.slots.len(), "wheel vs slab");
        }
    }
}
