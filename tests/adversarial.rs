//! Adversarial workloads (issue 11): what an attacker, a broken origin or a
//! broken clock can do to each part, and the documented outcome. Each test
//! asserts bounded memory, no panic, no hang, and answers that stay right.
//!
//! Covered elsewhere and not repeated here: a 10,000,000-key flood through a
//! keyed limiter (`limit_stress::a_key_flood_stays_bounded`), a load that
//! never finishes (`cache_loading::a_waiter_gives_up_at_the_load_timeout_on_the_cache_clock`,
//! `cache_loading_async::a_hanging_load_times_out_for_everyone_and_frees_the_key`),
//! a limiter clock going backwards
//! (`limit_gcra::a_clock_going_backwards_neither_panics_nor_refills`), and
//! arbitrary builder arguments (the `builders` fuzz target, replayed by
//! `fuzz_regressions`).

use std::hash::{BuildHasher, Hasher};
use std::sync::Once;
use std::thread;
use std::time::Duration;

use surgeguard::cache::{BuildError, Cache, LoadError};
use surgeguard::clock::{Clock, Instant, ManualClock};
use surgeguard::limit::{CheckError, Gcra, Quota, QuotaError, SlidingWindow, WhenFull};
use surgeguard::shed::{AdaptiveLimit, Outcome, Priority, Shedder};

/// The worst a client who could aim hashes would achieve: every key has the
/// same hash, so every key lands in one shard and one probe sequence.
#[derive(Clone, Default, Debug)]
struct Colliding;

impl BuildHasher for Colliding {
    type Hasher = Constant;
    fn build_hasher(&self) -> Constant {
        Constant
    }
}

struct Constant;

impl Hasher for Constant {
    fn finish(&self) -> u64 {
        0x5eed_5eed_5eed_5eed
    }
    fn write(&mut self, _: &[u8]) {}
}

#[test]
fn a_cache_key_flood_neither_grows_the_cache_nor_washes_out_the_working_set() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(10_000).build().unwrap();
    // 100 hot keys, each read once per 20,000 one-hit keys of the flood: an
    // LRU cache of 10,000 would lose every one of them between two reads.
    // W-TinyLFU admits a flood key only over a colder victim. (A working set
    // not read at all during a flood does age out: the frequency sketch halves
    // its counts every ten capacities of additions, by design.)
    let (mut hot_reads, mut hot_hits) = (0u64, 0u64);
    for flood_key in 1_000_000..3_000_000u64 {
        cache.insert(flood_key, flood_key);
        if flood_key % 200 == 0 {
            let hot = (flood_key / 200) % 100;
            let hit = cache.get(&hot).is_some();
            if !hit {
                cache.insert(hot, hot);
            }
            if flood_key >= 2_000_000 {
                hot_reads += 1;
                hot_hits += u64::from(hit);
            }
        }
        assert!(cache.len() <= 10_000);
    }
    let hit_ratio = hot_hits as f64 / hot_reads as f64;
    assert!(
        hit_ratio >= 0.9,
        "hot keys hit {:.1} % of the time under the flood",
        hit_ratio * 100.0
    );
}

#[test]
fn colliding_hashes_cost_capacity_but_never_correctness() {
    // Documented outcome: all keys share one shard, so the cache holds at most
    // that shard's share, and every answer stays right.
    let cache: Cache<u64, u64, Colliding> = Cache::builder()
        .max_capacity(1_024)
        .shards(4)
        .hasher(Colliding)
        .build()
        .unwrap();
    // Every key looks like every other to the frequency sketch and the
    // ghost, so admission may refuse a fresh key: that is the cost, counted.
    for key in 0..20_000u64 {
        cache.insert(key, key * 3);
        if let Some(value) = cache.get(&key) {
            assert_eq!(value, key * 3);
        }
        assert!(cache.len() <= 1_024 / 4);
    }
    assert!(!cache.is_empty(), "the shard still caches");
    let stats = cache.stats();
    assert_eq!(stats.inserts, 20_000);
    for key in 0..20_000u64 {
        if let Some(value) = cache.get(&key) {
            assert_eq!(value, key * 3);
        }
    }
    let removed = (0..20_000u64)
        .filter(|key| cache.remove(key).is_some())
        .count();
    assert_eq!(cache.len(), 0);
    assert!(removed <= 256);
}

