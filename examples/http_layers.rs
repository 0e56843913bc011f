//! An axum router with surgeguard's layers: a per-client rate limit in
//! front of an HTTP response cache in front of a load shedder, on a handler
//! that takes 50 ms.
//!
//! * 5 requests per second per client IP, bursts of 10; behind a proxy on
//!   10.0.0.0/8 that appends to `X-Forwarded-For` (nginx's
//!   `$proxy_add_x_forwarded_for`) the client is read from that header and
//!   no other; from any other peer, the peer is the client.
//! * Responses say `Cache-Control: max-age=10`, so repeated requests are
//!   answered from the cache for 10 s and served stale for 30 s more while
//!   one handler call refreshes them; a failing handler is covered for 5
//!   minutes.
//!
//! Run: `cargo run --example http_layers --features tower,axum`, then
//! `curl -i localhost:3000/product/7` a few times.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use surgeguard::http::{
    ClientIp, LoadShedLayer, ProxyHeader, RateLimitLayer, ResponseCacheLayer, TrustedProxies,
};
use surgeguard::limit::{Gcra, Quota};
use surgeguard::shed::{AdaptiveLimit, Priority, Shedder};

async fn product(Path(id): Path<u64>) -> ([(&'static str, &'static str); 1], String) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The response says how stale it may be served (RFC 5861); the cache
    // layer needs no windows of its own.
    let cache_control = "max-age=10, stale-while-revalidate=30, stale-if-error=300";
    (
        [("cache-control", cache_control)],
        format!("product {id}\n"),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let per_ip = Gcra::keyed(Quota::per_second(5)?.burst(10)?)
        .max_keys(100_000)
        .build()?;
    let trusted = TrustedProxies::new(["10.0.0.0/8"])?;
    let cache = ResponseCacheLayer::builder().max_bytes(64 << 20).build()?;

    // At most as many requests in the handler as it can take, learned from
    // its latency; checkout (if the shop had one) would be Critical.
    let shedder = Shedder::builder()
        .limit(AdaptiveLimit::gradient().min(4).max(500))
        .build()?;
    let shed = LoadShedLayer::new(shedder)
        .priority(|head| {
            if head.uri().path().starts_with("/checkout") {
                Priority::Critical
            } else {
                Priority::Normal
            }
        })
        .problem_body(true);

    let app = Router::new()
        .route("/product/{id}", get(product))
        .layer(shed)
        .layer(cache)
        .layer(
            RateLimitLayer::new(per_ip)
                .key(ClientIp::behind(trusted, ProxyHeader::XForwardedFor))
                .policy_name("per-ip")?
                .problem_body(true),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
