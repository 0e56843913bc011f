//! A fleet of cache instances over one Redis: origin loads per key with and
//! without the shared tier, how fast an `insert` reaches the others, and
//! what a local miss answered by Redis costs.
//!
//! Run: `cargo run --release --example fleet_cache --features redis`. It
//! starts its own `redis-server` on a free loopback port when the binary
//! is installed, or uses `REDIS_URL`; without either it says so and shows
//! the local-only fleet alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surgeguard::cache::tier::{BigEndian, TieredCache, Utf8};
use surgeguard::cache::Cache;
use surgeguard::redis::RedisTier;

#[path = "support/redis_server.rs"]
mod redis_server;

/// Distinct keys each fleet's storm asks for.
const KEYS: u64 = 200;
/// Requests per instance in a storm, all at once, over the keys.
const REQUESTS_PER_INSTANCE: u64 = 2_000;
/// How long one origin load takes (a database query).
const ORIGIN_TIME: Duration = Duration::from_millis(20);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some((url, _server)) = redis_server::url_or_start() else {
        println!("no redis-server on PATH and no REDIS_URL: showing the local-only fleet");
        for instances in [1, 2, 4, 8] {
            let loads = storm_local(instances).await;
            println!("{instances} instances, local only: {loads:.2} origin loads per key");
        }
        return Ok(());
    };

    println!("origin loads per key, {KEYS} cold keys, {REQUESTS_PER_INSTANCE} concurrent requests per instance:");
    println!("| instances | local tier only | local + Redis tier |");
    println!("|---:|---:|---:|");
    for (round, instances) in [1usize, 2, 4, 8].into_iter().enumerate() {
        let local = storm_local(instances).await;
        let tiered = storm_tiered(&url, &format!("example:storm{round}:"), instances).await?;
        println!("| {instances} | {local:.2} | {tiered:.2} |");
    }

    let (p50, p99) = propagation(&url).await?;
    println!("insert on one instance until another drops its copy (1,000 keys): p50 {p50:?}, p99 {p99:?}");
    let (p50, p99) = remote_hit(&url).await?;
    println!("local miss answered by Redis (1,000 reads): p50 {p50:?}, p99 {p99:?}");
    Ok(())
}

fn local_cache() -> Cache<u64, String> {
    Cache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(300))
        .load_timeout(Duration::from_secs(5))
        .build()
        .expect("valid settings")
}

async fn instance(
    url: &str,
    prefix: &str,
) -> Result<TieredCache<u64, String>, Box<dyn std::error::Error>> {
    let tier = RedisTier::builder(url)
        .prefix(prefix)
        .timeout(Duration::from_millis(500))
        .build()
        .await?;
    let cache = TieredCache::builder(local_cache(), tier)
        .keys(BigEndian)
        .values(Utf8)
        .remote_ttl(Duration::from_secs(600))
        .build()?;
    Ok(cache)
}

async fn origin(loads: Arc<AtomicU64>, key: u64) -> Result<String, std::io::Error> {
    loads.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(ORIGIN_TIME).await;
    Ok(format!("product {key}"))
}

async fn storm_local(instances: usize) -> f64 {
    let fleet: Vec<_> = (0..instances).map(|_| local_cache()).collect();
    storm(&fleet, |cache, key, loads| async move {
        cache
            .get_or_try_load_async(&key, move |key| origin(loads, key))
            .await
            .is_ok()
    })
    .await
}

async fn storm_tiered(
    url: &str,
    prefix: &str,
    instances: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut fleet = Vec::new();
    for _ in 0..instances {
        fleet.push(instance(url, prefix).await?);
    }
    // Let each backplane subscribe (it drops the local tier when it does).
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(storm(&fleet, |cache, key, loads| async move {
        cache
            .get_or_try_load(&key, move |key| origin(loads, key))
            .await
            .is_ok()
    })
    .await)
}

/// Every instance of `fleet` asks for each of the keys at once
/// (`REQUESTS_PER_INSTANCE` requests); returns origin loads per key.
async fn storm<C, F, Fut>(fleet: &[C], read: F) -> f64
where
    C: Clone,
    F: Fn(C, u64, Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let loads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for cache in fleet {
        for i in 0..REQUESTS_PER_INSTANCE {
            tasks.push(tokio::spawn(read(
                cache.clone(),
                i % KEYS,
                Arc::clone(&loads),
            )));
        }
    }
    for task in tasks {
        assert!(task.await.unwrap_or(false), "every request is answered");
    }
    loads.load(Ordering::Relaxed) as f64 / KEYS as f64
}

async fn propagation(url: &str) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let writer = instance(url, "example:propagation:").await?;
    let reader = instance(url, "example:propagation:").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut took = Vec::new();
    for key in 0..1_000u64 {
        reader.local().insert(key, "old".to_owned());
        let started = Instant::now();
        writer.insert(key, "new".to_owned()).await?;
        while reader.get(&key).is_some() {
            if started.elapsed() > Duration::from_secs(5) {
                return Err(format!("key {key}: no invalidation within 5 s").into());
            }
            tokio::task::yield_now().await;
        }
        took.push(started.elapsed());
    }
    Ok(percentiles(took))
}

async fn remote_hit(url: &str) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let writer = instance(url, "example:remote:").await?;
    let reader = instance(url, "example:remote:").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for key in 0..1_000u64 {
        writer.insert(key, format!("product {key}")).await?;
    }
    let mut took = Vec::new();
    for key in 0..1_000u64 {
        let started = Instant::now();
        let value = reader
            .get_or_try_load(&key, |_| async {
                Err::<String, _>(std::io::Error::other("the value is in Redis"))
            })
            .await?;
        took.push(started.elapsed());
        assert_eq!(value, format!("product {key}"));
    }
    Ok(percentiles(took))
}

fn percentiles(mut took: Vec<Duration>) -> (Duration, Duration) {
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    (at(0.50), at(0.99))
}
