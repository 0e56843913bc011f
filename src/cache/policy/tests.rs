//! Unit tests of the policy, driven by a miniature shell with a free list.

use super::*;
use std::collections::HashMap;

impl Entries for [EntryMeta] {
    fn meta(&self, index: u32) -> &EntryMeta {
        &self[index as usize]
    }
}

impl Entries for Vec<EntryMeta> {
    fn meta(&self, index: u32) -> &EntryMeta {
        &self[index as usize]
    }
}

/// Checks every structural invariant.
fn check(p: &Policy, e: &[EntryMeta]) {
    let mut seen = 0usize;
    for q in [Q_WINDOW, Q_PROBATION, Q_PROTECTED] {
        let l = p.lists[q];
        let (mut len, mut weight, mut prev, mut i) = (0u32, 0u64, NIL, l.head);
        while i != NIL {
            let n = &p.nodes[i as usize];
            assert_eq!(n.prev, prev);
            assert_eq!(e.meta(i).queue(), q);
            len += 1;
            weight += u64::from(e.meta(i).weight());
            prev = i;
            i = n.next;
        }
        assert_eq!(l.tail, prev);
        assert_eq!(l.len, len);
        assert_eq!(l.weight, weight);
        seen += len as usize;
    }
    assert_eq!(seen, p.len());
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A miniature shell: slab slots with a free list, like the real one.
struct Harness {
    p: Policy,
    cap: u64,
    map: HashMap<u64, u32>,
    keys: Vec<u64>,
    metas: Vec<EntryMeta>,
    free: Vec<u32>,
}

impl Harness {
    fn new(cap: u64) -> Self {
        Harness {
            p: Policy::new(cap, MIN_SIZED),
            cap,
            map: HashMap::new(),
            keys: Vec::new(),
            metas: Vec::new(),
            free: Vec::new(),
        }
    }
    fn hash(k: u64) -> u64 {
        mix64(k ^ 0xabcd)
    }
    fn get(&mut self, k: u64) -> bool {
        match self.map.get(&k) {
            Some(&i) => {
                self.metas[i as usize].record_hit();
                true
            }
            None => false,
        }
    }
    fn put(&mut self, k: u64, w: u32) {
        if w as u64 > self.cap {
            return;
        }
        if let Some(&i) = self.map.get(&k) {
            let old = self.metas[i as usize].weight();
            self.metas[i as usize].set_weight(w);
            self.p.update(&self.metas, i, old);
        } else {
            let i = self.free.pop().unwrap_or_else(|| {
                self.keys.push(0);
                self.metas.push(EntryMeta::default());
                (self.keys.len() - 1) as u32
            });
            self.keys[i as usize] = k;
            self.metas[i as usize] = EntryMeta::new(w);
            self.map.insert(k, i);
            self.p.insert(&self.metas, i, Self::hash(k));
        }
        while self.p.weight() > self.cap {
            let v = self
                .p
                .evict(&self.metas)
                .expect("over capacity but nothing to evict");
            let vk = self.keys[v as usize];
            assert_eq!(
                self.map.remove(&vk),
                Some(v),
                "evicted a slot that was not resident"
            );
            self.free.push(v);
        }
    }
    fn remove(&mut self, k: u64) {
        if let Some(i) = self.map.remove(&k) {
            self.p.remove(&self.metas, i);
            self.free.push(i);
        }
    }
    fn access(&mut self, k: u64) -> bool {
        let hit = self.get(k);
        if !hit {
            self.put(k, 1);
        }
        hit
    }
    fn assert_consistent(&self) {
        check(&self.p, &self.metas);
        assert!(self.p.weight() <= self.cap);
        assert_eq!(self.p.len(), self.map.len());
        let w: u64 = self
            .map
            .values()
            .map(|&i| u64::from(self.metas[i as usize].weight()))
            .sum();
        assert_eq!(self.p.weight(), w);
    }
}

#[test]
fn empty_policy_has_nothing_to_evict() {
    let mut p = Policy::new(10, MIN_SIZED);
    assert_eq!(p.evict(&Vec::<EntryMeta>::new()), None);
    assert_eq!(p.len(), 0);
    assert_eq!(p.weight(), 0);
}

#[test]
fn capacity_one() {
    let mut h = Harness::new(1);
    for k in 0..100 {
        h.access(k % 7);
        h.assert_consistent();
        assert!(h.p.len() <= 1);
    }
}

#[test]
fn random_operations_keep_invariants() {
    for cap in [1u64, 2, 5, 17, 100, 1000] {
        let mut h = Harness::new(cap);
        let mut r = Rng(cap);
        for step in 0..20_000u64 {
            let k = r.below(cap * 3 + 5);
            match r.below(10) {
                0..=5 => {
                    h.access(k);
                }
                6 => {
                    let w = 1 + r.below(cap.min(40)) as u32;
                    h.put(k, w);
                }
                7 => h.remove(k),
                8 => {
                    h.get(k);
                }
                _ => {
                    if step % 5000 == 0 {
                        h.p.clear();
                        h.map.clear();
                        h.free = (0..h.keys.len() as u32).collect();
                    }
                }
            }
            if step % 97 == 0 {
                h.assert_consistent();
            }
        }
        h.assert_consistent();
    }
}

#[test]
fn weights_are_tracked() {
    let mut h = Harness::new(100);
    h.put(1, 30);
    h.put(2, 50);
    assert_eq!(h.p.weight(), 80);
    h.put(1, 10);
    assert_eq!(h.p.weight(), 60);
    h.put(3, 45);
    h.assert_consistent();
    assert!(h.p.weight() <= 100);
    h.remove(2);
    h.assert_consistent();
    h.put(4, 100);
    h.assert_consistent();
    assert!(h.p.weight() <= 100);
}

#[test]
fn evict_until_empty_returns_each_entry_once() {
    let mut p = Policy::new(1_000_000, MIN_SIZED);
    let metas: Vec<EntryMeta> = (0..500u32).map(|i| EntryMeta::new(1 + i % 3)).collect();
    for i in 0..500u32 {
        p.insert(&metas, i, mix64(u64::from(i)));
        if i % 2 == 0 {
            metas[i as usize].record_hit();
        }
    }
    let mut out = Vec::new();
    while let Some(v) = p.evict(&metas) {
        out.push(v);
        check(&p, &metas);
    }
    out.sort_unstable();
    assert_eq!(out, (0..500).collect::<Vec<_>>());
    assert_eq!(p.weight(), 0);
}

#[test]
fn evict_is_bounded_when_everything_is_hot() {
    let cap = 10_000u64;
    let mut h = Harness::new(cap);
    for k in 0..cap {
        h.access(k);
    }
    // Mark every resident entry referenced, many times over.
    let idxs: Vec<u32> = h.map.values().copied().collect();
    for _ in 0..20 {
        for &i in &idxs {
            h.metas[i as usize].record_hit();
        }
    }
    for k in cap..cap + 1000 {
        // Every call must still evict something.
        h.access(k);
        h.assert_consistent();
    }
}

#[test]
fn frequent_keys_survive_a_scan() {
    // 50 hot keys, each reused every ~200 accesses (twice the capacity,
    // so LRU would miss every time), mixed into a scan of one-time keys.
    let mut h = Harness::new(100);
    let mut r = Rng(3);
    let (mut hot_hits, mut hot_total) = (0u32, 0u32);
    for t in 0..100_000u64 {
        if t % 4 == 0 {
            let k = r.below(50);
            let hit = h.access(k);
            if t > 50_000 {
                hot_total += 1;
                hot_hits += u32::from(hit);
            }
        } else {
            h.access(1_000_000 + t);
        }
    }
    assert!(
        hot_hits * 10 > hot_total * 9,
        "hot keys hit {hot_hits} of {hot_total}"
    );
}

#[test]
fn window_opens_for_recency_and_stays_small_for_loops() {
    // Recency: a sliding working set a bit larger than main's TinyLFU can
    // hold on frequency alone; returning rejected candidates open the
    // window.
    let mut h = Harness::new(1000);
    let mut r = Rng(7);
    for t in 0..200_000u64 {
        let k = if r.below(2) == 0 {
            t / 2
        } else {
            t / 2 - r.below(800.min(t / 2 + 1))
        };
        h.access(k);
    }
    assert!(h.p.window_max > 300, "window stayed at {}", h.p.window_max);

    // A loop longer than the cache: LRU would never hit, TinyLFU pins
    // part of it, and the window must not open.
    let mut h = Harness::new(1000);
    let mut hits = 0;
    for t in 0..100_000u64 {
        hits += u32::from(h.access(t % 1500));
    }
    assert!(h.p.window_max < 200, "window opened to {}", h.p.window_max);
    assert!(hits > 30_000, "loop hits {hits}");
}

#[test]
fn grows_history_with_residents() {
    let cap = MIN_SIZED * 4;
    let mut p = Policy::new(cap, MIN_SIZED);
    assert_eq!(p.sized, MIN_SIZED);
    let metas: Vec<EntryMeta> = (0..=MIN_SIZED).map(|_| EntryMeta::new(1)).collect();
    for i in 0..(MIN_SIZED as u32 + 1) {
        p.insert(&metas, i, mix64(u64::from(i)));
    }
    assert_eq!(p.sized, MIN_SIZED * 2);
    assert_eq!(p.sketch.words() as u64, p.sized * 3 / 4);
    assert_eq!(p.ghost.len() as u64, p.sized / 2);
    check(&p, &metas);
}

#[test]
fn history_costs_at_most_8_bytes_per_entry_at_shard_scale() {
    // 1M entries over 32 shards.
    let p = Policy::new(31_250, MIN_SIZED);
    let sketch = 8 * p.sketch.words();
    let ghost = 4 * p.ghost.len();
    assert_eq!(sketch, 187_456, "2,929 blocks of 64 bytes");
    assert_eq!(ghost, 62_464, "976 buckets of 64 bytes");
    assert!(sketch <= 6 * 31_250 && ghost <= 2 * 31_250);
}

#[test]
fn nodes_stop_at_capacity_plus_one() {
    let cap = 1000u64;
    let mut h = Harness::new(cap);
    for k in 0..5 * cap {
        h.access(k);
    }
    assert_eq!(h.p.nodes.len() as u64, cap + 1);
    assert_eq!(h.p.nodes.capacity() as u64, cap + 1);
}

#[test]
fn per_entry_costs_are_8_bytes_of_links_and_8_in_the_slab() {
    assert_eq!(std::mem::size_of::<Node>(), 8);
    assert_eq!(std::mem::size_of::<EntryMeta>(), 8);
}
