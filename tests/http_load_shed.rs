//! LoadShedLayer on a real axum server, with a hyper client: 503 with
//! Retry-After once the limit is full, Critical requests kept, permits
//! released when responses finish or are abandoned, 503/504 responses and
//! inner errors teaching the limit.

#![cfg(all(feature = "tower", feature = "axum"))]

mod http_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use http_support::{client, send, serve};
use surgeguard::http::LoadShedLayer;
use surgeguard::shed::{Priority, Shedder};
use tokio::sync::Semaphore;
use tower::{service_fn, Layer, ServiceExt};

fn classify(head: &surgeguard::http::RequestHead<'_>) -> Priority {
    if head.method() == Method::POST && head.uri().path() == "/checkout" {
        Priority::Critical
    } else {
        Priority::Normal
    }
}

/// Waits until `done` holds, yielding to the runtime; fails instead of hanging.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gave up waiting for: {what}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_limit_answers_503_with_retry_after_and_keeps_checkout() {
    // Limit 5: Normal requests may hold 4, the fifth slot is Critical's.
    let shedder = Shedder::builder().max_concurrency(5).build().unwrap();
    // Handlers wait for a permit of this semaphore: the test hands them out.
    let release = Arc::new(Semaphore::new(0));
    let held = {
        let release = release.clone();
        move || {
            let release = release.clone();
            async move {
                let _go = release.acquire().await.unwrap();
                "slow page"
            }
        }
    };
    let app = Router::new()
        .route("/slow", get(held))
        .route("/checkout", post(|| async { "paid" }))
        .layer(
            LoadShedLayer::new(shedder.clone())
                .priority(classify)
                .problem_body(true),
        );
    let address = serve(app).await;
    let client = client();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { send(&client, address, Method::GET, "/slow", &[]).await })
        })
        .collect();
    until("four slow requests in flight", || shedder.in_flight() == 4).await;

    let shed = send(&client, address, Method::GET, "/slow", &[]).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(
        shed.header("content-type"),
        Some("application/problem+json")
    );
    assert!(shed.text().contains("temporary-reduced-capacity"));

    let checkout = send(&client, address, Method::POST, "/checkout", &[]).await;
    assert_eq!(
        checkout.status,
        StatusCode::OK,
        "Critical uses the reserved slot"
    );

    release.add_permits(4);
    for request in slow {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
    until("every permit released", || shedder.in_flight() == 0).await;
    assert_eq!(shedder.stats().rejected_normal, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_response_releases_its_permit() {
    let shedder = Shedder::builder().max_concurrency(2).build().unwrap();
    let service = LoadShedLayer::new(shedder.clone()).layer(service_fn(|_: Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let call = tokio::spawn(service.oneshot(Request::new(())));
    until("the request admitted", || shedder.in_flight() == 1).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(shedder.in_flight(), 0);
}

#[tokio::test]
async fn overload_answers_and_errors_teach_an_adaptive_limit() {
    use surgeguard::shed::AdaptiveLimit;
    let shedder = Shedder::builder()
        .limit(AdaptiveLimit::aimd().min(1).max(100).initial(50))
        .build()
        .unwrap();
    let layer = LoadShedLayer::new(shedder.clone());
    let overloaded = layer.layer(service_fn(|_: Request<()>| async {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        Ok::<_, Infallible>(response)
    }));
    for _ in 0..10 {
        let response = overloaded.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let after_503s = shedder.limit();
    assert!(after_503s < 50, "upstream 503s are drops: {after_503s}");
    let failing = layer.layer(service_fn(|_: Request<()>| async {
        Err::<Response<Full<Bytes>>, &str>("upstream timed out")
    }));
    let error = failing.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(
        error, "upstream timed out",
        "inner errors pass through unchanged"
    );
    assert!(shedder.limit() < after_503s, "and count as drops");
}

#[tokio::test(start_paused = true)]
async fn with_a_queue_a_request_waits_for_a_slot_instead_of_a_503() {
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(4, Duration::from_secs(1))
        .build()
        .unwrap();
    let release = Arc::new(Semaphore::new(0));
    let service = {
        let release = release.clone();
        LoadShedLayer::new(shedder.clone()).layer(service_fn(move |_: Request<()>| {
            let release = release.clone();
            async move {
                let _go = release.acquire().await.unwrap();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
            }
        }))
    };
    let first = tokio::spawn(service.clone().oneshot(Request::new(())));
    until("the first admitted", || shedder.in_flight() == 1).await;
    let second = tokio::spawn(service.oneshot(Request::new(())));
    until("the second queued", || shedder.stats().queued == 1).await;
    release.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    release.add_permits(1);
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(shedder.in_flight(), 0);
}
