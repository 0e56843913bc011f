//! RFC 9111 §5.3: Expires, with RFC 9110 §5.6.7's three date formats.

use std::sync::Arc;
use std::time::SystemTime;

use surgeguard::clock::ManualClock;

use crate::origin::{answer, cached, get, http_date, imf_fixdate, seconds, Origin};

fn with(headers: Vec<(&'static str, String)>) -> Arc<Origin> {
    Origin::new(move |_, call| {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        answer(200, &pairs, &format!("call {call}"))
    })
}

/// §5.3, §4.2.1, RFC 9110 §5.6.7 (a recipient MUST accept all three
/// formats): `Expires` less `Date` is the freshness lifetime.
#[tokio::test]
async fn s5_3_expires_in_each_date_format() {
    for format in 0..3 {
        let clock = ManualClock::new();
        let now = SystemTime::now();
        let origin = with(vec![
            ("date", http_date(now, format)),
            ("expires", http_date(now + seconds(60), format)),
        ]);
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        clock.advance(seconds(50));
        assert_eq!(get(&cache, "/r").await.text(), "call 1", "{format}");
        clock.advance(seconds(15));
        assert_eq!(get(&cache, "/r").await.text(), "call 2", "{format}");
    }
}

/// §5.3: an invalid `Expires` (`0` among them) means already expired.
#[tokio::test]
async fn s5_3_an_invalid_expires_means_already_expired() {
    for invalid in ["0", "-1", "tomorrow", "Sun, 06 Nov 1994 08:49:37 UTC"] {
        let clock = ManualClock::new();
        let origin = with(vec![("expires", invalid.to_string())]);
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        assert_eq!(get(&cache, "/r").await.text(), "call 2", "{invalid}");
    }
}

/// §5.3: an `Expires` in the past is stale on arrival.
#[tokio::test]
async fn s5_3_an_expires_in_the_past_is_stale() {
    let clock = ManualClock::new();
    let origin = with(vec![
        ("date", imf_fixdate(SystemTime::now())),
        ("expires", imf_fixdate(SystemTime::now() - seconds(60))),
    ]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
}

/// §5.3: `max-age` (and `s-maxage`) win over `Expires`, even an invalid or
/// past one.
#[tokio::test]
async fn s5_3_max_age_wins_over_expires() {
    for cc in ["max-age=60", "s-maxage=60"] {
        let clock = ManualClock::new();
        let origin = with(vec![
            ("cache-control", cc.to_string()),
            ("expires", "0".to_string()),
        ]);
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        clock.advance(seconds(30));
        assert_eq!(get(&cache, "/r").await.text(), "call 1", "{cc}");
    }
}

/// §5.3 with §4.2.1: without `Date`, `Expires` is compared with the time
/// the response arrived.
#[tokio::test]
async fn s5_3_expires_without_date_counts_from_arrival() {
    let clock = ManualClock::new();
    let origin = with(vec![(
        "expires",
        imf_fixdate(SystemTime::now() + seconds(120)),
    )]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(60));
    assert_eq!(get(&cache, "/r").await.text(), "call 1");
    clock.advance(seconds(70));
    assert_eq!(get(&cache, "/r").await.text(), "call 2");
}
