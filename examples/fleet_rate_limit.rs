//! What a fleet-wide limit costs per request through `RateLimitLayer`:
//! a local keyed GCRA, a `RedisLimiter` (one round trip per decision), the
//! same with leases of 100 units, and `LocalThenRemote` (the per-client
//! limit inline, then Redis), at 1 and 64 concurrent clients, in-process
//! (`oneshot`, no sockets between client and layer; Redis on loopback).
//!
//! Run: `cargo run --release --example fleet_rate_limit --features redis`.
//! It starts its own `redis-server` on a free loopback port when the
//! binary is installed, or uses `REDIS_URL`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use surgeguard::http::{KeyExtractor, RateLimitLayer, RequestHead};
use surgeguard::limit::{AllOf, Gcra, LocalThenRemote, Quota};
use surgeguard::redis::{RedisGcra, RedisLimiter};
use tower::{service_fn, Layer, Service, ServiceExt};

#[path = "support/redis_server.rs"]
mod redis_server;

/// Requests per measured configuration.
const REQUESTS: usize = 20_000;
/// Distinct clients (the `x-client` header).
const CLIENTS: u64 = 1_000;

/// The `x-client` header as text.
#[derive(Debug, Clone, Copy)]
struct Client;

impl KeyExtractor for Client {
    type Key = String;

    fn extract(&self, head: &RequestHead<'_>) -> Option<String> {
        head.headers()
            .get("x-client")?
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

type Handler = tower::util::BoxCloneSyncService<Request<()>, Response<Full<Bytes>>, Infallible>;

fn handler() -> Handler {
    tower::util::BoxCloneSyncService::new(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }))
}

/// Per-request latencies of `REQUESTS` requests from `concurrency` clients.
async fn measure<S>(service: S, concurrency: usize) -> Vec<Duration>
where
    S: Service<Request<()>, Response = Response<surgeguard::http::GuardedBody<Full<Bytes>>>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let per_task = REQUESTS / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let client = (task * per_task + i) as u64 % CLIENTS;
                    let request = Request::builder()
                        .header("x-client", client.to_string())
                        .body(())
                        .expect("a request");
                    let started = Instant::now();
                    let response = service.clone().oneshot(request).await.expect("an answer");
                    took.push(started.elapsed());
                    assert_eq!(response.status(), StatusCode::OK, "the quota never denies");
                }
                took
            })
        })
        .collect();
    let mut all = Vec::with_capacity(REQUESTS);
    for task in tasks {
        all.extend(task.await.expect("a client task"));
    }
    all.sort();
    all
}

fn at(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

async fn redis_limiter(url: &str, prefix: &str, lease: bool) -> RedisLimiter {
    let builder = RedisGcra::builder(url, Quota::per_second(1_000_000_000).expect("a quota"))
        .prefix(prefix)
        .timeout(Duration::from_secs(5));
    let builder = if lease {
        builder.lease(100, Duration::from_secs(10))
    } else {
        builder
    };
    builder.build().await.expect("a Redis limiter")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some((url, _server)) = redis_server::url_or_start() else {
        println!("no redis-server on PATH and no REDIS_URL: nothing to compare");
        return Ok(());
    };
    let huge = Quota::per_second(1_000_000_000)?;
    println!(
        "| limiter in RateLimitLayer | clients | p50 | p99 | Redis round trips per decision |"
    );
    println!("|---|---:|---:|---:|---:|");
    for concurrency in [1usize, 64] {
        let local = RateLimitLayer::new(Gcra::keyed::<String>(huge).max_keys(10_000).build()?)
            .key(Client)
            .layer(handler());
        let took = measure(local, concurrency).await;
        println!(
            "| local keyed GCRA | {concurrency} | {:?} | {:?} | 0 |",
            at(&took, 0.5),
            at(&took, 0.99)
        );

        for (name, lease) in [
            ("RedisLimiter (GCRA)", false),
            ("RedisLimiter, leases of 100", true),
        ] {
            let prefix = format!("example:layer:{concurrency}:{lease}:");
            let limiter = Arc::new(redis_limiter(&url, &prefix, lease).await);
            let service = RateLimitLayer::new(Arc::clone(&limiter))
                .key(Client)
                .layer(handler());
            let took = measure(service, concurrency).await;
            let stats = limiter.stats();
            let decisions =
                stats.redis_decisions + stats.lease_decisions + stats.fallback_decisions;
            println!(
                "| {name} | {concurrency} | {:?} | {:?} | {:.3} |",
                at(&took, 0.5),
                at(&took, 0.99),
                stats.redis_decisions as f64 / decisions.max(1) as f64
            );
        }

        let fleet =
            Arc::new(redis_limiter(&url, &format!("example:both:{concurrency}:"), false).await);
        let both = LocalThenRemote::new(
            AllOf::new(
                Gcra::keyed::<String>(huge).max_keys(10_000).build()?,
                |c: &String| c.clone(),
            ),
            Arc::clone(&fleet),
            |_: &String| (),
        );
        let service = RateLimitLayer::new(both).key(Client).layer(handler());
        let took = measure(service, concurrency).await;
        println!(
            "| LocalThenRemote (per client inline, then a global Redis limit) | {concurrency} | {:?} | {:?} | 1.000 |",
            at(&took, 0.5),
            at(&took, 0.99)
        );
    }
    Ok(())
}
