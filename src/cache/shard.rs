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
//! The table maps a key's hash to a `u32`; the top bit of that value is
//! reserved for in-flight load placeholders (stampede protection), so a
//! lookup finds a resident entry or a pending load for the key in one probe.

use std::borrow::Borrow;
use std::hash::Hash;
use std::mem;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::RwLock;

use super::expiry::{Expiry, NEVER};
use super::policy::Policy;
use super::stats::Counters;
use super::Config;

/// Expired entries reclaimed (or cascaded) at most per write. Each stored
/// entry expires once and cascades through at most a few wheel levels, so a
/// budget of 16 per write keeps up with any insert rate.
pub(crate) const MAINTENANCE_BUDGET: u32 = 16;

struct Slot<K, V> {
    key: K,
    value: V,
    hash: u64,
}

struct State<K, V> {
    table: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    policy: Policy,
    /// Allocated when the shard first stores an entry that can expire.
    expiry: Option<Expiry>,
}

/// A shard of the cache.
pub(crate) struct Shard<K, V> {
    state: RwLock<State<K, V>>,
    counters: Counters,
    capacity: u64,
    len: AtomicUsize,
    weight: AtomicU64,
}

/// What an insert left behind, dropped by the caller after the lock is gone.
pub(crate) type Displaced<V> = Option<V>;

