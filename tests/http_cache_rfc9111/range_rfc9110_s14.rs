//! RFC 9110 §14 as a cache applies it: range requests answered from a
//! complete stored response.

use surgeguard::clock::ManualClock;

use crate::origin::{cached, get, send, Origin};

fn stored_page() -> std::sync::Arc<Origin> {
    Origin::fixed(200, &[("cache-control", "max-age=60"), ("etag", "\"v1\"")])
}

/// §14.2: one byte range of a stored `200` is served as `206` with
/// `Content-Range`, without the handler.
#[tokio::test]
async fn s14_2_a_range_of_a_stored_response_is_a_206() {
    let clock = ManualClock::new();
    let origin = stored_page();
    let cache = cached(&origin, &clock);
    assert_eq!(get(&cache, "/r").await.text(), "call 1");
    for (range, part, content_range) in [
        ("bytes=0-3", "call", "bytes 0-3/6"),
        ("bytes=5-", "1", "bytes 5-5/6"),
        ("bytes=-2", " 1", "bytes 4-5/6"),
    ] {
        let answer = send(&cache, "GET", "/r", &[("range", range)]).await;
        assert_eq!(
            (answer.status.as_u16(), answer.text()),
            (206, part),
            "{range}"
        );
        assert_eq!(answer.header("content-range"), Some(content_range));
        assert!(answer.header("age").is_some());
    }
    assert_eq!(origin.calls(), 1);
}

/// §14.2, §15.5.17: a range past the end is `416` with the length.
#[tokio::test]
async fn s14_2_a_range_past_the_end_is_416() {
    let clock = ManualClock::new();
    let origin = stored_page();
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    let answer = send(&cache, "GET", "/r", &[("range", "bytes=10-")]).await;
    assert_eq!(answer.status, 416);
    assert_eq!(answer.header("content-range"), Some("bytes */6"));
}

/// §14.2: several ranges, another unit or a malformed one get the whole
/// response (a server MAY ignore `Range`).
#[tokio::test]
async fn s14_2_other_ranges_get_the_whole_response() {
    let clock = ManualClock::new();
    let origin = stored_page();
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    for range in ["bytes=0-1,3-4", "items=0-1", "bytes=4-1", "bytes=x"] {
        let answer = send(&cache, "GET", "/r", &[("range", range)]).await;
        assert_eq!(
            (answer.status.as_u16(), answer.text()),
            (200, "call 1"),
            "{range}"
        );
    }
}

/// §13.1.5: `If-Range` that does not name the stored strong entity tag
/// gets the whole response.
#[tokio::test]
async fn s13_1_5_if_range_must_match_the_stored_tag() {
    let clock = ManualClock::new();
    let origin = stored_page();
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    let matching = [("range", "bytes=0-3"), ("if-range", "\"v1\"")];
    assert_eq!(send(&cache, "GET", "/r", &matching).await.status, 206);
    let changed = [("range", "bytes=0-3"), ("if-range", "\"v0\"")];
    let whole = send(&cache, "GET", "/r", &changed).await;
    assert_eq!((whole.status.as_u16(), whole.text()), (200, "call 1"));
}
