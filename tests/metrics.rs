//! The metrics reporter against a debugging recorder: known sequences of
//! hits, misses, loads, sheds and Redis fallbacks, and the counters and
//! gauges they must publish (feature `metrics`).
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use surgeguard::cache::Cache;
use surgeguard::metrics::Reporter;
use surgeguard::shed::{Priority, Shedder};

/// Builds a reporter whose handles are bound to a fresh recorder.
fn recorded(build: impl FnOnce() -> Reporter) -> (Reporter, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let reporter = metrics::with_local_recorder(&recorder, build);
    (reporter, snapshotter)
}

/// The value of `name` with exactly `labels` in a snapshot. (Taking a
/// snapshot resets the debugging recorder's values, so each report is read
/// from one snapshot.)
fn value<'a>(snapshot: &'a Published, name: &str, labels: &[(&str, &str)]) -> &'a DebugValue {
    let mut found = None;
    for (key, value) in snapshot {
        let key = key.key();
        let mut have: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        have.sort();
        want.sort();
        if key.name() == name && have == want {
            found = Some(value);
        }
    }
    found.unwrap_or_else(|| panic!("no metric {name} {labels:?}"))
}

/// One report's metrics.
type Published = Vec<(metrics_util::CompositeKey, DebugValue)>;

/// Publishes and reads back.
fn publish(reporter: &Reporter, snapshotter: &Snapshotter) -> Published {
    reporter.report();
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

fn counter(snapshotter: &Published, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snapshotter, name, labels) {
        DebugValue::Counter(n) => *n,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn gauge(snapshotter: &Published, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(snapshotter, name, labels) {
        DebugValue::Gauge(v) => v.into_inner(),
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

#[test]
fn cache_hits_misses_and_loads_are_published() {
    let clock = surgeguard::clock::ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (reporter, snapshotter) = recorded(|| Reporter::new().cache("products", &cache));
    cache.insert(1, 10);
    for _ in 0..3 {
        assert_eq!(cache.get(&1), Some(10));
    }
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&3), None);
    assert_eq!(
        cache.get_or_try_load(&4, |_| Ok::<_, String>(40)).unwrap(),
        40
    );
    assert!(cache
        .get_or_try_load(&5, |_| Err::<u32, _>("origin down".to_owned()))
        .is_err());
    let snap = publish(&reporter, &snapshotter);

    let labels = |result| [("cache", "products"), ("result", result)];
    let stats = cache.stats();
    assert_eq!(
        counter(&snap, "surgeguard_cache_requests_total", &labels("hit")),
        stats.hits
    );
    assert_eq!(stats.hits, 3);
    assert_eq!(
        counter(&snap, "surgeguard_cache_requests_total", &labels("miss")),
        stats.misses
    );
    assert!(stats.misses >= 2);
    assert_eq!(
        counter(&snap, "surgeguard_cache_requests_total", &labels("stale")),
        0
    );
    assert_eq!(
        counter(&snap, "surgeguard_cache_loads_total", &labels("ok")),
        1
    );
    assert_eq!(
        counter(&snap, "surgeguard_cache_loads_total", &labels("error")),
        1
    );
    assert_eq!(
        gauge(&snap, "surgeguard_cache_entries", &[("cache", "products")]),
        2.0
    );

    // Counters follow the cache: a second report publishes the new totals.
    cache.get(&1);
    let snap = publish(&reporter, &snapshotter);
    assert_eq!(
        counter(&snap, "surgeguard_cache_requests_total", &labels("hit")),
        4
    );
}

#[test]
fn sheds_are_published_by_priority_and_reason_and_saturation_follows() {
    let shedder = Shedder::builder().max_concurrency(2).build().unwrap();
    let (reporter, snapshotter) = recorded(|| Reporter::new().shedder("database", &shedder));
    let one = shedder.try_acquire(Priority::Normal).unwrap();
    let snap = publish(&reporter, &snapshotter);
    let name = [("shedder", "database")];
    assert_eq!(gauge(&snap, "surgeguard_shed_limit", &name), 2.0);
    assert_eq!(gauge(&snap, "surgeguard_shed_inflight", &name), 1.0);
    assert_eq!(
        gauge(&snap, "surgeguard_saturation", &name),
        0.5,
        "half the limit in use"
    );

    let two = shedder.try_acquire(Priority::Critical).unwrap();
    assert!(shedder.try_acquire(Priority::Normal).is_err());
    assert!(shedder.try_acquire(Priority::Sheddable).is_err());
    assert!(shedder.try_acquire(Priority::Sheddable).is_err());
    let snap = publish(&reporter, &snapshotter);
    let rejected = |priority, reason| {
        counter(
            &snap,
            "surgeguard_shed_rejected_total",
            &[
                ("shedder", "database"),
                ("priority", priority),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(rejected("normal", "limit"), 1);
    assert_eq!(rejected("sheddable", "limit"), 2);
    assert_eq!(rejected("critical", "limit"), 0);
    assert_eq!(rejected("normal", "queue_full"), 0);
    assert_eq!(
        gauge(&snap, "surgeguard_saturation", &name),
        1.0,
        "it is shedding"
    );

    drop((one, two));
    let snap = publish(&reporter, &snapshotter);
    assert_eq!(
        gauge(&snap, "surgeguard_saturation", &name),
        0.0,
        "idle and no new refusals"
    );
    assert_eq!(gauge(&snap, "surgeguard_shed_inflight", &name), 0.0);
}

#[test]
fn shadow_mode_admits_everything_and_counts_what_it_would_have_refused() {
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .shadow(true)
        .build()
        .unwrap();
    let (reporter, snapshotter) = recorded(|| Reporter::new().shedder("dry-run", &shedder));
    let held: Vec<_> = (0..5)
        .map(|_| {
            shedder
                .try_acquire(Priority::Sheddable)
                .expect("shadow mode admits")
        })
        .collect();
    assert_eq!(shedder.in_flight(), 5);
    let snap = publish(&reporter, &snapshotter);
    let name = [("shedder", "dry-run")];
    assert_eq!(
        counter(&snap, "surgeguard_shed_shadow_rejected_total", &name),
        4
    );
    assert_eq!(
        counter(
            &snap,
            "surgeguard_shed_rejected_total",
            &[
                ("shedder", "dry-run"),
                ("priority", "sheddable"),
                ("reason", "limit")
            ]
        ),
        0,
        "nothing was refused"
    );
    assert_eq!(
        gauge(&snap, "surgeguard_saturation", &name),
        1.0,
        "it would be shedding"
    );
    drop(held);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fallbacks_are_published() {
    use std::sync::Arc;
    use surgeguard::limit::Quota;
    use surgeguard::redis::{Fallback, RedisGcra};

    // Nothing listens on this port: every call fails, the breaker opens.
    // Its cool-down runs on a clock that stands still, so that no probe
    // goes out however slowly the checks run (a busy machine).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let limiter = Arc::new(
        RedisGcra::builder(
            &format!("redis://127.0.0.1:{port}/"),
            Quota::per_second(10).unwrap(),
        )
        .on_unavailable(Fallback::FailOpen)
        .clock(surgeguard::clock::ManualClock::new())
        .build()
        .await
        .unwrap(),
    );
    let (reporter, snapshotter) = recorded(|| Reporter::new().redis("fleet", &limiter));
    for _ in 0..5 {
        assert!(limiter.check("k").await.unwrap().is_allowed());
    }
    let snap = publish(&reporter, &snapshotter);
    let source = |s| [("limiter", "fleet"), ("source", s)];
    assert_eq!(
        counter(
            &snap,
            "surgeguard_redis_decisions_total",
            &source("fallback")
        ),
        5
    );
    assert_eq!(
        counter(&snap, "surgeguard_redis_decisions_total", &source("redis")),
        0
    );
    assert_eq!(
        counter(
            &snap,
            "surgeguard_redis_failures_total",
            &[("limiter", "fleet")]
        ),
        3
    );
    assert_eq!(
        gauge(
            &snap,
            "surgeguard_redis_fallback_active",
            &[("limiter", "fleet")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &snap,
            "surgeguard_redis_breaker_transitions_total",
            &[("limiter", "fleet"), ("to", "open")]
        ),
        1
    );
}

#[test]
fn rate_limit_decisions_are_published_from_many_threads() {
    use std::sync::Arc;
    use surgeguard::clock::ManualClock;
    use surgeguard::limit::{Counted, Gcra, Quota, RateLimiter};

    let limiter = Arc::new(Counted::new(
        Gcra::keyed::<u32>(Quota::per_minute(10).unwrap())
            .clock(ManualClock::new())
            .build()
            .unwrap(),
    ));
    let (reporter, snapshotter) = recorded(|| Reporter::new().limiter("per-user", &limiter));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let limiter = &limiter;
            scope.spawn(move || {
                for user in 0..4 {
                    for _ in 0..25 {
                        let _ = limiter.check(&user);
                    }
                }
            });
        }
    });
    let snap = publish(&reporter, &snapshotter);
    let decisions = |d| {
        counter(
            &snap,
            "surgeguard_ratelimit_decisions_total",
            &[("limiter", "per-user"), ("decision", d)],
        )
    };
    // The clock never moves: each of the 4 users gets exactly its burst.
    assert_eq!(decisions("allowed"), 40);
    assert_eq!(decisions("denied"), 8 * 4 * 25 - 40);
}
