//! Exact LRU: a hash map from key to slot, and a doubly linked recency list
//! threaded through a slot vector by index (no per-node allocation, no
//! unsafe). It is the hit-ratio baseline and must reproduce the published LRU
//! figures in `shared/traces/README.md` to the second decimal.

use std::collections::HashMap;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Slot {
    key: u64,
    /// Towards the most recently used end.
    newer: u32,
    /// Towards the least recently used end.
    older: u32,
}

#[derive(Debug, Clone)]
pub struct ExactLru {
    capacity: usize,
    index: HashMap<u64, u32, ahash::RandomState>,
    slots: Vec<Slot>,
    /// Most recently used slot, or NIL when empty.
    newest: u32,
    /// Least recently used slot, or NIL when empty.
    oldest: u32,
}

impl ExactLru {
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity > 0 && capacity < NIL as usize,
            "capacity out of range"
        );
        Self {
            capacity,
            index: HashMap::with_capacity_and_hasher(capacity, ahash::RandomState::new()),
            slots: Vec::with_capacity(capacity),
            newest: NIL,
            oldest: NIL,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Looks `key` up and, on a hit, makes it the most recently used.
    pub fn get(&mut self, key: u64) -> bool {
        match self.index.get(&key) {
            Some(&slot) => {
                self.unlink(slot);
                self.push_newest(slot);
                true
            }
            None => false,
        }
    }

    /// Inserts an absent `key` as the most recently used, evicting the least
    /// recently used entry when full. Inserting a present key just refreshes it.
    pub fn insert(&mut self, key: u64) {
        if self.get(key) {
            return;
        }
        let slot = if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                key,
                newer: NIL,
                older: NIL,
            });
            (self.slots.len() - 1) as u32
        } else {
            let victim = self.oldest;
            self.unlink(victim);
            let old_key = self.slots[victim as usize].key;
            self.index.remove(&old_key);
            self.slots[victim as usize].key = key;
            victim
        };
        self.index.insert(key, slot);
        self.push_newest(slot);
    }

    fn unlink(&mut self, slot: u32) {
        let Slot { newer, older, .. } = self.slots[slot as usize];
        if newer == NIL {
            self.newest = older;
        } else {
            self.slots[newer as usize].older = older;
        }
        if older == NIL {
            self.oldest = newer;
        } else {
            self.slots[older as usize].newer = newer;
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let previous_newest = self.newest;
        {
            let node = &mut self.slots[slot as usize];
            node.newer = NIL;
            node.older = previous_newest;
        }
        if previous_newest == NIL {
            self.oldest = slot;
        } else {
            self.slots[previous_newest as usize].newer = slot;
        }
        self.newest = slot;
    }
}
