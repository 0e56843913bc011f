//! Behaviour of the cache's public API on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use surgeguard::cache::{Cache, CacheBuilder};
use surgeguard::clock::ManualClock;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A 100-entry cache on `clock`, with whatever else `configure` sets.
fn cache_on(
    clock: &ManualClock,
    configure: impl FnOnce(CacheBuilder<u32, u32>) -> CacheBuilder<u32, u32>,
) -> Cache<u32, u32> {
    configure(Cache::builder().max_capacity(100).clock(clock.clone()))
        .build()
        .expect("valid settings")
}

#[test]
fn default_ttl_expires_entries_and_counts_them() {
    let clock = ManualClock::new();
    let cache = cache_on(&clock, |builder| builder.time_to_live(secs(10)));
    cache.insert(1, 1);
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(cache.get(&1), Some(1));
    assert!(cache.contains_key(&1));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&1), None);
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.remove(&1), None, "an expired value is not handed out");
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.stats().expirations, 1);
}

#[test]
fn per_entry_ttl_overrides_the_default() {
    let clock = ManualClock::new();
    let cache = cache_on(&clock, |builder| builder.time_to_live(secs(10)));
    cache.insert_with_ttl(1, 1, secs(100));
    cache.insert_with_ttl(2, 2, secs(1));
    clock.advance(secs(5));
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&2), None);
    clock.advance(secs(50));
    assert_eq!(cache.get(&1), Some(1));
}

#[test]
fn overwriting_restarts_the_ttl() {
    let clock = ManualClock::new();
    let cache = cache_on(&clock, |builder| builder.time_to_live(secs(10)));
    cache.insert(1, 1);
    clock.advance(secs(8));
    cache.insert(1, 2);
    clock.advance(secs(8));
    assert_eq!(cache.get(&1), Some(2));
    clock.advance(secs(2));
    assert_eq!(cache.get(&1), None);
}

#[test]
fn per_entry_ttl_works_without_a_default() {
    let clock = ManualClock::new();
    let cache = cache_on(&clock, |builder| builder);
    cache.insert(1, 1); // never expires
    cache.insert_with_ttl(2, 2, secs(1));
    clock.advance(secs(3600));
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&2), None);
    cache.run_maintenance();
    assert_eq!(cache.len(), 1);
}

#[test]
fn zero_and_absurd_per_entry_ttls() {
    let clock = ManualClock::new();
    let cache = cache_on(&clock, |builder| builder);
    cache.insert(1, 1);
    cache.insert_with_ttl(1, 2, Duration::ZERO);
    assert_eq!(
        cache.get(&1),
        None,
        "a zero TTL stores nothing and drops the old value"
    );
    cache.insert_with_ttl(3, 3, Duration::MAX);
    clock.advance(Duration::from_secs(u64::MAX / 4));
    assert_eq!(cache.get(&3), Some(3), "an unrepresentable TTL means never");
}

#[test]
fn time_to_idle_extends_on_reads_and_expires_when_idle() {
    let clock = ManualClock::new();
    let cache = cache_on(&clock, |builder| builder.time_to_idle(secs(10)));
    cache.insert(1, 1);
    for _ in 0..5 {
        clock.advance(secs(9));
        assert_eq!(cache.get(&1), Some(1), "each read restarts the idle timer");
    }
    clock.advance(secs(10));
    assert_eq!(cache.get(&1), None);
}

#[test]
fn ttl_caps_time_to_idle() {
    let clock = ManualClock::new();
    let cache = cache_on(&clock, |builder| {
        builder.time_to_live(secs(20)).time_to_idle(secs(10))
    });
    cache.insert(1, 1);
    clock.advance(secs(9));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(secs(9));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(secs(2));
    assert_eq!(cache.get(&1), None, "reads never extend past the TTL");
}

#[test]
fn expired_entries_are_reclaimed_by_later_writes() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10_000)
        .time_to_live(secs(1))
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    for key in 0..1_000 {
        cache.insert(key, key);
    }
    clock.advance(secs(2));
    // Nothing is read; writes alone must reclaim the dead entries, a bounded
    // number per write.
    for key in 1_000..1_200 {
        cache.insert(key, key);
    }
    assert_eq!(cache.len(), 200);
    assert_eq!(cache.stats().expirations, 1_000);
}

