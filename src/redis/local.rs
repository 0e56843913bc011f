//! Answers that need no round trip: keys known to be over their limit,
//! and leased units.
//!
//! **Over-limit cache.** A denial from Redis says when the same cost could
//! pass; until then, the key is denied here (as envoyproxy/ratelimit's
//! local over-limit cache does). A client flooding one key costs Redis one
//! call per retry time, not one per request. The cache is a bounded
//! [`Cache`](crate::cache::Cache) whose entries expire at the retry time.
//!
//! **Leases.** With leasing on, a check asks Redis for a batch of units
//! and keeps the rest in a local lease that expires after the lease time;
//! later checks of the key spend it without a round trip. Units taken from
//! Redis are gone there, so the fleet never admits more than Redis gave
//! out: a lease only moves *when* they are spent, by at most the lease
//! time. In any interval the fleet admits at most the limit plus what the
//! leases held at its start: `servers × (batch − 1)` for one caller per
//! server (concurrent callers that miss a lease at once each bring a batch,
//! pooled into it). Units of a lease that expires are dropped, never given
//! twice: under-admission, bounded by what the lease held.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::clock::Clock;

/// Keys denied until a time, for costs at least as large as the one
/// Redis denied.
pub(crate) struct OverLimit {
    keys: Cache<String, (u64, u32)>,
    clock: Arc<dyn Clock>,
}

impl OverLimit {
    pub(crate) fn new(
        max_keys: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::cache::BuildError> {
        Ok(OverLimit {
            keys: Cache::builder()
                .max_capacity(max_keys)
                .clock(Arc::clone(&clock))
                .build()?,
            clock,
        })
    }

    /// Time left before `key` could pass `cost`, if it is known to be over.
    pub(crate) fn denied_for(&self, key: &str, cost: u32) -> Option<Duration> {
        let (until, denied_cost) = self.keys.get(key)?;
        let now = self.clock.now().as_nanos();
        (until > now && cost >= denied_cost).then(|| Duration::from_nanos(until - now))
    }

    pub(crate) fn remember(&self, key: &str, cost: u32, retry_after: Duration) {
        if retry_after.is_zero() {
            return;
        }
        let until = self.clock.now().saturating_add(retry_after).as_nanos();
        self.keys
            .insert_with_ttl(key.to_owned(), (until, cost), retry_after);
    }
}

/// Units taken from Redis ahead of need.
pub(crate) struct Leases {
    /// Each lease expires `ttl` after it was taken (the cache's TTL).
    leases: Cache<String, Arc<AtomicU32>>,
    pub(crate) batch: u32,
}

impl Leases {
    pub(crate) fn new(
        batch: u32,
        ttl: Duration,
        max_keys: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::cache::BuildError> {
        Ok(Leases {
            leases: Cache::builder()
                .max_capacity(max_keys)
                .time_to_live(ttl)
                .clock(clock)
                .build()?,
            batch,
        })
    }

    /// Spends `cost` units of `key`'s lease; the units left after, if it
    /// had enough.
    pub(crate) fn spend(&self, key: &str, cost: u32) -> Option<u32> {
        let lease = self.leases.get(key)?;
        lease
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(cost)
            })
            .ok()
            .map(|before| before - cost)
    }

    /// Keeps `units` taken for `key` beyond what the check spent. Callers
    /// that missed the lease at the same moment each bring a batch; they
    /// are pooled into the live lease (which expires first, so no unit
    /// outlives its lease time) rather than replacing it.
    pub(crate) fn keep(&self, key: &str, units: u32) {
        if units == 0 {
            return;
        }
        match self.leases.get(key) {
            Some(lease) => {
                lease.fetch_add(units, Ordering::AcqRel);
            }
            None => self
                .leases
                .insert(key.to_owned(), Arc::new(AtomicU32::new(units))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn an_over_limit_key_is_denied_until_its_retry_time_for_costs_as_large() {
        let clock = ManualClock::new();
        let over = OverLimit::new(100, Arc::new(clock.clone())).unwrap();
        assert_eq!(over.denied_for("k", 1), None);
        over.remember("k", 2, Duration::from_millis(300));
        assert_eq!(over.denied_for("k", 2), Some(Duration::from_millis(300)));
        assert_eq!(over.denied_for("k", 1), None, "a smaller cost may pass");
        clock.advance(Duration::from_millis(100));
        assert_eq!(over.denied_for("k", 3), Some(Duration::from_millis(200)));
        clock.advance(Duration::from_millis(200));
        assert_eq!(over.denied_for("k", 2), None, "the retry time has come");
    }

    #[test]
    fn a_lease_is_spent_once_and_expires() {
        let clock = ManualClock::new();
        let leases = Leases::new(10, Duration::from_secs(1), 100, Arc::new(clock.clone())).unwrap();
        assert_eq!(leases.spend("k", 1), None);
        leases.keep("k", 3);
        assert_eq!(leases.spend("k", 2), Some(1));
        assert_eq!(leases.spend("k", 2), None, "only 1 left");
        assert_eq!(leases.spend("k", 1), Some(0));
        assert_eq!(leases.spend("k", 1), None);
        leases.keep("k", 5);
        leases.keep("k", 4);
        assert_eq!(
            leases.spend("k", 9),
            Some(0),
            "batches of concurrent misses pool"
        );
        leases.keep("k", 5);
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            leases.spend("k", 1),
            None,
            "an expired lease is dropped, not spent"
        );
    }
}
