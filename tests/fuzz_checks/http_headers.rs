//! Hostile header values through the HTTP layers: forwarding headers into
//! [`ClientIp`], request and response caching headers (`Cache-Control`,
//! `Vary`, `ETag`, `If-None-Match`, dates, `Set-Cookie`) through
//! [`ResponseCacheLayer`], and policy names and quotas into the `RateLimit`
//! fields [`RateLimitLayer`] writes.
//!
//! Beyond "no panic", each part checks the rule that makes it safe: a
//! forwarding header counts only when the peer is a trusted proxy, no
//! header but the configured one ever changes the key, and an IPv6 key is
//! never longer than the configured prefix; a response the RFC
//! forbids sharing (`no-store`, `private`, `Set-Cookie`) is never served to
//! a second request; a 304 answers only a conditional request; the
//! `RateLimit` fields are well-formed structured fields.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use surgeguard::clock::ManualClock;
use surgeguard::http::{
    ClientIp, GlobalKey, KeyExtractor, PeerAddr, ProxyHeader, RateLimitLayer, RequestHead,
    ResponseCacheLayer, TrustedProxies,
};
use surgeguard::limit::{Gcra, Quota};
use tower::{service_fn, Layer, ServiceExt};

use super::input::Input;

/// Header values the fuzzer may mutate, seeded with the grammar's pieces so
/// it need not rediscover them.
const FRAGMENTS: &[&str] = &[
    "",
    ",",
    ";",
    "=",
    "\"",
    " ",
    "for=",
    "for=\"[",
    "]:80\"",
    "unknown",
    "_hidden",
    "10.0.0.1",
    "192.0.2.60",
    "2001:db8::1",
    "[2001:db8::1]:4711",
    "::ffff:10.0.0.2",
    "no-store",
    "no-cache",
    "private",
    "public",
    "max-age=",
    "s-maxage=",
    "must-revalidate",
    "stale-while-revalidate=",
    "stale-if-error=",
    "60",
    "0",
    "-1",
    "18446744073709551616",
    "W/",
    "\"v1\"",
    "*",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "accept-encoding",
    "cookie",
    "gzip",
];

/// The headers a client may forge; [`client_ip`] configures one of them.
const FORWARDING_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "cf-connecting-ip",
];

/// A header value: raw fuzzer bytes or a string of grammar fragments.
/// `None` when the bytes are not a legal header value (the `http` crate
/// refuses those before any layer sees them).
fn value(input: &mut Input) -> Option<HeaderValue> {
    if input.bool() {
        return HeaderValue::from_bytes(input.bytes(96)).ok();
    }
    let mut text = String::new();
    for _ in 0..input.u8() % 8 {
        text.push_str(input.pick(FRAGMENTS));
    }
    HeaderValue::from_str(&text).ok()
}

fn ip(input: &mut Input) -> IpAddr {
    match input.u8() % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, input.u8())),
        1 => IpAddr::V4(Ipv4Addr::from(input.u32())),
        2 => IpAddr::V6(Ipv6Addr::from(u128::from(input.u64()))),
        _ => IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped()),
    }
}

