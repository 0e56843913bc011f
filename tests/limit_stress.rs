//! Many threads against limiters on a manual clock: whatever the
//! interleaving, the total admitted never exceeds `burst + rate × elapsed`
//! (per key), and a flood of distinct keys never grows the table past
//! `max_keys`.
//!
//! The workers themselves move the clock forward in small steps as they
//! check (every tenth check of each), so checks race with each other and
//! with time, and every run covers the same span of time whatever the
//! scheduling. No test sleeps or measures time.
//!
//! With the clock held still, limits must also be exact: keyed GCRA checks a
//! tracked key without a lock, with a compare-and-swap, so many
//! threads on a few keys must together admit exactly the limit per key.
//!
//! Why none of these can flake on a busy machine: every assertion is an
//! invariant that holds in every interleaving (a bound, an exact sum, a
//! count read after every thread has joined), or an event that the test
//! forces from its own thread; none asserts that some race happened. And
//! every thread runs a fixed number of steps, never "until another thread
//! is done", so a run's length is its own work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use surgeguard::clock::{Clock, ManualClock};
use surgeguard::limit::{AllOf, ExactWindow, Gcra, Quota, RateLimiter, SlidingWindow, WhenFull};

const WORKERS: usize = 4;
/// Checks per worker in [`race`].
const CHECKS: u32 = 5_000;
/// Each worker moves the clock one [`STEP`] after every this many checks:
/// 2,000 steps in all, a second.
const CHECKS_PER_STEP: u32 = 10;
const STEP: Duration = Duration::from_micros(500);

/// Runs `check(worker, n)` for `n` in `0..CHECKS` on each of `WORKERS`
/// threads, each moving the clock a `STEP` after every `CHECKS_PER_STEP`
/// checks; returns the elapsed nanoseconds (always the same: a second).
fn race(clock: &ManualClock, check: impl Fn(usize, u32) + Sync) -> u64 {
    // All start together, so that they mostly run at the same time (more
    // likely to race; no assertion depends on it).
    let start = Barrier::new(WORKERS);
    thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (check, start) = (&check, &start);
            scope.spawn(move || {
                start.wait();
                for n in 0..CHECKS {
                    check(worker, n);
                    if n % CHECKS_PER_STEP == CHECKS_PER_STEP - 1 {
                        clock.advance(STEP);
                    }
                }
            });
        }
    });
    let elapsed = clock.now().as_nanos();
    assert_eq!(
        elapsed,
        u64::from(CHECKS / CHECKS_PER_STEP) * WORKERS as u64 * STEP.as_nanos() as u64
    );
    elapsed
}

/// `admitted` units fit in `burst + elapsed / interval`.
fn assert_within_gcra_bound(admitted: u64, quota: Quota, elapsed: u64) {
    let interval = quota.emission_interval().as_nanos() as u64;
    let bound = u64::from(quota.max_burst()) + elapsed / interval;
    assert!(
        admitted <= bound,
        "admitted {admitted}, bound {bound} (burst {} + {elapsed} ns at {interval} ns each)",
        quota.max_burst()
    );
}

#[test]
fn one_key_many_threads() {
    let quota = Quota::per_second(1_000).unwrap().burst(50).unwrap();
    for stripes in [1, 4] {
        let clock = ManualClock::new();
        let limiter = Gcra::direct(quota)
            .stripes(stripes)
            .clock(clock.clone())
            .build()
            .unwrap();
        let admitted = AtomicU64::new(0);
        let elapsed = race(&clock, |worker, _| {
            let cost = 1 + (worker as u32 % 3);
            if let Ok(decision) = limiter.check_n(cost) {
                if decision.is_allowed() {
                    admitted.fetch_add(u64::from(cost), Ordering::Relaxed);
                }
            }
        });
        let admitted = admitted.into_inner();
        assert_within_gcra_bound(admitted, quota, elapsed);
        // Forced, not a race: whichever check comes first meets full
        // buckets (50 units, at least 12 per stripe), and costs at most 3.
        assert!(admitted > 0);
    }
}

