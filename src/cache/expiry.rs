//! Expiry bookkeeping for one shard: a hierarchical timer wheel.
//!
//! Reads never return an expired entry: they compare the entry's deadline
//! with the clock. This module exists so that expired entries are also
//! *reclaimed*, without ever scanning the whole shard and without stalling the
//! caller who happens to trigger the cleanup.
//!
//! The wheel follows Varghese & Lauck, "Hashed and Hierarchical Timing Wheels"
//! (SOSP 1987): eight levels of 64 buckets; a level-0 bucket spans 2^20 ns
//! (about 1 ms) and each level is 64 times coarser, so the eight levels cover
//! every `u64` nanosecond deadline. An entry sits in the bucket of the level
//! given by the highest bit in which its deadline differs from the wheel's
//! processed time; as time reaches a coarse bucket its entries cascade to
//! finer ones. Scheduling and unlinking are O(1); finding the next non-empty
//! bucket is a few bit operations per level. Every call to
//! [`Expiry::next_expired`] spends from a caller-supplied budget, so the work
//! per cache operation stays bounded however many entries expire at once.
//!
//! Stale windows (stale-while-revalidate, stale-if-error) keep an entry
//! stored for a fixed `grace` after its deadline: reads see it as expired,
//! but the loading methods may still serve it while they reload. The wheel
//! therefore reclaims at `deadline + grace`.
//!
//! Time-to-idle is lazy: a read only records the access time (one relaxed
//! atomic store); when the wheel reaches an entry whose idle deadline moved,
//! it reschedules the entry instead of reclaiming it.
//!
//! The node array runs parallel to the shard's slab (same index) and is only
//! allocated once a shard first stores an entry that can expire.

use std::sync::atomic::{AtomicU64, Ordering};

/// A deadline that is never reached.
pub(crate) const NEVER: u64 = u64::MAX;

const NIL: u32 = u32::MAX;
const NO_BUCKET: u16 = u16::MAX;
/// log2 of the level-0 bucket span in nanoseconds (2^20 ns ≈ 1.05 ms).
const TICK_SHIFT: u32 = 20;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// Enough levels that `TICK_SHIFT + SLOT_BITS * LEVELS >= 64`.
const LEVELS: usize = 8;

#[derive(Debug)]
struct TimerNode {
    /// Write-based deadline (TTL), `NEVER` if none.
    deadline: u64,
    /// When a read should start a reload in the background (refresh-ahead,
    /// or a retry after a failed reload); `NEVER` if none.
    refresh_at: u64,
    /// Last access in nanoseconds; only maintained with time-to-idle.
    accessed: AtomicU64,
    prev: u32,
    next: u32,
    bucket: u16,
}

/// The timer wheel of one shard.
#[derive(Debug)]
pub(crate) struct Expiry {
    nodes: Vec<TimerNode>,
    heads: Box<[u32; LEVELS * SLOTS]>,
    occupied: [u64; LEVELS],
    /// Time up to which buckets have been processed, in nanoseconds.
    elapsed: u64,
    time_to_idle: Option<u64>,
    /// How long an entry stays stored past its deadline (the longer stale
    /// window), in nanoseconds.
    grace: u64,
}

/// When an entry stops being fresh and when it wants a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadlines {
    /// Expiry (time-to-live), nanoseconds; `NEVER` for none.
    pub(crate) expire_at: u64,
    /// Refresh-ahead point, nanoseconds; `NEVER` for none.
    pub(crate) refresh_at: u64,
}

impl Deadlines {
    /// Neither expires nor refreshes.
    pub(crate) const NONE: Deadlines = Deadlines {
        expire_at: NEVER,
        refresh_at: NEVER,
    };
}

impl Expiry {
    /// A wheel for a shard that already holds `resident` entries, none of
    /// which expire.
    pub(crate) fn new(resident: usize, time_to_idle: Option<u64>, grace: u64, now: u64) -> Self {
        let mut nodes = Vec::with_capacity(resident);
        nodes.extend((0..resident).map(|_| TimerNode::idle(Deadlines::NONE, now)));
        Expiry {
            nodes,
            heads: Box::new([NIL; LEVELS * SLOTS]),
            occupied: [0; LEVELS],
            elapsed: now,
            time_to_idle,
            grace,
        }
    }

