//! Reading the client out of forwarding headers: `Forwarded` (RFC 7239)
//! elements and `X-Forwarded-For` lists, walked from the right through
//! trusted proxies only (see the [parent module](super) for the rules and
//! their fallbacks). Kept apart from the extractor because this is the
//! part that reads what clients wrote, and so the part to audit.

use std::net::{IpAddr, SocketAddr};

use http::header::FORWARDED;
use http::{HeaderMap, HeaderName};

use super::proxies::TrustedProxies;

/// The most forwarding hops read from the right before giving up: real
/// chains are a handful of proxies; a longer one is garbage or an attack.
const MAX_HOPS: usize = 32;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client a chain of `trusted` proxies names, walking the hops of
/// `Forwarded` (or else `X-Forwarded-For`) from the right, starting from
/// `peer`, a trusted proxy.
pub(super) fn client_behind(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer;
    let forwarded = headers.contains_key(FORWARDED);
    let name = if forwarded {
        &FORWARDED
    } else {
        &X_FORWARDED_FOR
    };
    let hops = headers
        .get_all(name)
        .iter()
        .rev()
        .flat_map(|line| line.to_str().unwrap_or("\u{0}").rsplit(','));
    for hop in hops.take(MAX_HOPS) {
        let address = if forwarded {
            forwarded_for(hop)
        } else {
            parse_node(hop)
        };
        let Some(address) = address else {
            return client;
        };
        client = address;
        if !trusted.contains(address) {
            return address;
        }
    }
    client
}

/// The `for=` address of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_node(value)
    })
}

/// An address with or without a port: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    node.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use crate::http::client_ip::tests::{client, ip};
    use crate::http::client_ip::{ClientIp, PeerAddr, TrustedProxies};
    use crate::http::key::{KeyExtractor, RequestHead};

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let xff = [("x-forwarded-for", "6.6.6.6, 203.0.113.4, 10.0.0.3")];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &xff),
            ip("203.0.113.4")
        );
        let split = [
            ("x-forwarded-for", "6.6.6.6, 203.0.113.4"),
            ("x-forwarded-for", "10.0.0.3"),
        ];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &split),
            ip("203.0.113.4")
        );
        let all_trusted = [("x-forwarded-for", "10.9.9.9, 10.0.0.3")];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &all_trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn forwarded_is_read_with_quotes_ports_and_brackets() {
        let header = [(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.3",
        )];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &header),
            ip("2001:db8::17")
        );
        let both = [
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "6.6.6.6"),
        ];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &both),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn malformed_hops_stop_at_the_last_known_address() {
        let trusted = ["10.0.0.0/8"];
        for garbage in ["not-an-ip", "", " , ", "unknown", "1.2.3.4:99999", "[::1"] {
            let header = [("x-forwarded-for", garbage)];
            assert_eq!(
                client(&trusted, "10.0.0.1:1", &header),
                ip("10.0.0.1"),
                "{garbage:?}"
            );
        }
        let mixed = [("x-forwarded-for", "203.0.113.4, garbage, 10.0.0.3")];
        assert_eq!(client(&trusted, "10.0.0.1:1", &mixed), ip("10.0.0.3"));
        let hidden = [("forwarded", "for=_hidden, for=10.0.0.3")];
        assert_eq!(client(&trusted, "10.0.0.1:1", &hidden), ip("10.0.0.3"));
        let no_for = [("forwarded", "proto=https")];
        assert_eq!(client(&trusted, "10.0.0.1:1", &no_for), ip("10.0.0.1"));
    }

    #[test]
    fn huge_headers_are_walked_only_so_far() {
        let long = vec!["10.0.0.9"; 100_000].join(",");
        let header = [("x-forwarded-for", long.as_str())];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &header),
            ip("10.0.0.9")
        );
        let non_utf8 = http::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        let mut request = http::Request::get("/").body(()).unwrap();
        request.headers_mut().insert("x-forwarded-for", non_utf8);
        request
            .extensions_mut()
            .insert(PeerAddr("10.0.0.1:1".parse().unwrap()));
        let extractor =
            ClientIp::from_peer_or_forwarded(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
        assert_eq!(
            extractor.extract(&RequestHead::of(&request)),
            ip("10.0.0.1")
        );
    }
}
