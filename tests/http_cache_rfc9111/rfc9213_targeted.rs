//! RFC 9213: targeted cache-control fields.

use surgeguard::clock::ManualClock;
use surgeguard::http::{ResponseCacheBuildError, ResponseCacheLayer};
use tower::Layer;

use crate::origin::{cached, get, inner, layer_with, seconds, Origin};

/// RFC 9213 §2.1: a cache that reads `CDN-Cache-Control` uses it instead
/// of `Cache-Control` and `Expires`; one that does not, ignores it.
#[tokio::test]
async fn rfc9213_2_1_cdn_cache_control_decides_over_cache_control() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[
            ("cache-control", "no-store"),
            ("expires", "0"),
            ("cdn-cache-control", "max-age=60"),
        ],
    );
    let cdn = layer_with(&clock, |b| b.cdn_cache_control()).layer(inner(&origin));
    get(&cdn, "/r").await;
    clock.advance(seconds(30));
    let hit = get(&cdn, "/r").await;
    assert_eq!(hit.text(), "call 1");
    // Sent on downstream as they were.
    assert_eq!(hit.header("cache-control"), Some("no-store"));
    assert_eq!(hit.header("cdn-cache-control"), Some("max-age=60"));
    let plain = cached(&origin, &clock);
    get(&plain, "/r").await;
    assert_eq!(get(&plain, "/r").await.text(), "call 3");
}

/// RFC 9213 §2.1: the first field on the list with a valid value decides;
/// an invalid one is passed over, and with none valid `Cache-Control`
/// applies.
#[tokio::test]
async fn rfc9213_2_1_the_first_valid_field_in_list_order_decides() {
    let clock = ManualClock::new();
    let origin = Origin::new(|seen, call| {
        let own = match seen.uri.as_str() {
            "/invalid" => "MAX-AGE=\"soon",
            _ => "max-age=5",
        };
        crate::origin::answer(
            200,
            &[
                ("cache-control", "max-age=100"),
                ("cdn-cache-control", "max-age=50"),
                ("example-cache-control", own),
            ],
            &format!("call {call}"),
        )
    });
    let cache = layer_with(&clock, |b| {
        b.targeted_field("example-cache-control")
            .cdn_cache_control()
    })
    .layer(inner(&origin));
    get(&cache, "/own").await;
    get(&cache, "/invalid").await;
    clock.advance(seconds(10));
    // /own: its own field's 5 s are over; /invalid: CDN-Cache-Control's 50.
    assert_eq!(get(&cache, "/own").await.text(), "call 3");
    assert_eq!(get(&cache, "/invalid").await.text(), "call 2");
}

/// A targeted field name that is not a header name is a build error.
#[test]
fn rfc9213_a_bad_field_name_is_a_build_error() {
    let error = ResponseCacheLayer::builder()
        .targeted_field("not a name")
        .build()
        .unwrap_err();
    assert!(matches!(
        error,
        ResponseCacheBuildError::TargetedFieldName { .. }
    ));
}