#[test]
fn many_keys_many_threads() {
    const KEYS: usize = 64;
    let quota = Quota::per_second(200).unwrap().burst(5).unwrap();
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(quota)
        .max_keys(1_000)
        .clock(clock.clone())
        .build()
        .unwrap();
    let admitted: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
    let elapsed = race(&clock, |worker, n| {
        let key = (worker + 7 * n as usize + 3) % KEYS;
        if limiter.check(&key).is_allowed() {
            admitted[key].fetch_add(1, Ordering::Relaxed);
        }
    });
    for count in admitted {
        assert_within_gcra_bound(count.into_inner(), quota, elapsed);
    }
}

#[test]
fn exact_windows_many_threads() {
    const KEYS: usize = 16;
    let window = Duration::from_millis(100);
    let quota = Quota::with_period(20, window).unwrap();
    let clock = ManualClock::new();
    let limiter = ExactWindow::keyed(quota)
        .clock(clock.clone())
        .build()
        .unwrap();
    let admitted: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
    let elapsed = race(&clock, |worker, n| {
        let key = (worker + 5 * n as usize + 5) % KEYS;
        if limiter.check(&key).is_allowed() {
            admitted[key].fetch_add(1, Ordering::Relaxed);
        }
    });
    let windows = elapsed / window.as_nanos() as u64 + 1;
    for count in admitted {
        assert!(count.into_inner() <= 20 * windows);
    }
}

#[test]
fn composed_limits_never_overadmit() {
    let per_key = Quota::per_second(400).unwrap().burst(4).unwrap();
    let global = Quota::per_second(1_000).unwrap().burst(10).unwrap();
    let clock = ManualClock::new();
    let keyed = Arc::new(Gcra::keyed(per_key).clock(clock.clone()).build().unwrap());
    let whole = Arc::new(Gcra::direct(global).clock(clock.clone()).build().unwrap());
    let limits = AllOf::new(keyed.clone(), |key: &u8| *key).and(whole.clone(), |_: &u8| ());
    let admitted: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
    let elapsed = race(&clock, |worker, _| {
        let key = (worker % 4) as u8;
        if limits.check(&key).is_allowed() {
            admitted[usize::from(key)].fetch_add(1, Ordering::Relaxed);
        }
    });
    let counts: Vec<u64> = admitted.into_iter().map(AtomicU64::into_inner).collect();
    for &count in &counts {
        assert_within_gcra_bound(count, per_key, elapsed);
    }
    assert_within_gcra_bound(counts.iter().sum(), global, elapsed);
    // Nothing is left taken: after a full refill every limit is full again.
    clock.advance(Duration::from_secs(1));
    assert_eq!(Gcra::check_n(&whole, 0).unwrap().remaining(), 10);
    for key in 0..4u8 {
        assert_eq!(keyed.check_n(&key, 0).unwrap().remaining(), 4);
    }
}

/// 10,000,000 distinct keys (1,000,000 in debug builds, where each check
/// costs about ten times as much; the bound does not depend on the count)
/// through a limiter holding at most 100,000: the table never grows, keys are
/// reclaimed as they go idle, and the flood is refused or shared, never
/// allowed to reset an active key.
#[test]
fn a_key_flood_stays_bounded() {
    let flood: u64 = if cfg!(debug_assertions) {
        1_000_000
    } else {
        10_000_000
    };
    for policy in [WhenFull::DenyNewKeys, WhenFull::ShareOverflowBucket] {
        let clock = ManualClock::new();
        let limiter = Gcra::keyed(Quota::per_second(1).unwrap())
            .max_keys(100_000)
            .when_full(policy)
            .clock(clock.clone())
            .build()
            .unwrap();
        let allocated = limiter.allocated_bytes();
        // A client that is being limited throughout the flood.
        assert!(limiter.check(&u64::MAX).is_allowed());
        let per_thread = flood / 2;
        thread::scope(|scope| {
            for half in 0..2u64 {
                let (limiter, clock) = (&limiter, &clock);
                scope.spawn(move || {
                    for n in 0..per_thread {
                        let _ = limiter.check(&(half * per_thread + n));
                        // 1 ms per 2,000 keys: each key stays active for a
                        // second, 2,000,000 keys' worth, far over max_keys.
                        if half == 0 && n % 1_000 == 0 {
                            clock.advance(Duration::from_millis(1));
                        }
                        if n % 100_000 == 0 {
                            assert!(limiter.tracked_keys() <= 100_000);
                        }
                    }
                });
            }
        });
        assert!(limiter.tracked_keys() <= 100_000);
        assert_eq!(limiter.allocated_bytes(), allocated, "the table never grew");
        // After the flood, keys go idle and make room again.
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check(&(flood + 1)).is_allowed());
        // Forced by the flood itself: the first thread alone checks five
        // times max_keys new keys (fifty in release builds), each active
        // longer than the flood lasts, so the table is full at its end, and
        // every key is idle now.
        assert!(limiter.reclaim_idle() > 0);
    }
}