/// Keyed GCRA identifies a key by its 64-bit hash (documented at
/// `KeyedBuilder::hasher`): with every hash equal, every key is one key, so
/// the attackers draw on the victim's spent bucket. Stricter for everyone,
/// never a reset, one slot of memory.
#[test]
fn colliding_hashes_make_keyed_gcra_keys_share_one_limit() {
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(Quota::per_minute(10).unwrap())
        .max_keys(64)
        .hasher(Colliding)
        .clock(clock.clone())
        .build()
        .unwrap();
    let victim = u64::MAX;
    for _ in 0..10 {
        assert!(limiter.check(&victim).is_allowed());
    }
    for attacker_key in 0..50_000u64 {
        clock.advance(Duration::from_micros(1));
        assert!(
            limiter.check(&attacker_key).is_denied(),
            "attacker key {attacker_key} shares the victim's spent bucket"
        );
    }
    assert_eq!(limiter.tracked_keys(), 1);
    assert!(limiter.check(&victim).is_denied());
    // 6 s after the victim's first check, one unit came back: one key of
    // the shared limit gets it, then none.
    clock.advance(Duration::from_secs(6) - Duration::from_micros(50_000));
    assert!(limiter.check(&7u64).is_allowed());
    assert!(limiter.check(&victim).is_denied());
}

/// The window limiters keep the key itself: colliding hashes put every key
/// in one shard and one probe sequence, which costs room, never a limit.
#[test]
fn colliding_hashes_cannot_reset_an_active_window_or_grow_the_table() {
    let clock = ManualClock::new();
    let limiter = SlidingWindow::keyed(Quota::per_minute(10).unwrap())
        .max_keys(64)
        .shards(1)
        .when_full(WhenFull::DenyNewKeys)
        .hasher(Colliding)
        .clock(clock.clone())
        .build()
        .unwrap();
    let victim = u64::MAX;
    for _ in 0..10 {
        assert!(limiter.check(&victim).is_allowed());
    }
    assert!(limiter.check(&victim).is_denied());
    for attacker_key in 0..50_000u64 {
        clock.advance(Duration::from_micros(1));
        let _ = limiter.check(&attacker_key);
        assert!(limiter.tracked_keys() <= 64);
    }
    // 50 ms later the victim is still spent: the flood did not evict it.
    assert!(limiter.check(&victim).is_denied());
}

fn silence_adversarial_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info.payload().downcast_ref::<&str>().copied();
            if text != Some("adversarial loader") {
                default(info);
            }
        }));
    });
}

