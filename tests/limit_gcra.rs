//! GCRA limiters against a plainly written reference model
//! (`models/gcra.rs`), on a manual clock: every decision (allowed or not,
//! remaining, retry after) must match exactly, request by request.

use std::time::Duration;

use proptest::prelude::*;
#[path = "models/gcra.rs"]
mod model;

use model::{BoundedKeyedModel, ModelQuota};
use surgeguard::clock::{Clock, Instant, ManualClock};
use surgeguard::limit::{
    BuildError, CheckError, Decision, Gcra, Quota, QuotaError, RateLimiter, WhenFull, MAX_PERIOD,
};

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u64..3_000, 1u32..12).prop_map(|(count, period_ms, burst)| {
        Quota::with_period(count, Duration::from_millis(period_ms))
            .and_then(|quota| quota.burst(burst))
            .expect("valid quota")
    })
}

/// (time step in nanoseconds, key, cost)
fn requests(keys: u8) -> impl Strategy<Value = Vec<(u64, u8, u32)>> {
    proptest::collection::vec(
        (
            prop_oneof![3 => Just(0u64), 5 => 0u64..200_000_000, 1 => 0u64..5_000_000_000],
            0..keys,
            0u32..14,
        ),
        1..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn direct_matches_the_model(quota in quota_strategy(), steps in requests(1)) {
        let clock = ManualClock::new();
        let limiter = Gcra::direct(quota).clock(clock.clone()).build().unwrap();
        let model = ModelQuota::of(quota);
        let mut bucket = model.full_bucket();
        for (step, _, cost) in steps {
            clock.advance(Duration::from_nanos(step));
            let now = clock.now().as_nanos();
            model.assert_answer(&mut bucket, now, cost, limiter.check_n(cost));
        }
    }

    #[test]
    fn keyed_matches_the_model(quota in quota_strategy(), steps in requests(8)) {
        let clock = ManualClock::new();
        let limiter = Gcra::keyed(quota).max_keys(8).clock(clock.clone()).build().unwrap();
        // Room for every key: the bounded model never has to refuse one.
        let mut model = BoundedKeyedModel::new(quota, 8, false);
        for (step, key, cost) in steps {
            clock.advance(Duration::from_nanos(step));
            let now = clock.now().as_nanos();
            model.assert_answer(&key, now, cost, limiter.check_n(&key, cost));
        }
        prop_assert!(limiter.tracked_keys() <= 8);
    }

    /// Fewer slots than keys: a new key takes an idle key's slot, else it is
    /// denied; an active key is never forgotten (its decisions stay exact).
    #[test]
    fn bounded_keyed_matches_the_model(
        quota in quota_strategy(),
        max_keys in 1usize..4,
        share in any::<bool>(),
        steps in requests(8),
    ) {
        let clock = ManualClock::new();
        let policy = if share { WhenFull::ShareOverflowBucket } else { WhenFull::DenyNewKeys };
        let limiter = Gcra::keyed(quota)
            .max_keys(max_keys)
            .shards(1)
            .when_full(policy)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut model = BoundedKeyedModel::new(quota, max_keys, share);
        for (step, key, cost) in steps {
            clock.advance(Duration::from_nanos(step));
            let now = clock.now().as_nanos();
            model.assert_answer(&key, now, cost, limiter.check_n(&key, cost));
            prop_assert!(limiter.tracked_keys() <= max_keys);
        }
    }

    /// Striping never admits more than the unsplit bound.
    #[test]
    fn stripes_stay_under_the_bound(
        count in 4u32..40,
        steps in proptest::collection::vec((0u64..50_000_000, 1u32..3), 1..300),
    ) {
        let quota = Quota::per_second(count).unwrap();
        let clock = ManualClock::new();
        let striped = Gcra::direct(quota).stripes(4).clock(clock.clone()).build().unwrap();
        let mut admitted = 0u64;
        for (step, cost) in steps {
            clock.advance(Duration::from_nanos(step));
            admitted += u64::from(striped.check().is_allowed());
            if let Ok(decision) = striped.check_n(cost) {
                admitted += u64::from(decision.is_allowed()) * u64::from(cost);
            }
            let elapsed = clock.now().as_nanos();
            let interval = quota.emission_interval().as_nanos() as u64;
            prop_assert!(admitted * interval <= u64::from(count) * interval + elapsed);
        }
    }
}

#[test]
fn a_striped_limiter_denies_only_when_no_stripe_has_the_cost() {
    let clock = ManualClock::new();
    let limiter = Gcra::direct(Quota::per_second(8).unwrap())
        .stripes(4)
        .clock(clock.clone())
        .build()
        .unwrap();
    // One thread spends every stripe's two units, home first, then the rest.
    for _ in 0..8 {
        assert!(limiter.check().is_allowed());
    }
    let denied = limiter.check();
    assert_eq!(denied.remaining(), 0);
    // Each stripe refills at a quarter of the rate: the first unit comes
    // back after 500 ms (on all four stripes at once), where the unsplit
    // bucket would give one back every 125 ms. Same rate, lumpier.
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(500)));
    clock.advance(Duration::from_millis(499));
    assert!(limiter.check().is_denied());
    clock.advance(Duration::from_millis(1));
    for _ in 0..4 {
        assert!(limiter.check().is_allowed());
    }
    assert!(limiter.check().is_denied());
    assert_eq!(
        limiter.check_n(3),
        Err(CheckError::CostExceedsBurst { cost: 3, burst: 2 })
    );
}

