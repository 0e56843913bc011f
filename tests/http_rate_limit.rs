//! RateLimitLayer on a real axum server, with a hyper client.

#![cfg(all(feature = "tower", feature = "axum"))]

mod http_support;

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use http_support::{client, fresh_connections, send, serve, serve_without_peer};
use surgeguard::clock::ManualClock;
use surgeguard::http::{
    ClientIp, GlobalKey, MissingKey, PeerAddr, ProxyHeader, RateLimitLayer, RateLimitService,
    TrustedProxies,
};
use surgeguard::limit::{Gcra, KeyedGcra, Quota};
use tower::{service_fn, Layer, ServiceExt};

fn per_ip(per_second: u32, clock: &ManualClock) -> KeyedGcra<std::net::IpAddr> {
    Gcra::keyed(Quota::per_second(per_second).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn services_and_layers_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RateLimitLayer<KeyedGcra<std::net::IpAddr>, ClientIp>>();
    send_sync::<RateLimitService<axum::routing::Route, KeyedGcra<std::net::IpAddr>, ClientIp>>();
}

#[tokio::test]
async fn a_denial_is_a_429_with_exact_headers_and_problem_body() {
    let clock = ManualClock::new();
    let layer = RateLimitLayer::new(per_ip(1, &clock))
        .policy_name("per-ip")
        .unwrap()
        .problem_body(true);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let address = serve(app).await;
    let client = client();

    let allowed = send(&client, address, Method::GET, "/", &[]).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.text(), "ok");
    assert_eq!(
        allowed.header("ratelimit-policy"),
        Some("\"per-ip\";q=1;w=1")
    );
    assert_eq!(allowed.header("ratelimit"), Some("\"per-ip\";r=0;t=1"));

    let denied = send(&client, address, Method::GET, "/", &[]).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.header("retry-after"), Some("1"));
    assert_eq!(
        denied.header("ratelimit-policy"),
        Some("\"per-ip\";q=1;w=1")
    );
    assert_eq!(denied.header("ratelimit"), Some("\"per-ip\";r=0;t=1"));
    assert_eq!(
        denied.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        denied.text(),
        concat!(
            "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\",",
            "\"title\":\"Too Many Requests\",\"status\":429,",
            "\"detail\":\"The quota of policy per-ip is spent; retry after 1 s.\",",
            "\"violated-policies\":[\"per-ip\"]}"
        )
    );

    clock.advance(std::time::Duration::from_secs(1));
    let again = send(&client, address, Method::GET, "/", &[]).await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn retry_after_rounds_up_and_allowed_headers_can_be_off() {
    let clock = ManualClock::new();
    let limiter = Gcra::direct(Quota::per_minute(3).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let layer = RateLimitLayer::new(limiter)
        .key(GlobalKey)
        .headers_on_allowed(false);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let address = serve(app).await;
    let client = client();
    for _ in 0..3 {
        let allowed = send(&client, address, Method::GET, "/", &[]).await;
        assert_eq!(allowed.status, StatusCode::OK);
        assert_eq!(allowed.header("ratelimit"), None);
    }
    clock.advance(std::time::Duration::from_millis(100));
    let denied = send(&client, address, Method::GET, "/", &[]).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    // 20 s per request, 0.1 s of it passed: 19.9 s rounds up to 20.
    assert_eq!(denied.header("retry-after"), Some("20"));
    assert_eq!(denied.body.len(), 0);
}

/// axum issue #2634: tower's RateLimit kept a bucket per service clone, so a
/// 5 per second cap let 1,500 concurrent requests through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_clone_and_connection_shares_one_limit() {
    let clock = ManualClock::new();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(per_ip(5, &clock)));
    let address = serve(app).await;
    let client = fresh_connections();
    let mut requests = Vec::new();
    for _ in 0..200 {
        let client = client.clone();
        requests.push(tokio::spawn(async move {
            send(&client, address, Method::GET, "/", &[]).await.status
        }));
    }
    let mut allowed = 0;
    for request in requests {
        match request.await.unwrap() {
            StatusCode::OK => allowed += 1,
            status => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS),
        }
    }
    assert_eq!(allowed, 5);
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let clock = ManualClock::new();
    // The peer is 127.0.0.1, not in the trusted range.
    let untrusted = ClientIp::behind(
        TrustedProxies::new(["10.0.0.0/8"]).unwrap(),
        ProxyHeader::XForwardedFor,
    );
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(per_ip(1, &clock)).key(untrusted));
    let address = serve(app).await;
    let client = client();
    let spoof = |ip: &'static str| [("x-forwarded-for", ip), ("forwarded", ip)];
    let first = send(&client, address, Method::GET, "/", &spoof("for=1.1.1.1")).await;
    assert_eq!(first.status, StatusCode::OK);
    for ip in ["2.2.2.2", "3.3.3.3", "garbage", "for=4.4.4.4"] {
        let spoofed = send(&client, address, Method::GET, "/", &spoof(ip)).await;
        assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS, "{ip}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let clock = ManualClock::new();
    let behind_proxy = ClientIp::behind(
        TrustedProxies::new(["127.0.0.1"]).unwrap(),
        ProxyHeader::XForwardedFor,
    );
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(per_ip(1, &clock)).key(behind_proxy));
    let address = serve(app).await;
    let client = client();
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let ok = |answer: http_support::Answer| answer.status;
    assert_eq!(
        ok(send(&client, address, Method::GET, "/", &from("198.51.100.1")).await),
        200
    );
    assert_eq!(
        ok(send(&client, address, Method::GET, "/", &from("198.51.100.2")).await),
        200
    );
    assert_eq!(
        ok(send(&client, address, Method::GET, "/", &from("198.51.100.1")).await),
        429
    );
    // Malformed: the key falls back to the proxy's own address.
    assert_eq!(
        ok(send(&client, address, Method::GET, "/", &from("nonsense")).await),
        200
    );
    assert_eq!(
        ok(send(&client, address, Method::GET, "/", &from("")).await),
        429
    );
    let huge = "x".repeat(16 * 1024);
    let answer = send(
        &client,
        address,
        Method::GET,
        "/",
        &[("x-forwarded-for", &huge)],
    )
    .await;
    assert_eq!(answer.status, 429);
}

