//! `ClientIp` attacked a second time, by someone who has read the code.
//!
//! `tests/http_client_ip.rs` sends every spoofing attack through proxies
//! that behave; this file goes after the corners: a client's text on the
//! same `Forwarded` line as the proxy's element (quote and backslash games),
//! headers a million elements long, addresses other parsers read
//! differently (`010.0.0.1`, zone ids, IPv4-mapped IPv6), real proxies'
//! formats, megabyte-long escaped values, and what a client who owns an
//! IPv6 /64 can do to a limiter keyed by `ClientIp`.
//!
//! No test here times anything: a walk that went quadratic on the
//! million-element inputs would not finish, which is the failure.

#![cfg(feature = "tower")]

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use surgeguard::clock::ManualClock;
use surgeguard::http::{
    ClientIp, KeyExtractor, PeerAddr, ProxyHeader, RateLimitLayer, RequestHead, TrustedProxies,
};
use surgeguard::limit::{Gcra, Quota, WhenFull};
use tower::{service_fn, Layer, ServiceExt};

const TRUSTED: &str = "10.0.0.0/8";
const PEER: &str = "10.0.0.1";
/// The true client, as the proxies saw it.
const CLIENT: &str = "203.0.113.50";

// ---------------------------------------------------------------------------
// Helpers

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A request from `peer` with `headers` (raw bytes, lines in order).
fn request(peer: &str, headers: &[(&str, &[u8])]) -> Request<()> {
    let mut request = Request::get("/").body(()).unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip(peer), 443)));
    request
}

/// `ClientIp::behind` as deployed: an IPv6 client keyed by its /64.
fn behind_by_default(header: ProxyHeader) -> ClientIp {
    ClientIp::behind(TrustedProxies::new([TRUSTED]).unwrap(), header)
}

/// `ClientIp::behind` keyed by the exact address (`ipv6_prefix(128)`), for
/// the tests of which address is read: a /64 key would hide a wrong pick
/// inside the true client's /64 (`[2001:db8::66]` for `2001:db8::50`).
fn behind(header: ProxyHeader) -> ClientIp {
    behind_by_default(header).ipv6_prefix(128).unwrap()
}

/// The key `extractor` gives a request from `peer` with `headers`.
fn key_of(extractor: &ClientIp, peer: &str, headers: &[(&str, &[u8])]) -> IpAddr {
    extractor
        .extract(&RequestHead::of(&request(peer, headers)))
        .unwrap()
}

fn xff(headers: &[(&str, &[u8])]) -> IpAddr {
    key_of(&behind(ProxyHeader::XForwardedFor), PEER, headers)
}

fn forwarded(headers: &[(&str, &[u8])]) -> IpAddr {
    key_of(&behind(ProxyHeader::Forwarded), PEER, headers)
}

fn ok_service() -> impl tower::Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
> + Clone {
    service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    })
}

// ---------------------------------------------------------------------------
// Findings, fixed: these failed before `ClientIp` keyed IPv6 clients by
// their /64, before mapped ranges were read as IPv4 ones, and before
// `Forwarded` stopped copying escaped values.

/// An IPv6 client holds a /64 (every residential and cloud IPv6 customer
/// does) and picks its own interface identifier: 2^64 addresses, all its
/// own. Keyed by the full /128, it gets a fresh key per request, which
/// SECURITY.md's first threat says it must not.
#[test]
fn an_ipv6_client_has_one_key_for_its_whole_slash_64() {
    let addresses = ["2001:db8:1:2::1", "2001:db8:1:2:dead:beef:0:7"];
    let direct: Vec<IpAddr> = addresses
        .iter()
        .map(|address| {
            let request = request(address, &[]);
            ClientIp::peer()
                .extract(&RequestHead::of(&request))
                .unwrap()
        })
        .collect();
    assert_eq!(direct[0], direct[1], "ClientIp::peer()");

    let via_proxy: Vec<IpAddr> = addresses
        .iter()
        .map(|address| {
            key_of(
                &behind_by_default(ProxyHeader::XForwardedFor),
                PEER,
                &[("x-forwarded-for", address.as_bytes())],
            )
        })
        .collect();
    assert_eq!(
        via_proxy[0], via_proxy[1],
        "ClientIp::behind(.., XForwardedFor)"
    );
}