    /// Registers a new entry at index `nodes.len()` (the slab's next slot).
    pub(crate) fn push(&mut self, deadlines: Deadlines, now: u64) {
        let index = self.nodes.len() as u32;
        self.nodes.push(TimerNode::idle(deadlines, now));
        self.schedule(index);
    }

    /// The entry at `index` was overwritten: new write deadline, fresh access.
    pub(crate) fn reset(&mut self, index: u32, deadlines: Deadlines, now: u64) {
        self.unlink(index);
        let node = &mut self.nodes[index as usize];
        node.deadline = deadlines.expire_at;
        node.refresh_at = deadlines.refresh_at;
        *node.accessed.get_mut() = now;
        self.schedule(index);
    }

    /// Records a read, for time-to-idle. Called under a shared lock.
    #[inline]
    pub(crate) fn record_access(&self, index: u32, now: u64) {
        if self.time_to_idle.is_some() {
            self.nodes[index as usize]
                .accessed
                .store(now, Ordering::Relaxed);
        }
    }

    /// Whether the entry at `index` has expired at `now`.
    #[inline]
    pub(crate) fn is_expired(&self, index: u32, now: u64) -> bool {
        self.effective_deadline(&self.nodes[index as usize]) <= now
    }

    /// Whether entries here can expire or want a refresh at all (so a read
    /// must consult the clock).
    #[inline]
    pub(crate) fn may_expire(&self, index: u32) -> bool {
        let node = &self.nodes[index as usize];
        self.time_to_idle.is_some() || node.deadline != NEVER || node.refresh_at != NEVER
    }

    /// The entry's effective deadline (time-to-live or time-to-idle, whichever
    /// comes first) and its refresh point.
    #[inline]
    pub(crate) fn deadlines(&self, index: u32) -> Deadlines {
        let node = &self.nodes[index as usize];
        Deadlines {
            expire_at: self.effective_deadline(node),
            refresh_at: node.refresh_at,
        }
    }

    /// Moves the entry's refresh point (a failed reload backs off).
    pub(crate) fn set_refresh_at(&mut self, index: u32, refresh_at: u64) {
        self.nodes[index as usize].refresh_at = refresh_at;
    }

    /// Removes the entry at `index` and moves the last node into its place,
    /// mirroring `Vec::swap_remove` on the slab.
    pub(crate) fn swap_remove(&mut self, index: u32) {
        self.unlink(index);
        let last = (self.nodes.len() - 1) as u32;
        self.nodes.swap_remove(index as usize);
        if index != last {
            self.relink_moved(last, index);
        }
    }

    /// Entries tracked (the slab's length).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Forgets every entry.
    pub(crate) fn clear(&mut self) {
        self.nodes.clear();
        self.heads.fill(NIL);
        self.occupied = [0; LEVELS];
    }

    /// Advances the wheel to `now` and returns the next expired entry, already
    /// unlinked from the wheel (the caller removes it from the shard, which
    /// calls [`Expiry::swap_remove`]). Each node visited costs one unit of
    /// `budget`; returns `None` when nothing more is due or the budget is
    /// spent.
    pub(crate) fn next_expired(&mut self, now: u64, budget: &mut u32) -> Option<u32> {
        while *budget > 0 {
            let (level, slot, start) = self.next_bucket()?;
            let due = if level == 0 {
                start.saturating_add(1 << TICK_SHIFT) <= now
            } else {
                start <= now
            };
            if !due {
                return None;
            }
            self.elapsed = self.elapsed.max(start);
            let index = self.heads[level * SLOTS + slot];
            *budget -= 1;
            self.unlink(index);
            let deadline = self.reclaim_at(&self.nodes[index as usize]);
            if deadline <= now {
                return Some(index);
            }
            // Not due yet (a coarse bucket, or an idle deadline that moved):
            // cascade to a finer bucket.
            self.schedule(index);
        }
        None
    }

