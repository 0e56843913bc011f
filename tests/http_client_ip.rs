//! `ClientIp` behind trusted proxies, attacked (issue 19). The attacker is
//! a client that sends whatever headers it likes to the edge proxy; the
//! proxies then do what real ones do to the one header they write (append
//! the address they received from, on the same line or a new one, or
//! overwrite a single-address header) and pass every other header through
//! untouched. Whatever the attacker sent, the key must be the true client,
//! or, where its input made a hop unreadable, a trusted hop: never an
//! address the attacker chose.
//!
//! ```text
//!   attacker 203.0.113.50 ──> edge proxy 10.0.0.2 ──> proxy 10.0.0.1 ──> server
//!                                                      (the peer)
//! ```

#![cfg(feature = "tower")]

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use proptest::prelude::*;
use surgeguard::http::{
    ClientIp, KeyExtractor, PeerAddr, ProxyHeader, RequestHead, TrustedProxies,
};

const TRUSTED: &str = "10.0.0.0/8";
const EDGE: &str = "10.0.0.2";
const PEER: &str = "10.0.0.1";

/// Every header a client could forge to pose as someone else.
const FORWARDING_HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "cf-connecting-ip",
    "true-client-ip",
    "fly-client-ip",
];

/// The true client, and how the edge proxy writes it.
#[derive(Debug, Clone, Copy)]
struct TrueClient {
    ip: &'static str,
    /// In `X-Forwarded-For` and single-address headers.
    plain: &'static str,
    /// As a `Forwarded` node.
    node: &'static str,
}

const CLIENTS: [TrueClient; 2] = [
    TrueClient {
        ip: "203.0.113.50",
        plain: "203.0.113.50",
        node: "203.0.113.50",
    },
    TrueClient {
        ip: "2001:db8::50",
        plain: "[2001:db8::50]:4711",
        node: "\"[2001:db8::50]:4711\"",
    },
];

/// How a proxy adds its hop to a list header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStyle {
    /// Joins every line it received into one, then appends (nginx's
    /// `$proxy_add_x_forwarded_for`).
    JoinAll,
    /// Appends `, hop` to the last line it received.
    AppendToLast,
    /// Adds a line of its own (HAProxy's `option forwardfor`).
    NewLine,
}

/// How the edge proxy sets a single-address header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SingleStyle {
    /// Removes the client's lines and writes one (nginx's
    /// `proxy_set_header X-Real-IP $remote_addr`, CDNs).
    Overwrite,
    /// Misconfigured: adds its line beside the client's.
    AddLine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proxying {
    List(ListStyle),
    Single(SingleStyle),
}

fn proxy_header(name: &'static str) -> ProxyHeader {
    match name {
        "x-forwarded-for" => ProxyHeader::XForwardedFor,
        "forwarded" => ProxyHeader::Forwarded,
        "x-real-ip" => ProxyHeader::XRealIp,
        custom => ProxyHeader::Custom(HeaderName::from_static(custom)),
    }
}

fn is_list(name: &str) -> bool {
    name == "x-forwarded-for" || name == "forwarded"
}

/// Appends `hop` to the list header `name` the way `style` does.
fn append_hop(headers: &mut HeaderMap, name: &'static str, hop: &str, style: ListStyle) {
    let lines: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
    let joined = |lines: &[HeaderValue]| -> Vec<u8> {
        let mut line = Vec::new();
        for (index, value) in lines.iter().enumerate() {
            if index > 0 {
                line.extend_from_slice(b", ");
            }
            line.extend_from_slice(value.as_bytes());
        }
        line
    };
    let with_hop = |mut line: Vec<u8>| {
        line.extend_from_slice(b", ");
        line.extend_from_slice(hop.as_bytes());
        HeaderValue::from_bytes(&line).unwrap()
    };
    let own_line = HeaderValue::from_str(hop).unwrap();
    match (style, lines.split_last()) {
        (_, None) | (ListStyle::NewLine, _) => {
            headers.append(name, own_line);
        }
        (ListStyle::JoinAll, Some(_)) => {
            headers.insert(name, with_hop(joined(&lines)));
        }
        (ListStyle::AppendToLast, Some((last, before))) => {
            headers.remove(name);
            for line in before {
                headers.append(name, line.clone());
            }
            headers.append(name, with_hop(last.as_bytes().to_vec()));
        }
    }
}

