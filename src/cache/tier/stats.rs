//! What a tiered cache did with its shared tier.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`TieredCache`](super::TieredCache)'s traffic with its
/// shared tier since it was built. The in-process tier's own figures (hits,
/// coalesced local waits) are in [`CacheStats`](crate::cache::CacheStats),
/// from [`TieredCache::local`](super::TieredCache::local).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Local misses answered by a fresh value from the shared tier.
    pub remote_hits: u64,
    /// Local misses answered by a stale value from the shared tier while
    /// another instance reloads it for the fleet.
    pub remote_stale: u64,
    /// Local misses that took the lease and ran the loader here.
    pub leased_loads: u64,
    /// Loads that waited for another instance's load (counted once per
    /// load, however many times it polled).
    pub fleet_waits: u64,
    /// Leases taken after waiting for another instance's lease to end
    /// without a value (its holder failed, was cancelled or died).
    pub lease_takeovers: u64,
    /// Loader calls made without a lease (the shared tier was unavailable
    /// or refused the call, held a value that did not decode, or the key
    /// could not be encoded).
    pub local_loads: u64,
    /// Values in the shared tier that did not decode (treated as misses).
    pub decode_errors: u64,
    /// Values over the size limit: loaded ones not written to the shared
    /// tier, and ones found there and not read (treated as misses).
    pub too_large: u64,
    /// Calls to the shared tier that failed (unavailable or refused).
    pub remote_errors: u64,
    /// Invalidations heard from other instances (including "drop all"
    /// after the backplane reconnected).
    pub invalidations_heard: u64,
}

#[derive(Default)]
pub(crate) struct TierCounters {
    pub(crate) remote_hits: AtomicU64,
    pub(crate) remote_stale: AtomicU64,
    pub(crate) leased_loads: AtomicU64,
    pub(crate) fleet_waits: AtomicU64,
    pub(crate) lease_takeovers: AtomicU64,
    pub(crate) local_loads: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) remote_errors: AtomicU64,
    pub(crate) invalidations_heard: AtomicU64,
}

impl TierCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TierStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TierStats {
            remote_hits: read(&self.remote_hits),
            remote_stale: read(&self.remote_stale),
            leased_loads: read(&self.leased_loads),
            fleet_waits: read(&self.fleet_waits),
            lease_takeovers: read(&self.lease_takeovers),
            local_loads: read(&self.local_loads),
            decode_errors: read(&self.decode_errors),
            too_large: read(&self.too_large),
            remote_errors: read(&self.remote_errors),
            invalidations_heard: read(&self.invalidations_heard),
        }
    }
}
