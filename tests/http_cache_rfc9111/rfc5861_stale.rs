//! RFC 5861 (stale-while-revalidate, stale-if-error), and the layer's
//! opt-in defaults (RFC 9111 §4.2.4: serving stale by configuration).

use surgeguard::clock::ManualClock;
use tower::Layer;

use crate::origin::{answer, cached, get, inner, layer_with, seconds, Origin};

/// RFC 5861 §3: within the response's own stale-while-revalidate, the
/// stale response answers at once and one revalidation runs behind; no
/// layer setting is needed.
#[tokio::test]
async fn rfc5861_3_stale_while_revalidate_from_the_response() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[("cache-control", "max-age=10, stale-while-revalidate=30")],
    );
    let layer = layer_with(&clock, |b| b);
    let cache = layer.layer(inner(&origin));
    get(&cache, "/r").await;
    clock.advance(seconds(20));
    let stale = get(&cache, "/r").await;
    assert_eq!((stale.text(), stale.header("age")), ("call 1", Some("20")));
    // Wait for the event (the revalidation behind), not for a time.
    while origin.calls() < 2 || get(&cache, "/r").await.text() == "call 1" {
        tokio::task::yield_now().await;
    }
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
    assert_eq!(origin.calls(), 2);
    assert!(layer.stats().stale_served >= 1);
    // Past the window: the request waits for the origin.
    clock.advance(seconds(50));
    assert_eq!(get(&cache, "/r").await.text(), "call 3");
}

/// RFC 5861 §4: within the response's own stale-if-error, a failing origin
/// is covered by the stale response; past it, the error goes through.
#[tokio::test]
async fn rfc5861_4_stale_if_error_from_the_response() {
    let clock = ManualClock::new();
    let origin = Origin::new(|_, call| match call {
        1 => answer(
            200,
            &[("cache-control", "max-age=10, stale-if-error=30")],
            "fresh",
        ),
        _ => answer(503, &[], "down"),
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(20));
    let stale = get(&cache, "/r").await;
    assert_eq!((stale.status.as_u16(), stale.text()), (200, "fresh"));
    clock.advance(seconds(30));
    assert_eq!(get(&cache, "/r").await.status, 503);
}

/// RFC 9111 §4.2.4: the layer's windows are an opt-in that applies to a
/// response that names none; without it a `max-age` response is never
/// served stale.
#[tokio::test]
async fn s4_2_4_the_layers_windows_are_an_opt_in_default() {
    let clock = ManualClock::new();
    let origin = Origin::new(|_, call| match call {
        1 => answer(200, &[("cache-control", "max-age=10")], "fresh"),
        _ => answer(503, &[], "down"),
    });
    let layer = layer_with(&clock, |b| b.stale_if_error(seconds(60)));
    let cache = layer.layer(inner(&origin));
    get(&cache, "/r").await;
    clock.advance(seconds(20));
    assert_eq!(get(&cache, "/r").await.text(), "fresh");
    let plain = cached(&origin, &clock);
    get(&plain, "/r").await;
    assert_eq!(get(&plain, "/r").await.status, 503);
}