/// Issue 19: behind nginx (which appends to `X-Forwarded-For` and passes a
/// client's `Forwarded` through untouched), a client sent a fresh
/// `Forwarded: for=` per request and got a fresh key each time: the
/// extractor read `Forwarded` whenever it was present. Six requests then
/// all passed a limit of burst 2; now the configured header alone decides.
#[tokio::test]
async fn a_client_behind_a_trusted_proxy_cannot_pick_its_key_with_another_header() {
    let clock = ManualClock::new();
    let per_ip = Gcra::keyed(Quota::per_second(1).unwrap().burst(2).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build()
        .unwrap();
    let key = ClientIp::behind(
        TrustedProxies::new(["10.0.0.1"]).unwrap(),
        ProxyHeader::XForwardedFor,
    );
    let ok = service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let service = RateLimitLayer::new(per_ip).key(key).layer(ok);
    let mut statuses = Vec::new();
    for i in 1..=6 {
        let mut request = Request::get("/")
            .header("forwarded", format!("for=198.51.100.{i}"))
            .header("x-forwarded-for", "203.0.113.50")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::from(([10, 0, 0, 1], 443))));
        statuses.push(service.clone().oneshot(request).await.unwrap().status());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
}

#[tokio::test]
async fn requests_without_a_key_follow_the_missing_key_policy() {
    let clock = ManualClock::new();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(per_ip(1, &clock)));
    let address = serve_without_peer(app).await;
    let answer = send(&client(), address, Method::GET, "/", &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let open = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(per_ip(1, &clock)).missing_key(MissingKey::Allow));
    let address = serve_without_peer(open).await;
    for _ in 0..3 {
        let answer = send(&client(), address, Method::GET, "/", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("ratelimit"), None);
    }
}

#[derive(Debug, PartialEq)]
struct HandlerFailed(&'static str);

#[tokio::test]
async fn inner_errors_pass_through_unchanged() {
    let clock = ManualClock::new();
    let failing = service_fn(|_: Request<()>| async {
        Err::<Response<Full<Bytes>>, _>(HandlerFailed("database down"))
    });
    let service = RateLimitLayer::new(per_ip(5, &clock)).layer(failing);
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([192, 0, 2, 1], 9))));
    let error = service.oneshot(request).await.unwrap_err();
    assert_eq!(error, HandlerFailed("database down"));
}