#[test]
fn bad_quotas_are_named() {
    assert_eq!(Quota::per_second(0), Err(QuotaError::ZeroRate));
    assert_eq!(
        Quota::per_second(1).unwrap().burst(0),
        Err(QuotaError::ZeroBurst)
    );
    assert_eq!(
        Quota::with_period(1, Duration::ZERO),
        Err(QuotaError::ZeroPeriod)
    );
    assert!(matches!(
        Quota::with_period(1, MAX_PERIOD + Duration::from_nanos(1)),
        Err(QuotaError::PeriodTooLong { .. })
    ));
    assert!(matches!(
        Quota::with_period(11, Duration::from_nanos(10)),
        Err(QuotaError::RateAboveOnePerNanosecond { count: 11, .. })
    ));
    assert!(Quota::with_period(10, Duration::from_nanos(10)).is_ok());
}

#[test]
fn bad_builder_settings_are_named() {
    let quota = Quota::per_second(4).unwrap();
    assert_eq!(
        Gcra::keyed::<u64>(quota).max_keys(0).build().unwrap_err(),
        BuildError::ZeroMaxKeys
    );
    assert!(matches!(
        Gcra::direct(quota).stripes(3).build(),
        Err(BuildError::InvalidStripes { stripes: 3, .. })
    ));
    assert!(matches!(
        Gcra::direct(quota).stripes(8).build(),
        Err(BuildError::InvalidStripes {
            stripes: 8,
            burst: 4
        })
    ));
    assert!(matches!(
        Gcra::keyed::<u64>(quota).shards(0).build(),
        Err(BuildError::InvalidShards { shards: 0, .. })
    ));
}

#[test]
fn a_clock_going_backwards_neither_panics_nor_refills() {
    let clock = ManualClock::new();
    clock.set(Instant::from_nanos(10_000_000_000));
    let quota = Quota::per_second(2).unwrap();
    let direct = Gcra::direct(quota).clock(clock.clone()).build().unwrap();
    let keyed = Gcra::keyed(quota).clock(clock.clone()).build().unwrap();
    for _ in 0..2 {
        assert!(direct.check().is_allowed());
        assert!(keyed.check(&1u8).is_allowed());
    }
    clock.set(Instant::ZERO);
    assert!(direct.check().is_denied());
    assert!(keyed.check(&1u8).is_denied());
    // Even a look finds the bucket "more than empty": conservative.
    assert!(direct.check_n(0).unwrap().is_denied());
    clock.set(Instant::from_nanos(1 << 62));
    assert!(direct.check().is_allowed());
    assert!(keyed.check(&1u8).is_allowed());
    assert!(keyed.check(&1u8).is_allowed());
    assert!(keyed.check(&1u8).is_denied());
    // At the end of time arithmetic saturates; nothing panics.
    clock.set(Instant::FAR_FUTURE);
    let _ = direct.check();
    let _ = keyed.check_n(&1u8, 2);
}

