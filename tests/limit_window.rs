//! Sliding windows on a manual clock.
//!
//! * The exact window against a plain log of admissions: same decision for
//!   every request.
//! * The approximate window against the exact count of what it admitted:
//!   every decision within the error bound documented in `window.rs`,
//!   `exact − previous × e / W ≤ estimate ≤ exact + previous × (W − e) / W + 1`.

use std::time::Duration;

use proptest::prelude::*;
use surgeguard::clock::{Clock, Instant, ManualClock};
use surgeguard::limit::{BuildError, ExactWindow, Quota, SlidingWindow, MAX_EXACT_LIMIT};

/// Admissions as (time, cost), in order.
#[derive(Default)]
struct Log(Vec<(u64, u32)>);

impl Log {
    /// Units admitted in the half-open interval `[from, to)`.
    fn between(&self, from: u64, to: u64) -> u64 {
        self.0
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|(_, cost)| u64::from(*cost))
            .sum()
    }

    /// Units admitted in the sliding window `(now − W, now]`.
    fn in_window(&self, now: u64, window: u64) -> u64 {
        self.0
            .iter()
            .filter(|(at, _)| *at + window > now)
            .map(|(_, cost)| u64::from(*cost))
            .sum()
    }
}

fn steps() -> impl Strategy<Value = Vec<(u64, u32)>> {
    proptest::collection::vec(
        (
            prop_oneof![3 => Just(0u64), 6 => 0u64..300_000_000, 1 => 0u64..3_000_000_000],
            0u32..6,
        ),
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn exact_window_matches_a_log(
        limit in 1u32..12,
        window_ms in 1u64..2_000,
        steps in steps(),
    ) {
        let window = window_ms * 1_000_000;
        let quota = Quota::with_period(limit, Duration::from_millis(window_ms)).unwrap();
        let clock = ManualClock::new();
        let limiter = ExactWindow::keyed(quota).clock(clock.clone()).build().unwrap();
        let mut log = Log::default();
        for (step, cost) in steps {
            clock.advance(Duration::from_nanos(step));
            let now = clock.now().as_nanos();
            let Ok(decision) = limiter.check_n(&(), cost) else {
                prop_assert!(cost > limit);
                continue;
            };
            let live = log.in_window(now, window);
            let expected = live + u64::from(cost) <= u64::from(limit);
            prop_assert_eq!(decision.is_allowed(), expected);
            if expected && cost > 0 {
                log.0.push((now, cost));
                prop_assert_eq!(u64::from(decision.remaining()), u64::from(limit) - live - u64::from(cost));
            } else if !expected {
                // Retry after: when enough of the oldest admissions leave.
                let retry = decision.retry_after().unwrap().as_nanos() as u64;
                prop_assert!(log.in_window(now + retry, window) + u64::from(cost) <= u64::from(limit));
                prop_assert!(retry == 0 || log.in_window(now + retry - 1, window) + u64::from(cost) > u64::from(limit));
            }
        }
    }

    #[test]
    fn approximate_window_stays_within_its_bound(
        limit in 1u32..30,
        window_ms in 1u64..2_000,
        steps in steps(),
    ) {
        let window = window_ms * 1_000_000;
        let quota = Quota::with_period(limit, Duration::from_millis(window_ms)).unwrap();
        let clock = ManualClock::new();
        let limiter = SlidingWindow::keyed(quota).clock(clock.clone()).build().unwrap();
        let mut log = Log::default();
        let limit = u128::from(limit);
        let length = u128::from(window);
        for (step, cost) in steps {
            clock.advance(Duration::from_nanos(step));
            let now = clock.now().as_nanos();
            let Ok(decision) = limiter.check_n(&(), cost) else {
                prop_assert!(u128::from(cost) > limit);
                continue;
            };
            let start = now - now % window;
            let elapsed = u128::from(now - start);
            let previous = u128::from(log.between(start.saturating_sub(window), start));
            let exact = u128::from(log.in_window(now, window)) + u128::from(cost);
            if decision.is_allowed() {
                // exact + cost ≤ limit + previous × e / W
                prop_assert!(exact * length <= limit * length + previous * elapsed,
                    "allowed {exact} with limit {limit}, previous {previous}, e {elapsed}");
                if cost > 0 {
                    log.0.push((now, cost));
                }
            } else {
                // exact + cost > limit − 1 − previous × (W − e) / W
                prop_assert!(exact * length + length + previous * (length - elapsed) > limit * length,
                    "denied {exact} with limit {limit}, previous {previous}, e {elapsed}");
            }
            // Whatever happens, never more than 2 × limit − 1 in any window.
            prop_assert!(u128::from(log.in_window(now, window)) < 2 * limit);
        }
    }
}

#[test]
fn steady_traffic_is_estimated_closely() {
    // Evenly spread requests are what the estimate assumes. Under the limit
    // (40 a second against 50) both windows admit everything. At twice the
    // limit each window's admissions bunch up at its start, which the
    // estimate over-weights: it admits 4,902 against the exact 5,000 over
    // 100 s (2 % fewer; never more).
    let quota = Quota::per_second(50).unwrap();
    for (every, offered) in [
        (Duration::from_millis(25), 4_000),
        (Duration::from_millis(10), 10_000),
    ] {
        let clock = ManualClock::new();
        let approximate = SlidingWindow::keyed(quota)
            .clock(clock.clone())
            .build()
            .unwrap();
        let exact = ExactWindow::keyed(quota)
            .clock(clock.clone())
            .build()
            .unwrap();
        let (mut by_approximate, mut by_exact) = (0i64, 0i64);
        for _ in 0..offered {
            clock.advance(every);
            by_approximate += i64::from(approximate.check(&1u8).is_allowed());
            by_exact += i64::from(exact.check(&1u8).is_allowed());
        }
        assert!(by_exact <= offered);
        assert!(
            by_approximate <= by_exact && (by_exact - by_approximate) * 100 <= 3 * by_exact,
            "{by_approximate} against {by_exact}"
        );
        if offered == 4_000 {
            assert_eq!((by_approximate, by_exact), (4_000, 4_000));
        }
    }
}

#[test]
fn the_worst_case_is_twice_the_limit() {
    let clock = ManualClock::new();
    let limiter = SlidingWindow::keyed(Quota::per_second(10).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    // Ten at the very end of one window...
    clock.set(Instant::from_nanos(999_999_999));
    for _ in 0..10 {
        assert!(limiter.check(&()).is_allowed());
    }
    // ...and nine more just before the next one ends: nineteen within one
    // second, as documented.
    clock.set(Instant::from_nanos(1_950_000_000));
    let mut admitted = 0;
    while limiter.check(&()).is_allowed() {
        admitted += 1;
    }
    assert_eq!(admitted, 9);
}

#[test]
fn retry_after_is_when_the_estimate_makes_room() {
    let clock = ManualClock::new();
    let limiter = SlidingWindow::keyed(Quota::per_second(4).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..4 {
        assert!(limiter.check(&()).is_allowed());
    }
    let retry = limiter.check(&()).retry_after().unwrap();
    // Next window at 1 s; the previous 4 must weigh at most 3: 1/4 in.
    assert_eq!(retry, Duration::from_millis(1_250));
    clock.advance(retry - Duration::from_nanos(1));
    assert!(limiter.check(&()).is_denied());
    clock.advance(Duration::from_nanos(1));
    assert!(limiter.check(&()).is_allowed());
}

#[test]
fn windows_reject_a_separate_burst_and_huge_logs() {
    let quota = Quota::per_second(10).unwrap().burst(20).unwrap();
    assert!(matches!(
        SlidingWindow::<u64>::keyed(quota).build(),
        Err(BuildError::WindowBurst {
            count: 10,
            burst: 20
        })
    ));
    assert!(matches!(
        ExactWindow::<u64>::keyed(quota).build(),
        Err(BuildError::WindowBurst { .. })
    ));
    let huge = Quota::per_minute(MAX_EXACT_LIMIT + 1).unwrap();
    assert!(matches!(
        ExactWindow::<u64>::keyed(huge).build(),
        Err(BuildError::ExactWindowTooLarge { .. })
    ));
}

#[test]
fn refunds_undo_a_check() {
    let clock = ManualClock::new();
    let quota = Quota::per_second(2).unwrap();
    let approximate = SlidingWindow::keyed(quota)
        .clock(clock.clone())
        .build()
        .unwrap();
    let exact = ExactWindow::keyed(quota)
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(approximate.check(&"k").is_allowed());
        assert!(exact.check(&"k").is_allowed());
    }
    approximate.refund(&"k", 1);
    exact.refund(&"k", 1);
    assert!(approximate.check(&"k").is_allowed());
    assert!(exact.check(&"k").is_allowed());
    assert!(approximate.check(&"k").is_denied());
    assert!(exact.check(&"k").is_denied());
}

#[test]
fn idle_windows_are_forgotten() {
    let clock = ManualClock::new();
    let quota = Quota::per_second(2).unwrap();
    let approximate = SlidingWindow::keyed(quota)
        .max_keys(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let exact = ExactWindow::keyed(quota)
        .max_keys(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(approximate.check(&1u8).is_allowed());
    assert!(exact.check(&1u8).is_allowed());
    assert!(approximate.check(&2u8).is_denied(), "full of an active key");
    assert!(exact.check(&2u8).is_denied(), "full of an active key");
    clock.advance(Duration::from_secs(2));
    assert!(approximate.check(&2u8).is_allowed());
    assert!(exact.check(&2u8).is_allowed());
    assert_eq!(approximate.tracked_keys(), 1);
    assert_eq!(exact.tracked_keys(), 1);
}

/// An exact window's idle key holds a whole log (`limit` timestamps). Idle
/// keys give it back as new keys arrive, not only once the table is full:
/// each insert moves a hand over a few buckets of its shard and forgets the
/// idle keys there. 1,000 keys fill the table, go idle, and 600 new keys
/// later none of them is left (the shard's 2,048 buckets are passed in 512
/// inserts); before, the table stayed full of them, every new key taking
/// the place of one old one.
#[test]
fn an_exact_windows_idle_keys_give_their_logs_back_as_new_keys_arrive() {
    let clock = ManualClock::new();
    let limiter = ExactWindow::<u64>::keyed(Quota::per_second(50).unwrap())
        .max_keys(1_000)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    for key in 0..1_000 {
        assert!(limiter.check(&key).is_allowed());
    }
    assert_eq!(limiter.tracked_keys(), 1_000);
    clock.advance(Duration::from_secs(2));
    for key in 1_000..1_600 {
        assert!(limiter.check(&key).is_allowed());
    }
    assert_eq!(limiter.tracked_keys(), 600);
}
