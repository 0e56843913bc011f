//! Per-request cost of the tower layers over a bare service, called
//! in-process with `oneshot` (no sockets), and the throughput a cached
//! 1 ms handler reaches.
//!
//! * `bare`: the handler alone (an axum body, an `Arc<str>` payload).
//! * `rate_limit/*`: RateLimitLayer on the allowed path (a per-IP GCRA that
//!   never denies), with and without the `RateLimit` fields on the
//!   response; `tower_governor` with its peer-IP key for comparison.
//! * `response_cache/hit`: a stored `GET` answered from the cache.
//! * `load_shed/*`: LoadShedLayer admitting, with a fixed limit and with the
//!   Gradient limit learning from every response.
//! * `slow_handler/*`: a handler that takes 1 ms, bare and cached.
//! * `revalidation/*`: a stale 100 KiB page, revalidated with a `304` or
//!   fetched again in full.
//! * `hit_decision/*`: the layer's whole hit (`response_cache_hit`, as in
//!   `layer_overhead`) beside what the `http-cache-semantics` crate costs to
//!   decide one hit: `before_request` on a stored `CachePolicy`
//!   (`semantics_before_request`, which also hands back the head to send),
//!   and a policy made from the stored heads first
//!   (`semantics_new_and_before_request`).
//!
//! Run: `cargo bench --features tower,axum --bench http`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use surgeguard::clock::ManualClock;
use surgeguard::http::{ClientIp, LoadShedLayer, RateLimitLayer, ResponseCacheLayer};
use surgeguard::limit::{Gcra, Quota};
use surgeguard::shed::{AdaptiveLimit, Shedder};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

fn request() -> Request<Body> {
    let mut request = Request::get("/product/7").body(Body::empty()).unwrap();
    let peer: SocketAddr = "192.0.2.7:50000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

type Handler = tower::util::ServiceFn<
    fn(Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>>,
>;

fn handler() -> Handler {
    fn page(_: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
        let response = Response::builder()
            .header("cache-control", "max-age=3600")
            .body(Body::from("product 7"))
            .unwrap();
        std::future::ready(Ok(response))
    }
    service_fn(page as fn(_) -> _)
}

/// Drives a future that is ready at once (every path measured here is)
/// without a runtime's scheduling in the measurement; falls back to the
/// runtime otherwise.
fn now<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => runtime.block_on(future),
    }
}

