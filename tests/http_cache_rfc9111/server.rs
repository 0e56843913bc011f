//! A few of the rules through a real axum server on 127.0.0.1:0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::Method;
use surgeguard::clock::ManualClock;
use surgeguard::http::ResponseCacheLayer;

use crate::http_support::{client, get as fetch, send, serve};

/// A route that honours `If-None-Match` for `"v1"`, counting full answers
/// and `304`s apart; `POST` answers `204`.
fn app(
    full: &Arc<AtomicUsize>,
    not_modified: &Arc<AtomicUsize>,
    layer: ResponseCacheLayer,
) -> Router {
    let (full, not_modified) = (Arc::clone(full), Arc::clone(not_modified));
    Router::new()
        .route(
            "/page",
            get(move |headers: HeaderMap| {
                let (full, not_modified) = (Arc::clone(&full), Arc::clone(&not_modified));
                async move {
                    let cc = [("cache-control", "max-age=10"), ("etag", "\"v1\"")];
                    if headers.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                        not_modified.fetch_add(1, Ordering::SeqCst);
                        return (StatusCode::NOT_MODIFIED, cc).into_response();
                    }
                    let call = full.fetch_add(1, Ordering::SeqCst) + 1;
                    (cc, format!("page {call}")).into_response()
                }
            })
            .post(|| async { StatusCode::NO_CONTENT }),
        )
        .layer(layer)
}

/// §4.3.4 over HTTP/1.1: a revalidation's `304` freshens the stored page,
/// which the client gets in full.
#[tokio::test]
async fn s4_3_4_revalidation_through_a_real_server() {
    let clock = ManualClock::new();
    let (full, not_modified) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let layer = ResponseCacheLayer::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let address = serve(app(&full, &not_modified, layer)).await;
    let client = client();
    assert_eq!(fetch(&client, address, "/page").await.text(), "page 1");
    clock.advance(std::time::Duration::from_secs(11));
    let revalidated = fetch(&client, address, "/page").await;
    assert_eq!(
        (revalidated.status, revalidated.text()),
        (StatusCode::OK, "page 1")
    );
    assert_eq!(revalidated.header("age"), Some("0"));
    assert_eq!(fetch(&client, address, "/page").await.text(), "page 1");
    assert_eq!(
        (
            full.load(Ordering::SeqCst),
            not_modified.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

/// §4.4 over HTTP/1.1: a `POST` invalidates the stored page.
#[tokio::test]
async fn s4_4_invalidation_through_a_real_server() {
    let clock = ManualClock::new();
    let (full, not_modified) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let layer = ResponseCacheLayer::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let address = serve(app(&full, &not_modified, layer)).await;
    let client = client();
    assert_eq!(fetch(&client, address, "/page").await.text(), "page 1");
    assert_eq!(fetch(&client, address, "/page").await.text(), "page 1");
    let posted = send(&client, address, Method::POST, "/page", &[]).await;
    assert_eq!(posted.status, StatusCode::NO_CONTENT);
    assert_eq!(fetch(&client, address, "/page").await.text(), "page 2");
}
