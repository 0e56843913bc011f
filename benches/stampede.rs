//! Stampede protection, measured.
//!
//! * `thundering_herd`: 1,000 Tokio tasks miss one key at once; the origin
//!   takes 10 ms. Time per herd (all tasks served) and origin calls per herd
//!   (printed) for surgeguard's `get_or_load_async`, moka's `get_with`, and no
//!   protection (every task calls the origin, then inserts).
//! * `expiry_cliff`: one thread reads a hot key continuously across its
//!   time-to-live (200 ms; origin 10 ms). The measured "time" of a pass is
//!   its slowest read: with `refresh_after` no read waits for the origin;
//!   without, the read that finds the key expired pays the full load.
//!
//! * `load_hit`: the price of loading through the cache when the key is
//!   there (the common case in a handler): 1,024 resident keys read in turn
//!   with surgeguard's `get` and `get_or_load` (with and without a TTL),
//!   moka's `get_with` (with a TTL) and quick_cache's `get_or_insert_with`
//!   (which has no TTL), one thread.
//!
//! Run: `cargo bench --all-features --bench stampede`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use surgeguard::cache::Cache;

const TASKS: usize = 1_000;
const ORIGIN_LATENCY: Duration = Duration::from_millis(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the benchmark")
}

/// One herd: `TASKS` tasks ask for key 1 at once; returns origin calls.
async fn herd<F, Fut>(ask: F) -> u64
where
    F: Fn(Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let calls = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| tokio::spawn(ask(calls.clone())))
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("herd task"), 42);
    }
    calls.load(Ordering::Relaxed)
}

async fn origin(calls: Arc<AtomicU64>) -> u64 {
    calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(ORIGIN_LATENCY).await;
    42
}

fn thundering_herd(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("thundering_herd");
    group.sample_size(20);
    let mut report = Vec::new();

    let mut origin_calls = (0, 0);
    group.bench_function("surgeguard", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
                origin_calls.0 += rt.block_on(herd(|calls| {
                    let cache = cache.clone();
                    async move {
                        cache
                            .get_or_load_async(&1, move |_| origin(calls))
                            .await
                            .expect("load")
                    }
                }));
                origin_calls.1 += 1;
            }
            start.elapsed()
        })
    });
    report.push(("surgeguard get_or_load_async", origin_calls));

    let mut origin_calls = (0, 0);
    group.bench_function("moka_get_with", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let cache: moka::future::Cache<u64, u64> = moka::future::Cache::new(100);
                origin_calls.0 += rt.block_on(herd(|calls| {
                    let cache = cache.clone();
                    async move { cache.get_with(1, origin(calls)).await }
                }));
                origin_calls.1 += 1;
            }
            start.elapsed()
        })
    });
    report.push(("moka get_with", origin_calls));

    let mut origin_calls = (0, 0);
    group.bench_function("unprotected", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
                origin_calls.0 += rt.block_on(herd(|calls| {
                    let cache = cache.clone();
                    async move {
                        match cache.get(&1) {
                            Some(value) => value,
                            None => {
                                let value = origin(calls).await;
                                cache.insert(1, value);
                                value
                            }
                        }
                    }
                }));
                origin_calls.1 += 1;
            }
            start.elapsed()
        })
    });
    report.push(("unprotected get + insert", origin_calls));
    group.finish();

    for (name, (calls, herds)) in report {
        println!(
            "thundering_herd origin calls per herd of {TASKS}: {name}: {:.1}",
            calls as f64 / herds.max(1) as f64
        );
    }
}

/// Reads key 1 in a loop for `span`, loading through the cache; returns the
/// slowest read.
fn slowest_read(cache: &Cache<u64, u64>, span: Duration) -> Duration {
    let load = |_: &u64| {
        std::thread::sleep(ORIGIN_LATENCY);
        42
    };
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    while start.elapsed() < span {
        let read = Instant::now();
        let value = cache.get_or_load(&1, load).expect("load");
        slowest = slowest.max(read.elapsed());
        assert_eq!(value, 42);
    }
    slowest
}

fn expiry_cliff(c: &mut Criterion) {
    let mut group = c.benchmark_group("expiry_cliff_slowest_read");
    group.sample_size(10);
    let ttl = Duration::from_millis(200);
    // `never_expires` is the control: the same loop on an entry that never
    // expires shows how slow the slowest read is on this machine anyway.
    for (name, expiry) in [
        ("refresh_ahead", Some(true)),
        ("ttl_only", Some(false)),
        ("never_expires", None),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut builder = Cache::builder().max_capacity(100);
                    if let Some(refresh) = expiry {
                        builder = builder.time_to_live(ttl);
                        if refresh {
                            builder = builder.refresh_after(ttl / 2);
                        }
                    }
                    let cache: Cache<u64, u64> = builder.build().unwrap();
                    // Warm: the first load is a miss either way.
                    cache.get_or_load(&1, |_| 42).expect("load");
                    total += slowest_read(&cache, ttl * 2 + ttl / 2);
                }
                total
            })
        });
    }
    group.finish();
}

fn load_hit(c: &mut Criterion) {
    const KEYS: u64 = 1_024;
    let mut group = c.benchmark_group("load_hit");
    group.throughput(criterion::Throughput::Elements(KEYS));
    let ttl = Duration::from_secs(3_600);

    let ours: Cache<u64, u64> = Cache::builder()
        .max_capacity(10_000)
        .time_to_live(ttl)
        .build()
        .unwrap();
    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(ttl)
        .build();
    let quick: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(10_000);
    for key in 0..KEYS {
        ours.insert(key, key);
        moka.insert(key, key);
        quick.insert(key, key);
    }
    let no_ttl: Cache<u64, u64> = Cache::builder().max_capacity(10_000).build().unwrap();
    for key in 0..KEYS {
        no_ttl.insert(key, key);
    }
    group.bench_function("surgeguard_get_no_ttl", |b| {
        b.iter(|| {
            (0..KEYS)
                .map(|key| no_ttl.get(&key).unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("surgeguard_get", |b| {
        b.iter(|| {
            (0..KEYS)
                .map(|key| ours.get(&key).unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("surgeguard_get_or_load", |b| {
        b.iter(|| {
            (0..KEYS)
                .map(|key| ours.get_or_load(&key, |key| *key).unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("surgeguard_get_or_load_no_ttl", |b| {
        b.iter(|| {
            (0..KEYS)
                .map(|key| no_ttl.get_or_load(&key, |key| *key).unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("moka_get_with", |b| {
        b.iter(|| (0..KEYS).map(|key| moka.get_with(key, || key)).sum::<u64>())
    });
    group.bench_function("quick_cache_get_or_insert_with", |b| {
        b.iter(|| {
            (0..KEYS)
                .map(|key| {
                    quick
                        .get_or_insert_with(&key, || Ok::<u64, ()>(key))
                        .unwrap_or(0)
                })
                .sum::<u64>()
        })
    });
    group.finish();
}

criterion_group!(benches, thundering_herd, expiry_cliff, load_hit);
criterion_main!(benches);
