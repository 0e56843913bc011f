//! The tiered cache's rules against an in-memory shared tier
//! (`tier_support`), on a `ManualClock`: what is shared and what stays
//! local, who loads, what a lost lease, a refresh for the fleet, a
//! cancelled waiter and a dead tier do.
//!
//! Why these cannot flake: the shared tier answers at once and its time is
//! the manual clock's, so no lease or value expires unless the test moves
//! the clock; loaders that must be "in progress" wait on a signal the test
//! gives; where a background task must finish, the test waits for its
//! effect with a generous bound and asserts only that it happened.
#![cfg(feature = "tokio")]

mod tier_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surgeguard::cache::tier::{BigEndian, TieredCache, Utf8};
use surgeguard::cache::{Cache, LoadError};
use surgeguard::clock::ManualClock;
use tier_support::MemoryTier;
use tokio::sync::Notify;

fn key_bytes(key: u64) -> Vec<u8> {
    key.to_be_bytes().to_vec()
}

fn tiered(tier: MemoryTier, local: Cache<u64, String>) -> TieredCache<u64, String> {
    TieredCache::builder(local, tier)
        .keys(BigEndian)
        .values(Utf8)
        .lease(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn local(clock: &ManualClock) -> Cache<u64, String> {
    Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Waits (real time, bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_size_limit_stays_local_and_frees_its_lease() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let cache = TieredCache::builder(local(&clock), tier.clone())
        .keys(BigEndian)
        .values(Utf8)
        .max_value_bytes(8)
        .build()
        .unwrap();
    let big = cache
        .get_or_load(&1, |_| async { "twenty bytes, really".to_owned() })
        .await
        .unwrap();
    assert_eq!(big, "twenty bytes, really");
    assert_eq!(cache.get(&1).as_deref(), Some("twenty bytes, really"));
    assert_eq!(tier.holds(&key_bytes(1)), None);
    assert!(!tier.leased(&key_bytes(1)), "the lease was given back");
    assert_eq!(cache.stats().too_large, 1);
    // Eight bytes is within the limit.
    cache
        .get_or_load(&2, |_| async { "8 bytes!".to_owned() })
        .await
        .unwrap();
    assert_eq!(tier.holds(&key_bytes(2)).as_deref(), Some(&b"8 bytes!"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_value_over_this_caches_size_limit_is_a_miss_not_a_read() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    // Another writer (with a larger limit) stored a megabyte under key 3.
    tier.put_raw(&key_bytes(3), &vec![b'x'; 1 << 20]);
    let cache = TieredCache::builder(local(&clock), tier.clone())
        .keys(BigEndian)
        .values(Utf8)
        .max_value_bytes(1_024)
        .build()
        .unwrap();
    let value = cache
        .get_or_load(&3, |_| async { "small".to_owned() })
        .await
        .unwrap();
    assert_eq!(value, "small");
    assert_eq!(cache.stats().too_large, 1);
    // Written over with a value this cache can read.
    assert_eq!(tier.holds(&key_bytes(3)).as_deref(), Some(&b"small"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_under_a_millisecond_are_refused() {
    let clock = ManualClock::new();
    let built = TieredCache::builder(local(&clock), MemoryTier::new(clock.clone()))
        .keys(BigEndian)
        .values(Utf8)
        .lease(Duration::from_nanos(1))
        .build();
    assert!(matches!(
        built,
        Err(surgeguard::cache::tier::TierBuildError::InvalidDuration {
            setting: "lease",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_during_a_fleet_load_wins_over_the_load() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let loading = tiered(tier.clone(), local(&clock));
    let writer = tiered(tier.join(), local(&clock));
    let release = Arc::new(Notify::new());
    let started = Arc::new(AtomicU64::new(0));
    let load = {
        let loading = loading.clone();
        let (release, started) = (Arc::clone(&release), Arc::clone(&started));
        tokio::spawn(async move {
            loading
                .get_or_load(&5, move |_| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    "old".to_owned()
                })
                .await
        })
    };
    until("the load started", || started.load(Ordering::SeqCst) == 1).await;
    assert!(tier.leased(&key_bytes(5)));
    writer.insert(5, "new".to_owned()).await.unwrap();
    release.notify_one();
    // The loaded value lost: the caller gets what the insert wrote, and
    // neither tier keeps the old one.
    assert_eq!(load.await.unwrap().unwrap(), "new");
    assert_eq!(tier.holds(&key_bytes(5)).as_deref(), Some(&b"new"[..]));
    assert_ne!(loading.get(&5).as_deref(), Some("old"));
    let again = loading
        .get_or_load(&5, |_| async { "loaded again".to_owned() })
        .await
        .unwrap();
    assert_eq!(again, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_refreshes_for_the_fleet_while_the_others_serve_stale() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let refreshing = || {
        Cache::builder()
            .max_capacity(1_000)
            .clock(clock.clone())
            .time_to_live(Duration::from_secs(60))
            .refresh_after(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let a = tiered(tier.clone(), refreshing());
    let b = tiered(tier.join(), refreshing());
    let c = tiered(tier.join(), refreshing());
    let loads = Arc::new(AtomicU64::new(0));
    let first = a
        .get_or_load(&1, {
            let loads = Arc::clone(&loads);
            move |_| async move {
                loads.fetch_add(1, Ordering::SeqCst);
                "v1".to_owned()
            }
        })
        .await
        .unwrap();
    assert_eq!(first, "v1");
    clock.advance(Duration::from_secs(11));

    // B misses locally; the shared value is older than refresh_after, so B
    // takes the lease and reloads for the fleet (held until released).
    let release = Arc::new(Notify::new());
    let b_load = {
        let (b, loads, release) = (b.clone(), Arc::clone(&loads), Arc::clone(&release));
        tokio::spawn(async move {
            b.get_or_load(&1, move |_| async move {
                loads.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                "v2".to_owned()
            })
            .await
        })
    };
    until("B reloads", || loads.load(Ordering::SeqCst) == 2).await;
    // C, meanwhile, is served the stale value at once.
    let c_value = c
        .get_or_load(&1, |_| async { panic!("C must not load") })
        .await
        .unwrap();
    assert_eq!(c_value, "v1");
    assert_eq!(c.stats().remote_stale, 1);
    release.notify_one();
    assert_eq!(b_load.await.unwrap().unwrap(), "v2");
    // A's own copy is due for a refresh: it is served v1 at once, and its
    // background reload picks up B's v2 from the shared tier, no load.
    let a_value = a
        .get_or_load(&1, |_| async { panic!("A must not load") })
        .await
        .unwrap();
    assert_eq!(a_value, "v1");
    until("A picks up v2", || a.get(&1).as_deref() == Some("v2")).await;
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "one origin load per refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiter_never_strands_the_others() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let holder = tiered(tier.clone(), local(&clock));
    let waiting = tiered(tier.join(), local(&clock));
    let release = Arc::new(Notify::new());
    let started = Arc::new(AtomicU64::new(0));
    let load = {
        let holder = holder.clone();
        let (release, started) = (Arc::clone(&release), Arc::clone(&started));
        tokio::spawn(async move {
            holder
                .get_or_load(&8, move |_| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    "held".to_owned()
                })
                .await
        })
    };
    until("the holder loads", || started.load(Ordering::SeqCst) == 1).await;
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let waiting = waiting.clone();
            tokio::spawn(async move {
                waiting
                    .get_or_load(&8, |_| async { panic!("the lease is held") })
                    .await
            })
        })
        .collect();
    until("the other instance waits", || {
        waiting.stats().fleet_waits == 1
    })
    .await;
    // The first waiter, whose call started the wait, gives up.
    waiters[0].abort();
    release.notify_one();
    assert_eq!(load.await.unwrap().unwrap(), "held");
    for waiter in waiters.into_iter().skip(1) {
        assert_eq!(waiter.await.unwrap().unwrap(), "held");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_tier_means_local_loads_and_no_error_for_readers() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    tier.down.store(true, Ordering::SeqCst);
    let cache = tiered(tier.clone(), local(&clock));
    for key in 0..5 {
        let value = cache
            .get_or_load(&key, |key| async move { format!("local {key}") })
            .await
            .unwrap();
        assert_eq!(value, format!("local {key}"));
    }
    let stats = cache.stats();
    assert_eq!((stats.local_loads, stats.remote_errors), (5, 5));
    // Writers learn that the fleet did not hear; the local tier did.
    assert!(cache.insert(9, "nine".into()).await.is_err());
    assert_eq!(cache.get(&9).as_deref(), Some("nine"));
    assert!(cache.invalidate(&9).await.is_err());
    assert_eq!(cache.get(&9), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_error_is_the_callers_and_frees_the_key_for_the_fleet() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let cache = tiered(tier.clone(), local(&clock));
    let failed = cache
        .get_or_try_load(&3, |_| async { Err::<String, _>("origin down") })
        .await;
    assert!(matches!(failed, Err(LoadError::Failed(error)) if *error == "origin down"));
    assert!(!tier.leased(&key_bytes(3)));
    assert_eq!(tier.holds(&key_bytes(3)), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_expires_is_taken_over_after_the_clock_passes_it() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    // A holder that died: its lease is planted and never given back.
    let dead = tier.join();
    let dead_cache = tiered(dead, local(&clock));
    let hung = {
        let dead_cache = dead_cache.clone();
        tokio::spawn(async move {
            dead_cache
                .get_or_load(&4, |_| std::future::pending::<String>())
                .await
        })
    };
    until("the dead holder leases", || tier.leased(&key_bytes(4))).await;
    hung.abort();
    let survivor = tiered(tier.clone(), local(&clock));
    let waiting = {
        let survivor = survivor.clone();
        tokio::spawn(async move {
            survivor
                .get_or_load(&4, |_| async { "survivor".to_owned() })
                .await
        })
    };
    until("the survivor waits", || survivor.stats().fleet_waits == 1).await;
    assert!(!waiting.is_finished());
    clock.advance(Duration::from_secs(31));
    assert_eq!(waiting.await.unwrap().unwrap(), "survivor");
    assert_eq!(survivor.stats().lease_takeovers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_invalidations_and_values_are_counted_not_fatal() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let cache = tiered(tier.clone(), local(&clock));
    tier.put_raw(&key_bytes(6), b"\xff");
    let value = cache
        .get_or_load(&6, |_| async { "reloaded".to_owned() })
        .await
        .unwrap();
    assert_eq!(value, "reloaded");
    assert_eq!(cache.stats().decode_errors, 1);
    assert_eq!(tier.holds(&key_bytes(6)).as_deref(), Some(&b"reloaded"[..]));
    // Another writer removes a key this instance's codec cannot read (three
    // bytes are no u64): counted, nothing else happens.
    let other = tier.join();
    surgeguard::cache::tier::RemoteTier::remove(&other, b"odd")
        .await
        .unwrap();
    assert_eq!(cache.stats().decode_errors, 2);
    assert_eq!(cache.get(&6).as_deref(), Some("reloaded"));
}

#[cfg(feature = "serde")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serde_values_cross_the_tier_with_postcard() {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Product {
        id: u64,
        name: String,
        price_cents: u32,
    }
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let build = |tier: MemoryTier| {
        TieredCache::builder(
            Cache::<u64, Product>::builder()
                .max_capacity(10)
                .build()
                .unwrap(),
            tier,
        )
        .keys(BigEndian)
        .values(surgeguard::cache::tier::Postcard)
        .build()
        .unwrap()
    };
    let a = build(tier.clone());
    let b = build(tier.join());
    let kettle = Product {
        id: 7,
        name: "kettle".into(),
        price_cents: 1999,
    };
    let loaded = a
        .get_or_load(&7, {
            let kettle = kettle.clone();
            move |_| async move { kettle }
        })
        .await
        .unwrap();
    assert_eq!(loaded, kettle);
    let read = b
        .get_or_load(&7, |_| async { panic!("B reads the shared value") })
        .await
        .unwrap();
    assert_eq!(read, kettle);
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporter_publishes_both_tiers() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let a = tiered(tier.clone(), local(&clock));
    let b = tiered(tier.join(), local(&clock));
    a.get_or_load(&1, |_| async { "one".to_owned() })
        .await
        .unwrap();
    b.get_or_load(&1, |_| async { panic!("shared") })
        .await
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let reporter = metrics::with_local_recorder(&recorder, || {
        surgeguard::metrics::Reporter::new().tiered_cache("pages", &b)
    });
    reporter.report();
    let published: Vec<_> = snapshotter.snapshot().into_vec();
    let find = |name: &str, result: Option<&str>| {
        published
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && result.is_none_or(|want| {
                        key.key()
                            .labels()
                            .any(|label| label.key() == "result" && label.value() == want)
                    })
            })
            .map(|(_, _, _, value)| value)
    };
    assert_eq!(
        find("surgeguard_cache_tier_misses_total", Some("remote_hit")),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find("surgeguard_cache_tier_misses_total", Some("leased_load")),
        Some(&DebugValue::Counter(0))
    );
    // The local tier is reported as a cache under the same name.
    assert!(find("surgeguard_cache_requests_total", Some("miss")).is_some());
}
