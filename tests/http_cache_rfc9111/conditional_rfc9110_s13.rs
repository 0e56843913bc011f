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

/// §13.1.2: `If-None-Match: *` is false when a current representation
/// exists, so a `GET` with it gets `304` from a stored response, with or
/// without an `ETag` of its own.
#[tokio::test]
async fn s13_1_2_if_none_match_star_matches_any_stored_response() {
    for headers in [
        &[("cache-control", "max-age=60")][..],
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")][..],
    ] {
        let clock = ManualClock::new();
        let fields: &'static [(&'static str, &'static str)] = Box::leak(headers.to_vec().into());
        let origin = Origin::fixed(200, fields);
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        let star = send(&cache, "GET", "/r", &[("if-none-match", "*")]).await;
        assert_eq!(star.status, 304, "{headers:?}");
        assert_eq!(origin.calls(), 1);
    }
}

/// §13.1.3: an `If-Modified-Since` that is not a date is ignored: the full
/// response, never a `304` the client cannot use.
#[tokio::test]
async fn s13_1_3_an_invalid_if_modified_since_is_ignored() {
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
    for since in ["yesterday", "Sun, 06 Nov 2094 08:49:37 UTC", "0", ""] {
        let got = send(&cache, "GET", "/r", &[("if-modified-since", since)]).await;
        assert_eq!(
            (got.status.as_u16(), got.text()),
            (200, "call 1"),
            "{since:?}"
        );
    }
}
