//! Plain addresses, as `X-Forwarded-For` elements and single-address
//! headers (`X-Real-IP`, `CF-Connecting-IP`) hold them. These headers have
//! no specification; this accepts what proxies write (an IPv4 or IPv6
//! address, with or without a port) and nothing else.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::walk::LastElements;

/// Splits an `X-Forwarded-For` line at its commas: addresses hold none, so
/// no comma is ever inside an element.
pub(super) fn split_plain_list(line: &[u8]) -> Option<LastElements<'_>> {
    let mut elements = LastElements::new();
    for element in line.split(|&byte| byte == b',') {
        elements.push(element);
    }
    Some(elements)
}

/// An address, optionally with a port, between optional spaces:
/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`. IPv4-mapped IPv6 addresses come back as IPv4. `None`
/// for anything else, including a port over 65535 and bytes that are not
/// UTF-8.
pub(super) fn parse(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text.trim_ascii()).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    let bracketed = text.strip_prefix('[')?.strip_suffix(']')?;
    let ip = bracketed.parse::<Ipv6Addr>().ok()?;
    Some(IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn addresses_are_read_with_or_without_ports_and_brackets() {
        for (text, expected) in [
            ("192.0.2.1", "192.0.2.1"),
            (" 192.0.2.1\t", "192.0.2.1"),
            ("192.0.2.1:80", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("[::ffff:192.0.2.1]:80", "192.0.2.1"),
        ] {
            assert_eq!(parse(text.as_bytes()), ip(expected), "{text:?}");
        }
    }

    #[test]
    fn anything_else_is_not_an_address() {
        for text in [
            "",
            " ",
            "unknown",
            "_hidden",
            "for=192.0.2.1",
            "192.0.2.1:99999",
            "192.0.2.1:",
            "192.0.2.01",
            "[192.0.2.1]",
            "[2001:db8::1",
            "2001:db8::1]",
            "[2001:db8::1]:",
            "[2001:db8::1]:65536",
            "192.0.2.1, 192.0.2.2",
            "192.0.2.1 192.0.2.2",
            "localhost",
        ] {
            assert_eq!(parse(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(parse(b"192.0.2.1\xff"), None);
        assert_eq!(parse(b"\xc0\xa8\x00\x01"), None);
    }

    #[test]
    fn a_plain_list_splits_at_every_comma() {
        let elements = split_plain_list(b"a, b,,c").unwrap();
        let read: Vec<&[u8]> = elements.rightmost_first().collect();
        assert_eq!(read, [&b"c"[..], b"", b" b", b"a"]);
    }
}
