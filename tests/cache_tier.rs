//! The fleet-wide cache tier against a real `redis-server` (feature
//! `redis`): several instances of a `TieredCache`, each with its own local
//! cache and its own connection, in one test process.
//!
//! Why these cannot flake on a busy machine: calls to a server the test
//! started get `UP_TIMEOUT`, far more than a local call takes, and leases
//! are longer than any test, so no lease expires and no call fails unless
//! the test forces it (stopping Redis, or planting a lease whose holder is
//! "dead"). Breakers run on a `ManualClock`: no probe goes out because real
//! time passed. What is counted (loader calls) follows from the protocol,
//! not from timing; where real time is waited for (an invalidation to
//! arrive, a planted lease to expire), the test waits for the event with a
//! generous bound and asserts only that it happened.
#![cfg(feature = "redis")]

mod redis_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surgeguard::cache::tier::{BigEndian, TierBuildError, TieredCache, Utf8};
use surgeguard::cache::{Cache, LoadError};
use surgeguard::clock::ManualClock;
use surgeguard::redis::RedisTier;

/// A hang guard for calls to a server that is up; never reached locally.
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longer than any test: no lease expires by itself unless a test plants
/// a short one.
const LONG_LEASE: Duration = Duration::from_secs(120);

struct Instance {
    cache: TieredCache<u64, String>,
    tier: Arc<RedisTier>,
    clock: ManualClock,
}

async fn instance(url: &str, prefix: &str, local: Cache<u64, String>) -> Instance {
    let clock = ManualClock::new();
    let tier = Arc::new(
        RedisTier::builder(url)
            .prefix(prefix)
            .timeout(UP_TIMEOUT)
            .clock(clock.clone())
            .build()
            .await
            .unwrap(),
    );
    let cache = TieredCache::builder(local, Arc::clone(&tier))
        .keys(BigEndian)
        .values(Utf8)
        .lease(LONG_LEASE)
        .build()
        .unwrap();
    Instance { cache, tier, clock }
}

fn local_cache() -> Cache<u64, String> {
    Cache::builder().max_capacity(10_000).build().unwrap()
}

