//! RFC 9111 §4.1: calculating cache keys with `Vary`.

use surgeguard::clock::ManualClock;

use crate::origin::{cached, send, Origin};

async fn ask(cache: &crate::origin::Cached, headers: &[(&str, &str)]) -> String {
    send(cache, "GET", "/r", headers).await.text().to_string()
}

/// §4.1: a stored response is used only for a request whose fields named
/// by `Vary` match; values of the negotiation fields match after
/// normalising whitespace and case, as their grammar allows.
#[tokio::test]
async fn s4_1_vary_matches_normalised_negotiation_values() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
    );
    let cache = cached(&origin, &clock);
    assert_eq!(
        ask(&cache, &[("accept-encoding", "gzip, br")]).await,
        "call 1"
    );
    assert_eq!(
        ask(&cache, &[("accept-encoding", "GZIP,br")]).await,
        "call 1"
    );
    assert_eq!(
        ask(&cache, &[("accept-encoding", "gzip ,  BR")]).await,
        "call 1"
    );
    assert_eq!(
        ask(&cache, &[("accept-encoding", "identity")]).await,
        "call 2"
    );
    assert_eq!(ask(&cache, &[]).await, "call 3");
}

/// §4.1: a field the cache does not know the syntax of is matched as sent.
#[tokio::test]
async fn s4_1_other_fields_match_as_sent() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(
        200,
        &[("cache-control", "max-age=60"), ("vary", "x-tenant")],
    );
    let cache = cached(&origin, &clock);
    assert_eq!(ask(&cache, &[("x-tenant", "Acme")]).await, "call 1");
    assert_eq!(ask(&cache, &[("x-tenant", "acme")]).await, "call 2");
    assert_eq!(ask(&cache, &[("x-tenant", "Acme")]).await, "call 1");
}

/// §4.1: `Vary: *` never matches, so it is not stored.
#[tokio::test]
async fn s4_1_vary_star_is_not_stored() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60"), ("vary", "*")]);
    let cache = cached(&origin, &clock);
    ask(&cache, &[]).await;
    assert_eq!(ask(&cache, &[]).await, "call 2");
}
