//! ResponseCacheLayer on a real axum server, with a hyper client.

#![cfg(all(feature = "tower", feature = "axum"))]

mod http_support;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::Method;
use http_support::{client, get as fetch, send, serve};
use surgeguard::clock::ManualClock;
use surgeguard::http::{ResponseCacheLayer, ResponseCacheService};

/// A handler that counts its calls and answers with `headers` and a body
/// naming the call.
fn counting(calls: &Arc<AtomicUsize>, headers: &'static [(&'static str, &'static str)]) -> Router {
    counting_at("/page", calls, headers)
}

/// [`counting`] at `path`.
fn counting_at(
    path: &str,
    calls: &Arc<AtomicUsize>,
    headers: &'static [(&'static str, &'static str)],
) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        path,
        get(move || {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    map.append(*name, value.parse().unwrap());
                }
                (map, format!("call {call}"))
            }
        }),
    )
}

fn layer(clock: &ManualClock) -> ResponseCacheLayer {
    ResponseCacheLayer::builder()
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn services_and_layers_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ResponseCacheLayer>();
    send_sync::<ResponseCacheService<axum::routing::Route>>();
}

#[tokio::test]
async fn a_fresh_response_is_served_from_storage_with_its_age() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = layer(&clock);
    let app = counting(&calls, &[("cache-control", "max-age=60")]).layer(cache.clone());
    let address = serve(app).await;
    let client = client();

    let miss = fetch(&client, address, "/page").await;
    assert_eq!((miss.status, miss.text()), (StatusCode::OK, "call 1"));
    clock.advance(Duration::from_secs(5));
    let hit = fetch(&client, address, "/page").await;
    assert_eq!(hit.text(), "call 1");
    assert_eq!(hit.header("age"), Some("5"));
    assert_eq!(hit.header("cache-control"), Some("max-age=60"));
    let head = send(&client, address, Method::HEAD, "/page", &[]).await;
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    clock.advance(Duration::from_secs(60));
    let expired = fetch(&client, address, "/page").await;
    assert_eq!(expired.text(), "call 2");
    assert_eq!(cache.stats().hits, 2);
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/page",
            get(move |headers: HeaderMap| {
                counter.fetch_add(1, Ordering::SeqCst);
                let language = headers
                    .get("accept-language")
                    .map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
                async move {
                    (
                        [("cache-control", "max-age=60"), ("vary", "Accept-Language")],
                        language,
                    )
                }
            }),
        )
        .layer(layer(&clock));
    let address = serve(app).await;
    let client = client();
    let ask = |language: &'static str| {
        let client = client.clone();
        async move {
            send(
                &client,
                address,
                Method::GET,
                "/page",
                &[("accept-language", language)],
            )
            .await
            .text()
            .to_string()
        }
    };
    assert_eq!(ask("de").await, "de");
    assert_eq!(ask("fr").await, "fr");
    assert_eq!(ask("de").await, "de");
    assert_eq!(ask("fr").await, "fr");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn responses_that_must_not_be_shared_are_not_stored() {
    let cases: [&'static [(&str, &str)]; 6] = [
        &[("cache-control", "no-store, max-age=60")],
        &[("cache-control", "private, max-age=60")],
        &[("cache-control", "no-cache, max-age=60")],
        &[("cache-control", "max-age=60"), ("set-cookie", "session=1")],
        &[("cache-control", "max-age=soon")],
        &[],
    ];
    for headers in cases {
        let clock = ManualClock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let app = counting(&calls, headers).layer(layer(&clock));
        let address = serve(app).await;
        let client = client();
        assert_eq!(fetch(&client, address, "/page").await.text(), "call 1");
        let second = fetch(&client, address, "/page").await;
        assert_eq!(second.text(), "call 2", "{headers:?}");
        assert_eq!(second.header("age"), None);
    }
}

#[tokio::test]
async fn requests_can_bypass_or_refresh_storage() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = counting(&calls, &[("cache-control", "max-age=60")]).layer(layer(&clock));
    let address = serve(app).await;
    let client = client();
    assert_eq!(fetch(&client, address, "/page").await.text(), "call 1");
    let no_store = [("cache-control", "no-store")];
    let bypass = send(&client, address, Method::GET, "/page", &no_store).await;
    assert_eq!(bypass.text(), "call 2");
    assert_eq!(fetch(&client, address, "/page").await.text(), "call 1");
    let no_cache = [("cache-control", "no-cache")];
    let refreshed = send(&client, address, Method::GET, "/page", &no_cache).await;
    assert_eq!(refreshed.text(), "call 3");
    assert_eq!(fetch(&client, address, "/page").await.text(), "call 3");
}

