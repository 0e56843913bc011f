//! RFC 9111 §4.4: invalidating stored responses.

use surgeguard::clock::ManualClock;

use crate::origin::{answer, cached, get, send, Origin};

/// An origin whose `GET`s are stored for a minute (body `call N`), and
/// whose other methods answer `status` with `headers`.
fn origin(status: u16, headers: &'static [(&'static str, &'static str)]) -> std::sync::Arc<Origin> {
    Origin::new(move |seen, call| {
        if seen.method == http::Method::GET {
            answer(
                200,
                &[("cache-control", "max-age=60")],
                &format!("call {call}"),
            )
        } else {
            answer(status, headers, "done")
        }
    })
}

/// §4.4: a non-error response to an unsafe method invalidates the target
/// URI; methods the cache does not know are unsafe too.
#[tokio::test]
async fn s4_4_unsafe_methods_invalidate_the_target_uri() {
    for method in ["POST", "PUT", "DELETE", "PATCH", "PURGE", "FROB"] {
        for status in [200, 201, 204, 303] {
            let clock = ManualClock::new();
            let origin = origin(status, &[]);
            let cache = cached(&origin, &clock);
            get(&cache, "/r").await;
            assert_eq!(get(&cache, "/r").await.text(), "call 1");
            send(&cache, method, "/r", &[]).await;
            assert_eq!(
                get(&cache, "/r").await.text(),
                "call 3",
                "{method} {status}"
            );
        }
    }
}

/// §4.4: an error response changes nothing, so nothing is invalidated.
#[tokio::test]
async fn s4_4_an_error_response_does_not_invalidate() {
    for status in [400, 404, 409, 500, 503] {
        let clock = ManualClock::new();
        let origin = origin(status, &[]);
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        send(&cache, "POST", "/r", &[]).await;
        assert_eq!(get(&cache, "/r").await.text(), "call 1", "{status}");
    }
}

/// §4.4: unsafe requests always reach the handler, never storage.
#[tokio::test]
async fn s4_4_unsafe_requests_always_reach_the_origin() {
    let clock = ManualClock::new();
    let origin = origin(200, &[("cache-control", "max-age=60")]);
    let cache = cached(&origin, &clock);
    for _ in 0..3 {
        assert_eq!(send(&cache, "POST", "/r", &[]).await.text(), "done");
    }
    assert_eq!(origin.calls(), 3);
}

/// §4.4: safe methods invalidate nothing.
#[tokio::test]
async fn s4_4_safe_methods_do_not_invalidate() {
    let clock = ManualClock::new();
    let origin = origin(200, &[]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    for method in ["OPTIONS", "TRACE", "HEAD"] {
        send(&cache, method, "/r", &[]).await;
    }
    assert_eq!(get(&cache, "/r").await.text(), "call 1");
}

/// §4.4: the URIs in `Location` and `Content-Location` are invalidated when
/// they are on the same origin.
#[tokio::test]
async fn s4_4_location_and_content_location_on_the_same_origin() {
    let clock = ManualClock::new();
    let origin = origin(
        201,
        &[
            ("location", "/made"),
            ("content-location", "http://example.test/shown"),
        ],
    );
    let cache = cached(&origin, &clock);
    for path in ["/made", "/shown"] {
        get(&cache, path).await;
    }
    send(&cache, "POST", "/list", &[]).await;
    assert_eq!(get(&cache, "/made").await.text(), "call 4");
    assert_eq!(get(&cache, "/shown").await.text(), "call 5");
}

/// §4.4: a `Location` on another origin is not invalidated (it could be
/// used to wipe a site's entries from another one).
#[tokio::test]
async fn s4_4_another_origin_is_left_alone() {
    let clock = ManualClock::new();
    let origin = origin(201, &[("location", "http://other.test/r")]);
    let cache = cached(&origin, &clock);
    let other = [("host", "other.test")];
    crate::origin::send(&cache, "GET", "/r", &other).await;
    send(&cache, "POST", "/list", &[]).await;
    let again = send(&cache, "GET", "/r", &other).await;
    assert_eq!(again.text(), "call 1");
}

/// §4.4 with §4.1: every stored variant of the target goes.
#[tokio::test]
async fn s4_4_every_variant_is_invalidated() {
    let clock = ManualClock::new();
    let origin = Origin::new(|seen, call| {
        if seen.method != http::Method::GET {
            return answer(204, &[], "");
        }
        answer(
            200,
            &[("cache-control", "max-age=60"), ("vary", "accept-language")],
            &format!("call {call}"),
        )
    });
    let cache = cached(&origin, &clock);
    let ask = |language: &'static str| {
        let cache = cache.clone();
        async move {
            send(&cache, "GET", "/r", &[("accept-language", language)])
                .await
                .text()
                .to_string()
        }
    };
    assert_eq!(ask("de").await, "call 1");
    assert_eq!(ask("fr").await, "call 2");
    assert_eq!(
        (ask("de").await, ask("fr").await),
        ("call 1".into(), "call 2".into())
    );
    send(&cache, "DELETE", "/r", &[]).await;
    assert_eq!(ask("de").await, "call 4");
    assert_eq!(ask("fr").await, "call 5");
}

