//! GCRA limiters (direct, keyed, keyed with a bounded table) against the
//! reference token bucket (`models/gcra.rs`), decision by decision, with
//! quotas and costs from anywhere in their valid ranges: the edges (`u32::MAX`
//! costs, 100-year refills, one-nanosecond intervals) are where integer
//! arithmetic in a limiter goes wrong.

use std::time::Duration;

use surgeguard::clock::{Clock, ManualClock};
use surgeguard::limit::{Gcra, Quota, WhenFull};

use super::input::Input;
use crate::models::gcra::{BoundedKeyedModel, ModelQuota};

/// The model's sums stay in `u64` while the clock stays under 2^62 ns
/// (146 years); steps that would pass it are played as zero.
const CLOCK_CEILING: u64 = 1 << 62;
const MOST_CHECKS: usize = 500;

fn quota(input: &mut Input) -> Option<Quota> {
    let quota = match input.u8() % 4 {
        0 => Quota::per_second(input.edgy_u32()),
        1 => Quota::per_minute(1 + u32::from(input.u16())),
        2 => Quota::with_period(input.edgy_u32(), Duration::from_nanos(input.edgy_u64())),
        _ => Quota::with_period(
            1 + u32::from(input.u8()),
            Duration::from_millis(input.below(10_000)),
        ),
    };
    let quota = if input.bool() {
        quota.and_then(|quota| quota.burst(input.edgy_u32()))
    } else {
        quota
    };
    // A refused quota is a named error; that it never panics is the check.
    quota.ok()
}

fn step(input: &mut Input) -> u64 {
    match input.u8() % 5 {
        0 => 0,
        1 => u64::from(input.u16()),
        2 => u64::from(input.u32()),
        3 => input.u64() % (1 << 40),
        _ => input.edgy_u64(),
    }
}

fn cost(input: &mut Input, burst: u32) -> u32 {
    match input.u8() % 4 {
        0 => 1,
        1 => input.u8() as u32 % (burst.saturating_add(2)),
        2 => input.edgy_u32(),
        _ => burst,
    }
}

pub fn run(bytes: &[u8]) {
    let mut input = Input::new(bytes);
    let Some(quota) = quota(&mut input) else {
        return;
    };
    let burst = quota.max_burst();
    let clock = ManualClock::new();
    let advance = |input: &mut Input| {
        let step = step(input);
        let now = clock.now().as_nanos();
        if now.saturating_add(step) < CLOCK_CEILING {
            clock.advance(Duration::from_nanos(step));
        }
        clock.now().as_nanos()
    };
    match input.u8() % 3 {
        0 => {
            let limiter = Gcra::direct(quota).clock(clock.clone()).build().unwrap();
            let model = ModelQuota::of(quota);
            let mut bucket = model.full_bucket();
            for _ in 0..MOST_CHECKS {
                if input.is_empty() {
                    break;
                }
                let now = advance(&mut input);
                let cost = cost(&mut input, burst);
                model.assert_answer(&mut bucket, now, cost, limiter.check_n(cost));
            }
        }
        mode => {
            let max_keys = if mode == 1 {
                8
            } else {
                1 + input.below(3) as usize
            };
            let share = input.bool();
            let policy = if share {
                WhenFull::ShareOverflowBucket
            } else {
                WhenFull::DenyNewKeys
            };
            let limiter = Gcra::keyed(quota)
                .max_keys(max_keys)
                .shards(1)
                .when_full(policy)
                .clock(clock.clone())
                .build()
                .unwrap();
            let mut model = BoundedKeyedModel::new(quota, max_keys, share);
            for _ in 0..MOST_CHECKS {
                if input.is_empty() {
                    break;
                }
                let now = advance(&mut input);
                let key = input.u8() % 8;
                let cost = cost(&mut input, burst);
                model.assert_answer(&key, now, cost, limiter.check_n(&key, cost));
                assert!(limiter.tracked_keys() <= max_keys);
            }
        }
    }
}