#[tokio::test]
async fn conditional_requests_get_304_from_storage() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let headers: &[(&str, &str)] = &[
        ("cache-control", "max-age=60"),
        ("etag", "\"v1\""),
        ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ];
    let app = counting(&calls, headers).layer(layer(&clock));
    let address = serve(app).await;
    let client = client();
    // The first request is conditional too: with nothing stored, its
    // validators go to the handler (RFC 9111 §4.3.2), which ignores them
    // and answers in full; the layer stores that and answers the
    // condition itself.
    let first = send(
        &client,
        address,
        Method::GET,
        "/page",
        &[("if-none-match", "\"v1\"")],
    )
    .await;
    assert_eq!(first.status, StatusCode::NOT_MODIFIED);
    assert_eq!(first.header("etag"), Some("\"v1\""));
    assert_eq!(first.body.len(), 0);
    let weak = send(
        &client,
        address,
        Method::GET,
        "/page",
        &[("if-none-match", "W/\"v1\"")],
    )
    .await;
    assert_eq!(weak.status, StatusCode::NOT_MODIFIED);
    let other = send(
        &client,
        address,
        Method::GET,
        "/page",
        &[("if-none-match", "\"v0\"")],
    )
    .await;
    assert_eq!((other.status, other.text()), (StatusCode::OK, "call 1"));
    let since = [("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")];
    let unmodified = send(&client, address, Method::GET, "/page", &since).await;
    assert_eq!(unmodified.status, StatusCode::NOT_MODIFIED);
    for malformed in ["v1", "\"v1", "\"v1\", ,junk", "*, \"v1\""] {
        let answer = send(
            &client,
            address,
            Method::GET,
            "/page",
            &[("if-none-match", malformed)],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{malformed:?}");
    }
    let huge = format!("{}\"v1\"", "\"x\", ".repeat(2_000));
    let answer = send(
        &client,
        address,
        Method::GET,
        "/page",
        &[("if-none-match", &huge)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failing_handler_is_covered_by_stale_if_error() {
    let clock = ManualClock::new();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = Arc::clone(&failing);
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                let failing = switch.load(Ordering::SeqCst);
                async move {
                    if failing {
                        (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
                    } else {
                        ([("cache-control", "max-age=10")], "fresh").into_response()
                    }
                }
            }),
        )
        .layer(
            ResponseCacheLayer::builder()
                .stale_if_error(Duration::from_secs(60))
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
    let address = serve(app).await;
    let client = client();
    assert_eq!(fetch(&client, address, "/page").await.text(), "fresh");
    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(30));
    let stale = fetch(&client, address, "/page").await;
    assert_eq!((stale.status, stale.text()), (StatusCode::OK, "fresh"));
    assert_eq!(stale.header("age"), Some("30"));
    clock.advance(Duration::from_secs(60));
    let gone = fetch(&client, address, "/page").await;
    assert_eq!(
        (gone.status, gone.text()),
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_call_the_handler_once() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (counter, opened) = (Arc::clone(&calls), Arc::clone(&gate));
    let cache = layer(&clock);
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let opened = Arc::clone(&opened);
                async move {
                    opened.notified().await;
                    ([("cache-control", "max-age=60")], "the page")
                }
            }),
        )
        .layer(cache.clone());
    let address = serve(app).await;
    let client = client();
    let mut requests = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        requests.push(tokio::spawn(async move {
            let answer = fetch(&client, address, "/page").await;
            (answer.status, answer.text().to_string())
        }));
    }
    // Wait (for an event, not for time) until every request has reached the
    // cache: one leads the load, 99 wait for it.
    while cache.stats().loads + cache.stats().coalesced < 100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gate.notify_one();
    for request in requests {
        assert_eq!(
            request.await.unwrap(),
            (StatusCode::OK, "the page".to_string())
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn large_bodies_stream_through_uncached() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/big",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { ([("cache-control", "max-age=60")], "x".repeat(10_000)) }
            }),
        )
        .layer(
            ResponseCacheLayer::builder()
                .max_body_bytes(1_024)
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
    let address = serve(app).await;
    let client = client();
    for _ in 0..2 {
        let answer = fetch(&client, address, "/big").await;
        assert_eq!(answer.body.len(), 10_000);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A route that answers `fresh N` (its Nth call) with `cache_control`
/// while `failing` is off, and `503 down` while it is on.
fn flaky(calls: &Arc<AtomicUsize>, failing: &Arc<AtomicBool>, cache_control: String) -> Router {
    let (calls, failing) = (Arc::clone(calls), Arc::clone(failing));
    Router::new().route(
        "/page",
        get(move || {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let down = failing.load(Ordering::SeqCst);
            let cache_control = cache_control.clone();
            async move {
                if down {
                    (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
                } else {
                    ([("cache-control", cache_control)], format!("fresh {call}")).into_response()
                }
            }
        }),
    )
}

#[tokio::test]
async fn each_route_is_served_stale_within_its_own_window() {
    let clock = ManualClock::new();
    let (short, long, default) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let cache = ResponseCacheLayer::builder()
        .stale_while_revalidate(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = counting_at(
        "/short",
        &short,
        &[("cache-control", "max-age=10, stale-while-revalidate=5")],
    )
    .merge(counting_at(
        "/long",
        &long,
        &[("cache-control", "max-age=10, stale-while-revalidate=30")],
    ))
    .merge(counting_at(
        "/default",
        &default,
        &[("cache-control", "max-age=10")],
    ))
    .layer(cache.clone());
    let address = serve(app).await;
    let client = client();
    for path in ["/short", "/long", "/default"] {
        assert_eq!(fetch(&client, address, path).await.text(), "call 1");
    }

    // Ten seconds stale: past /short's 5, within /long's 30 and the
    // layer's 60 that /default gets.
    clock.advance(Duration::from_secs(20));
    let long_stale = fetch(&client, address, "/long").await;
    assert_eq!(long_stale.text(), "call 1");
    assert_eq!(long_stale.header("age"), Some("20"));
    let default_stale = fetch(&client, address, "/default").await;
    assert_eq!(default_stale.text(), "call 1");
    let short_fresh = fetch(&client, address, "/short").await;
    assert_eq!(short_fresh.text(), "call 2");
    assert_eq!(short_fresh.header("age"), Some("0"));
    assert_eq!(short.load(Ordering::SeqCst), 2);

    // The stale answers each started one reload behind: wait for its event
    // (the new response), not for time.
    for (path, calls) in [("/long", &long), ("/default", &default)] {
        let mut answer = fetch(&client, address, path).await;
        while answer.text() == "call 1" {
            tokio::time::sleep(Duration::from_millis(1)).await;
            answer = fetch(&client, address, path).await;
        }
        assert_eq!(answer.text(), "call 2", "{path}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{path}");
    }
    assert!(cache.stats().stale_served >= 2);
}

#[tokio::test]
async fn must_revalidate_is_never_served_stale_even_on_error() {
    for directive in ["must-revalidate", "proxy-revalidate"] {
        let clock = ManualClock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let cache_control = format!("max-age=10, {directive}, stale-if-error=600");
        let app = flaky(&calls, &failing, cache_control).layer(
            ResponseCacheLayer::builder()
                .stale_while_revalidate(Duration::from_secs(60))
                .stale_if_error(Duration::from_secs(600))
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        let address = serve(app).await;
        let client = client();
        assert_eq!(fetch(&client, address, "/page").await.text(), "fresh 1");
        assert_eq!(fetch(&client, address, "/page").await.text(), "fresh 1");

        // Stale within the layer's stale-while-revalidate: the handler
        // answers, not storage.
        clock.advance(Duration::from_secs(20));
        let revalidated = fetch(&client, address, "/page").await;
        assert_eq!(revalidated.text(), "fresh 2", "{directive}");
        assert_eq!(revalidated.header("age"), Some("0"));

        // Stale, and the handler fails: its 503 goes through, twice.
        failing.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(20));
        for _ in 0..2 {
            let failed = fetch(&client, address, "/page").await;
            assert_eq!(
                (failed.status, failed.text()),
                (StatusCode::SERVICE_UNAVAILABLE, "down"),
                "{directive}"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4, "{directive}");
    }
}

#[tokio::test]
async fn stale_if_error_comes_from_the_response() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let app = flaky(
        &calls,
        &failing,
        "max-age=10, stale-if-error=15".to_string(),
    )
    .layer(
        ResponseCacheLayer::builder()
            .stale_if_error(Duration::from_secs(600))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let address = serve(app).await;
    let client = client();
    assert_eq!(fetch(&client, address, "/page").await.text(), "fresh 1");
    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(20));
    let stale = fetch(&client, address, "/page").await;
    assert_eq!((stale.status, stale.text()), (StatusCode::OK, "fresh 1"));
    assert_eq!(stale.header("age"), Some("20"));
    // Twenty seconds stale: past the response's 15, within the layer's 600.
    clock.advance(Duration::from_secs(10));
    let failed = fetch(&client, address, "/page").await;
    assert_eq!(
        (failed.status, failed.text()),
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    );
}