#[test]
fn a_loader_that_always_panics_never_wedges_a_key() {
    silence_adversarial_panics();
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let cache = cache.clone();
            thread::spawn(move || {
                for round in 0..250u64 {
                    let key = (thread + round) % 8;
                    let result = cache.get_or_load(&key, |_| -> u64 {
                        panic!("adversarial loader");
                    });
                    assert_eq!(result, Err(LoadError::Panicked));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("callers get an error, not the panic");
    }
    assert_eq!(cache.len(), 0, "nothing cached from a panicking loader");
    let stats = cache.stats();
    assert_eq!(stats.loads + stats.coalesced, 1_000, "every call accounted");
    assert_eq!(stats.load_errors, stats.loads);
    for key in 0..8 {
        assert_eq!(cache.get_or_load(&key, |key| key + 1), Ok(key + 1));
    }
}

#[test]
fn a_cache_clock_jumping_back_and_forth_neither_panics_nor_resurrects() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    clock.set(Instant::from_nanos(100_000_000_000));
    for key in 0..500 {
        cache.insert(key, key);
    }
    // Backwards: deadlines are absolute, so entries live until the clock
    // passes them again; nothing panics or underflows.
    clock.set(Instant::ZERO);
    assert_eq!(cache.get(&1), Some(1));
    cache.insert(1_000, 1);
    cache.run_maintenance();
    // Forward past every deadline: nothing is served, and the dead entries
    // are reclaimed without a full scan.
    clock.set(Instant::from_nanos(200_000_000_000));
    assert!((0..500).all(|key| cache.get(&key).is_none()));
    for _ in 0..100 {
        cache.run_maintenance();
    }
    assert_eq!(cache.len(), 0);
    // To the end of time: TTL arithmetic saturates instead of wrapping into
    // the past.
    clock.set(Instant::FAR_FUTURE);
    cache.insert(7, 7);
    cache.insert_with_ttl(8, 8, Duration::MAX);
    for _ in 0..10 {
        cache.run_maintenance();
    }
    assert!(cache.len() <= 2);
    clock.set(Instant::ZERO);
    assert!(cache.get(&7).is_none_or(|value| value == 7));
}

#[test]
fn a_shedder_clock_jumping_backwards_keeps_the_limit_in_bounds() {
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .limit(AdaptiveLimit::gradient().min(4).max(64).initial(16))
        .clock(clock.clone())
        .build()
        .unwrap();
    clock.set(Instant::from_nanos(1_000_000_000_000));
    for round in 0..2_000u64 {
        let permits: Vec<_> = (0..8)
            .filter_map(|_| shedder.try_acquire(Priority::Normal).ok())
            .collect();
        // Every other round the clock steps back an hour or leaps a day.
        match round % 4 {
            0 => clock.set(Instant::from_nanos(
                clock.now().as_nanos().saturating_sub(3_600_000_000_000),
            )),
            2 => clock.advance(Duration::from_secs(86_400)),
            _ => clock.advance(Duration::from_millis(5)),
        }
        for (index, permit) in permits.into_iter().enumerate() {
            permit.record(if index % 5 == 0 {
                Outcome::Dropped
            } else {
                Outcome::Success
            });
        }
        assert!(
            (4..=64).contains(&shedder.limit()),
            "limit {}",
            shedder.limit()
        );
    }
    assert_eq!(shedder.in_flight(), 0);
    clock.set(Instant::FAR_FUTURE);
    let permit = shedder.try_acquire(Priority::Critical).expect("room");
    clock.set(Instant::ZERO);
    permit.record(Outcome::Success);
    assert!((4..=64).contains(&shedder.limit()));
}

#[test]
fn extreme_costs_and_durations_get_named_errors() {
    let quota = Quota::per_second(100).unwrap();
    let limiter = Gcra::direct(quota).build().unwrap();
    assert_eq!(
        limiter.check_n(u32::MAX),
        Err(CheckError::CostExceedsBurst {
            cost: u32::MAX,
            burst: 100
        })
    );
    let keyed = Gcra::keyed(quota).build().unwrap();
    assert!(matches!(
        keyed.check_n(&1u64, u32::MAX),
        Err(CheckError::CostExceedsBurst { .. })
    ));
    assert!(matches!(
        Quota::with_period(u32::MAX, Duration::MAX),
        Err(QuotaError::PeriodTooLong { .. })
    ));
    assert!(matches!(
        Quota::per_second(u32::MAX),
        Err(QuotaError::RateAboveOnePerNanosecond { .. })
    ));
    assert!(matches!(
        Quota::per_hour(1).unwrap().burst(u32::MAX),
        Err(QuotaError::BurstTooLong { .. })
    ));
    assert!(matches!(
        Cache::<u64, u64>::builder()
            .max_capacity(10)
            .time_to_live(Duration::MAX)
            .build(),
        Err(BuildError::DurationTooLong { .. })
    ));
    // A per-entry TTL is a request, not a setting: an absurd one is capped
    // (documented on insert_with_ttl), never an overflow.
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, Duration::MAX);
    clock.advance(Duration::from_secs(3_600 * 24 * 365 * 50));
    assert_eq!(cache.get(&1), Some(1));
    // A Retry-After is finite even for the slowest quota.
    let slow = Gcra::direct(Quota::with_period(1, surgeguard::limit::MAX_PERIOD).unwrap())
        .build()
        .unwrap();
    assert!(slow.check().is_allowed());
    let denied = slow.check();
    assert!(denied.retry_after().unwrap() <= surgeguard::limit::MAX_PERIOD);
}
