//! Rate-limited `tracing` events (feature `tracing`, on with `metrics` and
//! `redis`).
//!
//! A shed request or a denied one is worth a debug event; ten thousand a
//! second during an attack are not, and would flood the logs the operator
//! needs. Each kind of event passes an [`EventGate`]: at most one per
//! second, carrying how many were held back since the last one.

use std::sync::atomic::{AtomicU64, Ordering};

/// One event per interval; the rest are counted.
#[derive(Debug)]
pub(crate) struct EventGate {
    /// Nanoseconds (on the caller's clock) before which events are held.
    next: AtomicU64,
    held_back: AtomicU64,
}

const INTERVAL_NANOS: u64 = 1_000_000_000;

impl EventGate {
    pub(crate) const fn new() -> Self {
        EventGate {
            next: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(events held back since the last one)` if an event may be
    /// emitted at `now`; `None` (and one more held back) otherwise.
    pub(crate) fn pass(&self, now: u64) -> Option<u64> {
        let next = self.next.load(Ordering::Relaxed);
        if now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(INTERVAL_NANOS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_second_with_a_count_of_the_rest() {
        let gate = EventGate::new();
        let second = INTERVAL_NANOS;
        assert_eq!(gate.pass(5), Some(0));
        for _ in 0..999 {
            assert_eq!(gate.pass(10), None);
        }
        assert_eq!(gate.pass(5 + second - 1), None);
        assert_eq!(gate.pass(5 + second), Some(1_000));
        assert_eq!(gate.pass(5 + 3 * second), Some(0));
    }
}