/// What reaches the server when the attacker sends `sent` through the two
/// proxies, which write `name` as `proxying` says.
fn through_the_proxies(
    sent: HeaderMap,
    name: &'static str,
    proxying: Proxying,
    client: TrueClient,
) -> Request<()> {
    let mut request = Request::get("/").body(()).unwrap();
    *request.headers_mut() = sent;
    let headers = request.headers_mut();
    match proxying {
        Proxying::List(style) => {
            let (client_hop, edge_hop) = if name == "forwarded" {
                (format!("for={}", client.node), format!("for={EDGE}"))
            } else {
                (client.plain.to_owned(), EDGE.to_owned())
            };
            append_hop(headers, name, &client_hop, style);
            append_hop(headers, name, &edge_hop, style);
        }
        Proxying::Single(SingleStyle::Overwrite) => {
            headers.insert(name, HeaderValue::from_static(client.plain));
        }
        Proxying::Single(SingleStyle::AddLine) => {
            headers.append(name, HeaderValue::from_static(client.plain));
        }
    }
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(PEER.parse().unwrap(), 443)));
    request
}

/// The key for `request` with `name` configured, as the exact address
/// (`ipv6_prefix(128)`): this file checks which address the walk picks, and
/// an IPv6 client's default /64 key would hide a pick inside the true
/// client's /64 (the /64 key is tested in `http_client_ip_attacks.rs`).
fn key(name: &'static str, request: &Request<()>) -> IpAddr {
    ClientIp::behind(TrustedProxies::new([TRUSTED]).unwrap(), proxy_header(name))
        .ipv6_prefix(128)
        .unwrap()
        .extract(&RequestHead::of(request))
        .unwrap()
}

/// What an attacker sends before the proxies touch the request.
struct Attack {
    name: &'static str,
    /// Its lines of each forwarding header.
    lines: fn(header: &str) -> Vec<Vec<u8>>,
    /// Whether it leaves a `Forwarded` quoted string open, so that a line a
    /// proxy appends to cannot be split (the walk stops at the peer).
    leaves_a_quote_open: bool,
}

impl Attack {
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for name in FORWARDING_HEADERS {
            for line in (self.lines)(name) {
                headers.append(name, HeaderValue::from_bytes(&line).unwrap());
            }
        }
        headers
    }

    fn sends(&self, name: &str) -> bool {
        !(self.lines)(name).is_empty()
    }
}

/// One spoofed address per header, in that header's syntax.
fn spoof(name: &str, address: &str) -> Vec<u8> {
    if name == "forwarded" {
        format!("for=\"{address}\"").into_bytes()
    } else {
        address.as_bytes().to_vec()
    }
}