async fn fleet(url: &str, prefix: &str, n: usize) -> Vec<Instance> {
    let mut fleet = Vec::new();
    for _ in 0..n {
        fleet.push(instance(url, prefix, local_cache()).await);
    }
    // Each instance drops its local tier when its backplane subscription
    // is made: wait for that before storing anything.
    let deadline = Instant::now() + Duration::from_secs(20);
    for instance in &fleet {
        while instance.tier.stats().backplane_subscriptions == 0 {
            assert!(Instant::now() < deadline, "the backplane never came up");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    fleet
}

/// A loader that counts its calls and takes a little while (so the others
/// really do wait for it).
fn counting_loader(
    loads: &Arc<AtomicU64>,
) -> impl FnOnce(
    u64,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<String, std::io::Error>> + Send>,
> + Send
       + 'static {
    let loads = Arc::clone(loads);
    move |key| {
        Box::pin(async move {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(format!("value {key}"))
        })
    }
}

/// 1,000 requests over `keys` keys, spread over `fleet`, all at once;
/// panics on any error.
async fn storm(fleet: &[Instance], keys: u64, offset: u64, loads: &Arc<AtomicU64>) {
    let mut tasks = Vec::new();
    for i in 0..1_000u64 {
        let cache = fleet[(i as usize) % fleet.len()].cache.clone();
        let loader = counting_loader(loads);
        let key = offset + i % keys;
        tasks.push(tokio::spawn(async move {
            let value = cache.get_or_try_load(&key, loader).await.unwrap();
            assert_eq!(value, format!("value {key}"));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_load_each_cold_key_once_for_the_fleet() {
    let Some(redis) = redis_support::start("four_instances_load_each_cold_key_once_for_the_fleet")
    else {
        return;
    };
    let fleet = fleet(&redis.url(), "once:", 4).await;
    let loads = Arc::new(AtomicU64::new(0));
    storm(&fleet, 100, 0, &loads).await;
    assert_eq!(
        loads.load(Ordering::SeqCst),
        100,
        "one origin load per key for the fleet"
    );
    let leased: u64 = fleet.iter().map(|i| i.cache.stats().leased_loads).sum();
    assert_eq!(leased, 100);
    let local_only: u64 = fleet.iter().map(|i| i.cache.stats().local_loads).sum();
    assert_eq!(local_only, 0);
    // Each instance asked Redis at most once per key (its local single
    // flight), so every other instance's first read was answered by Redis.
    for instance in &fleet {
        let stats = instance.cache.stats();
        assert_eq!(stats.remote_errors, 0);
        assert!(stats.leased_loads + stats.remote_hits <= 100, "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_joining_a_warm_fleet_starts_warm() {
    let Some(redis) = redis_support::start("a_fresh_instance_joining_a_warm_fleet_starts_warm")
    else {
        return;
    };
    let warm = fleet(&redis.url(), "warm:", 3).await;
    let loads = Arc::new(AtomicU64::new(0));
    storm(&warm, 1_000, 0, &loads).await;
    assert_eq!(loads.load(Ordering::SeqCst), 1_000);

    let newcomer = fleet(&redis.url(), "warm:", 1).await;
    let joined = Arc::new(AtomicU64::new(0));
    storm(&newcomer, 1_000, 0, &joined).await;
    // An instance with only its local tier would load all 1,000 keys.
    assert!(
        joined.load(Ordering::SeqCst) <= 10,
        "{} origin loads for a newcomer (at most 1 % of 1,000)",
        joined.load(Ordering::SeqCst)
    );
    assert_eq!(newcomer[0].cache.stats().remote_hits, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_on_one_instance_reaches_every_other_instance() {
    let Some(redis) =
        redis_support::start("an_insert_on_one_instance_reaches_every_other_instance")
    else {
        return;
    };
    let fleet = fleet(&redis.url(), "inv:", 4).await;
    let loads = Arc::new(AtomicU64::new(0));
    for instance in &fleet {
        for key in 0..100 {
            let value = instance
                .cache
                .get_or_try_load(&key, counting_loader(&loads))
                .await
                .unwrap();
            assert_eq!(value, format!("value {key}"));
        }
    }
    assert_eq!(loads.load(Ordering::SeqCst), 100);
    // Every instance holds every key locally now.
    for instance in &fleet {
        for key in 0..100 {
            assert_eq!(instance.cache.get(&key), Some(format!("value {key}")));
        }
    }
    for key in 0..100 {
        fleet[0]
            .cache
            .insert(key, format!("new {key}"))
            .await
            .unwrap();
    }
    assert_eq!(fleet[0].cache.get(&7).as_deref(), Some("new 7"));
    // The others drop their copies when the message arrives; their next
    // read comes from Redis and sees the new value.
    let deadline = Instant::now() + Duration::from_secs(20);
    for other in &fleet[1..] {
        for key in 0..100 {
            while other
                .cache
                .get(&key)
                .is_some_and(|old| old == format!("value {key}"))
            {
                assert!(Instant::now() < deadline, "key {key} never invalidated");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let now = other
                .cache
                .get_or_try_load(&key, counting_loader(&loads))
                .await
                .unwrap();
            assert_eq!(now, format!("new {key}"));
        }
        assert!(other.cache.stats().invalidations_heard >= 100);
    }
    // The writer did not invalidate its own copy (it ignores its own
    // messages): it still holds every new value.
    for key in 0..100 {
        assert_eq!(fleet[0].cache.get(&key), Some(format!("new {key}")));
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        100,
        "no origin load after the insert"
    );

    // An invalidate reaches them too, and the next read loads again.
    fleet[2].cache.invalidate(&5).await.unwrap();
    for other in [&fleet[0], &fleet[1], &fleet[3]] {
        while other.cache.get(&5).is_some() {
            assert!(Instant::now() < deadline, "key 5 never invalidated");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let reloaded = fleet[1]
        .cache
        .get_or_try_load(&5, counting_loader(&loads))
        .await
        .unwrap();
    assert_eq!(reloaded, "value 5");
    assert_eq!(loads.load(Ordering::SeqCst), 101);
}

/// The Redis keys of `key` under `prefix`, as the tier's module
/// documentation gives them.
fn lease_key(prefix: &str, key: u64) -> Vec<u8> {
    let mut lease = prefix.as_bytes().to_vec();
    lease.extend_from_slice(b"{=");
    lease.extend_from_slice(&key.to_be_bytes());
    lease.extend_from_slice(b"}l");
    lease
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_is_taken_over_when_it_expires() {
    let Some(redis) = redis_support::start("a_dead_holders_lease_is_taken_over_when_it_expires")
    else {
        return;
    };
    let fleet = fleet(&redis.url(), "dead:", 2).await;
    // An instance took the lease for key 1 and died: nobody will release
    // it; it ends when it expires.
    let mut plain = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg(lease_key("dead:", 1))
        .arg("the-dead-instance")
        .arg("PX")
        .arg(600_000)
        .query_async(&mut plain)
        .await
        .unwrap();
    let loads = Arc::new(AtomicU64::new(0));
    let mut waiters = Vec::new();
    for i in 0..20 {
        let cache = fleet[i % 2].cache.clone();
        let loader = counting_loader(&loads);
        waiters.push(tokio::spawn(async move {
            cache.get_or_try_load(&1, loader).await
        }));
    }
    // Both instances are waiting for the dead holder...
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet.iter().any(|i| i.cache.stats().fleet_waits == 0) {
        assert!(Instant::now() < deadline, "nobody waited for the lease");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(loads.load(Ordering::SeqCst), 0);
    // ...until its lease expires.
    let _: () = redis::cmd("PEXPIRE")
        .arg(lease_key("dead:", 1))
        .arg(1)
        .query_async(&mut plain)
        .await
        .unwrap();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap(), "value 1");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one instance took over");
    let takeovers: u64 = fleet.iter().map(|i| i.cache.stats().lease_takeovers).sum();
    assert_eq!(takeovers, 1);
    let waits: u64 = fleet.iter().map(|i| i.cache.stats().fleet_waits).sum();
    assert_eq!(waits, 2, "each instance waited once, for the dead holder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_waits_for_a_lease_past_the_load_timeout() {
    let Some(redis) = redis_support::start("nobody_waits_for_a_lease_past_the_load_timeout") else {
        return;
    };
    let mut plain = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg(lease_key("stuck:", 9))
        .arg("a-stuck-instance")
        .arg("PX")
        .arg(600_000)
        .query_async(&mut plain)
        .await
        .unwrap();
    let local = Cache::builder()
        .max_capacity(100)
        .load_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let waiter = instance(&redis.url(), "stuck:", local).await;
    let loads = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let outcome = waiter
        .cache
        .get_or_try_load(&9, counting_loader(&loads))
        .await;
    assert!(matches!(outcome, Err(LoadError::TimedOut)), "{outcome:?}");
    assert_eq!(loads.load(Ordering::SeqCst), 0);
    // A hang guard, not a timing claim: the wait ended (the lease had ten
    // minutes left).
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_cancelled_load_gives_its_lease_back_at_once() {
    let Some(redis) =
        redis_support::start("a_failed_or_cancelled_load_gives_its_lease_back_at_once")
    else {
        return;
    };
    let fleet = fleet(&redis.url(), "fail:", 2).await;
    let failed = fleet[0]
        .cache
        .get_or_try_load(&3, |_| async {
            Err::<String, _>(std::io::Error::other("origin down"))
        })
        .await;
    assert!(matches!(failed, Err(LoadError::Failed(_))));
    // The lease (two minutes long) was given back: the other instance
    // loads at once instead of waiting it out.
    let loads = Arc::new(AtomicU64::new(0));
    let value = fleet[1]
        .cache
        .get_or_try_load(&3, counting_loader(&loads))
        .await
        .unwrap();
    assert_eq!(value, "value 3");
    assert_eq!(fleet[1].cache.stats().fleet_waits, 0);

    // A load cancelled by its timeout gives the lease back too.
    let local = Cache::builder()
        .max_capacity(100)
        .load_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let impatient = instance(&redis.url(), "fail:", local).await;
    let hung = impatient
        .cache
        .get_or_try_load(&4, |_| {
            std::future::pending::<Result<String, std::io::Error>>()
        })
        .await;
    assert!(matches!(hung, Err(LoadError::TimedOut)));
    let mut plain = redis.connection().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held: bool = redis::cmd("EXISTS")
            .arg(lease_key("fail:", 4))
            .query_async(&mut plain)
            .await
            .unwrap();
        if !held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled load kept its lease"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_do_not_decode_are_misses_and_are_replaced() {
    let Some(redis) = redis_support::start("values_that_do_not_decode_are_misses_and_are_replaced")
    else {
        return;
    };
    let fleet = fleet(&redis.url(), "bad:", 2).await;
    let loads = Arc::new(AtomicU64::new(0));
    storm(&fleet[..1], 10, 0, &loads).await;
    // Another writer put bytes that are not UTF-8 where key 2's value is,
    // and a string (the wrong type) where key 3's is.
    let mut plain = redis.connection().await;
    let value_key = |key: u64| {
        let mut bytes = lease_key("bad:", key);
        *bytes.last_mut().unwrap() = b'v';
        bytes
    };
    let _: () = redis::cmd("HSET")
        .arg(value_key(2))
        .arg("v")
        .arg(&b"\xff\xfe"[..])
        .query_async(&mut plain)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(value_key(3))
        .query_async(&mut plain)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(value_key(3))
        .arg("a string")
        .query_async(&mut plain)
        .await
        .unwrap();
    let reader = &fleet[1];
    for key in [2, 3] {
        let value = reader
            .cache
            .get_or_try_load(&key, counting_loader(&loads))
            .await
            .unwrap();
        assert_eq!(value, format!("value {key}"));
    }
    let stats = reader.cache.stats();
    assert_eq!(stats.decode_errors, 1, "{stats:?}");
    assert_eq!(
        stats.remote_errors, 1,
        "the wrong type is refused: {stats:?}"
    );
    assert_eq!(stats.local_loads, 2);
    // The undecodable value was written over: the next reader decodes it.
    let third = instance(&redis.url(), "bad:", local_cache()).await;
    assert_eq!(
        third
            .cache
            .get_or_try_load(&2, counting_loader(&loads))
            .await
            .unwrap(),
        "value 2"
    );
    assert_eq!(third.cache.stats().remote_hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_mid_run_never_reaches_a_caller_and_coalescing_resumes() {
    let Some(mut redis) =
        redis_support::start("redis_dying_mid_run_never_reaches_a_caller_and_coalescing_resumes")
    else {
        return;
    };
    let fleet = fleet(&redis.url(), "crash:", 4).await;
    let loads = Arc::new(AtomicU64::new(0));
    storm(&fleet, 100, 0, &loads).await;
    assert_eq!(loads.load(Ordering::SeqCst), 100);

    redis.kill();
    // Every request is still answered (`storm` unwraps every result): the
    // instances load for themselves while Redis is gone.
    let down = Arc::new(AtomicU64::new(0));
    storm(&fleet, 100, 1_000, &down).await;
    assert!(down.load(Ordering::SeqCst) >= 100);
    let opened: u64 = fleet.iter().map(|i| i.tier.stats().breaker_opened).sum();
    assert!(opened >= 1);

    redis.restart();
    // Past the cool-down, a probe closes each instance's breaker; the first
    // call after a restart may still find the old connection dead, so probe
    // until one call reaches Redis.
    let deadline = Instant::now() + Duration::from_secs(20);
    for instance in &fleet {
        loop {
            assert!(Instant::now() < deadline, "Redis never answered again");
            let before = instance.tier.stats().calls;
            instance.clock.advance(Duration::from_secs(2));
            instance.cache.local().remove(&u64::MAX);
            let probe = instance
                .cache
                .get_or_try_load(&u64::MAX, counting_loader(&Arc::new(AtomicU64::new(0))))
                .await;
            assert!(probe.is_ok());
            if instance.tier.stats().calls > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let after = Arc::new(AtomicU64::new(0));
    storm(&fleet, 100, 2_000, &after).await;
    assert_eq!(after.load(Ordering::SeqCst), 100, "coalescing resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_redis_at_all_the_cache_serves_from_its_own_process() {
    let url = format!("redis://127.0.0.1:{}/", redis_support::free_port());
    let clock = ManualClock::new();
    let tier = RedisTier::builder(&url)
        .timeout(Duration::from_millis(100))
        .clock(clock)
        .build()
        .await
        .unwrap();
    let cache = TieredCache::builder(local_cache(), tier)
        .keys(BigEndian)
        .values(Utf8)
        .build()
        .unwrap();
    let loads = Arc::new(AtomicU64::new(0));
    for key in 0..10 {
        let value = cache
            .get_or_try_load(&key, counting_loader(&loads))
            .await
            .unwrap();
        assert_eq!(value, format!("value {key}"));
        assert!(
            cache.insert(key, "x".into()).await.is_err(),
            "the fleet did not hear"
        );
        assert_eq!(cache.get(&key).as_deref(), Some("x"), "the local tier did");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 10);
    assert_eq!(cache.stats().local_loads, 10);
}

#[tokio::test(flavor = "current_thread")]
async fn bad_settings_are_refused_when_built() {
    let tier = || async {
        RedisTier::builder("redis://127.0.0.1:1/")
            .build()
            .await
            .unwrap()
    };
    let missing = TieredCache::builder(local_cache(), tier().await)
        .keys(BigEndian)
        .build();
    assert_eq!(missing.unwrap_err(), TierBuildError::MissingCodec("values"));
    for (setting, built) in [
        (
            "remote_ttl",
            TieredCache::builder(local_cache(), tier().await)
                .keys(BigEndian)
                .values(Utf8)
                .remote_ttl(Duration::ZERO)
                .build(),
        ),
        (
            "lease",
            TieredCache::builder(local_cache(), tier().await)
                .keys(BigEndian)
                .values(Utf8)
                .lease(Duration::MAX)
                .build(),
        ),
    ] {
        assert!(
            matches!(built, Err(TierBuildError::InvalidDuration { setting: s, .. }) if s == setting),
            "{setting}"
        );
    }
    let zero = TieredCache::builder(local_cache(), tier().await)
        .keys(BigEndian)
        .values(Utf8)
        .max_value_bytes(0)
        .build();
    assert!(matches!(
        zero,
        Err(TierBuildError::InvalidMaxValueBytes { .. })
    ));
    assert!(RedisTier::builder("redis://127.0.0.1/")
        .prefix("a{b")
        .build()
        .await
        .is_err());
    assert!(RedisTier::builder("not a url").build().await.is_err());
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tier = runtime
        .block_on(RedisTier::builder("redis://127.0.0.1:1/").build())
        .unwrap();
    let built = TieredCache::builder(local_cache(), tier)
        .keys(BigEndian)
        .values(Utf8)
        .build();
    assert_eq!(built.unwrap_err(), TierBuildError::NoRuntime);
}