impl<K: Hash + Eq, V: Clone> Shard<K, V> {
    pub(crate) fn new(capacity: u64, count_bound: bool) -> Self {
        // Count-bounded shards size their table once, so no insert ever pays
        // for a rehash (capped, so a huge never-filled capacity costs nothing).
        let presize = if count_bound {
            capacity.min(1 << 16) as usize
        } else {
            0
        };
        Shard {
            state: RwLock::new(State {
                table: HashTable::with_capacity(presize),
                slots: Vec::with_capacity(presize),
                policy: Policy::new(capacity),
                expiry: None,
            }),
            counters: Counters::default(),
            capacity,
            len: AtomicUsize::new(0),
            weight: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn get<Q>(&self, hash: u64, key: &Q, config: &Config<K, V>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let state = self.state.read();
        let Some(&index) = state.find(hash, key) else {
            drop(state);
            self.counters.miss(1);
            return None;
        };
        if let Some(expiry) = &state.expiry {
            if expiry.may_expire(index) {
                let now = config.now();
                if expiry.is_expired(index, now) {
                    drop(state);
                    self.counters.miss(1);
                    self.try_maintain(config);
                    return None;
                }
                expiry.record_access(index, now);
            }
        }
        state.policy.record_hit(index);
        let value = state.slots[index as usize].value.clone();
        drop(state);
        self.counters.hit(1);
        Some(value)
    }

    pub(crate) fn contains<Q>(&self, hash: u64, key: &Q, config: &Config<K, V>) -> bool
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

    /// Stores `key → value` expiring at `deadline` (nanoseconds, [`NEVER`]
    /// for none). Returns the overwritten value, to drop outside the lock.
    pub(crate) fn insert(
        &self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        deadline: u64,
        config: &Config<K, V>,
    ) -> Displaced<V> {
        if u64::from(weight) > self.capacity {
            self.counters.reject(1);
            // The new value supersedes any older one, which must not be served.
            return self.remove(hash, &key, config);
        }
        let mut state = self.state.write();
        // Time matters once anything here can expire: a deadline now, one
        // stored earlier, or time-to-idle.
        let needs_time =
            deadline != NEVER || state.expiry.is_some() || config.time_to_idle.is_some();
        let now = if needs_time { config.now() } else { 0 };
        let displaced = if let Some(&index) = state.find(hash, &key) {
            let old = mem::replace(&mut state.slots[index as usize].value, value);
            state.policy.update(index, weight);
            if needs_time {
                state
                    .expiry_or_init(config, now)
                    .reset(index, deadline, now);
            }
            Some(old)
        } else {
            let index = state.slots.len() as u32;
            state.slots.push(Slot { key, value, hash });
            let State { table, slots, .. } = &mut *state;
            table.insert_unique(hash, index, |&i| slots[i as usize].hash);
            state.policy.insert(index, hash, weight);
            if needs_time {
                // A fresh wheel already has a node for the new slot.
                let resident = state.slots.len() - 1;
                match &mut state.expiry {
                    Some(expiry) => expiry.push(deadline, now),
                    None => {
                        let mut expiry = Expiry::new(resident, config.time_to_idle, now);
                        expiry.push(deadline, now);
                        state.expiry = Some(expiry);
                    }
                }
            }
            None
        };
        self.counters.insert(1);
        let evicted = state.evict_to(self.capacity);
        self.counters.evict(evicted);
        if needs_time {
            let expired = state.reclaim_expired(now, MAINTENANCE_BUDGET);
            self.counters.expire(expired);
        }
        self.publish_size(&state);
        displaced
    }

    pub(crate) fn remove<Q>(&self, hash: u64, key: &Q, config: &Config<K, V>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut state = self.state.write();
        let now = if state.expiry.is_some() {
            config.now()
        } else {
            0
        };
        let removed = state.find(hash, key).copied().and_then(|index| {
            let expired = state
                .expiry
                .as_ref()
                .is_some_and(|expiry| expiry.is_expired(index, now));
            state.policy.remove(index);
            let slot = state.remove_slot(index);
            if expired {
                self.counters.expire(1);
                None
            } else {
                Some(slot.value)
            }
        });
        if state.expiry.is_some() {
            let expired = state.reclaim_expired(now, MAINTENANCE_BUDGET);
            self.counters.expire(expired);
        }
        self.publish_size(&state);
        removed
    }

    /// Drops every entry; returns them so they are freed outside the lock.
    pub(crate) fn clear(&self) -> Vec<(K, V)> {
        let mut state = self.state.write();
        let slots = mem::take(&mut state.slots);
        state.table.clear();
        state.policy.clear();
        if let Some(expiry) = &mut state.expiry {
            expiry.clear();
        }
        self.publish_size(&state);
        drop(state);
        slots
            .into_iter()
            .map(|slot| (slot.key, slot.value))
            .collect()
    }

    /// Reclaims expired entries if the lock is free right now; never waits.
    pub(crate) fn try_maintain(&self, config: &Config<K, V>) {
        if let Some(mut state) = self.state.try_write() {
            if state.expiry.is_some() {
                let expired = state.reclaim_expired(config.now(), MAINTENANCE_BUDGET);
                self.counters.expire(expired);
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

    pub(crate) fn weight(&self) -> u64 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
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

    fn expiry_or_init(&mut self, config: &Config<K, V>, now: u64) -> &mut Expiry {
        let resident = self.slots.len();
        self.expiry
            .get_or_insert_with(|| Expiry::new(resident, config.time_to_idle, now))
    }

    /// Evicts until the policy's weight fits `capacity`; returns how many.
    fn evict_to(&mut self, capacity: u64) -> u64 {
        let mut evicted = 0;
        while self.policy.weight() > capacity {
            let Some(victim) = self.policy.evict() else {
                break;
            };
            drop(self.remove_slot(victim));
            evicted += 1;
        }
        evicted
    }

    /// Reclaims up to `budget` wheel steps' worth of expired entries.
    fn reclaim_expired(&mut self, now: u64, mut budget: u32) -> u64 {
        let mut reclaimed = 0;
        while let Some(index) = self
            .expiry
            .as_mut()
            .and_then(|expiry| expiry.next_expired(now, &mut budget))
        {
            self.policy.remove(index);
            drop(self.remove_slot(index));
            reclaimed += 1;
        }
        reclaimed
    }

    /// Takes the entry at `index` out of the table, the policy, the wheel and
    /// the slab (the policy must already have chosen or detached it), moving
    /// the last entry into the hole.
    fn remove_slot(&mut self, index: u32) -> Slot<K, V> {
        let hash = self.slots[index as usize].hash;
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == index) {
            entry.remove();
        }
        if let Some(expiry) = &mut self.expiry {
            expiry.swap_remove(index);
        }
        let last = (self.slots.len() - 1) as u32;
        let slot = self.slots.swap_remove(index as usize);
        if index != last {
            let moved_hash = self.slots[index as usize].hash;
            if let Some(moved) = self.table.find_mut(moved_hash, |&i| i == last) {
                *moved = index;
            }
            self.policy.relocate(last, index);
        }
        slot
    }
}
