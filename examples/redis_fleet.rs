//! Four "servers" (four limiters in one process) share one limit through
//! Redis, then Redis goes away and each falls back to its share.
//!
//! Run: `cargo run --example redis_fleet --features redis` with a Redis on
//! 127.0.0.1:6379 (or set `REDIS_URL`). Without one, every check is
//! decided by the fallback, and the output says so.

use std::sync::Arc;
use std::time::Duration;

use surgeguard::limit::Quota;
use surgeguard::redis::{Fallback, RedisGcra};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    // 100 requests a minute per client for the whole fleet, bursts of 20.
    let quota = Quota::per_minute(100)?.burst(20)?;
    let mut fleet = Vec::new();
    for _ in 0..4 {
        let limiter = RedisGcra::builder(&url, quota)
            .prefix("example:fleet:")
            // If Redis is unreachable, each of the 4 servers enforces a
            // quarter of the limit on its own.
            .on_unavailable(Fallback::Local { share: 0.25 })
            .timeout(Duration::from_millis(100))
            .build()
            .await?;
        fleet.push(Arc::new(limiter));
    }

    // One client sends 100 requests, spread over the four servers by the
    // load balancer; the fleet admits its burst of 20, not 4 x 20.
    let client = format!("198.51.100.{}", std::process::id() % 250);
    let mut admitted = [0u32; 4];
    for request in 0..100 {
        let server = request % 4;
        if fleet[server].check(&client).await?.is_allowed() {
            admitted[server] += 1;
        }
    }
    let total: u32 = admitted.iter().sum();
    println!("client {client}: admitted per server {admitted:?}, {total} in all (burst 20)");
    for (n, limiter) in fleet.iter().enumerate() {
        let stats = limiter.stats();
        println!(
            "server {n}: {} decided by Redis, {} answered locally (over-limit cache), {} by the fallback",
            stats.redis_decisions, stats.over_limit_cache_denials, stats.fallback_decisions
        );
    }
    if fleet.iter().all(|l| l.stats().redis_decisions == 0) {
        println!(
            "Redis at {url} did not answer: each server enforced a quarter of the burst (5) alone."
        );
    }
    Ok(())
}
