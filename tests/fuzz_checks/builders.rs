//! Builder arguments from anywhere in their types' ranges: every builder
//! either refuses them with a named error or builds something that then
//! works, including when the clock is pushed to the end of time. Zero,
//! `u64::MAX`, `Duration::MAX`, NaN and infinite shares are all fair game.

use std::time::Duration;

use surgeguard::cache::Cache;
use surgeguard::clock::ManualClock;
use surgeguard::limit::{CheckError, Decision, ExactWindow, Gcra, Quota, SlidingWindow, WhenFull};
use surgeguard::shed::{AdaptiveLimit, Outcome, Priority, Shedder};

use super::input::Input;

fn duration(input: &mut Input) -> Duration {
    match input.u8() % 6 {
        0 => Duration::ZERO,
        1 => Duration::MAX,
        2 => Duration::from_secs(input.edgy_u64()),
        3 => Duration::from_nanos(input.edgy_u64()),
        _ => Duration::from_millis(u64::from(input.u16())),
    }
}

fn share(input: &mut Input) -> f64 {
    match input.u8() % 7 {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => -0.5,
        3 => 1.0,
        4 => f64::from_bits(input.u64()),
        _ => f64::from(input.u8()) / 256.0,
    }
}

/// Counts (keys, shards, stripes, queue places). Up to 2^24, and
/// `usize::MAX`, whose reservation fails at once; between the two, a table
/// reserved up front is as large as the machine allows, which is the
/// caller's choice rather than a bug (and would only measure the fuzzing
/// machine's memory).
fn count(input: &mut Input) -> usize {
    match input.u8() % 4 {
        0 => 0,
        1 => usize::MAX,
        2 => 1 << (input.u8() % 25),
        _ => usize::from(input.u8()),
    }
}

fn advance(input: &mut Input, clock: &ManualClock) {
    // `advance` saturates at the clock's far future: jumping there is part
    // of the test.
    clock.advance(duration(input));
}

/// A refused setting must say something a user can act on.
fn named(error: &dyn std::error::Error) {
    assert!(
        !error.to_string().trim().is_empty(),
        "{error:?} has no message"
    );
}

fn cache(input: &mut Input) {
    let clock = ManualClock::new();
    let weighted = input.bool();
    let capacity = input.edgy_u64();
    let mut builder = Cache::<u64, u64>::builder().clock(clock.clone());
    builder = if weighted {
        builder
            .max_weight(capacity)
            .weigher(|_, value: &u64| *value as u32)
    } else {
        builder.max_capacity(capacity)
    };
    for _ in 0..input.u8() % 8 {
        builder = match input.u8() % 8 {
            0 => builder.time_to_live(duration(input)),
            1 => builder.time_to_idle(duration(input)),
            2 => builder.shards(count(input)),
            3 => builder.refresh_after(duration(input)),
            4 => builder.stale_while_revalidate(duration(input)),
            5 => builder.stale_if_error(duration(input)),
            6 => builder.load_timeout(duration(input)),
            _ => builder.background_reloads(count(input)),
        };
    }
    let cache = match builder.build() {
        Ok(cache) => cache,
        Err(error) => return named(&error),
    };
    while !input.is_empty() {
        let key = u64::from(input.u8() % 16);
        match input.u8() % 6 {
            0 => cache.insert(key, input.edgy_u64()),
            1 => cache.insert_with_ttl(key, input.edgy_u64(), duration(input)),
            2 => {
                let _ = cache.get(&key);
            }
            3 => advance(input, &clock),
            4 => {
                let value = input.edgy_u64();
                let _ = cache.get_or_try_load(&key, move |_| {
                    if value.is_multiple_of(3) {
                        Err("origin down")
                    } else {
                        Ok(value)
                    }
                });
            }
            _ => cache.run_maintenance(),
        }
        assert!(cache.weighted_size() <= cache.capacity());
        if !weighted {
            assert!(cache.len() as u64 <= cache.capacity());
        }
    }
}

fn quota(input: &mut Input) -> Option<Quota> {
    let quota = Quota::with_period(input.edgy_u32(), duration(input));
    let quota = match input.bool() {
        true => quota.and_then(|quota| quota.burst(input.edgy_u32())),
        false => quota,
    };
    match quota {
        Ok(quota) => Some(quota),
        Err(error) => {
            named(&error);
            None
        }
    }
}

/// A checker the fuzzer's keys and costs go to.
type Check = Box<dyn Fn(u64, u32) -> Result<Decision, CheckError>>;

/// The fuzzer's settings for any keyed limiter.
struct KeyedSettings {
    max_keys: usize,
    shards: usize,
    policy: WhenFull,
    clock: ManualClock,
}

