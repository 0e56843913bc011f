//! RFC 9111 §4.3: validation, and §3.2 / §4.3.4: freshening stored
//! responses with a `304`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use surgeguard::clock::ManualClock;
use tower::Layer;

use crate::origin::{answer, cached, get, inner, layer_with, seconds, send, Origin};

const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// An origin whose representation is `"v1"` (body `body v1`): a `304` to a
/// request whose `If-None-Match` names it, else the full response, both
/// with `cache_control`.
fn validating(cache_control: &'static str) -> Arc<Origin> {
    Origin::new(move |seen, call| {
        if seen.header("if-none-match") == Some("\"v1\"") {
            return answer(
                304,
                &[
                    ("cache-control", cache_control),
                    ("etag", "\"v1\""),
                    ("x-call", &call.to_string()),
                ],
                "",
            );
        }
        answer(
            200,
            &[
                ("cache-control", cache_control),
                ("etag", "\"v1\""),
                ("last-modified", MODIFIED),
                ("x-call", &call.to_string()),
            ],
            "body v1",
        )
    })
}

/// §4.3.1: a stale stored response with an entity tag is revalidated with
/// `If-None-Match` (and its `Last-Modified` as `If-Modified-Since`).
#[tokio::test]
async fn s4_3_1_a_stale_response_is_revalidated_with_its_validators() {
    let clock = ManualClock::new();
    let origin = validating("max-age=10");
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(11));
    let revalidated = get(&cache, "/r").await;
    assert_eq!(
        (revalidated.status.as_u16(), revalidated.text()),
        (200, "body v1")
    );
    let conditional = origin.request(2);
    assert_eq!(conditional.header("if-none-match"), Some("\"v1\""));
    assert_eq!(conditional.header("if-modified-since"), Some(MODIFIED));
}

/// §4.3.1: with only `Last-Modified`, the request carries
/// `If-Modified-Since`.
#[tokio::test]
async fn s4_3_1_last_modified_alone_becomes_if_modified_since() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[("cache-control", "max-age=10"), ("last-modified", MODIFIED)],
    );
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(11));
    get(&cache, "/r").await;
    let conditional = origin.request(2);
    assert_eq!(conditional.header("if-modified-since"), Some(MODIFIED));
    assert_eq!(conditional.header("if-none-match"), None);
}

/// §4.3.3, §4.3.4, §3.2: a `304` freshens the stored response: its header
/// fields replace the stored ones, the stored body is served, and the
/// response is fresh again for the lifetime the `304` gives.
#[tokio::test]
async fn s4_3_4_a_304_freshens_the_stored_response() {
    let clock = ManualClock::new();
    let origin = validating("max-age=10");
    let cache = cached(&origin, &clock);
    let first = get(&cache, "/r").await;
    assert_eq!(first.header("x-call"), Some("1"));
    clock.advance(seconds(11));
    let freshened = get(&cache, "/r").await;
    assert_eq!(freshened.text(), "body v1");
    assert_eq!(freshened.header("x-call"), Some("2"));
    assert_eq!(freshened.header("last-modified"), Some(MODIFIED));
    assert_eq!(freshened.header("age"), Some("0"));
    // Fresh again: storage answers.
    clock.advance(seconds(5));
    let hit = get(&cache, "/r").await;
    assert_eq!((hit.text(), hit.header("age")), ("body v1", Some("5")));
    assert_eq!(origin.calls(), 2);
}