    #[inline]
    fn effective_deadline(&self, node: &TimerNode) -> u64 {
        match self.time_to_idle {
            Some(idle) => node
                .deadline
                .min(node.accessed.load(Ordering::Relaxed).saturating_add(idle)),
            None => node.deadline,
        }
    }

    /// When the entry may be reclaimed: its deadline plus the stale grace.
    #[inline]
    fn reclaim_at(&self, node: &TimerNode) -> u64 {
        self.effective_deadline(node).saturating_add(self.grace)
    }

    /// The earliest non-empty bucket as (level, slot, start time).
    fn next_bucket(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for level in (0..LEVELS).rev() {
            let shift = TICK_SHIFT + SLOT_BITS * level as u32;
            let current = ((self.elapsed >> shift) & (SLOTS as u64 - 1)) as u32;
            let pending = self.occupied[level] & (u64::MAX << current);
            if pending == 0 {
                continue;
            }
            let slot = pending.trailing_zeros() as usize;
            let block_mask = match shift + SLOT_BITS {
                64.. => 0,
                bits => u64::MAX << bits,
            };
            let start = (self.elapsed & block_mask) | ((slot as u64) << shift);
            // Levels are visited coarse to fine, so on a tie the coarser
            // bucket (which cascades into the finer one) wins.
            if best.is_none_or(|(_, _, best_start)| start < best_start) {
                best = Some((level, slot, start));
            }
        }
        best
    }

    fn schedule(&mut self, index: u32) {
        let node = &self.nodes[index as usize];
        let deadline = self.reclaim_at(node).max(self.elapsed);
        if deadline == NEVER {
            return;
        }
        let differing = (deadline ^ self.elapsed) >> TICK_SHIFT;
        let level = if differing == 0 {
            0
        } else {
            ((63 - differing.leading_zeros()) / SLOT_BITS) as usize
        };
        let shift = TICK_SHIFT + SLOT_BITS * level as u32;
        let slot = ((deadline >> shift) & (SLOTS as u64 - 1)) as usize;
        let bucket = level * SLOTS + slot;
        let head = self.heads[bucket];
        let node = &mut self.nodes[index as usize];
        node.prev = NIL;
        node.next = head;
        node.bucket = bucket as u16;
        if head != NIL {
            self.nodes[head as usize].prev = index;
        }
        self.heads[bucket] = index;
        self.occupied[level] |= 1 << slot;
    }

    fn unlink(&mut self, index: u32) {
        let node = &mut self.nodes[index as usize];
        let (prev, next, bucket) = (node.prev, node.next, node.bucket);
        if bucket == NO_BUCKET {
            return;
        }
        node.prev = NIL;
        node.next = NIL;
        node.bucket = NO_BUCKET;
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.heads[bucket as usize] = next;
            if next == NIL {
                let (level, slot) = (bucket as usize / SLOTS, bucket as usize % SLOTS);
                self.occupied[level] &= !(1 << slot);
            }
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
    }

    /// The node formerly at `from` now lives at `to`: repoint its neighbours.
    fn relink_moved(&mut self, from: u32, to: u32) {
        let node = &self.nodes[to as usize];
        let (prev, next, bucket) = (node.prev, node.next, node.bucket);
        if bucket == NO_BUCKET {
            return;
        }
        if prev != NIL {
            self.nodes[prev as usize].next = to;
        } else {
            debug_assert_eq!(self.heads[bucket as usize], from);
            self.heads[bucket as usize] = to;
        }
        if next != NIL {
            self.nodes[next as usize].prev = to;
        }
    }
}