#[test]
fn decisions_carry_the_headers() {
    let clock = ManualClock::new();
    let quota = Quota::per_second(100).unwrap().burst(200).unwrap();
    let limiter = Gcra::keyed(quota).clock(clock.clone()).build().unwrap();
    match limiter.check_n(&"client", 50).unwrap() {
        Decision::Allowed {
            limit,
            remaining,
            reset_after,
            policy_window,
        } => {
            assert_eq!((limit, remaining), (200, 150));
            assert_eq!(reset_after, Duration::from_millis(500));
            assert_eq!(policy_window, Duration::from_secs(2));
        }
        denied => panic!("{denied:?}"),
    }
    match limiter.check_n(&"client", 160).unwrap() {
        Decision::Denied {
            remaining,
            retry_after,
            reset_after,
            ..
        } => {
            assert_eq!(remaining, 150);
            assert_eq!(retry_after, Duration::from_millis(100));
            assert_eq!(reset_after, Duration::from_millis(500));
        }
        allowed => panic!("{allowed:?}"),
    }
}

#[test]
fn a_full_table_denies_until_the_earliest_slot_frees() {
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(Quota::per_second(1).unwrap())
        .max_keys(2)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(limiter.check(&1u8).is_allowed());
    clock.advance(Duration::from_millis(400));
    assert!(limiter.check(&2u8).is_allowed());
    let refused = limiter.check(&3u8);
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(600)));
    clock.advance(Duration::from_millis(600));
    assert!(
        limiter.check(&3u8).is_allowed(),
        "key 1 was idle: reclaimed"
    );
    assert!(limiter.check(&2u8).is_denied(), "key 2 is still limited");
    assert_eq!(limiter.tracked_keys(), 2);
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gcra>();
    assert_send_sync::<surgeguard::limit::GcraBuilder>();
    assert_send_sync::<surgeguard::limit::KeyedGcra<u64>>();
    assert_send_sync::<surgeguard::limit::KeyedGcra<String>>();
    assert_send_sync::<surgeguard::limit::SlidingWindow<std::net::IpAddr>>();
    assert_send_sync::<surgeguard::limit::ExactWindow<u64>>();
    fn send_sync_value<T: Send + Sync>(_: &T) {}
    send_sync_value(&Gcra::keyed::<u64>(Quota::per_second(1).unwrap()));
    assert_send_sync::<surgeguard::limit::AllOf<u64>>();
    assert_send_sync::<Decision>();
    assert_send_sync::<Quota>();
    assert_send_sync::<QuotaError>();
    assert_send_sync::<BuildError>();
    assert_send_sync::<CheckError>();
    fn assert_object_safe(_: &dyn RateLimiter<u64>) {}
    let limiter = Gcra::keyed::<u64>(Quota::per_second(1).unwrap())
        .build()
        .unwrap();
    assert_object_safe(&limiter);
}

#[test]
fn shadow_mode_allows_everything_and_counts_the_denials_of_the_wrapped_limit() {
    use surgeguard::limit::{RateLimiter, Shadow};
    let clock = ManualClock::new();
    let quota = Quota::per_second(2).unwrap();
    let enforced = Gcra::keyed::<u32>(quota)
        .clock(clock.clone())
        .build()
        .unwrap();
    let shadowed = Shadow::new(
        Gcra::keyed::<u32>(quota)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let mut denied = 0;
    for _ in 0..5 {
        denied += u64::from(enforced.check(&1).is_denied());
        let decision = shadowed.check(&1);
        assert!(decision.is_allowed());
        assert_eq!(decision.retry_after(), None);
    }
    assert_eq!(denied, 3);
    assert_eq!(
        shadowed.would_deny(),
        denied,
        "the same decisions, none enforced"
    );
    // A cost that can never pass is still an error.
    assert!(shadowed.check_n(&1, 3).is_err());
    clock.advance(std::time::Duration::from_secs(1));
    assert!(shadowed.check(&1).is_allowed());
    assert_eq!(
        shadowed.would_deny(),
        3,
        "the refilled bucket allows for real"
    );
}