/// §4.3.3: a full response to the conditional request replaces the stored
/// one.
#[tokio::test]
async fn s4_3_3_a_full_response_replaces_the_stored_one() {
    let clock = ManualClock::new();
    let origin = Origin::new(|_, call| {
        let etag = format!("\"v{call}\"");
        answer(
            200,
            &[("cache-control", "max-age=10"), ("etag", &etag)],
            &format!("body {call}"),
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(11));
    assert_eq!(get(&cache, "/r").await.text(), "body 2");
    assert_eq!(origin.request(2).header("if-none-match"), Some("\"v1\""));
    assert_eq!(get(&cache, "/r").await.text(), "body 2");
    assert_eq!(origin.calls(), 2);
}

/// §5.2.2.4: a `no-cache` response is stored but revalidated before every
/// use.
#[tokio::test]
async fn s5_2_2_4_no_cache_is_stored_and_revalidated_every_time() {
    let clock = ManualClock::new();
    let origin = validating("no-cache");
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    for call in 2..5 {
        let answer = get(&cache, "/r").await;
        assert_eq!(answer.text(), "body v1");
        assert_eq!(origin.request(call).header("if-none-match"), Some("\"v1\""));
    }
    assert_eq!(origin.calls(), 4);
}

/// §5.2.2.2: a `must-revalidate` response, once stale, is revalidated, and
/// not served stale when the origin fails, whatever the stale windows.
#[tokio::test]
async fn s5_2_2_2_must_revalidate_once_stale() {
    for directive in ["must-revalidate", "proxy-revalidate"] {
        let clock = ManualClock::new();
        let failing = Arc::new(AtomicBool::new(false));
        let down = Arc::clone(&failing);
        let cc: &'static str = match directive {
            "must-revalidate" => "max-age=10, must-revalidate, stale-if-error=600",
            _ => "max-age=10, proxy-revalidate, stale-if-error=600",
        };
        let origin = Origin::new(move |seen, _| {
            if down.load(Ordering::SeqCst) {
                return answer(503, &[], "down");
            }
            match seen.header("if-none-match") {
                Some("\"v1\"") => answer(304, &[("cache-control", cc)], ""),
                _ => answer(200, &[("cache-control", cc), ("etag", "\"v1\"")], "body"),
            }
        });
        let layer = layer_with(&clock, |b| b.stale_if_error(seconds(600)));
        let cache = layer.layer(inner(&origin));
        get(&cache, "/r").await;
        clock.advance(seconds(11));
        assert_eq!(get(&cache, "/r").await.text(), "body");
        assert_eq!(origin.request(2).header("if-none-match"), Some("\"v1\""));
        failing.store(true, Ordering::SeqCst);
        clock.advance(seconds(11));
        let failed = get(&cache, "/r").await;
        assert_eq!(
            (failed.status.as_u16(), failed.text()),
            (503, "down"),
            "{directive}"
        );
    }
}

/// §5.2.1.4, §5.2.1.1: a request with `no-cache` or `max-age=0` makes the
/// cache revalidate, with a conditional request, not refetch blind.
#[tokio::test]
async fn s5_2_1_4_request_no_cache_revalidates() {
    for cc in ["no-cache", "max-age=0"] {
        let clock = ManualClock::new();
        let origin = validating("max-age=60");
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        let answer = send(&cache, "GET", "/r", &[("cache-control", cc)]).await;
        assert_eq!(answer.text(), "body v1");
        assert_eq!(
            origin.request(2).header("if-none-match"),
            Some("\"v1\""),
            "{cc}"
        );
    }
}

/// §4.3.2: a client's conditional request is answered by the cache from a
/// response it just revalidated: `304` when the client holds it.
#[tokio::test]
async fn s4_3_2_a_client_condition_is_answered_after_revalidation() {
    let clock = ManualClock::new();
    let origin = validating("max-age=10");
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(11));
    let answer = send(&cache, "GET", "/r", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(answer.status, 304);
    let other = send(&cache, "GET", "/r", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!((other.status.as_u16(), other.text()), (200, "body v1"));
}

/// §4.3.2: with nothing stored, the client's own validators go to the
/// origin as they are, and its `304` goes back to the client, not into
/// storage.
#[tokio::test]
async fn s4_3_2_client_validators_on_a_miss_pass_through_and_304_is_not_stored() {
    let clock = ManualClock::new();
    let origin = validating("max-age=60");
    let cache = cached(&origin, &clock);
    let answer = send(&cache, "GET", "/r", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(answer.status, 304);
    assert_eq!(origin.request(1).header("if-none-match"), Some("\"v1\""));
    let full = get(&cache, "/r").await;
    assert_eq!((full.status.as_u16(), full.text()), (200, "body v1"));
    assert_eq!(origin.calls(), 2);
}

/// §4.3 with the cache's single flight: a storm of requests for one stale
/// entry makes one conditional request, and every request gets the body.
///
/// Cannot flake: the origin holds its answer until every request has
/// reached the cache (counted by the layer's stats, an event, not a
/// time), and a request that arrives after the revalidation ended finds
/// the freshened entry; no interleaving makes a second origin call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_3_a_storm_for_a_stale_entry_makes_one_conditional_request() {
    let clock = ManualClock::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = validating("max-age=10");
    let opened = Arc::clone(&gate);
    let inner_origin = inner(&origin);
    let gated = tower::util::BoxCloneSyncService::new(tower::service_fn(
        move |request: http::Request<()>| {
            let (opened, mut inner_origin) = (Arc::clone(&opened), inner_origin.clone());
            async move {
                if request.headers().contains_key("if-none-match") {
                    opened.acquire().await.unwrap().forget();
                }
                tower::Service::call(&mut inner_origin, request).await
            }
        },
    ));
    let layer = layer_with(&clock, |b| b);
    let cache = layer.layer(gated);
    get(&cache, "/r").await;
    clock.advance(seconds(11));
    let before = layer.stats();
    let mut storm = Vec::new();
    for _ in 0..64 {
        let cache = cache.clone();
        storm.push(tokio::spawn(async move {
            get(&cache, "/r").await.text().to_string()
        }));
    }
    loop {
        let now = layer.stats();
        if (now.loads + now.coalesced) - (before.loads + before.coalesced) >= 64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    gate.add_permits(64);
    for request in storm {
        assert_eq!(request.await.unwrap(), "body v1");
    }
    assert_eq!(origin.calls(), 2);
    assert_eq!(origin.request(2).header("if-none-match"), Some("\"v1\""));
}

/// §4.3.4 with §3.2: a `304` does not replace `Content-Length`, which
/// describes the stored body it does not carry.
#[tokio::test]
async fn s4_3_4_a_304_does_not_overwrite_content_length() {
    let clock = ManualClock::new();
    let origin = Origin::new(|seen, _| {
        if seen.header("if-none-match") == Some("\"v1\"") {
            return answer(
                304,
                &[
                    ("cache-control", "max-age=10"),
                    ("etag", "\"v1\""),
                    ("content-length", "0"),
                ],
                "",
            );
        }
        answer(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("etag", "\"v1\""),
                ("content-length", "7"),
            ],
            "body v1",
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(11));
    let freshened = get(&cache, "/r").await;
    assert_eq!(freshened.header("content-length"), Some("7"));
    assert_eq!(freshened.text(), "body v1");
    assert_eq!(origin.calls(), 2);
}
