//! Which part of the named header is believed: for a list, the hops from
//! the right for as long as each one is a trusted proxy; for a
//! single-address header, its one line. Everything here returns either an
//! address a trusted proxy wrote or the last trusted hop, so this is the
//! file that keeps a client from choosing its key. The syntax of a hop is
//! `address.rs`'s and `forwarded.rs`'s.

use std::net::IpAddr;

use http::header::GetAll;
use http::HeaderValue;

use super::address;
use super::proxies::TrustedProxies;

/// The most hops read from the right before giving up: real chains are a
/// handful of proxies; a longer one is garbage or an attack, and stopping
/// bounds the work a request can cause.
pub(super) const MAX_HOPS: usize = 32;

/// The last [`MAX_HOPS`] elements of one header line: a walk never reads
/// further, so a line of a million elements costs one scan and no
/// allocation.
pub(super) struct LastElements<'a> {
    ring: [&'a [u8]; MAX_HOPS],
    pushed: usize,
}

impl<'a> LastElements<'a> {
    pub(super) fn new() -> Self {
        LastElements {
            ring: [&[]; MAX_HOPS],
            pushed: 0,
        }
    }

    /// Adds the next element, left to right.
    pub(super) fn push(&mut self, element: &'a [u8]) {
        self.ring[self.pushed % MAX_HOPS] = element;
        self.pushed += 1;
    }

    /// The elements kept, rightmost first.
    pub(super) fn rightmost_first(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (self.pushed.saturating_sub(MAX_HOPS)..self.pushed)
            .rev()
            .map(|index| self.ring[index % MAX_HOPS])
    }
}

/// Splits one line of a list header into its elements; `None` when the
/// line cannot be split (an unclosed quoted string).
pub(super) type SplitLine = for<'a> fn(&'a [u8]) -> Option<LastElements<'a>>;

/// The address one element names; `None` for anything else (garbage,
/// `unknown`, an obfuscated node, an empty element).
pub(super) type ElementAddress = fn(&[u8]) -> Option<IpAddr>;

/// The client behind `peer`, a trusted proxy, named by a list header: its
/// lines in order make one list, read from the right. Each proxy appends
/// the address it received the request from, so a trusted address means
/// the element to its left was written by that trusted proxy; the first
/// untrusted address is the client, and nothing left of it is read.
/// Anything that is not an address, a line that does not split, or more
/// than [`MAX_HOPS`] hops end the walk at the last trusted hop.
pub(super) fn list_from_the_right(
    peer: IpAddr,
    lines: GetAll<'_, HeaderValue>,
    trusted: &TrustedProxies,
    split: SplitLine,
    address_of: ElementAddress,
) -> IpAddr {
    let mut last_trusted = peer;
    let mut hops = 0;
    for line in lines.iter().rev() {
        let Some(elements) = split(line.as_bytes()) else {
            return last_trusted;
        };
        for element in elements.rightmost_first() {
            if hops == MAX_HOPS {
                return last_trusted;
            }
            hops += 1;
            let Some(address) = address_of(element) else {
                return last_trusted;
            };
            if !trusted.contains(address) {
                return address;
            }
            last_trusted = address;
        }
    }
    last_trusted
}

