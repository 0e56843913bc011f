//! RFC 9111 §3.5 and §5.2.2.7, §5.2.2.10: what a shared cache and a
//! private one may store.

use surgeguard::clock::ManualClock;
use tower::Layer;

use crate::origin::{cached, get, inner, layer_with, seconds, send, Origin};

/// §5.2.2.7: a shared cache does not store a `private` response; a
/// private cache does.
#[tokio::test]
async fn s5_2_2_7_private_is_stored_only_by_a_private_cache() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "private, max-age=60")]);
    let shared = cached(&origin, &clock);
    get(&shared, "/r").await;
    assert_eq!(get(&shared, "/r").await.text(), "call 2");
    let private = layer_with(&clock, |b| b.private()).layer(inner(&origin));
    get(&private, "/r").await;
    assert_eq!(get(&private, "/r").await.text(), "call 3");
}

/// §5.2.2.10: a private cache ignores `s-maxage`.
#[tokio::test]
async fn s5_2_2_10_a_private_cache_ignores_s_maxage() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60, s-maxage=5")]);
    let private = layer_with(&clock, |b| b.private()).layer(inner(&origin));
    get(&private, "/r").await;
    clock.advance(seconds(30));
    assert_eq!(get(&private, "/r").await.text(), "call 1");
    let shared = cached(&origin, &clock);
    get(&shared, "/r").await;
    clock.advance(seconds(30));
    assert_eq!(get(&shared, "/r").await.text(), "call 3");
}

/// §3.5: a shared cache stores a response to a request with
/// `Authorization` only when the response explicitly allows it.
#[tokio::test]
async fn s3_5_authorization_needs_an_explicit_permission() {
    for (cc, calls) in [
        ("max-age=60", 2),
        ("public, max-age=60", 1),
        ("s-maxage=60", 1),
        ("must-revalidate, max-age=60", 1),
    ] {
        let clock = ManualClock::new();
        let origin = Origin::new(move |_, call| {
            crate::origin::answer(200, &[("cache-control", cc)], &format!("call {call}"))
        });
        let cache = cached(&origin, &clock);
        let auth = [("authorization", "Bearer t")];
        send(&cache, "GET", "/r", &auth).await;
        send(&cache, "GET", "/r", &auth).await;
        assert_eq!(origin.calls(), calls, "{cc}");
    }
}

/// §5.2.2.10: `s-maxage` carries `proxy-revalidate` for a shared cache, so
/// once stale the response is not served without validation, not even to
/// a request that accepts stale responses with `max-stale` (§5.2.2.8).
#[tokio::test]
async fn s5_2_2_10_s_maxage_is_not_served_stale_to_max_stale() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "s-maxage=10"), ("etag", "\"a\"")]);
    let shared = cached(&origin, &clock);
    get(&shared, "/r").await;
    clock.advance(seconds(15));
    let asked = send(&shared, "GET", "/r", &[("cache-control", "max-stale=60")]).await;
    assert_eq!(asked.text(), "call 2");
    assert_eq!(origin.calls(), 2);
}