fn lines(values: &[&str]) -> Vec<Vec<u8>> {
    values
        .iter()
        .map(|value| value.as_bytes().to_vec())
        .collect()
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "nothing forged",
        lines: |_| Vec::new(),
        leaves_a_quote_open: false,
    },
    Attack {
        name: "a different address in every header",
        lines: |name| {
            let index = FORWARDING_HEADERS.iter().position(|h| *h == name).unwrap();
            vec![spoof(name, &format!("198.51.100.{}", index + 1))]
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "extra lines of every header",
        lines: |name| {
            ["198.51.100.7", "198.51.100.8", "198.51.100.9"]
                .iter()
                .map(|address| spoof(name, address))
                .collect()
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "trusted-looking hops left of the client",
        lines: |name| match name {
            "forwarded" => lines(&["for=198.51.100.9, for=10.0.0.3, for=10.0.0.4"]),
            "x-forwarded-for" => lines(&["198.51.100.9, 10.0.0.3, 10.0.0.4"]),
            _ => lines(&["10.0.0.3"]),
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "obfuscated and unknown hops",
        lines: |name| match name {
            "forwarded" => lines(&["for=unknown, for=_hidden, for=\"_x:_y\""]),
            _ => lines(&["unknown, _hidden", "unknown"]),
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "garbage",
        lines: |_| lines(&["not-an-address", ";;;", "=", "for=", "[", "]", ",,,", "\\"]),
        leaves_a_quote_open: false,
    },
    Attack {
        name: "bracketed IPv6 with ports",
        lines: |name| vec![spoof(name, "[2001:db8::1]:4711")],
        leaves_a_quote_open: false,
    },
    Attack {
        name: "IPv4-mapped IPv6 and out-of-range ports",
        lines: |name| {
            vec![
                spoof(name, "::ffff:198.51.100.1"),
                spoof(name, "198.51.100.2:99999"),
            ]
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "a thousand hops",
        lines: |name| {
            let hops: Vec<String> = (0..1_000)
                .map(|n| {
                    let address = format!("10.{}.{}.{}", n / 65_536, n / 256 % 256, n % 256);
                    String::from_utf8(spoof(name, &address)).unwrap()
                })
                .collect();
            vec![hops.join(", ").into_bytes()]
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "a thousand lines",
        lines: |name| {
            (0..1_000)
                .map(|n| spoof(name, &format!("198.51.{}.{}", n / 256, n % 256)))
                .collect()
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "bytes that are not UTF-8",
        lines: |_| {
            vec![
                b"\xff\xfe198.51.100.1".to_vec(),
                b"for=\"\xc3\x28\"".to_vec(),
            ]
        },
        leaves_a_quote_open: false,
    },
    Attack {
        name: "empty values",
        lines: |_| lines(&["", " ", ""]),
        leaves_a_quote_open: false,
    },
    Attack {
        name: "commas and semicolons inside quoted strings",
        lines: |_| lines(&["for=198.51.100.1;ext=\"a, for=198.51.100.2;by=x\""]),
        leaves_a_quote_open: false,
    },
    Attack {
        name: "an unclosed quoted string",
        lines: |_| lines(&["for=\"198.51.100.1"]),
        leaves_a_quote_open: true,
    },
    Attack {
        name: "an escaped closing quote",
        lines: |_| lines(&["for=\"198.51.100.1\\\""]),
        leaves_a_quote_open: true,
    },
];

/// Issue 19, every combination: each configured header, written by the
/// proxies in each realistic way, for an IPv4 and an IPv6 client, against
/// each attack on every forwarding header at once.
#[test]
fn every_spoofed_header_combination_leaves_the_true_client_or_a_trusted_hop() {
    let peer: IpAddr = PEER.parse().unwrap();
    let mut checked = 0;
    for name in FORWARDING_HEADERS {
        let proxying: Vec<Proxying> = if is_list(name) {
            [
                ListStyle::JoinAll,
                ListStyle::AppendToLast,
                ListStyle::NewLine,
            ]
            .map(Proxying::List)
            .to_vec()
        } else {
            [SingleStyle::Overwrite, SingleStyle::AddLine]
                .map(Proxying::Single)
                .to_vec()
        };
        for proxying in proxying {
            for client in CLIENTS {
                let true_client: IpAddr = client.ip.parse().unwrap();
                for attack in ATTACKS {
                    let request = through_the_proxies(attack.headers(), name, proxying, client);
                    // The walk can only stop early (at the peer) where the
                    // attacker's text shares a line with the proxies' hops,
                    // or where a misconfigured proxy let its line through.
                    let expected = match proxying {
                        Proxying::List(ListStyle::JoinAll | ListStyle::AppendToLast)
                            if name == "forwarded" && attack.leaves_a_quote_open =>
                        {
                            peer
                        }
                        Proxying::Single(SingleStyle::AddLine) if attack.sends(name) => peer,
                        _ => true_client,
                    };
                    assert_eq!(
                        key(name, &request),
                        expected,
                        "{name}, {proxying:?}, client {}, attack: {}",
                        client.ip,
                        attack.name
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, (2 * 3 + 4 * 2) * CLIENTS.len() * ATTACKS.len());
}

/// An untrusted peer: the attacker connects straight to the server.
#[test]
fn an_attacker_connecting_directly_is_its_own_key() {
    let attacker: IpAddr = "192.0.2.66".parse().unwrap();
    for name in FORWARDING_HEADERS {
        for attack in ATTACKS {
            let mut request = Request::get("/").body(()).unwrap();
            *request.headers_mut() = attack.headers();
            request
                .extensions_mut()
                .insert(PeerAddr(SocketAddr::new(attacker, 50_000)));
            assert_eq!(key(name, &request), attacker, "{name}, {}", attack.name);
        }
    }
}

/// Pieces an attacker's header values are made of.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            ",",
            ", ",
            ";",
            "=",
            "\"",
            "\\",
            " ",
            "for=",
            "FOR=",
            "by=",
            "proto=https",
            "for=\"[",
            "]:4711\"",
            "unknown",
            "_hidden",
            "[",
            "]",
            ":",
            ":99999",
            "10.0.0.2",
            "10.0.0.1",
            "10.1.2.3",
            "::ffff:10.0.0.2",
            "203.0.113.50",
            "2001:db8::50",
        ])
        .prop_map(|text: &str| text.as_bytes().to_vec()),
        any::<[u8; 4]>().prop_map(|octets| IpAddr::from(octets).to_string().into_bytes()),
        any::<u128>().prop_map(|bits| IpAddr::from(bits.to_be_bytes()).to_string().into_bytes()),
        // Any bytes a header value may hold, UTF-8 or not.
        prop::collection::vec(
            prop::sample::select((0x20u8..=0xff).filter(|&b| b != 0x7f).collect::<Vec<u8>>()),
            1..8
        ),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..12).prop_map(|pieces| pieces.concat())
}

fn header_soup() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    prop::collection::vec((0..FORWARDING_HEADERS.len(), header_value()), 0..16)
}

fn any_proxying() -> impl Strategy<Value = (usize, Proxying, usize)> {
    (0..FORWARDING_HEADERS.len(), 0..3usize, 0..CLIENTS.len()).prop_map(|(name, style, client)| {
        let proxying = if is_list(FORWARDING_HEADERS[name]) {
            let styles = [
                ListStyle::JoinAll,
                ListStyle::AppendToLast,
                ListStyle::NewLine,
            ];
            Proxying::List(styles[style])
        } else {
            let styles = [SingleStyle::Overwrite, SingleStyle::AddLine];
            Proxying::Single(styles[style % 2])
        };
        (name, proxying, client)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Random header soup from the attacker: the key is the true client or
    /// one of the trusted hops, and exactly the true client wherever the
    /// proxies keep their hops apart from the attacker's text (a line of
    /// their own, or an overwritten header).
    #[test]
    fn an_attackers_header_soup_never_picks_the_key(
        soup in header_soup(),
        (name, proxying, client) in any_proxying(),
    ) {
        let name = FORWARDING_HEADERS[name];
        let client = CLIENTS[client];
        let mut sent = HeaderMap::new();
        for (header, value) in soup {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                sent.append(FORWARDING_HEADERS[header], value);
            }
        }
        let request = through_the_proxies(sent, name, proxying, client);
        let key = key(name, &request);
        let true_client: IpAddr = client.ip.parse().unwrap();
        let allowed = [true_client, EDGE.parse().unwrap(), PEER.parse().unwrap()];
        prop_assert!(allowed.contains(&key), "{name}, {proxying:?}: key {key}");
        if matches!(
            proxying,
            Proxying::List(ListStyle::NewLine) | Proxying::Single(SingleStyle::Overwrite)
        ) {
            prop_assert_eq!(key, true_client, "{}, {:?}", name, proxying);
        }
        if name == "x-forwarded-for" {
            // No quoting in X-Forwarded-For: nothing the attacker writes
            // left of the proxies' hops can reach them.
            prop_assert_eq!(key, true_client, "{}, {:?}", name, proxying);
        }
    }
}
