//! What keeps a keyed table within `max_keys`, for both storages.
//!
//! A table is split into parts (the tag store's regions, the entry store's
//! shards), each under its own lock, and a new key's part may have a free
//! slot while the table as a whole is full. So the bound is kept table-wide:
//! a count of places taken, on a cache line of its own (written when a key
//! is inserted or forgotten, never by a check of a tracked key), and a lower
//! bound of every tracked key's idle time. A new key in a full table first
//! sweeps its own part (each storage knows how); if that frees nothing,
//! [`Census::reclaim_elsewhere`] sweeps the other parts, one lock at a time,
//! until one frees a place. Until the clock passes the idle bound no key can
//! be idle, so a table full of active keys refuses a new key in O(1).
//!
//! This is the one place the count and the bound are kept: both storages
//! call it, so the invariant (never more than `max_keys` places taken) is
//! written, and tested, once.

#[cfg(surgeguard_loom)]
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(surgeguard_loom))]
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The table-wide count of places and lower bound of idle times.
#[repr(align(128))]
pub(crate) struct Census {
    /// Places taken: keys tracked, plus places held for a key on its way in.
    /// Never above `max_keys`.
    taken: AtomicUsize,
    /// No tracked key, in any part, is idle before this: lowered by each
    /// insert and refund, raised only by a scan of every part that found
    /// none idle.
    no_idle_before: AtomicU64,
    max_keys: usize,
}

impl Census {
    pub(crate) fn new(max_keys: usize) -> Census {
        Census {
            taken: AtomicUsize::new(0),
            no_idle_before: AtomicU64::new(0),
            max_keys,
        }
    }

    /// Takes one place; false if the table is full.
    #[inline]
    pub(crate) fn take_place(&self) -> bool {
        self.taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |taken| {
                (taken < self.max_keys).then_some(taken + 1)
            })
            .is_ok()
    }

    /// Gives `places` back.
    #[inline]
    pub(crate) fn give_places(&self, places: usize) {
        if places > 0 {
            self.taken.fetch_sub(places, Ordering::Relaxed);
        }
    }

    /// Places taken now.
    #[cfg(test)]
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// The table's idle bound now.
    #[cfg(test)]
    pub(crate) fn idle_bound(&self) -> u64 {
        self.no_idle_before.load(Ordering::Relaxed)
    }

    /// Keeps the table's lower bound of idle times at or below `idle_at`,
    /// the idle time of a key just inserted or refunded.
    #[inline]
    pub(crate) fn lower_idle_bound(&self, idle_at: u64) {
        if idle_at < self.no_idle_before.load(Ordering::Relaxed) {
            self.no_idle_before.fetch_min(idle_at, Ordering::Relaxed);
        }
    }

    /// The table is full and part `own` (of `parts`) has room but no idle
    /// key: frees idle keys of the other parts, keeping one place for the
    /// caller (`Ok`). `sweep(part)` takes that part's lock, sweeps it as its
    /// storage does, and returns the keys it freed (their places not yet
    /// given back) and the part's idle bound after. One part's lock at a
    /// time, so it cannot deadlock. Unless the clock has passed the table's
    /// idle bound this is O(1); a scan of every part that finds none idle
    /// raises the bound to the earliest idle time it saw, so such a scan
    /// happens at most once per time the bound is passed (or lowered by a
    /// new key). `Err`: no place, and the earliest time a key could go idle.
    #[cold]
    pub(crate) fn reclaim_elsewhere(
        &self,
        own: usize,
        parts: usize,
        now: u64,
        mut sweep: impl FnMut(usize) -> (usize, u64),
    ) -> Result<(), u64> {
        let bound = self.no_idle_before.load(Ordering::Relaxed);
        if now < bound {
            return Err(bound);
        }
        let mut earliest = u64::MAX;
        // The own part last: it was swept just now.
        for offset in 1..=parts {
            let (freed, idle_bound) = sweep((own + offset) % parts);
            if freed > 0 {
                self.give_places(freed - 1);
                return Ok(());
            }
            earliest = earliest.min(idle_bound);
        }
        // Unless an insert or refund lowered the bound meanwhile. (One that
        // found it already low enough, and so did not write it, can be
        // missed: its key then waits for this scan's bound, later by at most
        // the rule's longest idle time.)
        let _ = self.no_idle_before.compare_exchange(
            bound,
            earliest,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        // No key at all: keys were forgotten meanwhile, so retry now.
        Err(if earliest == u64::MAX { now } else { earliest })
    }
}
