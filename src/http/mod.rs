//! Tower middleware (feature `tower`): the guards as layers on an axum,
//! hyper or tonic service.
//!
//! Most services meet surgeguard here: a few `.layer(...)` lines on a
//! router. Each layer wraps one of the core guards and turns its verdict
//! into an HTTP answer, so a handler never sees a request it should not
//! serve.
//!
//! ```text
//!   request ──► RateLimitLayer ──► ResponseCacheLayer ──► handler
//!               │ key: ClientIp,     │ hit: stored bytes, Age, 304
//!               │ header, route, fn  │ miss: one handler call per key
//!               └► 429 + Retry-After,└► (the cache's single flight)
//!                  RateLimit fields
//! ```
//!
//! * [`RateLimitLayer`] checks a [`RateLimiter`](crate::limit::RateLimiter)
//!   for a key drawn from the request ([`ClientIp`], [`HeaderKey`],
//!   [`RouteKey`], [`GlobalKey`] or a closure). The limiter sits behind one
//!   `Arc`, so every clone of the service and every connection share it:
//!   tower's own `RateLimit` kept one bucket per clone and let 1,500
//!   requests through a 5 per second cap (axum issue #2634).
//! * [`ResponseCacheLayer`] caches `GET` responses per RFC 9111 in a
//!   [`Cache`](crate::cache::Cache), so a miss storm reaches the handler
//!   once per key, with `Vary`, `Cache-Control`, `Age`, conditional `304`s
//!   and stale windows (RFC 5861).
//!
//! A rejection is a response (`429`, or the status a
//! [`MissingKey`] policy names), never an error, so the layers fit axum's
//! `Infallible` routers; errors of the inner service pass through unchanged.
//! Responses carry a [`GuardedBody`], which is the inner body or bytes the
//! layer produced.
//!
//! * [`LoadShedLayer`] puts a [`Shedder`](crate::shed::Shedder) in front of
//!   the service: a refused request gets `503` with `Retry-After` at once
//!   (or waits in the shedder's bounded queue, if it has one), an admitted
//!   one teaches an adaptive limit its latency and whether it failed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use surgeguard::http::{ClientIp, PeerAddr, RateLimitLayer, ResponseCacheLayer};
//! use surgeguard::limit::{Gcra, Quota};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let per_ip = Gcra::keyed(Quota::per_second(1)?)
//! #   // A clock that stands still: no unit refills between the two
//! #   // requests, however slowly the example runs.
//! #   .clock(surgeguard::clock::ManualClock::new())
//!     .max_keys(100_000)
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(per_ip).key(ClientIp::peer()))
//!     .layer(ResponseCacheLayer::builder().max_bytes(64 << 20).build()?)
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!     }));
//! let request = || {
//!     let mut request = Request::new(Full::new(Bytes::new()));
//!     request.extensions_mut().insert(PeerAddr("192.0.2.7:5000".parse().unwrap()));
//!     request
//! };
//! assert_eq!(service.clone().oneshot(request()).await?.status(), StatusCode::OK);
//! let denied = service.oneshot(request()).await?;
//! assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(denied.headers()["retry-after"], "1");
//! # Ok(())
//! # }
//! ```

mod body;
mod client_ip;
mod error;
mod headers;
mod key;
mod load_shed;
mod problem;
mod rate_limit;
mod response_cache;

pub use body::GuardedBody;
pub use client_ip::{ClientIp, PeerAddr, ProxyHeader, TrustedProxies};
pub use error::ConfigError;
pub use key::{GlobalKey, HeaderKey, KeyExtractor, MissingKey, RequestHead, RouteKey};
pub use load_shed::{LoadShedFuture, LoadShedLayer, LoadShedService};
pub use rate_limit::{RateLimitFuture, RateLimitLayer, RateLimitService};
pub use response_cache::{
    ResponseCacheBuildError, ResponseCacheBuilder, ResponseCacheFuture, ResponseCacheLayer,
    ResponseCacheService,
};
