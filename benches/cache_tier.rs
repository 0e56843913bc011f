//! The tiered cache's costs, in one run: a local hit through `TieredCache`
//! against the same hit on a plain `Cache` (sync `get` and the async
//! loading call), and a miss answered by Redis on loopback (one `EVALSHA`
//! round trip and a decode).
//!
//! The bench starts its own `redis-server` on a free loopback port (and
//! prints a SKIP line when it is not installed; the local-hit group runs
//! either way, against a tier that is down).
//!
//! Run: `cargo bench --bench cache_tier --features redis`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use surgeguard::cache::tier::{BigEndian, TieredCache, Utf8};
use surgeguard::cache::Cache;
use surgeguard::redis::RedisTier;

#[path = "../tests/redis_support/mod.rs"]
mod redis_support;

const KEYS: u64 = 1_000;

fn local() -> Cache<u64, String> {
    Cache::builder()
        .max_capacity(10_000)
        .build()
        .expect("a cache")
}

fn tiered(runtime: &tokio::runtime::Runtime, url: &str, prefix: &str) -> TieredCache<u64, String> {
    runtime.block_on(async {
        let tier = RedisTier::builder(url)
            .prefix(prefix)
            .timeout(Duration::from_secs(5))
            .build()
            .await
            .expect("a tier");
        TieredCache::builder(local(), tier)
            .keys(BigEndian)
            .values(Utf8)
            .build()
            .expect("a tiered cache")
    })
}

fn value(key: u64) -> String {
    format!("product page {key:>6} {}", "x".repeat(100))
}

fn local_hits(c: &mut Criterion, runtime: &tokio::runtime::Runtime, url: &str) {
    let plain = local();
    let tiered = tiered(runtime, url, "bench:hit:");
    for key in 0..KEYS {
        plain.insert(key, value(key));
        tiered.local().insert(key, value(key));
    }
    let mut group = c.benchmark_group("cache_tier/local_hit");
    group.measurement_time(Duration::from_secs(3));
    let mut key = 0;
    group.bench_function("cache_get", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            black_box(plain.get(&key))
        })
    });
    group.bench_function("tiered_get", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            black_box(tiered.get(&key))
        })
    });
    group.bench_function("cache_get_or_try_load_async", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            runtime.block_on(async {
                black_box(
                    plain
                        .get_or_try_load_async(&key, |k| async move { Ok::<_, ()>(value(k)) })
                        .await,
                )
            })
        })
    });
    group.bench_function("tiered_get_or_try_load", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            runtime.block_on(async {
                black_box(
                    tiered
                        .get_or_try_load(&key, |k| async move { Ok::<_, ()>(value(k)) })
                        .await,
                )
            })
        })
    });
    group.finish();
}

fn remote_hits(c: &mut Criterion, runtime: &tokio::runtime::Runtime, url: &str) {
    let writer = tiered(runtime, url, "bench:remote:");
    let reader = tiered(runtime, url, "bench:remote:");
    runtime.block_on(async {
        for key in 0..KEYS {
            writer.insert(key, value(key)).await.expect("Redis is up");
        }
    });
    let mut group = c.benchmark_group("cache_tier/remote_hit");
    group.measurement_time(Duration::from_secs(3));
    let mut key = 0;
    group.bench_function("tiered_local_miss_remote_hit", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            reader.local().remove(&key);
            runtime.block_on(async {
                black_box(
                    reader
                        .get_or_try_load(&key, |_| async { Err::<String, _>("never loads") })
                        .await
                        .expect("the value is in Redis"),
                )
            })
        })
    });
    group.finish();
    let stats = reader.stats();
    eprintln!(
        "remote hits {}, leased loads {}, local loads {}",
        stats.remote_hits, stats.leased_loads, stats.local_loads
    );
}

fn cache_tier(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    match redis_support::start("cache_tier bench") {
        Some(server) => {
            let url = server.url();
            local_hits(c, &runtime, &url);
            remote_hits(c, &runtime, &url);
        }
        None => {
            let url = format!("redis://127.0.0.1:{}/", redis_support::free_port());
            local_hits(c, &runtime, &url);
        }
    }
}

criterion_group!(benches, cache_tier);
criterion_main!(benches);
