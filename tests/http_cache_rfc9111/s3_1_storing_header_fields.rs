//! RFC 9111 §3.1: storing header and trailer fields.

use surgeguard::clock::ManualClock;

use crate::origin::{cached, get, Origin};

/// §3.1: `Connection`, the fields it names and the other hop-by-hop
/// fields are not stored, so never replayed; proxy authentication fields
/// neither.
#[tokio::test]
async fn s3_1_connection_fields_are_not_stored_or_replayed() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("connection", "x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("proxy-authenticate", "Basic"),
            ("x-kept", "yes"),
        ],
    );
    let cache = cached(&origin, &clock);
    for answer in [get(&cache, "/r").await, get(&cache, "/r").await] {
        for gone in [
            "connection",
            "x-hop",
            "keep-alive",
            "upgrade",
            "proxy-authenticate",
        ] {
            assert_eq!(answer.header(gone), None, "{gone}");
        }
        assert_eq!(answer.header("x-kept"), Some("yes"));
    }
    assert_eq!(origin.calls(), 1);
}

/// §5.2.2.4: the fields a qualified `no-cache="..."` names are not reused
/// without revalidation; the rest of the response is.
#[tokio::test]
async fn s5_2_2_4_qualified_no_cache_fields_are_not_replayed() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[
            ("cache-control", "max-age=60, no-cache=\"x-user\""),
            ("x-user", "alice"),
            ("x-kept", "yes"),
        ],
    );
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    let hit = get(&cache, "/r").await;
    assert_eq!((hit.text(), hit.header("x-user")), ("call 1", None));
    assert_eq!(hit.header("x-kept"), Some("yes"));
}

/// §5.2.2.7: a shared cache does not store the fields a qualified
/// `private="..."` names.
#[tokio::test]
async fn s5_2_2_7_qualified_private_fields_are_not_stored_by_a_shared_cache() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[
            ("cache-control", "max-age=60, private=\"x-user\""),
            ("x-user", "alice"),
        ],
    );
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    let hit = get(&cache, "/r").await;
    assert_eq!((hit.text(), hit.header("x-user")), ("call 1", None));
}
