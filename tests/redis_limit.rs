//! The Redis limiters against a real `redis-server` (feature `redis`): a
//! fleet sharing one limit, the local over-limit cache, Redis dying and
//! coming back under each fallback, leases, and bad input.
//!
//! Why these cannot flake on a busy machine: a limiter talking to a server
//! the test started gets `UP_TIMEOUT`, far more than a call to a local
//! server takes, so no call fails because the machine was slow; calls fail
//! only where the test stopped Redis (or never started one), and the
//! failures counted are the ones it forces. Every breaker whose cool-down
//! matters runs on a `ManualClock`, so no probe goes out because real time
//! passed. The bounds that count real time (Redis refills on its own clock)
//! measure it, and allow for it.
#![cfg(feature = "redis")]

mod redis_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use surgeguard::clock::ManualClock;
use surgeguard::limit::{Gcra, Quota};
use surgeguard::redis::{BuildError, CheckError, Fallback, RedisGcra, RedisLimiter, RedisWindow};

/// The timeout of calls to a server that is up: a hang guard, never reached
/// by a local server, however busy the machine (the builder allows 60 s).
const UP_TIMEOUT: Duration = Duration::from_secs(30);

/// `n` checks of `key`, spread round-robin over `fleet`, all at once.
async fn hammer(fleet: &[Arc<RedisLimiter>], key: &'static str, n: usize) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let limiter = Arc::clone(&fleet[i % fleet.len()]);
            tokio::spawn(async move { limiter.check(key).await.unwrap().is_allowed() })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap());
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_four_admits_what_one_server_would() {
    let Some(redis) = redis_support::start("a_fleet_of_four_admits_what_one_server_would") else {
        return;
    };
    // One unit a second, bursts of 50: over a short test the refill is a
    // unit per second elapsed, so the reference is the burst plus that.
    let quota = Quota::per_hour(3_600).unwrap().burst(50).unwrap();
    let mut fleet = Vec::new();
    for _ in 0..4 {
        let limiter = RedisGcra::builder(&redis.url(), quota)
            .prefix("fleet:")
            .timeout(UP_TIMEOUT)
            .build()
            .await
            .unwrap();
        fleet.push(Arc::new(limiter));
    }
    let reference = Gcra::direct(quota)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let single_server = (0..400).filter(|_| reference.check().is_allowed()).count();
    assert_eq!(single_server, 50);

    let started = Instant::now();
    let allowed = hammer(&fleet, "shared", 400).await;
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(
        (single_server..=single_server + refill).contains(&allowed),
        "the fleet admitted {allowed}; one server admits {single_server} (+{refill} refill)"
    );
    let decided: u64 = fleet.iter().map(|l| l.stats().redis_decisions).sum();
    assert!(
        decided >= 51,
        "every admission and the first denials went to Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_a_sliding_window() {
    let Some(redis) = redis_support::start("a_fleet_shares_a_sliding_window") else {
        return;
    };
    let quota = Quota::per_hour(100).unwrap();
    let mut fleet = Vec::new();
    for _ in 0..4 {
        let limiter = RedisWindow::builder(&redis.url(), quota)
            .timeout(UP_TIMEOUT)
            .build()
            .await
            .unwrap();
        fleet.push(Arc::new(limiter));
    }
    assert_eq!(hammer(&fleet, "window", 300).await, 100);
    let denied = fleet[0].check("window").await.unwrap();
    assert!(denied.is_denied());
    assert!(denied.retry_after().unwrap() > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_key_is_answered_locally_until_its_retry_time() {
    let Some(redis) = redis_support::start("a_denied_key_is_answered_locally_until_its_retry_time")
    else {
        return;
    };
    let clock = ManualClock::new();
    let limiter = RedisGcra::builder(&redis.url(), Quota::per_hour(1).unwrap())
        .clock(clock.clone())
        .timeout(UP_TIMEOUT)
        .build()
        .await
        .unwrap();
    assert!(limiter.check("flooder").await.unwrap().is_allowed());
    let first_denial = limiter.check("flooder").await.unwrap();
    let retry = first_denial.retry_after().expect("denied");
    assert!(
        retry > Duration::from_secs(3_500),
        "an hour's quota: {retry:?}"
    );
    for _ in 0..100 {
        assert!(limiter.check("flooder").await.unwrap().is_denied());
    }
    let stats = limiter.stats();
    assert_eq!(
        stats.redis_decisions, 2,
        "the flood cost Redis nothing: {stats:?}"
    );
    assert_eq!(stats.over_limit_cache_denials, 100);
    // Past the retry time (on the local clock) the key goes to Redis again.
    clock.advance(retry);
    let _ = limiter.check("flooder").await.unwrap();
    assert_eq!(limiter.stats().redis_decisions, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dies_the_local_fallback_holds_and_redis_takes_over_again() {
    let Some(mut redis) = redis_support::start("redis_dies_the_local_fallback_holds") else {
        return;
    };
    let clock = ManualClock::new();
    let quota = Quota::per_hour(3_600).unwrap().burst(10).unwrap();
    let limiter = RedisGcra::builder(&redis.url(), quota)
        .on_unavailable(Fallback::Local { share: 0.5 })
        .breaker(2, Duration::from_secs(1))
        .timeout(UP_TIMEOUT)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    assert!(limiter.check("k").await.unwrap().is_allowed());
    assert_eq!(limiter.stats().redis_decisions, 1);

    redis.kill();
    for _ in 0..2 {
        let _ = limiter.check("k").await.unwrap();
    }
    let stats = limiter.stats();
    assert_eq!(stats.redis_failures, 2, "{stats:?}");
    assert_eq!(stats.breaker_opened, 1);
    assert!(stats.breaker_open);

    // Open: nobody waits on Redis; the local half of the quota decides
    // (burst 5, and the two failed calls already took 2).
    let allowed = {
        let mut allowed = 0;
        for _ in 0..20 {
            allowed += usize::from(limiter.check("k").await.unwrap().is_allowed());
        }
        allowed
    };
    assert_eq!(allowed, 3, "the local share's burst of 5, less the 2 above");
    assert_eq!(
        limiter.stats().redis_failures,
        2,
        "no call went to Redis while open"
    );
    assert_eq!(limiter.stats().fallback_decisions, 22);

    redis.restart();
    // After each cool-down one probe goes to Redis; the connection manager
    // may need one failed call to reconnect (the first probe waits for its
    // reconnection, within the timeout).
    let mut probes = 0;
    while limiter.stats().breaker_closed == 0 {
        probes += 1;
        assert!(
            probes <= 5,
            "Redis is back but the breaker stayed open: {:?}",
            limiter.stats()
        );
        clock.advance(Duration::from_secs(1));
        let _ = limiter.check("k").await.unwrap();
    }
    let before = limiter.stats().redis_decisions;
    let _ = limiter.check("k").await.unwrap();
    assert_eq!(
        limiter.stats().redis_decisions,
        before + 1,
        "decisions are Redis's again"
    );
    assert!(!limiter.stats().breaker_open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_from_the_start_each_policy_decides_at_once() {
    let url = format!("redis://127.0.0.1:{}/", redis_support::free_port());
    let quota = Quota::per_second(10).unwrap();
    // The breakers' cool-down on a clock that stands still: however long
    // the loop takes, no probe goes out after the breaker opened.
    let clock = ManualClock::new();
    let open = RedisGcra::builder(&url, quota)
        .on_unavailable(Fallback::FailOpen)
        .clock(clock.clone())
        .build()
        .await
        .expect("a limiter starts while Redis is down");
    let closed = RedisGcra::builder(&url, quota)
        .on_unavailable(Fallback::FailClosed)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    for _ in 0..20 {
        assert!(open.check("k").await.unwrap().is_allowed());
        let denied = closed.check("k").await.unwrap();
        assert!(denied.is_denied());
        assert!(denied.retry_after().unwrap() >= Duration::from_secs(1));
    }
    // The breaker opened after 3 failures: the other 17 never tried Redis.
    assert_eq!(open.stats().redis_failures, 3);
    assert_eq!(open.stats().fallback_decisions, 20);
    assert_eq!(closed.stats().breaker_opened, 1);
}

/// A GCRA limiter taking leases of 10 units for 5 s on `clock`.
async fn leasing(url: &str, prefix: &str, quota: Quota, clock: &ManualClock) -> RedisLimiter {
    RedisGcra::builder(url, quota)
        .prefix(prefix)
        .lease(10, Duration::from_secs(5))
        .timeout(UP_TIMEOUT)
        .clock(clock.clone())
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_save_round_trips_and_never_spend_a_unit_twice() {
    let Some(redis) = redis_support::start("leases_save_round_trips") else {
        return;
    };
    let clock = ManualClock::new();
    let quota = Quota::per_hour(3_600).unwrap().burst(50).unwrap();
    let mut fleet = Vec::new();
    for _ in 0..2 {
        fleet.push(Arc::new(
            leasing(&redis.url(), "lease:", quota, &clock).await,
        ));
    }
    let started = Instant::now();
    let mut allowed = 0;
    for i in 0..200 {
        allowed += usize::from(fleet[i % 2].check("hot").await.unwrap().is_allowed());
    }
    let refill = started.elapsed().as_secs() as usize + 1;
    // Every admitted unit came out of Redis's bucket: never more than one
    // server would admit. Units a lease still holds may go unspent: at most
    // (batch − 1) per server.
    assert!(allowed <= 50 + refill, "admitted {allowed}");
    assert!(allowed >= 50 - 2 * 9, "admitted {allowed}");
    let round_trips: u64 = fleet.iter().map(|l| l.stats().redis_decisions).sum();
    let leased: u64 = fleet.iter().map(|l| l.stats().lease_decisions).sum();
    assert!(leased >= 30, "most admissions came from leases: {leased}");
    assert!(
        round_trips <= 10,
        "about one round trip per batch, got {round_trips}"
    );

    // A lease that expires is dropped: its units are neither spent
    // locally nor given back to Redis.
    let fresh = leasing(&redis.url(), "expiry:", quota, &clock).await;
    assert!(fresh.check("k").await.unwrap().is_allowed()); // takes 10, keeps 9
    assert!(fresh.check("k").await.unwrap().is_allowed()); // from the lease
    assert_eq!(fresh.stats().lease_decisions, 1);
    clock.advance(Duration::from_secs(5));
    let after = fresh.check("k").await.unwrap();
    assert_eq!(
        fresh.stats().lease_decisions,
        1,
        "the expired lease was not spent"
    );
    assert_eq!(fresh.stats().redis_decisions, 2);
    // Redis gave out 10, then 10 more: 30 of the burst of 50 are left.
    assert!(after.remaining() <= 30, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error() {
    let quota = Quota::per_second(10).unwrap();
    for url in ["not a url", "http://127.0.0.1/", ""] {
        let err = RedisGcra::builder(url, quota).build().await.unwrap_err();
        assert!(matches!(err, BuildError::InvalidUrl(_)), "{url}: {err}");
    }
    let url = format!("redis://127.0.0.1:{}/", redis_support::free_port());
    let err = RedisGcra::builder(&url, quota)
        .on_unavailable(Fallback::Local { share: 0.0 })
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidShare(_)));
    let err = RedisGcra::builder(&url, quota)
        .timeout(Duration::ZERO)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BuildError::InvalidDuration {
            what: "timeout",
            ..
        }
    ));
    let err = RedisGcra::builder(&url, quota)
        .lease(11, Duration::from_secs(1))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BuildError::InvalidLeaseBatch {
            batch: 11,
            burst: 10
        }
    ));
    let err = RedisGcra::builder(&url, quota)
        .prefix(&"p".repeat(600))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::PrefixTooLong { .. }));

    let limiter = RedisGcra::builder(&url, quota)
        .max_key_len(64)
        .build()
        .await
        .unwrap();
    let long = "k".repeat(100);
    assert!(matches!(
        limiter.check(&long).await,
        Err(CheckError::KeyTooLong { max: 64, .. })
    ));
    assert_eq!(
        limiter.check_n("k", 11).await,
        Err(CheckError::CostExceedsBurst {
            cost: 11,
            burst: 10
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_type_is_a_script_error_and_flushed_scripts_reload() {
    let Some(redis) = redis_support::start("a_key_of_the_wrong_type_is_a_script_error") else {
        return;
    };
    let limiter = RedisGcra::builder(&redis.url(), Quota::per_second(10).unwrap())
        .prefix("t:")
        .timeout(UP_TIMEOUT)
        .build()
        .await
        .unwrap();
    let mut connection = redis.connection().await;
    let _: () = redis::cmd("LPUSH")
        .arg("t:{list}")
        .arg("x")
        .query_async(&mut connection)
        .await
        .unwrap();
    let err = limiter.check("list").await.unwrap_err();
    assert!(
        matches!(err, CheckError::Script(ref m) if m.contains("WRONGTYPE")),
        "{err}"
    );
    assert!(
        !limiter.stats().breaker_open,
        "a script error is not an outage"
    );

    // NOSCRIPT: the script is loaded again transparently.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(limiter.check("fine").await.unwrap().is_allowed());
    // Keys carry an expiry.
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:{fine}")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(ttl > 0, "every key expires: PTTL {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_decides_and_counts_but_denies_nobody() {
    // Redis is down and the policy is FailClosed: every check would be
    // denied; in shadow mode every one is allowed and counted.
    let url = format!("redis://127.0.0.1:{}/", redis_support::free_port());
    let limiter = RedisGcra::builder(&url, Quota::per_second(10).unwrap())
        .on_unavailable(Fallback::FailClosed)
        .shadow(true)
        .build()
        .await
        .unwrap();
    for _ in 0..7 {
        assert!(limiter.check("k").await.unwrap().is_allowed());
    }
    assert_eq!(limiter.stats().shadow_denials, 7);
    assert_eq!(limiter.stats().fallback_decisions, 7);
}
