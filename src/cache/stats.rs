//! Counters of what a cache did, and the snapshot handed to users.
//!
//! Each shard owns its counters, so recording a hit touches memory that the
//! shard's lock has already pulled into the reader's cache; [`CacheStats`] is
//! the sum over shards at the moment of the call.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// One shard's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    rejected: AtomicU64,
}

macro_rules! counter {
    ($record:ident, $field:ident) => {
        #[inline]
        pub(crate) fn $record(&self, n: u64) {
            self.$field.fetch_add(n, Ordering::Relaxed);
        }
    };
}

impl Counters {
    counter!(hit, hits);
    counter!(miss, misses);
    counter!(insert, inserts);
    counter!(evict, evictions);
    counter!(expire, expirations);
    counter!(reject, rejected);

    /// Adds this shard's counters to `total`.
    pub(crate) fn add_to(&self, total: &mut CacheStats) {
        total.hits += self.hits.load(Ordering::Relaxed);
        total.misses += self.misses.load(Ordering::Relaxed);
        total.inserts += self.inserts.load(Ordering::Relaxed);
        total.evictions += self.evictions.load(Ordering::Relaxed);
        total.expirations += self.expirations.load(Ordering::Relaxed);
        total.rejected += self.rejected.load(Ordering::Relaxed);
    }
}
