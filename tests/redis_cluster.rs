//! The Redis limiters and the cache tier on a real Redis Cluster: three
//! masters and three replicas started by the test on loopback ports
//! (`tests/redis_support/cluster.rs`).
//!
//! Why these cannot flake: the quotas refill nothing within a test (per
//! day), calls to a cluster that is up get a timeout far longer than a
//! local call takes, and the failover is waited for (the cluster's own
//! `cluster_state:ok`, then a decision that reaches Redis), never assumed
//! to take a given time. What is asserted during the failover holds
//! whatever its timing: no call errors or hangs, and nothing is admitted
//! beyond the quota (the fallback fails closed).
#![cfg(feature = "redis")]

mod redis_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_support::cluster;
use surgeguard::cache::tier::{BigEndian, TieredCache, Utf8};
use surgeguard::cache::Cache;
use surgeguard::clock::ManualClock;
use surgeguard::limit::Quota;
use surgeguard::redis::{Fallback, RedisGcra, RedisTier, RedisWindow};

const UP_TIMEOUT: Duration = Duration::from_secs(30);

fn per_day(count: u32) -> Quota {
    Quota::with_period(count, Duration::from_secs(86_400)).unwrap()
}

fn seeds(cluster: &cluster::RedisCluster) -> Vec<String> {
    cluster.urls()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_every_master_and_no_script_crosses_slots() {
    let Some(cluster) = cluster::start("keys_spread_over_every_master_and_no_script_crosses_slots")
    else {
        return;
    };
    let urls = seeds(&cluster);
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let gcra = RedisGcra::cluster(&urls[..1], per_day(5))
        .prefix("spread:")
        .timeout(UP_TIMEOUT)
        .build()
        .await
        .unwrap();
    let window = RedisWindow::cluster(&urls, per_day(5))
        .prefix("window:")
        .timeout(UP_TIMEOUT)
        .build()
        .await
        .unwrap();
    for client in 0..300 {
        let key = format!("client-{client}");
        assert!(gcra.check(&key).await.unwrap().is_allowed());
        assert!(window.check(&key).await.unwrap().is_allowed());
    }
    for limiter in [&gcra, &window] {
        let stats = limiter.stats();
        assert_eq!(stats.redis_decisions, 300, "{stats:?}");
        assert_eq!(stats.fallback_decisions, 0, "{stats:?}");
    }
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for master in masters {
        assert!(cluster.keys_on(master) > 0, "master {master} holds no key");
    }
}

#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_layers_on_a_cluster_admit_exactly_the_shared_quota() {
    use surgeguard::http::{HeaderKey, RateLimitLayer};
    use tower::{service_fn, Layer, ServiceExt};

    let Some(cluster) = cluster::start("four_layers_on_a_cluster_admit_exactly_the_shared_quota")
    else {
        return;
    };
    let urls = seeds(&cluster);
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let admitted = Arc::new(AtomicU64::new(0));
    let mut fleet = Vec::new();
    for _ in 0..4 {
        let limiter = RedisGcra::cluster(&urls, per_day(10))
            .prefix("layers:")
            .timeout(UP_TIMEOUT)
            .build()
            .await
            .unwrap();
        let admitted = Arc::clone(&admitted);
        let handler = service_fn(move |_: http::Request<()>| {
            admitted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
        });
        fleet.push(
            RateLimitLayer::new(limiter)
                .key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
                .layer(handler),
        );
    }
    // Three clients, forty requests each, spread over the four servers:
    // their keys live on different masters.
    for client in ["alice", "bob", "carol"] {
        let mut statuses = Vec::new();
        for request in 0..40 {
            let response = fleet[request % 4]
                .clone()
                .oneshot(
                    http::Request::builder()
                        .header("x-api-key", client)
                        .body(())
                        .unwrap(),
                )
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            10,
            "{client}: {statuses:?}"
        );
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_run_fails_over_without_errors_or_over_admission() {
    let Some(mut cluster) =
        cluster::start("a_master_killed_mid_run_fails_over_without_errors_or_over_admission")
    else {
        return;
    };
    let urls = seeds(&cluster);
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let clock = ManualClock::new();
    let limiter = RedisGcra::cluster(&urls, per_day(40))
        .prefix("failover:")
        // Short calls: a dead master costs each call at most this long.
        .timeout(Duration::from_millis(300))
        .breaker(3, Duration::from_secs(1))
        .clock(clock.clone())
        .on_unavailable(Fallback::FailClosed)
        .build()
        .await
        .unwrap();
    let key = "tenant-7";
    let mut admitted = 0;
    for _ in 0..10 {
        admitted += u32::from(limiter.check(key).await.unwrap().is_allowed());
    }
    assert_eq!(admitted, 10);
    // Every admission is on the replica too before the master dies (Redis
    // replicates asynchronously: what a master acknowledged and did not
    // pass on is lost in a failover, the documented bound).
    cluster.replicate();
    let victim = cluster.master_of(&format!("failover:{{{key}}}"));
    cluster.kill(victim);

    // During the failover: every call answers (fallback: closed), none errs.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "Redis never answered again");
        let before = limiter.stats().redis_decisions;
        let decision = limiter
            .check(key)
            .await
            .expect("no error reaches the caller");
        admitted += u32::from(decision.is_allowed());
        if limiter.stats().redis_decisions > before {
            break; // a replica took over and answered
        }
        // Let the breaker probe again.
        clock.advance(Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.wait_until_ok();
    for _ in 0..60 {
        admitted += u32::from(limiter.check(key).await.unwrap().is_allowed());
    }
    assert_eq!(
        admitted, 40,
        "the quota, no more (the replica had every admission)"
    );
    assert!(limiter.stats().breaker_opened >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_tier_loads_once_per_key_for_a_fleet_on_a_cluster() {
    let Some(cluster) =
        cluster::start("the_cache_tier_loads_once_per_key_for_a_fleet_on_a_cluster")
    else {
        return;
    };
    let urls = seeds(&cluster);
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let mut fleet = Vec::new();
    for _ in 0..4 {
        let tier = Arc::new(
            RedisTier::cluster(&urls)
                .prefix("tier:")
                .timeout(UP_TIMEOUT)
                .build()
                .await
                .unwrap(),
        );
        let cache = TieredCache::builder(
            Cache::<u64, String>::builder()
                .max_capacity(1_000)
                .build()
                .unwrap(),
            Arc::clone(&tier),
        )
        .keys(BigEndian)
        .values(Utf8)
        .lease(Duration::from_secs(120))
        .build()
        .unwrap();
        fleet.push((cache, tier));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (_, tier) in &fleet {
        while tier.stats().backplane_subscriptions == 0 {
            assert!(Instant::now() < deadline, "the backplane never came up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let loads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..800u64 {
        let cache = fleet[(i % 4) as usize].0.clone();
        let loads = Arc::clone(&loads);
        tasks.push(tokio::spawn(async move {
            let key = i % 100;
            cache
                .get_or_try_load(&key, move |key| async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, std::io::Error>(format!("value {key}"))
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 100);
    for (cache, _) in &fleet {
        assert_eq!(cache.stats().remote_errors, 0);
    }
    // An insert reaches the others through the cluster's pub/sub.
    for (cache, _) in &fleet[1..] {
        cache
            .get_or_try_load(&1, |_| async {
                Err::<String, _>(std::io::Error::other("loaded"))
            })
            .await
            .unwrap();
    }
    fleet[0].0.insert(1, "new".to_owned()).await.unwrap();
    for (cache, _) in &fleet[1..] {
        while cache.get(&1).is_some_and(|value| value == "value 1") {
            assert!(
                Instant::now() < deadline,
                "the insert never reached an instance"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(cluster.masters().iter().all(|m| cluster.keys_on(*m) > 0));
}