/// The client behind `peer`, a trusted proxy, named by a single-address
/// header: exactly one line holding one address, else `peer`. A proxy that
/// overwrites the header leaves one line; two lines mean a client's line
/// reached the server beside the proxy's, and nothing tells them apart
/// (taking the last would trust the proxy to append rather than prepend or
/// pass through), so neither is believed.
pub(super) fn single_address(peer: IpAddr, lines: GetAll<'_, HeaderValue>) -> IpAddr {
    let mut lines = lines.iter();
    match (lines.next(), lines.next()) {
        (Some(only), None) => address::parse(only.as_bytes()).unwrap_or(peer),
        _ => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client_ip::tests::{client, ip};
    use crate::http::client_ip::{forwarded, ProxyHeader};

    const TRUSTED: &[&str] = &["10.0.0.0/8"];
    const PEER: &str = "10.0.0.1:1";

    fn xff(headers: &[(&str, &str)]) -> Option<IpAddr> {
        client(ProxyHeader::XForwardedFor, TRUSTED, PEER, headers)
    }

    fn forwarded(headers: &[(&str, &str)]) -> Option<IpAddr> {
        client(ProxyHeader::Forwarded, TRUSTED, PEER, headers)
    }

    fn real_ip(headers: &[(&str, &str)]) -> Option<IpAddr> {
        client(ProxyHeader::XRealIp, TRUSTED, PEER, headers)
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let header = [("x-forwarded-for", "6.6.6.6, 203.0.113.4, 10.0.0.3")];
        assert_eq!(xff(&header), ip("203.0.113.4"));
        let all_trusted = [("x-forwarded-for", "10.9.9.9, 10.0.0.3")];
        assert_eq!(xff(&all_trusted), ip("10.9.9.9"));
        let header = [(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.3",
        )];
        assert_eq!(forwarded(&header), ip("2001:db8::17"));
    }

    #[test]
    fn the_lines_of_a_list_header_make_one_list() {
        let split = [
            ("x-forwarded-for", "6.6.6.6, 203.0.113.4"),
            ("x-forwarded-for", "10.0.0.3"),
        ];
        assert_eq!(xff(&split), ip("203.0.113.4"));
        let split = [
            ("forwarded", "for=6.6.6.6"),
            ("forwarded", "for=203.0.113.4"),
            ("forwarded", "for=10.0.0.3;proto=https"),
        ];
        assert_eq!(forwarded(&split), ip("203.0.113.4"));
    }

    #[test]
    fn a_hop_that_is_no_address_ends_the_walk_at_the_last_trusted_hop() {
        for garbage in [
            "not-an-ip",
            "",
            " , ",
            "unknown",
            "_hidden",
            "1.2.3.4:99999",
            "[::1",
        ] {
            let header = [("x-forwarded-for", garbage)];
            assert_eq!(xff(&header), ip("10.0.0.1"), "{garbage:?}");
        }
        let mixed = [("x-forwarded-for", "203.0.113.4, garbage, 10.0.0.3")];
        assert_eq!(xff(&mixed), ip("10.0.0.3"));
        let hidden = [("forwarded", "for=6.6.6.6, for=_hidden, for=10.0.0.3")];
        assert_eq!(forwarded(&hidden), ip("10.0.0.3"));
        let unknown = [("forwarded", "for=6.6.6.6, for=unknown, for=10.0.0.3")];
        assert_eq!(forwarded(&unknown), ip("10.0.0.3"));
        let no_for = [("forwarded", "for=6.6.6.6, proto=https")];
        assert_eq!(forwarded(&no_for), ip("10.0.0.1"));
        let unclosed = [("forwarded", "for=\"6.6.6.6, for=203.0.113.4")];
        assert_eq!(forwarded(&unclosed), ip("10.0.0.1"));
        let unclosed_left = [
            ("forwarded", "for=\"6.6.6.6"),
            ("forwarded", "for=203.0.113.4"),
        ];
        assert_eq!(forwarded(&unclosed_left), ip("203.0.113.4"));
    }

    #[test]
    fn the_walk_stops_after_max_hops() {
        // All trusted: the walk gives up at the 32nd hop from the right.
        let long: Vec<String> = (0..1_000)
            .map(|n| format!("10.0.{}.{}", n / 256, n % 256))
            .collect();
        let header = [("x-forwarded-for", long.join(","))];
        let header: Vec<(&str, &str)> = header.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(xff(&header), ip(&long[1_000 - MAX_HOPS]));
        let lines: Vec<(&str, &str)> = long
            .iter()
            .map(|hop| ("x-forwarded-for", hop.as_str()))
            .collect();
        assert_eq!(xff(&lines), ip(&long[1_000 - MAX_HOPS]));
        let huge = vec!["10.0.0.9"; 100_000].join(",");
        assert_eq!(xff(&[("x-forwarded-for", &huge)]), ip("10.0.0.9"));
    }

    #[test]
    fn a_single_address_header_is_one_line_with_one_address() {
        assert_eq!(real_ip(&[("x-real-ip", "203.0.113.4")]), ip("203.0.113.4"));
        assert_eq!(
            real_ip(&[("x-real-ip", " [2001:db8::1]:4711 ")]),
            ip("2001:db8::1")
        );
        // A trusted address is still the one the proxy saw.
        assert_eq!(real_ip(&[("x-real-ip", "10.0.0.7")]), ip("10.0.0.7"));
        for value in [
            "",
            "unknown",
            "203.0.113.4, 198.51.100.1",
            "for=203.0.113.4",
        ] {
            assert_eq!(
                real_ip(&[("x-real-ip", value)]),
                ip("10.0.0.1"),
                "{value:?}"
            );
        }
        let two_lines = [("x-real-ip", "6.6.6.6"), ("x-real-ip", "203.0.113.4")];
        assert_eq!(real_ip(&two_lines), ip("10.0.0.1"));
        assert_eq!(real_ip(&[]), ip("10.0.0.1"));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_no_address() {
        let mut request = http::Request::get("/").body(()).unwrap();
        let headers = request.headers_mut();
        headers.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.4, 10.0.0.3").unwrap(),
        );
        headers.append(
            "x-real-ip",
            http::HeaderValue::from_bytes(b"203.0.113.4\xff").unwrap(),
        );
        headers.append(
            "forwarded",
            http::HeaderValue::from_bytes(b"for=\"\xff\", for=10.0.0.3").unwrap(),
        );
        let peer = "10.0.0.1".parse().unwrap();
        let trusted = TrustedProxies::new(TRUSTED).unwrap();
        let headers = request.headers();
        // What a client wrote left of the client's hop is never read.
        assert_eq!(
            list_from_the_right(
                peer,
                headers.get_all("x-forwarded-for"),
                &trusted,
                address::split_plain_list,
                address::parse
            ),
            "203.0.113.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(single_address(peer, headers.get_all("x-real-ip")), peer);
        assert_eq!(
            list_from_the_right(
                peer,
                headers.get_all("forwarded"),
                &trusted,
                forwarded::split_elements,
                forwarded::for_address
            ),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn last_elements_keep_the_rightmost_in_reverse_order() {
        let line: Vec<String> = (0..100).map(|n| n.to_string()).collect();
        let mut elements = LastElements::new();
        for element in &line {
            elements.push(element.as_bytes());
        }
        let read: Vec<&[u8]> = elements.rightmost_first().collect();
        let expected: Vec<&[u8]> = (68..100).rev().map(|n| line[n].as_bytes()).collect();
        assert_eq!(read, expected);

        let mut few = LastElements::new();
        few.push(b"a");
        few.push(b"b");
        assert_eq!(few.rightmost_first().collect::<Vec<_>>(), [b"b", b"a"]);
    }
}