/// Builds a keyed limiter's builder with the settings: a checker, or
/// `None` after checking the refusal is named. (A macro: the rule types are
/// not nameable outside the crate, so no function can be generic over them.)
macro_rules! keyed_check {
    ($settings:expr, $builder:expr) => {{
        let settings: &KeyedSettings = $settings;
        let built = $builder
            .max_keys(settings.max_keys)
            .shards(settings.shards)
            .when_full(settings.policy)
            .clock(settings.clock.clone())
            .build();
        match built {
            Ok(limiter) => Some(Box::new(move |key, cost| limiter.check_n(&key, cost)) as Check),
            Err(error) => {
                named(&error);
                None
            }
        }
    }};
}

fn limiter(input: &mut Input) {
    let Some(quota) = quota(input) else {
        return;
    };
    let clock = ManualClock::new();
    let policy = input.pick(&[WhenFull::DenyNewKeys, WhenFull::ShareOverflowBucket]);
    let (max_keys, shards) = (count(input), count(input));
    // Direct limiters have no key; keyed ones take the fuzzer's.
    let settings = KeyedSettings {
        max_keys,
        shards,
        policy,
        clock: clock.clone(),
    };
    let check: Option<Check> = match input.u8() % 4 {
        0 => match Gcra::direct(quota)
            .stripes(count(input))
            .clock(clock.clone())
            .build()
        {
            Ok(limiter) => Some(Box::new(move |_, cost| limiter.check_n(cost))),
            Err(error) => {
                named(&error);
                None
            }
        },
        1 => keyed_check!(&settings, Gcra::keyed::<u64>(quota)),
        2 => keyed_check!(&settings, SlidingWindow::<u64>::keyed(quota)),
        _ => keyed_check!(&settings, ExactWindow::<u64>::keyed(quota)),
    };
    let Some(check) = check else {
        return;
    };
    while !input.is_empty() {
        let key = u64::from(input.u8() % 8);
        if input.u8().is_multiple_of(4) {
            advance(input, &clock);
        }
        match check(key, input.edgy_u32()) {
            Ok(decision) => {
                assert!(decision.remaining() <= quota.max_burst().max(quota.count()));
                if let Some(wait) = decision.retry_after() {
                    assert!(decision.is_denied());
                    assert!(wait > Duration::ZERO);
                }
            }
            Err(error) => named(&error),
        }
    }
}

fn shedder(input: &mut Input) {
    let clock = ManualClock::new();
    let mut builder = Shedder::builder().clock(clock.clone());
    builder = match input.u8() % 4 {
        0 => builder.max_concurrency(input.edgy_u32()),
        kind => {
            let limit = match kind {
                1 => AdaptiveLimit::aimd(),
                2 => AdaptiveLimit::vegas(),
                _ => AdaptiveLimit::gradient(),
            };
            let limit = limit.min(input.edgy_u32()).max(input.edgy_u32());
            let limit = match input.bool() {
                true => limit.initial(input.edgy_u32()),
                false => limit,
            };
            builder.limit(limit.latency_threshold(duration(input)))
        }
    };
    if input.bool() {
        builder = builder.critical_reserve(share(input));
    }
    if input.bool() {
        builder = builder.sheddable_margin(share(input));
    }
    if input.bool() {
        builder = builder.queue(count(input), duration(input));
    }
    let shedder = match builder.build() {
        Ok(shedder) => shedder,
        Err(error) => return named(&error),
    };
    let mut held = Vec::new();
    while !input.is_empty() {
        match input.u8() % 4 {
            0 => {
                let priority =
                    input.pick(&[Priority::Sheddable, Priority::Normal, Priority::Critical]);
                match shedder.try_acquire(priority) {
                    Ok(permit) => held.push(permit),
                    Err(rejected) => {
                        assert!(rejected.retry_after() > Duration::ZERO);
                    }
                }
            }
            1 => advance(input, &clock),
            2 => {
                if let Some(permit) = held.pop() {
                    let outcome =
                        input.pick(&[Outcome::Success, Outcome::Dropped, Outcome::Ignore]);
                    permit.record(outcome);
                }
            }
            _ => drop(held.pop()),
        }
        assert_eq!(shedder.in_flight() as usize, held.len());
        assert!(shedder.limit() >= 1);
    }
    held.clear();
    assert_eq!(shedder.in_flight(), 0, "every permit given back");
}

pub fn run(bytes: &[u8]) {
    let mut input = Input::new(bytes);
    match input.u8() % 3 {
        0 => cache(&mut input),
        1 => limiter(&mut input),
        _ => shedder(&mut input),
    }
}