fn client_ip(input: &mut Input) {
    let entries: Vec<String> = (0..input.u8() % 4)
        .map(|_| match input.u8() % 3 {
            0 => String::from_utf8_lossy(input.bytes(40)).into_owned(),
            1 => format!("{}/{}", ip(input), input.u8()),
            _ => ip(input).to_string(),
        })
        .collect();
    let trusted = match TrustedProxies::new(entries.iter().map(String::as_str)) {
        Ok(trusted) => trusted,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let names = FORWARDING_HEADERS;
    let configured = names[usize::from(input.u8()) % names.len()];
    let header = match configured {
        "x-forwarded-for" => ProxyHeader::XForwardedFor,
        "forwarded" => ProxyHeader::Forwarded,
        "x-real-ip" => ProxyHeader::XRealIp,
        custom => ProxyHeader::Custom(HeaderName::from_static(custom)),
    };
    let mut request = Request::get("/").body(()).unwrap();
    for _ in 0..input.u8() % 6 {
        let name = input.pick(names);
        if let Some(value) = value(input) {
            request.headers_mut().append(name, value);
        }
    }
    let peer = ip(input);
    let with_peer = |mut request: Request<()>| {
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(peer, 443)));
        request
    };
    let request = with_peer(request);
    let ipv6_prefix = 1 + input.u8() % 128;
    let extractor = ClientIp::behind(trusted.clone(), header)
        .ipv6_prefix(ipv6_prefix)
        .expect("1 to 128 bits");
    let client = extractor
        .extract(&RequestHead::of(&request))
        .expect("a request with a peer has a client address");
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        assert_eq!(
            client,
            network(peer, ipv6_prefix),
            "an untrusted peer's forwarding headers were believed"
        );
    }
    if let IpAddr::V6(v6) = client {
        assert!(
            v6.to_ipv4_mapped().is_none(),
            "a mapped address was keyed as IPv6"
        );
        assert_eq!(
            client,
            network(client, ipv6_prefix),
            "an IPv6 key longer than /{ipv6_prefix}"
        );
    }
    let mut only_configured = Request::get("/").body(()).unwrap();
    for line in request.headers().get_all(configured) {
        only_configured
            .headers_mut()
            .append(configured, line.clone());
    }
    assert_eq!(
        extractor.extract(&RequestHead::of(&with_peer(only_configured))),
        Some(client),
        "a header other than the configured {configured} changed the key"
    );
    assert_eq!(
        ClientIp::peer().extract(&RequestHead::of(&request)),
        Some(network(peer, 64))
    );
}

