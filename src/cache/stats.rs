//! Counters of what a cache did, and the snapshot handed to users.
//!
//! Each shard owns its counters, so recording a hit touches memory that the
//! shard's lock has already pulled into the reader's cache; [`CacheStats`] is
//! the sum over shards at the moment of the call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of a cache's activity since it was built.
///
/// ```
/// use surgeguard::cache::Cache;
///
/// let cache: Cache<u32, u32> = Cache::builder().max_capacity(10).build()?;
/// cache.insert(1, 10);
/// assert_eq!(cache.get(&1), Some(10));
/// assert_eq!(cache.get(&2), None);
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 1, 1));
/// assert_eq!(stats.hit_ratio(), 0.5);
/// # Ok::<(), surgeguard::cache::BuildError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing, or only an expired entry.
    pub misses: u64,
    /// Entries stored by `insert` (new keys and overwrites).
    pub inserts: u64,
    /// Entries removed by the eviction policy to respect the capacity.
    pub evictions: u64,
    /// Expired entries reclaimed.
    pub expirations: u64,
    /// Entries not stored because they weigh more than a shard can hold.
    pub rejected: u64,
    /// Loader calls made by the loading methods (including reloads).
    pub loads: u64,
    /// Loads that failed: an error, a panic, or the load timeout.
    pub load_errors: u64,
    /// Loading calls that waited for another caller's load instead of
    /// calling the origin themselves.
    pub coalesced: u64,
    /// Reloads started in the background (refresh-ahead and
    /// stale-while-revalidate).
    pub refreshes: u64,
    /// Expired values served by the loading methods (within a stale window).
    pub stale_served: u64,
    /// Time spent in loads that have ended, from start to end, whatever the
    /// outcome (`load_time / loads` is about the mean load time).
    pub load_time: Duration,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 before the first lookup.
    ///
    /// ```
    /// # use surgeguard::cache::CacheStats;
    /// assert_eq!(CacheStats::default().hit_ratio(), 0.0);
    /// ```
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// One shard's lookup counters: atomics, bumped under the shared lock.
#[derive(Debug, Default)]
pub(crate) struct LookupCounters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl LookupCounters {
    #[inline]
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds these counters to `total`.
    pub(crate) fn add_to(&self, total: &mut CacheStats) {
        total.hits += self.hits.load(Ordering::Relaxed);
        total.misses += self.misses.load(Ordering::Relaxed);
    }
}

/// One shard's write counters: plain integers, changed only under the
/// shard's write lock, so a write pays no atomic instruction for them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WriteCounters {
    pub(crate) inserts: u64,
    pub(crate) evictions: u64,
    pub(crate) expirations: u64,
    pub(crate) rejected: u64,
}

impl WriteCounters {
    /// Adds these counters to `total`.
    pub(crate) fn add_to(&self, total: &mut CacheStats) {
        total.inserts += self.inserts;
        total.evictions += self.evictions;
        total.expirations += self.expirations;
        total.rejected += self.rejected;
    }
}

/// A cache's loading counters: atomics, bumped without any lock. Loads are
/// rare next to lookups, so one set per cache is enough.
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    pub(crate) loads: AtomicU64,
    pub(crate) load_errors: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    /// Nanoseconds spent in loads that have ended.
    pub(crate) load_nanos: AtomicU64,
}

impl LoadCounters {
    /// Adds one to `counter`.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds these counters to `total`.
    pub(crate) fn add_to(&self, total: &mut CacheStats) {
        total.loads += self.loads.load(Ordering::Relaxed);
        total.load_errors += self.load_errors.load(Ordering::Relaxed);
        total.coalesced += self.coalesced.load(Ordering::Relaxed);
        total.refreshes += self.refreshes.load(Ordering::Relaxed);
        total.stale_served += self.stale_served.load(Ordering::Relaxed);
        total.load_time += Duration::from_nanos(self.load_nanos.load(Ordering::Relaxed));
    }
}
