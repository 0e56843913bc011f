//! RFC 9110 §13 as RFC 9111 §4.3.2 applies it: conditional requests
//! answered from storage.

use surgeguard::clock::ManualClock;

use crate::origin::{cached, get, send, Origin};

/// §13.1.3 with §5.6.7: `If-Modified-Since` is read in all three date
/// formats.
#[tokio::test]
async fn s13_1_3_if_modified_since_in_each_date_format() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ],
    );
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    for since in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        let answer = send(&cache, "GET", "/r", &[("if-modified-since", since)]).await;
        assert_eq!(answer.status, 304, "{since}");
    }
    for earlier in [
        "Sat, 05 Nov 1994 08:49:37 GMT",
        "Saturday, 05-Nov-94 08:49:37 GMT",
    ] {
        let answer = send(&cache, "GET", "/r", &[("if-modified-since", earlier)]).await;
        assert_eq!(answer.status, 200, "{earlier}");
    }
    // Not a date: no condition.
    let answer = send(&cache, "GET", "/r", &[("if-modified-since", "yesterday")]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(origin.calls(), 1);
}

/// §13.1.2: `If-None-Match` is compared weakly for `GET`.
#[tokio::test]
async fn s13_1_2_if_none_match_compares_weakly() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[("cache-control", "max-age=60"), ("etag", "W/\"v1\"")],
    );
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    for tag in ["\"v1\"", "W/\"v1\"", "\"x\", W/\"v1\"", "*"] {
        let answer = send(&cache, "GET", "/r", &[("if-none-match", tag)]).await;
        assert_eq!(answer.status, 304, "{tag}");
        assert_eq!(answer.header("etag"), Some("W/\"v1\""));
    }
    assert_eq!(origin.calls(), 1);
}