/// `ip`'s first `bits` bits if it is IPv6; an IPv4 address as it is.
fn network(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let host_bits = 128 - u32::from(bits);
            let network = u128::from(v6) >> host_bits << host_bits;
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// Whether a response with these headers may be served to anyone else.
fn shareable(headers: &http::HeaderMap) -> bool {
    if headers.contains_key(http::header::SET_COOKIE) {
        return false;
    }
    let forbidden = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .flat_map(|line| line.to_str().unwrap_or("").split(','))
        .map(|directive| directive.split('=').next().unwrap_or("").trim())
        .any(|name| name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("private"));
    !forbidden
}

fn response_cache(input: &mut Input) {
    let clock = ManualClock::new();
    let layer = ResponseCacheLayer::builder()
        .max_bytes(1 << 16)
        .max_body_bytes(usize::from(input.u8()) * 8)
        .clock(clock.clone())
        .build()
        .expect("valid settings");
    let mut stored = http::HeaderMap::new();
    for _ in 0..input.u8() % 6 {
        let name = input.pick(&[
            "cache-control",
            "vary",
            "etag",
            "last-modified",
            "set-cookie",
            "age",
            "expires",
            "date",
            "pragma",
        ]);
        if let Some(value) = value(input) {
            stored.append(HeaderName::from_static(name), value);
        }
    }
    let status = input.pick(&[200u16, 203, 204, 206, 301, 404, 500, 503]);
    let body_len = usize::from(input.u8());
    let calls = Arc::new(AtomicU64::new(0));
    let handler = {
        let (calls, stored) = (calls.clone(), stored.clone());
        service_fn(move |_: Request<()>| {
            let call = calls.fetch_add(1, Ordering::Relaxed) + 1;
            let mut response = Response::new(Full::new(Bytes::from(vec![b'x'; body_len])));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            *response.headers_mut() = stored.clone();
            response
                .headers_mut()
                .insert("x-call", HeaderValue::from(call));
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };
    let service = layer.layer(handler);
    let mut requests = 0u64;
    while !input.is_empty() && requests < 12 {
        let mut request = Request::builder()
            .method(input.pick(&["GET", "HEAD", "POST"]))
            .uri(input.pick(&["/a", "/a?x=1", "/b"]))
            .body(())
            .unwrap();
        for _ in 0..input.u8() % 4 {
            let name = input.pick(&[
                "cache-control",
                "if-none-match",
                "if-modified-since",
                "accept-encoding",
                "cookie",
                "authorization",
                "pragma",
            ]);
            if let Some(value) = value(input) {
                request
                    .headers_mut()
                    .append(HeaderName::from_static(name), value);
            }
        }
        let conditional = request.headers().contains_key("if-none-match")
            || request.headers().contains_key("if-modified-since");
        let before = calls.load(Ordering::Relaxed);
        let response = block_on(service.clone().oneshot(request)).unwrap();
        requests += 1;
        let reached_handler = calls.load(Ordering::Relaxed) > before;
        if response.status() == StatusCode::NOT_MODIFIED && !reached_handler {
            assert!(conditional, "304 to an unconditional request");
        }
        if !shareable(&stored) {
            assert!(
                reached_handler,
                "a response the RFC forbids sharing was served from the cache"
            );
        }
        if let Some(age) = response.headers().get(http::header::AGE) {
            if !reached_handler {
                let age = age.to_str().expect("Age is ASCII");
                assert!(
                    age.parse::<u64>().is_ok(),
                    "Age {age:?} is not delta-seconds"
                );
            }
        }
        let _ = block_on(response.into_body().collect());
        clock.advance(Duration::from_secs(u64::from(input.u8() % 100)));
    }
}

/// `"name";q=1;w=2` or `"name";r=1;t=2`: a structured-field item whose
/// string is the policy name and whose parameters are two integers.
fn assert_item(value: &HeaderValue, keys: [&str; 2], name: &str) {
    let text = value.to_str().expect("visible ASCII");
    let rest = text
        .strip_prefix(&format!("\"{name}\""))
        .unwrap_or_else(|| panic!("{text:?} does not start with the policy name"));
    let parameters: Vec<&str> = rest.split(';').skip(1).collect();
    assert_eq!(parameters.len(), 2, "{text:?}");
    for (parameter, key) in parameters.iter().zip(keys) {
        let (found, number) = parameter.split_once('=').expect("key=value");
        assert_eq!(found, key, "{text:?}");
        assert!(
            number.parse::<u64>().is_ok(),
            "{text:?}: {number:?} is not an integer"
        );
        // Structured-field integers have at most 15 digits (RFC 9651 §3.3.1).
        assert!(number.len() <= 15, "{text:?}: integer too long");
    }
}

fn rate_limit_fields(input: &mut Input) {
    let quota = Quota::with_period(
        1 + u32::from(input.u16()),
        Duration::from_nanos(1 + input.edgy_u64() % (100 * 365 * 86_400 * 1_000_000_000)),
    )
    .and_then(|quota| quota.burst(1 + u32::from(input.u16())));
    let Ok(quota) = quota else {
        return;
    };
    let clock = ManualClock::new();
    let limiter = Gcra::direct(quota).clock(clock.clone()).build().unwrap();
    let name = String::from_utf8_lossy(input.bytes(80)).into_owned();
    let layer = match RateLimitLayer::new(limiter)
        .key(GlobalKey)
        .policy_name(&name)
    {
        Ok(layer) => layer,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let service = layer.layer(service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
    }));
    while !input.is_empty() {
        let response = block_on(service.clone().oneshot(Request::new(()))).unwrap();
        let headers = response.headers();
        if let Some(policy) = headers.get("ratelimit-policy") {
            assert_item(policy, ["q", "w"], &name);
        }
        if let Some(state) = headers.get("ratelimit") {
            assert_item(state, ["r", "t"], &name);
        }
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = headers.get(http::header::RETRY_AFTER).expect("Retry-After");
            let seconds: u64 = retry.to_str().unwrap().parse().expect("delta-seconds");
            assert!(seconds >= 1);
        }
        clock.advance(Duration::from_nanos(input.edgy_u64()));
    }
}

pub fn run(bytes: &[u8]) {
    let mut input = Input::new(bytes);
    match input.u8() % 3 {
        0 => client_ip(&mut input),
        1 => response_cache(&mut input),
        _ => rate_limit_fields(&mut input),
    }
}
