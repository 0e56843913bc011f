//! The response cache's two size bounds: any one bound a user would write
//! builds, the other is derived from it, and a body at the derived limit is
//! really stored; only contradicting bounds are an error, and its message
//! says what to change.

#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use surgeguard::clock::ManualClock;
use surgeguard::http::{ResponseCacheBuildError, ResponseCacheLayer};
use tower::{Layer, Service, ServiceExt};

/// Bounds from 64 KiB up: powers of two, and values nobody rounds.
fn plausible_bounds() -> Vec<u64> {
    let mut bounds: Vec<u64> = (16..=36).map(|shift| 1u64 << shift).collect();
    bounds.extend([100_000, 1_000_000, (3 << 20) + 1, 10_000_000, 999_999_999]);
    bounds
}

/// Two GETs of one fresh resource whose body is `body_len` bytes, through
/// `layer`; returns how often the handler ran.
async fn handler_calls_for_two_gets(layer: &ResponseCacheLayer, body_len: usize) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = tower::service_fn(move |_request: http::Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let response = http::Response::builder()
                .header("cache-control", "max-age=60")
                .body(Full::new(Bytes::from(vec![b'x'; body_len])))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    let mut service = layer.layer(handler);
    for _ in 0..2 {
        let request = http::Request::get("http://shop.example/asset")
            .body(())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), body_len);
    }
    calls.load(Ordering::SeqCst)
}

#[tokio::test]
async fn any_max_bytes_from_64_kib_up_builds_and_stores_a_body_at_its_derived_limit() {
    for max_bytes in plausible_bounds() {
        let layer = ResponseCacheLayer::builder()
            .max_bytes(max_bytes)
            .clock(ManualClock::new())
            .build()
            .unwrap_or_else(|error| panic!("max_bytes({max_bytes}): {error}"));
        assert_eq!(layer.max_bytes(), max_bytes);
        let body_limit = layer.max_body_bytes();
        assert!(
            body_limit > 0 && body_limit <= 1 << 20,
            "{max_bytes}: {body_limit}"
        );
        if max_bytes >= 16 << 20 {
            assert_eq!(body_limit, 1 << 20, "the default body limit, when it fits");
        }
        assert_eq!(
            handler_calls_for_two_gets(&layer, body_limit).await,
            1,
            "max_bytes({max_bytes}): a body of {body_limit} bytes, at the limit, is stored"
        );
    }
}

#[tokio::test]
async fn any_max_body_bytes_builds_and_the_bound_grows_to_hold_it() {
    for max_body_bytes in [1, 1_000, 64 << 10, 1 << 20, 5 << 20, 64 << 20, 1 << 30] {
        let layer = ResponseCacheLayer::builder()
            .max_body_bytes(max_body_bytes)
            .clock(ManualClock::new())
            .build()
            .unwrap_or_else(|error| panic!("max_body_bytes({max_body_bytes}): {error}"));
        assert_eq!(layer.max_body_bytes(), max_body_bytes);
        assert!(
            layer.max_bytes() >= 64 << 20,
            "never below the default bound"
        );
        assert!(layer.max_bytes() >= 16 * max_body_bytes as u64);
    }
    let layer = ResponseCacheLayer::builder()
        .max_body_bytes(5 << 20)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    assert_eq!(handler_calls_for_two_gets(&layer, 5 << 20).await, 1);
}

#[test]
fn the_defaults_build() {
    let layer = ResponseCacheLayer::builder().build().unwrap();
    assert_eq!(
        (layer.max_bytes(), layer.max_body_bytes()),
        (64 << 20, 1 << 20)
    );
}

#[test]
fn both_bounds_set_and_contradicting_is_an_error_that_says_what_to_change() {
    let error = ResponseCacheLayer::builder()
        .max_bytes(1 << 20)
        .max_body_bytes(4 << 20)
        .build()
        .unwrap_err();
    let ResponseCacheBuildError::BodyLimitTooLarge {
        max_body_bytes,
        most,
        max_bytes,
        least_max_bytes,
    } = error.clone()
    else {
        panic!("{error:?}");
    };
    assert_eq!((max_body_bytes, max_bytes), (4 << 20, 1 << 20));
    assert!(most < 1 << 20);
    assert!(least_max_bytes > 4 << 20);
    let message = error.to_string();
    assert!(message.contains("lower max_body_bytes"), "{message}");
    assert!(message.contains("raise max_bytes"), "{message}");
    // What the message proposes builds.
    for fixed in [
        ResponseCacheLayer::builder()
            .max_bytes(1 << 20)
            .max_body_bytes(most as usize),
        ResponseCacheLayer::builder()
            .max_bytes(least_max_bytes)
            .max_body_bytes(4 << 20),
    ] {
        fixed.build().unwrap();
    }
}

#[test]
fn absurd_bounds_are_errors_not_panics() {
    // The least accepted bound builds, with a body limit that fits it.
    let least = ResponseCacheLayer::builder()
        .max_bytes(8 << 10)
        .build()
        .unwrap();
    assert_eq!(least.max_body_bytes(), 512);
    for max_bytes in [0, 1, 4096, (8 << 10) - 1] {
        let error = ResponseCacheLayer::builder()
            .max_bytes(max_bytes)
            .build()
            .unwrap_err();
        assert!(
            matches!(error, ResponseCacheBuildError::MaxBytesTooSmall { .. }),
            "{max_bytes}: {error:?}"
        );
    }
    let too_big = ResponseCacheLayer::builder()
        .max_body_bytes(usize::MAX)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            too_big,
            ResponseCacheBuildError::BodyLimitOverMaximum { .. }
        ),
        "raising max_bytes cannot help, so the error must not propose it: {too_big:?}"
    );
    assert!(ResponseCacheLayer::builder()
        .max_bytes(u64::MAX)
        .build()
        .is_ok());
}