#[test]
fn an_active_key_survives_a_flood() {
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(Quota::per_hour(1).unwrap())
        .max_keys(1_000)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(limiter.check(&0u64).is_allowed());
    for key in 1..100_000u64 {
        let _ = limiter.check(&key);
        if key % 10 == 0 {
            clock.advance(Duration::from_millis(1));
        }
    }
    assert!(limiter.check(&0u64).is_denied(), "its limit was not reset");
    assert_eq!(limiter.tracked_keys(), 1_000);
}

#[test]
fn dyn_limiters_compose() {
    let limiters: Vec<Box<dyn RateLimiter<u64>>> = vec![
        Box::new(Gcra::keyed(Quota::per_second(1).unwrap()).build().unwrap()),
        Box::new(
            ExactWindow::keyed(Quota::per_second(1).unwrap())
                .build()
                .unwrap(),
        ),
    ];
    for limiter in &limiters {
        assert!(limiter.check(&1).is_allowed());
        assert!(limiter.check(&1).is_denied());
    }
}

/// Many threads on a few hot keys, with a clock that does not move, while
/// other threads insert new keys into the same shards: every keyed limiter
/// admits exactly its limit per key, however the checks interleave (GCRA's
/// lock-free compare-and-swap, the windows under the shard's lock). Small tables (shards with slack and a table-wide room
/// count) and a single shard alike.
#[test]
fn hot_keys_admit_exactly_the_limit() {
    const HOT_THREADS: usize = 8;
    const NEW_KEY_THREADS: u64 = 2;
    const HOT_KEYS: u64 = 4;
    const LIMIT: u32 = 300;
    const ATTEMPTS: u32 = 400;
    let quota = Quota::per_hour(LIMIT).unwrap();
    for shards in [None, Some(1), Some(8)] {
        let clock = ManualClock::new();
        let with_shards = |max_keys: usize| shards.unwrap_or(max_keys / 16).max(1);
        // The three rules, each over the same small table.
        macro_rules! table_of {
            ($rule:ident) => {
                Box::new(
                    $rule::keyed(quota)
                        .max_keys(128)
                        .shards(with_shards(128))
                        .clock(clock.clone())
                        .build()
                        .unwrap(),
                ) as Box<dyn RateLimiter<u64>>
            };
        }
        let limiters: Vec<(&str, Box<dyn RateLimiter<u64>>)> = vec![
            ("gcra", table_of!(Gcra)),
            ("sliding window", table_of!(SlidingWindow)),
            ("exact window", table_of!(ExactWindow)),
        ];
        for (name, limiter) in &limiters {
            // Taken before the flood of new keys can fill the table.
            let admitted: Vec<AtomicU64> = (0..HOT_KEYS).map(|_| AtomicU64::new(0)).collect();
            for key in 0..HOT_KEYS {
                assert!(limiter.check(&key).is_allowed());
                admitted[key as usize].fetch_add(1, Ordering::Relaxed);
            }
            thread::scope(|scope| {
                for thread in 0..HOT_THREADS {
                    let (limiter, admitted) = (limiter, &admitted);
                    scope.spawn(move || {
                        for attempt in 0..ATTEMPTS {
                            for offset in 0..HOT_KEYS {
                                let key = (thread as u64 + offset) % HOT_KEYS;
                                // Costs 1 to 3 on half the threads.
                                let cost = if thread % 2 == 0 { 1 } else { 1 + attempt % 3 };
                                let decision = limiter.check_n(&key, cost).unwrap();
                                if decision.is_allowed() {
                                    admitted[key as usize]
                                        .fetch_add(u64::from(cost), Ordering::Relaxed);
                                }
                            }
                        }
                    });
                }
                for thread in 0..NEW_KEY_THREADS {
                    scope.spawn(move || {
                        for n in 0..2_000 {
                            let _ = limiter.check(&(1_000 + thread * 1_000_000 + n));
                        }
                    });
                }
            });
            for key in 0..HOT_KEYS {
                let taken = admitted[key as usize].load(Ordering::Relaxed);
                let left = limiter.check_n(&key, 0).unwrap().remaining();
                assert_eq!(
                    taken + u64::from(left),
                    u64::from(LIMIT),
                    "{name}, shards {shards:?}, key {key}: {taken} admitted, {left} left"
                );
                assert!(left < 3, "{name}: the hammering threads left {left} unused");
            }
        }
    }
}