impl TimerNode {
    fn idle(deadlines: Deadlines, now: u64) -> Self {
        TimerNode {
            deadline: deadlines.expire_at,
            refresh_at: deadlines.refresh_at,
            accessed: AtomicU64::new(now),
            prev: NIL,
            next: NIL,
            bucket: NO_BUCKET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn expiring(expire_at: u64) -> Deadlines {
        Deadlines {
            expire_at,
            refresh_at: NEVER,
        }
    }

    fn drain(expiry: &mut Expiry, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut budget = u32::MAX;
        while let Some(index) = expiry.next_expired(now, &mut budget) {
            out.push(index);
            expiry.swap_remove(index);
        }
        out
    }

    #[test]
    fn entries_are_reclaimed_once_due_and_not_before() {
        let mut wheel = Expiry::new(0, None, 0, 0);
        wheel.push(expiring(5 * MS), 0);
        wheel.push(expiring(3_600_000 * MS), 0);
        wheel.push(expiring(NEVER), 0);
        assert!(drain(&mut wheel, 4 * MS).is_empty());
        assert_eq!(drain(&mut wheel, 10 * MS), vec![0]);
        // swap_remove moved the never-expiring entry into slot 0; the
        // hour-long one is still at 1.
        assert!(drain(&mut wheel, 3_599_000 * MS).is_empty());
        assert_eq!(drain(&mut wheel, 3_600_002 * MS), vec![1]);
        assert!(drain(&mut wheel, u64::MAX - 1).is_empty());
        assert_eq!(wheel.nodes.len(), 1);
    }

    #[test]
    fn grace_keeps_an_expired_entry_stored_until_it_runs_out() {
        let mut wheel = Expiry::new(0, None, 20 * MS, 0);
        wheel.push(expiring(5 * MS), 0);
        assert!(
            wheel.is_expired(0, 5 * MS),
            "expired for reads at its deadline"
        );
        assert!(
            drain(&mut wheel, 24 * MS).is_empty(),
            "kept through the grace"
        );
        assert_eq!(drain(&mut wheel, 27 * MS), vec![0]);
    }

    #[test]
    fn budget_bounds_the_work_per_call() {
        let mut wheel = Expiry::new(0, None, 0, 0);
        for i in 0..100 {
            wheel.push(expiring(MS + i), 0);
        }
        let mut budget = 10;
        let mut reclaimed = 0;
        while let Some(index) = wheel.next_expired(10 * MS, &mut budget) {
            wheel.swap_remove(index);
            reclaimed += 1;
        }
        assert_eq!(reclaimed, 10);
        assert_eq!(budget, 0);
        assert_eq!(drain(&mut wheel, 10 * MS).len(), 90);
    }

    #[test]
    fn idle_deadline_moves_with_access() {
        let mut wheel = Expiry::new(0, Some(10 * MS), 0, 0);
        wheel.push(expiring(NEVER), 0);
        wheel.record_access(0, 8 * MS);
        assert!(!wheel.is_expired(0, 12 * MS));
        assert!(drain(&mut wheel, 12 * MS).is_empty());
        assert!(wheel.is_expired(0, 18 * MS));
        assert_eq!(drain(&mut wheel, 20 * MS), vec![0]);
    }

    #[test]
    fn matches_a_sorted_reference_for_many_deadlines() {
        // Deterministic pseudo-random deadlines over many magnitudes.
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut wheel = Expiry::new(0, None, 0, 0);
        let mut deadlines = Vec::new();
        for _ in 0..2_000 {
            let magnitude = next() % 50;
            let deadline = 1 + next() % (1u64 << magnitude.max(1));
            deadlines.push(deadline);
            wheel.push(expiring(deadline), 0);
        }
        let mut now = 0u64;
        while now < (1 << 50) {
            now = now * 2 + 12_345;
            let mut budget = u32::MAX;
            while let Some(index) = wheel.next_expired(now, &mut budget) {
                assert!(deadlines[index as usize] <= now, "reclaimed early");
                deadlines.swap_remove(index as usize);
                wheel.swap_remove(index);
            }
            // Everything due more than one tick ago has been reclaimed.
            assert!(deadlines
                .iter()
                .all(|&d| d.saturating_add(2 << TICK_SHIFT) > now));
        }
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut wheel = Expiry::new(0, None, 0, 100 * MS);
        wheel.push(expiring(150 * MS), 100 * MS);
        assert!(drain(&mut wheel, 200 * MS).len() == 1);
        // The clock jumps back; a new entry's deadline is behind `elapsed`.
        wheel.push(expiring(60 * MS), 50 * MS);
        assert!(drain(&mut wheel, 55 * MS).is_empty());
        assert_eq!(drain(&mut wheel, 202 * MS), vec![0]);
    }
}
