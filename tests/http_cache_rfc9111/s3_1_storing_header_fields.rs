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

/// §3.1 (and RFC 6265 §8): a `Set-Cookie` is one client's. By default a
/// response with one is not stored; told to, the layer stores it without
/// the field: the client that loaded it gets its cookie, no one else does.
#[tokio::test]
async fn s3_1_set_cookie_is_stored_only_when_asked_and_never_replayed() {
    use tower::Layer;
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=alice"),
        ],
    );
    let plain = cached(&origin, &clock);
    get(&plain, "/r").await;
    assert_eq!(get(&plain, "/r").await.text(), "call 2");

    let layer = crate::origin::layer_with(&clock, |b| b.store_without_set_cookie());
    let opted = layer.layer(crate::origin::inner(&origin));
    let first = get(&opted, "/r").await;
    assert_eq!(
        (first.text(), first.header("set-cookie")),
        ("call 3", Some("session=alice"))
    );
    let hit = get(&opted, "/r").await;
    assert_eq!((hit.text(), hit.header("set-cookie")), ("call 3", None));
    assert_eq!(origin.calls(), 3);
}