/// A small table over many shards (a share of about 20 keys each) fills to
/// exactly `max_keys` active keys: slack keeps uneven hashing from refusing
/// a key while the table has room, and the table-wide count still refuses
/// the key after. Once every key is idle, new keys take their places (from
/// whichever shards hold them) and the count comes back whole. The hasher is
/// fixed so that the spread over shards is the same on every run.
#[test]
fn a_small_table_fills_to_max_keys() {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::BuildHasherDefault;

    const MAX_KEYS: u64 = 1_250;
    for shards in [8, 64] {
        let clock = ManualClock::new();
        let limiter = Gcra::keyed(Quota::per_hour(1).unwrap())
            .max_keys(MAX_KEYS as usize)
            .shards(shards)
            .hasher(BuildHasherDefault::<DefaultHasher>::default())
            .clock(clock.clone())
            .build()
            .unwrap();
        let allocated = limiter.allocated_bytes();
        for round in 0..3u64 {
            let first = round * 10_000;
            for key in first..first + MAX_KEYS {
                assert!(
                    limiter.check(&key).is_allowed(),
                    "{shards} shards, round {round}: key {key} refused room"
                );
            }
            assert_eq!(limiter.tracked_keys(), MAX_KEYS as usize);
            // Full of active keys: refused until the earliest goes idle.
            let refused = limiter.check(&(first + MAX_KEYS));
            assert_eq!(refused.retry_after(), Some(Duration::from_secs(3_600)));
            assert_eq!(limiter.tracked_keys(), MAX_KEYS as usize);
            clock.advance(Duration::from_secs(3_600));
            if round == 1 {
                // Forgetting them all gives every place back too.
                assert_eq!(limiter.reclaim_idle(), MAX_KEYS as usize);
                assert_eq!(limiter.tracked_keys(), 0);
            }
        }
        assert_eq!(limiter.allocated_bytes(), allocated, "the table never grew");
    }
}

/// A flood of distinct keys through a small table (default shards: slack
/// and a table-wide count) from several threads: the table never holds
/// more than `max_keys` nor grows, and a client being limited keeps its
/// limit throughout.
#[test]
fn a_key_flood_through_a_small_table_stays_bounded() {
    const MAX_KEYS: usize = 1_000;
    for policy in [WhenFull::DenyNewKeys, WhenFull::ShareOverflowBucket] {
        let clock = ManualClock::new();
        let limiter = Gcra::keyed(Quota::per_second(1).unwrap())
            .max_keys(MAX_KEYS)
            .when_full(policy)
            .clock(clock.clone())
            .build()
            .unwrap();
        let allocated = limiter.allocated_bytes();
        assert!(limiter.check(&u64::MAX).is_allowed());
        thread::scope(|scope| {
            for thread in 0..4u64 {
                let (limiter, clock) = (&limiter, &clock);
                scope.spawn(move || {
                    for n in 0..50_000u64 {
                        let _ = limiter.check(&(thread << 32 | n));
                        if thread == 0 && n % 100 == 0 {
                            // 1 ms per 400 keys: each key stays active for
                            // a second, 400,000 keys' worth.
                            clock.advance(Duration::from_millis(1));
                        }
                        if n % 1_000 == 0 {
                            assert!(limiter.tracked_keys() <= MAX_KEYS);
                        }
                    }
                });
            }
        });
        assert!(limiter.tracked_keys() <= MAX_KEYS);
        assert_eq!(limiter.allocated_bytes(), allocated, "the table never grew");
        // Half a second passed: the client is still limited.
        assert_eq!(clock.now().as_nanos(), 500_000_000);
        assert!(
            limiter.check(&u64::MAX).is_denied(),
            "its limit was not reset"
        );
        clock.advance(Duration::from_secs(1));
        assert!(limiter.reclaim_idle() > 0);
        assert_eq!(limiter.tracked_keys(), 0);
    }
}