fn call<S>(runtime: &tokio::runtime::Runtime, service: &S) -> S::Response
where
    S: Service<Request<Body>> + Clone,
    S::Error: std::fmt::Debug,
{
    now(runtime, service.clone().oneshot(request())).unwrap()
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("layer_overhead");

    let bare = handler();
    group.bench_function("bare", |b| b.iter(|| call(&runtime, &bare)));

    let per_ip = || {
        Gcra::keyed(
            Quota::per_second(100_000_000)
                .unwrap()
                .burst(1_000_000_000)
                .unwrap(),
        )
        .max_keys(1_000)
        .build()
        .unwrap()
    };
    let limited = RateLimitLayer::new(per_ip())
        .key(ClientIp::peer())
        .layer(handler());
    group.bench_function("rate_limit/fields", |b| b.iter(|| call(&runtime, &limited)));
    let quiet = RateLimitLayer::new(per_ip())
        .headers_on_allowed(false)
        .layer(handler());
    group.bench_function("rate_limit/no_fields", |b| {
        b.iter(|| call(&runtime, &quiet))
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX / 2)
        .finish()
        .unwrap();
    let governed = GovernorLayer::new(Arc::new(config)).layer(handler());
    group.bench_function("rate_limit/tower_governor", |b| {
        b.iter(|| call(&runtime, &governed))
    });

    let cache = ResponseCacheLayer::builder().build().unwrap();
    let cached = cache.layer(handler());
    call(&runtime, &cached);
    group.bench_function("response_cache/hit", |b| b.iter(|| call(&runtime, &cached)));

    let fixed = Shedder::builder().max_concurrency(1_000).build().unwrap();
    let shed_fixed = LoadShedLayer::new(fixed).layer(handler());
    group.bench_function("load_shed/fixed", |b| {
        b.iter(|| call(&runtime, &shed_fixed))
    });
    let adaptive = Shedder::builder()
        .limit(AdaptiveLimit::gradient().min(1_000).max(2_000))
        .build()
        .unwrap();
    let shed_adaptive = LoadShedLayer::new(adaptive).layer(handler());
    group.bench_function("load_shed/gradient", |b| {
        b.iter(|| call(&runtime, &shed_adaptive))
    });
    group.finish();
}

fn slow_handler(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let slow = service_fn(|_: Request<Body>| async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let response = Response::builder()
            .header("cache-control", "max-age=3600")
            .body(Body::from("product 7"))
            .unwrap();
        Ok::<_, Infallible>(response)
    });
    let mut group = c.benchmark_group("slow_handler");
    group.sample_size(10);
    group.bench_function("uncached", |b| {
        b.iter_batched(
            request,
            |request| runtime.block_on(slow.oneshot(request)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let cached = ResponseCacheLayer::builder().build().unwrap().layer(slow);
    runtime.block_on(cached.clone().oneshot(request())).unwrap();
    group.bench_function("cached", |b| {
        b.iter_batched(
            request,
            |request| runtime.block_on(cached.clone().oneshot(request)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// An origin with a 100 KiB page that goes stale after a second; with
/// `etag`, it answers a request naming it with `304` and no body.
fn large_page(
    etag: bool,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Body>, Infallible>>,
> + Clone
       + Send
       + 'static {
    let page = bytes::Bytes::from(vec![b'x'; 100 << 10]);
    service_fn(move |request: Request<Body>| {
        let mut response = Response::builder().header("cache-control", "max-age=1");
        if etag {
            response = response.header("etag", "\"v1\"");
            if request.headers().contains_key("if-none-match") {
                let not_modified = response.status(304).body(Body::empty()).unwrap();
                return std::future::ready(Ok(not_modified));
            }
        }
        std::future::ready(Ok(response.body(Body::from(page.clone())).unwrap()))
    })
}

/// What a stale entry costs: revalidated with a `304` (the stored 100 KiB
/// body is served again) against fetched again in full (the body is
/// buffered and stored again). Each iteration moves the clock past the
/// page's freshness, so every request finds it stale.
fn revalidation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("revalidation");
    for (name, etag) in [("304_round_trip", true), ("full_refetch_100k", false)] {
        let clock = ManualClock::new();
        let cached = ResponseCacheLayer::builder()
            .clock(clock.clone())
            .build()
            .unwrap()
            .layer(large_page(etag));
        call(&runtime, &cached);
        group.bench_function(name, |b| {
            b.iter(|| {
                clock.advance(Duration::from_secs(2));
                call(&runtime, &cached)
            })
        });
    }
    group.finish();
}

/// The layer's hit against `http-cache-semantics` deciding the same hit,
/// measured before choosing to write the rules in the layer (issue 20).
fn hit_decision(c: &mut Criterion) {
    use http_cache_semantics::CachePolicy;
    use std::time::SystemTime;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("hit_decision");
    group.measurement_time(Duration::from_secs(3));

    let cached = ResponseCacheLayer::builder()
        .build()
        .unwrap()
        .layer(handler());
    call(&runtime, &cached);
    group.bench_function("response_cache_hit", |b| b.iter(|| call(&runtime, &cached)));

    let stored_request = Request::get("/product/7")
        .header("host", "example.test")
        .body(())
        .unwrap();
    let stored_response = Response::builder()
        .header("cache-control", "max-age=3600")
        .header("content-type", "text/plain")
        .body(())
        .unwrap();
    let policy = CachePolicy::new(&stored_request, &stored_response);
    assert!(policy.is_storable());
    let incoming = Request::get("/product/7")
        .header("host", "example.test")
        .body(())
        .unwrap();
    group.bench_function("semantics_before_request", |b| {
        b.iter(|| {
            let decision = policy.before_request(&incoming, SystemTime::now());
            assert!(decision.satisfies_without_revalidation());
            decision
        })
    });
    group.bench_function("semantics_new_and_before_request", |b| {
        b.iter(|| {
            let policy = CachePolicy::new(&stored_request, &stored_response);
            policy.before_request(&incoming, SystemTime::now())
        })
    });
    group.finish();
}

criterion_group!(benches, overhead, slow_handler, revalidation, hit_decision);
criterion_main!(benches);
