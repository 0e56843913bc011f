//! RFC 9111 §3: storing responses in caches.

use surgeguard::clock::ManualClock;

use crate::origin::{cached, get, send, Origin};

/// §3: a response with explicit freshness may be stored whatever its final
/// status code; 302, 303, 307, 4xx and 5xx included.
#[tokio::test]
async fn s3_every_final_status_with_explicit_freshness_is_stored() {
    for status in [200, 203, 302, 303, 307, 400, 403, 404, 410, 500, 502, 503] {
        let clock = ManualClock::new();
        let origin = Origin::fixed(status, &[("cache-control", "max-age=60")]);
        let cache = cached(&origin, &clock);
        assert_eq!(get(&cache, "/r").await.status.as_u16(), status);
        let again = get(&cache, "/r").await;
        assert_eq!((again.status.as_u16(), again.text()), (status, "call 1"));
        assert_eq!(origin.calls(), 1, "{status}");
    }
}

/// §3: `Expires` is explicit freshness too, for any final status.
#[tokio::test]
async fn s3_expires_makes_a_redirect_storable() {
    let clock = ManualClock::new();
    let expires = crate::origin::date_from_now(3_600);
    let origin = Origin::new(move |_, call| {
        crate::origin::answer(
            307,
            &[("expires", expires.as_str()), ("location", "/elsewhere")],
            &format!("call {call}"),
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    assert_eq!(get(&cache, "/r").await.text(), "call 1");
    assert_eq!(origin.calls(), 1);
}

/// §3: without freshness information and with a status code that is not
/// heuristically cacheable, nothing is stored.
#[tokio::test]
async fn s3_a_redirect_without_freshness_is_not_stored() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(302, &[("location", "/x"), ("etag", "\"a\"")]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
}

/// §3, §5.2.2.5: `no-store` is never stored.
#[tokio::test]
async fn s3_no_store_is_not_stored() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60, no-store")]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
}

/// §3, §5.2.2.3: `must-understand` with a status the cache understands
/// overrides `no-store`; with one it does not know, nothing is stored.
#[tokio::test]
async fn s3_must_understand_stores_only_known_statuses() {
    for (status, calls) in [(200, 1), (299, 2)] {
        let clock = ManualClock::new();
        let origin = Origin::fixed(
            status,
            &[("cache-control", "max-age=60, no-store, must-understand")],
        );
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        get(&cache, "/r").await;
        assert_eq!(origin.calls(), calls, "{status}");
    }
}

/// §3: a partial response (206) is not stored by a cache that does not
/// combine ranges.
#[tokio::test]
async fn s3_partial_content_is_not_stored() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        206,
        &[
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 0-5/10"),
        ],
    );
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    get(&cache, "/r").await;
    assert_eq!(origin.calls(), 2);
}

/// §5.2.1.5: a request with `no-store` is neither answered from storage
/// nor stored.
#[tokio::test]
async fn s5_2_1_5_request_no_store_bypasses() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60")]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    let bypass = send(&cache, "GET", "/r", &[("cache-control", "no-store")]).await;
    assert_eq!(bypass.text(), "call 2");
    assert_eq!(get(&cache, "/r").await.text(), "call 1");
}

/// §5.2.1.7: `only-if-cached` with nothing stored that may answer is a
/// 504, and the origin is not asked.
#[tokio::test]
async fn s5_2_1_7_only_if_cached_without_a_stored_response_is_504() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60")]);
    let cache = cached(&origin, &clock);
    let only = [("cache-control", "only-if-cached")];
    assert_eq!(send(&cache, "GET", "/r", &only).await.status, 504);
    assert_eq!(origin.calls(), 0);
    get(&cache, "/r").await;
    assert_eq!(send(&cache, "GET", "/r", &only).await.text(), "call 1");
}