/// §4.4: the target URI is invalidated whichever request-target form the
/// unsafe request used: a `POST` in absolute form for the same origin
/// removes what a `GET` in origin form stored, and the other way round.
#[tokio::test]
async fn s4_4_the_target_is_invalidated_in_either_request_form() {
    for (stored, posted) in [
        ("/r", "http://example.test/r"),
        ("http://example.test/r", "/r"),
    ] {
        let clock = ManualClock::new();
        let origin = origin(204, &[]);
        let cache = cached(&origin, &clock);
        get(&cache, stored).await;
        assert_eq!(get(&cache, stored).await.text(), "call 1");
        send(&cache, "POST", posted, &[]).await;
        assert_eq!(
            get(&cache, stored).await.text(),
            "call 3",
            "{stored} {posted}"
        );
    }
}

/// §4.4 with §4.1: a variant stored under a `Vary` the resource later
/// dropped is invalidated too; it must not come back when the `Vary` does.
#[tokio::test]
async fn s4_4_a_variant_outlives_no_change_of_vary() {
    let clock = ManualClock::new();
    let varies = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let origin = {
        let varies = std::sync::Arc::clone(&varies);
        Origin::new(move |seen, call| {
            if seen.method != http::Method::GET {
                return answer(204, &[], "");
            }
            let body = format!("call {call}");
            if varies.load(std::sync::atomic::Ordering::SeqCst) {
                answer(
                    200,
                    &[
                        ("cache-control", "max-age=600"),
                        ("vary", "accept-language"),
                    ],
                    &body,
                )
            } else {
                answer(200, &[("cache-control", "max-age=600")], &body)
            }
        })
    };
    let cache = cached(&origin, &clock);
    let de = [("accept-language", "de")];
    assert_eq!(send(&cache, "GET", "/r", &de).await.text(), "call 1");
    // The resource stops varying: a request the stored variant does not
    // match stores a response without `Vary`.
    varies.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
    // The resource changes; everything stored for it goes.
    send(&cache, "PUT", "/r", &[]).await;
    // It varies again: the first variant stored now teaches the layer the
    // `Vary`, and the `de` request must not find the variant from before
    // the PUT.
    varies.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(&cache, "/r").await.text(), "call 4");
    let after = send(&cache, "GET", "/r", &de).await;
    assert_ne!(after.text(), "call 1");
}

/// §4.4: after an invalidation a `HEAD` is not answered from the removed
/// `GET` either.
#[tokio::test]
async fn s4_4_head_is_not_answered_from_an_invalidated_get() {
    let clock = ManualClock::new();
    let origin = Origin::new(|seen, call| {
        let call = call.to_string();
        if seen.method == http::Method::POST {
            return answer(204, &[], "");
        }
        answer(
            200,
            &[("cache-control", "max-age=60"), ("x-call", &call)],
            "page",
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    assert_eq!(
        send(&cache, "HEAD", "/r", &[]).await.header("x-call"),
        Some("1")
    );
    send(&cache, "POST", "/r", &[]).await;
    assert_eq!(
        send(&cache, "HEAD", "/r", &[]).await.header("x-call"),
        Some("3")
    );
}