/// The /64 key does not merge neighbours: the next /64 is another client,
/// unless the operator says its clients hold /56s; and `ipv6_prefix(128)`
/// brings back one key per address.
#[test]
fn an_ipv6_client_in_the_next_slash_64_is_another_key() {
    let key = |extractor: &ClientIp, address: &str| {
        extractor
            .extract(&RequestHead::of(&request(address, &[])))
            .unwrap()
    };
    let (one, next) = ("2001:db8:1:2::1", "2001:db8:1:3::1");
    let per_64 = ClientIp::peer();
    assert_ne!(key(&per_64, one), key(&per_64, next));
    assert_eq!(key(&per_64, one), ip("2001:db8:1:2::"));
    let per_56 = ClientIp::peer().ipv6_prefix(56).unwrap();
    assert_eq!(key(&per_56, one), key(&per_56, next));
    assert_ne!(key(&per_56, one), key(&per_56, "2001:db8:1:100::1"));
    let exact = ClientIp::peer().ipv6_prefix(128).unwrap();
    assert_ne!(key(&exact, one), key(&exact, "2001:db8:1:2::2"));
}

/// The same through `RateLimitLayer`: once limited, the client moves to
/// the next address of its /64 and is served again.
#[tokio::test]
async fn an_ipv6_client_cannot_escape_its_limit_by_hopping_addresses_in_its_slash_64() {
    let clock = ManualClock::new();
    let per_ip = Gcra::keyed(Quota::per_minute(1).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build()
        .unwrap();
    let service = RateLimitLayer::new(per_ip)
        .key(ClientIp::peer())
        .layer(ok_service());
    let mut statuses = Vec::new();
    for host in 1..=5 {
        let request = request(&format!("2001:db8:1:2::{host:x}"), &[]);
        statuses.push(service.clone().oneshot(request).await.unwrap().status());
    }
    assert_eq!(statuses, [200, 429, 429, 429, 429]);
}

/// Worse than escaping its own limit: the default `WhenFull::DenyNewKeys`
/// denies every new key once the table is full of active ones, so one
/// IPv6 client filling `max_keys` from its /64 locks every new client out.
/// (One shard, so the table is full after exactly `max_keys` keys: the test
/// does not depend on how keys hash.)
#[tokio::test]
async fn an_ipv6_client_cannot_fill_the_key_table_and_lock_out_new_clients() {
    let clock = ManualClock::new();
    let per_ip = Gcra::keyed(Quota::per_minute(1).unwrap())
        .max_keys(16)
        .shards(1)
        .when_full(WhenFull::DenyNewKeys)
        .clock(clock.clone())
        .build()
        .unwrap();
    let service = RateLimitLayer::new(per_ip)
        .key(ClientIp::peer())
        .layer(ok_service());
    for host in 1..=16 {
        let request = request(&format!("2001:db8:1:2::{host:x}"), &[]);
        service.clone().oneshot(request).await.unwrap();
    }
    let victim = request("192.0.2.7", &[]);
    let status = service.clone().oneshot(victim).await.unwrap().status();
    assert_eq!(status, StatusCode::OK, "a new client after one /64's flood");
}

/// `TrustedProxies` says IPv4-mapped IPv6 addresses count as their IPv4
/// form. It used to canonicalise a mapped *address* but keep the IPv6
/// *prefix*: `::ffff:10.0.0.0/104` (which is 10.0.0.0/8) was refused as a
/// /104 of an IPv4 address, `::ffff:10.0.0.1/128` too, and
/// `::ffff:10.0.0.0/8` was silently read as 10.0.0.0/8 rather than the
/// IPv6 ::/8 it says. Now a mapped range of /96 or more is its IPv4 range,
/// and a wider one is refused.
#[test]
fn an_ipv4_mapped_range_is_its_ipv4_range() {
    let trusted = TrustedProxies::new(["::ffff:10.0.0.0/104"]).expect("::ffff:10.0.0.0/104");
    assert!(trusted.contains(ip("10.1.2.3")));
    assert!(trusted.contains(ip("::ffff:10.1.2.3")));
    assert!(!trusted.contains(ip("11.0.0.1")));
    let single = TrustedProxies::new(["::ffff:10.0.0.1/128"]).expect("::ffff:10.0.0.1/128");
    assert!(single.contains(ip("10.0.0.1")));
    assert!(!single.contains(ip("10.0.0.2")));
    for wider_than_ipv4 in ["::ffff:10.0.0.0/8", "::ffff:0:0/95"] {
        assert!(
            TrustedProxies::new([wider_than_ipv4]).is_err(),
            "{wider_than_ipv4}"
        );
    }
}

/// A `Forwarded` quoted string with a backslash used to be copied to
/// unescape it, whichever parameter it belonged to and however long it was:
/// a request cost an allocation the size of its header. Now only a `for=`
/// value is unescaped, into a small buffer, and one longer than any node is
/// no address (unit tests in `src/http/client_ip/forwarded.rs`). What the
/// client sees: a megabyte of escapes in another parameter is skipped, and
/// a megabyte-long `for=` ends the walk at the proxy.
#[test]
fn a_megabyte_of_escapes_is_skipped_or_ends_the_walk() {
    let long_escaped_ext = format!("ext=\"\\a{}\";for={CLIENT}", "b".repeat(1 << 20));
    assert_eq!(
        forwarded(&[("forwarded", long_escaped_ext.as_bytes())]),
        ip(CLIENT)
    );
    let long_escaped_for = format!("for={CLIENT}, for=\"\\{}\"", "1".repeat(1 << 20));
    assert_eq!(
        forwarded(&[("forwarded", long_escaped_for.as_bytes())]),
        ip(PEER)
    );
}

// ---------------------------------------------------------------------------
// Attacks that held.

/// The client is found at the end of a million-element header.
#[test]
fn a_million_element_header_still_names_its_client() {
    let plain = format!("{}, {CLIENT}", vec!["198.51.100.9"; 1_000_000].join(","));
    let quoted = format!(
        "{}, for=\"{CLIENT}:4711\"",
        vec!["for=\"198.51.100.9\""; 200_000].join(",")
    );
    let cases = [
        (ProxyHeader::XForwardedFor, "x-forwarded-for", plain),
        (ProxyHeader::Forwarded, "forwarded", quoted),
    ];
    for (header, name, value) in cases {
        let request = request(PEER, &[(name, value.as_bytes())]);
        let key = behind(header).extract(&RequestHead::of(&request));
        assert_eq!(key, Some(ip(CLIENT)), "{name}");
    }
}

/// Client text that ends the `Forwarded` line the proxy then appends to
/// (`$http_forwarded, for=...`, as the usual nginx recipe writes it),
/// chosen to leave a quoted string open, escape the proxy's comma, or
/// pose as a proxy's element.
const CLIENT_PREFIXES: &[&str] = &[
    "for=\"",
    "for=\"\\",
    "for=\"198.51.100.1\\\"",
    "\"",
    "\\\"",
    "\\",
    "for=198.51.100.1;ext=\"",
    "for=198.51.100.1;ext=\"\\\\",
    "for=198.51.100.1;ext=\"\\\\\\",
    "for=\"198.51.100.1\", for=\"",
    "for=198.51.100.1\"",
    "for=198.51.100.1, for=\"[2001:db8::66]:1\", for=\"",
    "for=\"198.51.100.1, for=198.51.100.2\"",
    "for=198.51.100.1;",
    "for=198.51.100.1;for=",
    "for=198.51.100.1 ",
    ",,,,",
    "",
];

/// How a proxy writes its element for the true client.
const PROXY_ELEMENTS: &[(&str, &str)] = &[
    ("for=203.0.113.50", "203.0.113.50"),
    ("for=\"203.0.113.50:4711\"", "203.0.113.50"),
    ("for=\"[2001:db8::50]:4711\";proto=https", "2001:db8::50"),
    (
        "proto=https;for=\"[2001:db8::50]\";by=\"[2001:db8::1]\";host=\"a.example\"",
        "2001:db8::50",
    ),
];

#[test]
fn a_clients_text_on_the_proxys_forwarded_line_never_picks_the_key() {
    for prefix in CLIENT_PREFIXES {
        for (element, true_client) in PROXY_ELEMENTS {
            // Same line: the client's text can make the line unsplittable
            // (the key is then the peer), never change the proxy's element.
            let same_line = format!("{prefix}, {element}");
            let key = forwarded(&[("forwarded", same_line.as_bytes())]);
            assert!(
                key == ip(true_client) || key == ip(PEER),
                "{same_line:?} gave {key}"
            );
            // A line of its own (HAProxy): the client's line is never read.
            let key = forwarded(&[
                ("forwarded", prefix.as_bytes()),
                ("forwarded", element.as_bytes()),
            ]);
            assert_eq!(key, ip(true_client), "{prefix:?} then {element:?}");
        }
    }
}

/// Pathological `Forwarded` lines, a million bytes of each trick, before a
/// proxy's element on the same line and on a line of its own.
#[test]
fn a_million_quotes_backslashes_or_semicolons_neither_hang_nor_pick_the_key() {
    let million = 1_000_000;
    let prefixes = [
        ",".repeat(million),
        "\"".repeat(million),
        "\"".repeat(million + 1),
        format!("ext=\"{}\"", "\\\\".repeat(million / 2)),
        format!("ext=\"{}\"", "\\\"".repeat(million / 2)),
        format!("for=\"{}", "\\".repeat(million)),
        format!("for=198.51.100.1{}", ";".repeat(million)),
        "a=b;".repeat(million / 4),
        "for=198.51.100.1;".repeat(million / 17),
        "for=\"[".repeat(million / 6),
        " \t".repeat(million / 2),
    ];
    for prefix in &prefixes {
        let same_line = format!("{prefix}, for={CLIENT}");
        let key = forwarded(&[("forwarded", same_line.as_bytes())]);
        assert!(key == ip(CLIENT) || key == ip(PEER), "gave {key}");
        let own_line = format!("for={CLIENT}");
        let key = forwarded(&[
            ("forwarded", prefix.as_bytes()),
            ("forwarded", own_line.as_bytes()),
        ]);
        assert_eq!(key, ip(CLIENT));
    }
}

/// A million-element `X-Forwarded-For` of nothing: commas only, spaces,
/// trusted hops (the walk gives up after 32).
#[test]
fn a_million_elements_of_x_forwarded_for_neither_hang_nor_pick_the_key() {
    let million = 1_000_000;
    for line in [
        ",".repeat(million),
        " ,".repeat(million),
        "\t".repeat(million),
        "1".repeat(million),
        vec!["10.0.0.9"; million].join(","),
    ] {
        let key = xff(&[("x-forwarded-for", line.as_bytes())]);
        let expected = if line.starts_with("10.") {
            "10.0.0.9"
        } else {
            PEER
        };
        assert_eq!(key, ip(expected));
        let appended = format!("{line}, {CLIENT}");
        assert_eq!(xff(&[("x-forwarded-for", appended.as_bytes())]), ip(CLIENT));
    }
}

/// Thousands of lines: a client's empty or trusted-looking lines before the
/// proxy's own, and nothing but such lines.
#[test]
fn thousands_of_lines_neither_hang_nor_pick_the_key() {
    let empty: Vec<(&str, &[u8])> = vec![("x-forwarded-for", b""); 10_000];
    assert_eq!(xff(&empty), ip(PEER));
    let mut with_proxy_line = empty.clone();
    with_proxy_line.push(("x-forwarded-for", CLIENT.as_bytes()));
    assert_eq!(xff(&with_proxy_line), ip(CLIENT));

    let trusted_hops: Vec<String> = (0..10_000)
        .map(|n| format!("10.{}.{}.{}", n / 65_536, n / 256 % 256, n % 256))
        .collect();
    let lines: Vec<(&str, &[u8])> = trusted_hops
        .iter()
        .map(|hop| ("x-forwarded-for", hop.as_bytes()))
        .collect();
    // 32 hops from the right, then the walk stops at the last one read.
    assert_eq!(xff(&lines), ip(&trusted_hops[10_000 - 32]));
    let forwarded_lines: Vec<String> = trusted_hops
        .iter()
        .map(|hop| format!("for={hop}"))
        .collect();
    let lines: Vec<(&str, &[u8])> = forwarded_lines
        .iter()
        .map(|hop| ("forwarded", hop.as_bytes()))
        .collect();
    assert_eq!(forwarded(&lines), ip(&trusted_hops[10_000 - 32]));
}

/// Addresses that `inet_aton`, browsers or other parsers read as something
/// else (`010.0.0.1` is 8.0.0.1 in octal, `10.1` is 10.0.0.1, `167772161`
/// is 10.0.0.1): written as the hop right of the client, none is believed
/// as an address, trusted or not; the walk stops at the peer.
#[test]
fn addresses_other_parsers_read_differently_are_no_address() {
    for odd in [
        "010.0.0.1",
        "10.0.0.01",
        "0x0a.0.0.1",
        "10.1",
        "167772161",
        "10.0.0.1.",
        "\u{ff11}\u{ff10}.0.0.1",
        "fe80::1%eth0",
        "[fe80::1%eth0]",
        "[fe80::1%25eth0]:80",
        "::ffff:10.0.0.1%1",
        "1.2.3.4/8",
        "[::ffff:10.0.0.1]:80:80",
    ] {
        let line = format!("{CLIENT}, {odd}");
        assert_eq!(
            xff(&[("x-forwarded-for", line.as_bytes())]),
            ip(PEER),
            "{odd:?}"
        );
        let line = format!("for={CLIENT}, for=\"{odd}\"");
        assert_eq!(
            forwarded(&[("forwarded", line.as_bytes())]),
            ip(PEER),
            "{odd:?}"
        );
        let real_ip = key_of(
            &behind(ProxyHeader::XRealIp),
            PEER,
            &[("x-real-ip", odd.as_bytes())],
        );
        assert_eq!(real_ip, ip(PEER), "{odd:?}");
    }
}

/// A numeric IPv6 zone id in a bracketed socket address is what Rust's
/// `SocketAddrV6` parser accepts; the zone is dropped and the address is
/// the one the proxy wrote. Harmless (it is right of every client-written
/// hop), and pinned here so a change to it is noticed.
#[test]
fn a_numeric_zone_id_with_a_port_is_the_address_without_its_zone() {
    let line = format!("198.51.100.1, {CLIENT}, [fe80::1%2]:80");
    // fe80::1 is not trusted, so it is the client.
    assert_eq!(xff(&[("x-forwarded-for", line.as_bytes())]), ip("fe80::1"));
}

/// IPv4-mapped IPv6 is the same key as IPv4, and counts as trusted when
/// its IPv4 form is: a dual-stack listener sees `::ffff:a.b.c.d` peers.
#[test]
fn ipv4_mapped_addresses_are_their_ipv4_form_everywhere() {
    let direct = |peer: &str| {
        ClientIp::peer()
            .extract(&RequestHead::of(&request(peer, &[])))
            .unwrap()
    };
    assert_eq!(direct("::ffff:203.0.113.50"), ip(CLIENT));

    // A mapped peer is trusted, a mapped hop is trusted, a mapped client is
    // the same key as the plain one.
    let extractor = behind(ProxyHeader::XForwardedFor);
    let line = b"6.6.6.6, ::ffff:203.0.113.50, ::ffff:10.0.0.3";
    let key = key_of(&extractor, "::ffff:10.0.0.1", &[("x-forwarded-for", line)]);
    assert_eq!(key, ip(CLIENT));
    let line = b"6.6.6.6, for=\"[::ffff:203.0.113.50]:1\", for=\"[::ffff:10.0.0.3]\"";
    let key = key_of(
        &behind(ProxyHeader::Forwarded),
        "::ffff:10.0.0.1",
        &[("forwarded", line)],
    );
    assert_eq!(key, ip(CLIENT));
    // An IPv4-compatible (not mapped) address is a different, untrusted
    // IPv6 address: it ends the walk as the client, not as a trusted hop.
    let line = b"6.6.6.6, ::10.0.0.3";
    assert_eq!(xff(&[("x-forwarded-for", line)]), ip("::10.0.0.3"));
}

/// Special addresses a client writes left of its own hop are never read;
/// written by the proxy as the client (it saw them), they are the client.
#[test]
fn unspecified_broadcast_and_loopback_addresses_left_of_the_client_are_never_read() {
    for special in [
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "127.0.0.1",
        "::1",
        "10.0.0.1",
    ] {
        let line = format!("{special}, {CLIENT}");
        assert_eq!(xff(&[("x-forwarded-for", line.as_bytes())]), ip(CLIENT));
        let line = format!("for=\"[{special}]\", for={special}, for={CLIENT}");
        assert_eq!(forwarded(&[("forwarded", line.as_bytes())]), ip(CLIENT));
    }
}

/// Spaces, tabs and case where RFC 7239 allows them, and none where it
/// does not.
#[test]
fn whitespace_and_case_variants_read_as_the_rfc_says() {
    let tabs = format!("\t198.51.100.1\t,\t {CLIENT} \t");
    assert_eq!(xff(&[("x-forwarded-for", tabs.as_bytes())]), ip(CLIENT));
    for element in [
        format!("FOR={CLIENT}"),
        format!("fOr={CLIENT}"),
        format!("\tfor={CLIENT}\t;\tproto=https\t"),
        format!("proto=https;For=\"{CLIENT}\""),
    ] {
        let line = format!("for=198.51.100.1,{element}");
        assert_eq!(
            forwarded(&[("forwarded", line.as_bytes())]),
            ip(CLIENT),
            "{element:?}"
        );
    }
    for malformed in [
        format!("for ={CLIENT}"),
        format!("for= {CLIENT}"),
        format!("for=\" {CLIENT}\""),
        format!("for={CLIENT};FOR=198.51.100.1"),
        format!("for={CLIENT} for=198.51.100.1"),
    ] {
        let line = format!("for=198.51.100.1, {malformed}");
        assert_eq!(
            forwarded(&[("forwarded", line.as_bytes())]),
            ip(PEER),
            "{malformed:?}"
        );
    }
}

/// A comma inside a quoted string is no element boundary: the client
/// cannot hide a trusted-looking hop or its pick inside the proxy's
/// element, nor split one element into two.
#[test]
fn a_comma_inside_quotes_is_not_a_hop_boundary() {
    let line = b"for=\"198.51.100.1, 10.0.0.3\"";
    assert_eq!(forwarded(&[("forwarded", line)]), ip(PEER));
    let line = b"for=198.51.100.1;ext=\", for=10.0.0.3\", for=203.0.113.50";
    assert_eq!(forwarded(&[("forwarded", line)]), ip(CLIENT));
    // X-Forwarded-For has no quoting: a quote is just garbage in a hop.
    let line = b"\"198.51.100.1, 10.0.0.3\", 203.0.113.50";
    assert_eq!(xff(&[("x-forwarded-for", line)]), ip(CLIENT));
    let line = b"203.0.113.50, \"10.0.0.3\"";
    assert_eq!(xff(&[("x-forwarded-for", line)]), ip(PEER));
}

/// Issue 19's goal from the other side: an attacker spends the victim's
/// budget only if the key it gets is the victim's. It names the victim in
/// every forwarding header, on every line, in every syntax, through nginx
/// (appends to `X-Forwarded-For`, passes the rest through); the victim's
/// one request is still served.
#[tokio::test]
async fn naming_a_victim_everywhere_never_spends_the_victims_budget() {
    let victim = "192.0.2.77";
    let attacker = "198.51.100.66";
    let clock = ManualClock::new();
    let per_ip = Gcra::keyed(Quota::per_minute(1).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build()
        .unwrap();
    let service = RateLimitLayer::new(per_ip)
        .key(behind_by_default(ProxyHeader::XForwardedFor))
        .layer(ok_service());
    let xff_line = format!("{victim}, {victim}:80, [::ffff:{victim}]:1, {victim}, {attacker}");
    let forwarded_line = format!("for={victim}, for=\"[::ffff:{victim}]\"");
    let headers: Vec<(&str, &[u8])> = vec![
        ("x-forwarded-for", xff_line.as_bytes()),
        ("forwarded", forwarded_line.as_bytes()),
        ("x-real-ip", victim.as_bytes()),
        ("cf-connecting-ip", victim.as_bytes()),
        ("true-client-ip", victim.as_bytes()),
    ];
    for _ in 0..10 {
        let request = request(PEER, &headers);
        service.clone().oneshot(request).await.unwrap();
    }
    let request = request(PEER, &[("x-forwarded-for", victim.as_bytes())]);
    let status = service.clone().oneshot(request).await.unwrap().status();
    assert_eq!(status, StatusCode::OK);
}

/// The headers as real proxies write them.
#[test]
fn real_proxies_formats_read_as_the_proxy_table_says() {
    // Google Cloud Application Load Balancer: `<supplied>,<client>,<lb>`,
    // the connection from a Google front end; with the load balancer's
    // address trusted, the client.
    let gclb = ClientIp::behind(
        TrustedProxies::new(["35.191.0.0/16", "130.211.0.0/22", "34.120.0.10"]).unwrap(),
        ProxyHeader::XForwardedFor,
    );
    let line = b"6.6.6.6,203.0.113.50,34.120.0.10";
    assert_eq!(
        key_of(&gclb, "35.191.1.1", &[("x-forwarded-for", line)]),
        ip(CLIENT)
    );
    // Without it, every client is the load balancer: the trap the table
    // warns about.
    let gclb_untrusted_vip = ClientIp::behind(
        TrustedProxies::new(["35.191.0.0/16", "130.211.0.0/22"]).unwrap(),
        ProxyHeader::XForwardedFor,
    );
    assert_eq!(
        key_of(
            &gclb_untrusted_vip,
            "35.191.1.1",
            &[("x-forwarded-for", line)]
        ),
        ip("34.120.0.10")
    );

    // AWS ALB with `routing.http.xff_header_processing.mode = append` and
    // the client port preserved.
    let alb = behind(ProxyHeader::XForwardedFor);
    let line = b"6.6.6.6, 203.0.113.50:4711";
    assert_eq!(key_of(&alb, PEER, &[("x-forwarded-for", line)]), ip(CLIENT));
    let line = b"6.6.6.6, [2001:db8::50]:4711";
    assert_eq!(
        key_of(&alb, PEER, &[("x-forwarded-for", line)]),
        ip("2001:db8::50")
    );

    // nginx `$proxy_add_x_forwarded_for` after a client's empty header:
    // `, <addr>`.
    let line = b", 203.0.113.50";
    assert_eq!(xff(&[("x-forwarded-for", line)]), ip(CLIENT));

    // HAProxy `option forwardfor`: a line of its own after the client's.
    let lines: [(&str, &[u8]); 3] = [
        ("x-forwarded-for", b"6.6.6.6"),
        ("x-forwarded-for", b"7.7.7.7, 10.0.0.3"),
        ("x-forwarded-for", CLIENT.as_bytes()),
    ];
    assert_eq!(xff(&lines), ip(CLIENT));
}
