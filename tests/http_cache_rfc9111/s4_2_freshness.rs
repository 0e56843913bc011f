//! RFC 9111 §4.2: freshness.

use surgeguard::clock::ManualClock;
use tower::Layer;

use crate::origin::{answer, cached, date_from_now, get, inner, layer_with, seconds, Origin};

/// §4.2.1: `s-maxage` wins over `max-age` in a shared cache, and `max-age`
/// over `Expires`.
#[tokio::test]
async fn s4_2_1_s_maxage_then_max_age_then_expires() {
    let clock = ManualClock::new();
    let far = date_from_now(3_600);
    let origin = Origin::new(move |seen, call| {
        let cc = match seen.uri.as_str() {
            "/s" => "max-age=100, s-maxage=10",
            _ => "max-age=10",
        };
        answer(
            200,
            &[("cache-control", cc), ("expires", far.as_str())],
            &format!("call {call}"),
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/s").await;
    get(&cache, "/m").await;
    clock.advance(seconds(9));
    assert_eq!(get(&cache, "/s").await.text(), "call 1");
    assert_eq!(get(&cache, "/m").await.text(), "call 2");
    clock.advance(seconds(2));
    assert_eq!(get(&cache, "/s").await.text(), "call 3");
    assert_eq!(get(&cache, "/m").await.text(), "call 4");
}

/// §4.2 with §4.2.4: a `max-age` response goes stale at its age and is not
/// served stale when nothing allows it; the origin answers.
#[tokio::test]
async fn s4_2_a_max_age_response_goes_stale_at_its_age() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=10")]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(9));
    assert_eq!(get(&cache, "/r").await.text(), "call 1");
    clock.advance(seconds(1));
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
}

/// §4.2.4: a stale response is not served when the origin fails, unless
/// the response or the configuration allows it.
#[tokio::test]
async fn s4_2_4_stale_is_not_served_on_error_without_permission() {
    let clock = ManualClock::new();
    let origin = Origin::new(|_, call| match call {
        1 => answer(200, &[("cache-control", "max-age=10")], "fresh"),
        _ => answer(503, &[], "down"),
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(20));
    let failed = get(&cache, "/r").await;
    assert_eq!((failed.status.as_u16(), failed.text()), (503, "down"));
}

/// §4.2.2: a heuristically cacheable response with `Last-Modified` and no
/// explicit freshness is fresh for a fraction of its age (10% by default).
#[tokio::test]
async fn s4_2_2_heuristic_freshness_is_a_tenth_of_the_time_since_last_modified() {
    let clock = ManualClock::new();
    let modified = date_from_now(-10 * 3_600);
    let date = date_from_now(0);
    let origin = Origin::new(move |_, call| {
        answer(
            200,
            &[
                ("last-modified", modified.as_str()),
                ("date", date.as_str()),
            ],
            &format!("call {call}"),
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    // An hour of freshness, give or take the second the test takes.
    clock.advance(seconds(3_500));
    assert_eq!(get(&cache, "/r").await.text(), "call 1");
    clock.advance(seconds(200));
    get(&cache, "/r").await;
    assert_eq!(origin.calls(), 2);
}

/// §4.2.2: heuristics apply only to heuristically cacheable status codes.
#[tokio::test]
async fn s4_2_2_no_heuristics_for_other_status_codes() {
    let clock = ManualClock::new();
    let modified = date_from_now(-10 * 3_600);
    let origin = Origin::new(move |_, call| {
        answer(
            302,
            &[("last-modified", modified.as_str())],
            &format!("call {call}"),
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    get(&cache, "/r").await;
    assert_eq!(origin.calls(), 2);
}

/// §4.2.2 as configured: heuristics can be turned off.
#[tokio::test]
async fn s4_2_2_heuristics_can_be_turned_off() {
    let clock = ManualClock::new();
    let modified = date_from_now(-10 * 3_600);
    let origin = Origin::new(move |_, call| {
        answer(
            200,
            &[("last-modified", modified.as_str())],
            &format!("call {call}"),
        )
    });
    let layer = layer_with(&clock, |b| b.heuristic_freshness(0, seconds(0)));
    let cache = layer.layer(inner(&origin));
    get(&cache, "/r").await;
    // Stored to be revalidated (it has a validator), never fresh.
    get(&cache, "/r").await;
    assert_eq!(origin.calls(), 2);
    assert!(origin.request(2).header("if-modified-since").is_some());
}

/// §4.2.3: the age a response arrives with counts against its freshness.
#[tokio::test]
async fn s4_2_3_arriving_age_counts_against_freshness() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60"), ("age", "50")]);
    let cache = cached(&origin, &clock);
    let first = get(&cache, "/r").await;
    assert_eq!(first.header("age"), Some("50"));
    clock.advance(seconds(9));
    let hit = get(&cache, "/r").await;
    assert_eq!((hit.text(), hit.header("age")), ("call 1", Some("59")));
    clock.advance(seconds(1));
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
}

/// §4.2.3: a `Date` in the past makes the response that much older on
/// arrival (its apparent age).
#[tokio::test]
async fn s4_2_3_apparent_age_from_date() {
    let clock = ManualClock::new();
    let date = date_from_now(-30);
    let origin = Origin::new(move |_, call| {
        answer(
            200,
            &[("cache-control", "max-age=60"), ("date", date.as_str())],
            &format!("call {call}"),
        )
    });
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    let hit = get(&cache, "/r").await;
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((30..40).contains(&age), "{age}");
    clock.advance(seconds(40));
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
}

/// §5.2.1.1, §5.2.1.3, §5.2.1.2: a request's `max-age`, `min-fresh` and
/// `max-stale` narrow or widen what storage may answer.
#[tokio::test]
async fn s5_2_1_request_max_age_min_fresh_and_max_stale() {
    let clock = ManualClock::new();
    // With a validator, so that it stays stored past its freshness.
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60"), ("etag", "\"a\"")]);
    let cache = cached(&origin, &clock);
    let ask = |cc: &'static str| {
        let cache = cache.clone();
        async move {
            crate::origin::send(&cache, "GET", "/r", &[("cache-control", cc)])
                .await
                .text()
                .to_string()
        }
    };
    get(&cache, "/r").await;
    clock.advance(seconds(30));
    assert_eq!(ask("max-age=40").await, "call 1");
    assert_eq!(ask("max-age=20").await, "call 2");
    clock.advance(seconds(50));
    assert_eq!(ask("min-fresh=20").await, "call 3");
    clock.advance(seconds(70));
    assert_eq!(ask("max-stale=30").await, "call 3");
    assert_eq!(ask("max-stale=5").await, "call 4");
}