#[test]
fn an_entry_heavier_than_a_shard_is_rejected_not_stored() {
    let cache: Cache<u32, Vec<u8>> = Cache::builder()
        .max_weight(1_000)
        .weigher(|_, bytes: &Vec<u8>| bytes.len() as u32)
        .shards(1)
        .build()
        .unwrap();
    cache.insert(1, vec![0; 10]);
    cache.insert(1, vec![0; 1_001]);
    assert_eq!(cache.get(&1), None, "the older value must not be served");
    assert_eq!(cache.stats().rejected, 1);
    assert_eq!(cache.weighted_size(), 0);
    cache.insert(2, vec![0; 1_000]);
    assert_eq!(cache.weighted_size(), 1_000);
}

#[test]
fn zero_weights_count_as_one() {
    let cache: Cache<u32, u32> = Cache::builder()
        .max_weight(10)
        .weigher(|_, _| 0)
        .shards(1)
        .build()
        .unwrap();
    for key in 0..100 {
        cache.insert(key, key);
    }
    assert!(cache.len() <= 10);
    assert_eq!(cache.weighted_size(), cache.len() as u64);
}

#[test]
fn overwrites_adjust_the_weight() {
    let cache: Cache<u32, String> = Cache::builder()
        .max_weight(100)
        .weigher(|_, value: &String| value.len() as u32)
        .shards(1)
        .build()
        .unwrap();
    cache.insert(1, "x".repeat(10));
    cache.insert(1, "x".repeat(30));
    assert_eq!(cache.weighted_size(), 30);
    cache.insert(1, "x".repeat(5));
    assert_eq!(cache.weighted_size(), 5);
}

#[test]
fn capacity_is_respected_under_churn() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(1_000).build().unwrap();
    for key in 0..100_000 {
        cache.insert(key, key);
        assert!(cache.len() <= 1_000);
    }
    let stats = cache.stats();
    assert_eq!(stats.inserts, 100_000);
    assert_eq!(stats.evictions, 100_000 - cache.len() as u64);
}

#[test]
fn invalidate_all_empties_every_shard() {
    let cache: Cache<u64, Arc<u64>> = Cache::builder()
        .max_capacity(10_000)
        .shards(8)
        .build()
        .unwrap();
    for key in 0..5_000 {
        cache.insert(key, Arc::new(key));
    }
    cache.invalidate_all();
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.weighted_size(), 0);
    assert!((0..5_000).all(|key| cache.get(&key).is_none()));
    cache.insert(1, Arc::new(1));
    assert_eq!(cache.get(&1).as_deref(), Some(&1));
}

#[test]
fn frequently_used_keys_survive_a_scan() {
    // Scan resistance: a hot set that is read over and over must survive a
    // one-off sweep over five times more keys than the cache holds (LRU would
    // keep none of it). Frequency ages by design (TinyLFU halves its counts
    // every ten capacities' worth of accesses), so a sweep far longer than
    // that, with no hot reads at all, is a workload change, not a scan.
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .shards(1)
        .build()
        .unwrap();
    for _ in 0..20 {
        for key in 0..500 {
            if cache.get(&key).is_none() {
                cache.insert(key, key);
            }
        }
    }
    for key in 1_000_000..1_005_000 {
        if cache.get(&key).is_none() {
            cache.insert(key, key);
        }
    }
    let survivors = (0..500).filter(|key| cache.contains_key(key)).count();
    assert!(
        survivors >= 450,
        "only {survivors} of 500 hot keys survived the scan"
    );
}

#[test]
fn a_weighted_cache_by_default_stores_entries_up_to_a_sixteenth_of_its_bound() {
    let bound = 10 << 20;
    let cache: Cache<u32, Vec<u8>> = Cache::builder()
        .max_weight(bound)
        .weigher(|_, bytes: &Vec<u8>| bytes.len() as u32)
        .build()
        .unwrap();
    assert!(cache.max_entry_weight() >= bound / 16);
    cache.insert(1, vec![0; (bound / 16) as usize]);
    assert_eq!(
        cache.get(&1).map(|bytes| bytes.len()),
        Some((bound / 16) as usize)
    );
}
