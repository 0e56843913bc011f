//! The `Forwarded` header (RFC 7239): splitting a line into elements,
//! finding each element's `for=` node, and reading the node. Strict, since
//! whatever does not parse ends the walk at a trusted hop rather than
//! guessing: a client writes what it likes here, and a lenient reading is
//! a reading a client can steer.
//!
//! A line is split left to right, honouring quoted strings, because only
//! from the left can a quote be told apart from an escaped one. A client's
//! text left of a proxy's element on the same line is either balanced
//! (it ends where the proxy's comma begins, and the proxy's element reads
//! as written) or leaves a quoted string open (the line does not split, and
//! the walk stops at the last trusted hop): it cannot change what the
//! proxy's element says.
//!
//! Nothing here allocates, whatever a client sends: values are read where
//! they lie, and only a `for=` value is ever unescaped, into a buffer on
//! the stack as long as the longest node worth reading. A value longer
//! than that names no address, so it is refused before any copy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::walk::LastElements;

/// Splits a `Forwarded` line into its elements at the commas outside
/// quoted strings (RFC 9110 §5.6.1 lists, §5.6.4 quoted strings); `None`
/// when a quoted string is never closed.
pub(super) fn split_elements(line: &[u8]) -> Option<LastElements<'_>> {
    let mut elements = LastElements::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (index, &byte) in line.iter().enumerate() {
        if in_quotes {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_quotes = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_quotes = true;
        } else if byte == b',' {
            elements.push(&line[start..index]);
            start = index + 1;
        }
    }
    if in_quotes {
        return None;
    }
    elements.push(&line[start..]);
    Some(elements)
}

/// The address of one element's `for=` node; `None` when the element does
/// not parse, has no `for=`, or names no address (`unknown`, obfuscated).
pub(super) fn for_address(element: &[u8]) -> Option<IpAddr> {
    match for_node(element)? {
        Node::Address(ip) => Some(ip),
        Node::Unknown | Node::Obfuscated => None,
    }
}

/// What a node names (RFC 7239 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// An IPv4 or (bracketed) IPv6 address; IPv4-mapped IPv6 as IPv4.
    Address(IpAddr),
    /// `unknown`: the proxy does not know, or will not say (§6.2).
    Unknown,
    /// `_identifier`: a name that hides the address (§6.3).
    Obfuscated,
}

/// The `for=` node of one element (RFC 7239 §4:
/// `forwarded-pair *( ";" forwarded-pair )`, each `token "=" value`, the
/// value a token or a quoted string). `None` when the element does not
/// parse, has no `for=`, or has two (a parameter "MUST NOT occur more than
/// once per forwarded-element"). Spaces around the element and around `;`
/// are allowed.
fn for_node(element: &[u8]) -> Option<Node> {
    let mut rest = element;
    let mut node = None;
    loop {
        rest = rest.trim_ascii_start();
        match rest.split_first() {
            None => return node,
            Some((b';', after)) => {
                rest = after;
                continue;
            }
            Some(_) => {}
        }
        let (name, after) = token(rest)?;
        let after = after.strip_prefix(b"=")?;
        let (value, after) = value(after)?;
        if name.eq_ignore_ascii_case(b"for") {
            if node.is_some() {
                return None;
            }
            let mut buffer = [0; MAX_NODE_LEN];
            node = Some(parse_node(value.unescaped(&mut buffer)?)?);
        }
        rest = after.trim_ascii_start();
        match rest.split_first() {
            None => return node,
            Some((b';', after)) => rest = after,
            Some(_) => return None,
        }
    }
}

/// A token (RFC 9110 §5.6.2) at the start of `text`, and what follows it.
fn token(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = text
        .iter()
        .position(|&byte| !is_token_char(byte))
        .unwrap_or(text.len());
    (end > 0).then(|| text.split_at(end))
}

fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The longest `for=` value read as a node. The longest node that names
/// an address with a numeric port is 53 bytes
/// (`[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535`); the rest leaves
/// room for an obfuscated port (RFC 7239 §6.3 sets no length, proxies write
/// a handful of characters). A longer value names no address.
const MAX_NODE_LEN: usize = 128;

/// A parameter value as it lies in the header: a token, or a quoted
/// string's contents with any escapes still in.
#[derive(Debug, Clone, Copy)]
struct Value<'a> {
    text: &'a [u8],
    escaped: bool,
}

impl<'a> Value<'a> {
    /// The value with its escapes resolved (RFC 9110 §5.6.4), written into
    /// `buffer` when there are any; `None` when it is longer than
    /// [`MAX_NODE_LEN`], without reading past that.
    fn unescaped<'b>(self, buffer: &'b mut [u8; MAX_NODE_LEN]) -> Option<&'b [u8]>
    where
        'a: 'b,
    {
        if !self.escaped {
            return (self.text.len() <= MAX_NODE_LEN).then_some(self.text);
        }
        let mut length = 0;
        let mut bytes = self.text.iter();
        while let Some(&byte) = bytes.next() {
            // `value` only makes values whose every backslash has a byte
            // after it.
            let byte = if byte == b'\\' { *bytes.next()? } else { byte };
            *buffer.get_mut(length)? = byte;
            length += 1;
        }
        Some(&buffer[..length])
    }
}

/// A parameter value (a token or a quoted string, RFC 7239 §4) at the start
/// of `text`, and what follows it. Nothing is copied: a quoted string is
/// only scanned for its closing quote.
fn value(text: &[u8]) -> Option<(Value<'_>, &[u8])> {
    let Some(quoted) = text.strip_prefix(b"\"") else {
        let (token, rest) = token(text)?;
        let value = Value {
            text: token,
            escaped: false,
        };
        return Some((value, rest));
    };
    let mut escaped = false;
    let mut bytes = quoted.iter().enumerate();
    while let Some((index, &byte)) = bytes.next() {
        match byte {
            b'"' => {
                let value = Value {
                    text: &quoted[..index],
                    escaped,
                };
                return Some((value, &quoted[index + 1..]));
            }
            b'\\' => {
                escaped = true;
                bytes.next()?;
            }
            _ => {}
        }
    }
    None
}

/// A node (RFC 7239 §6): `nodename [ ":" node-port ]`, the name an IPv4
/// address, a bracketed IPv6 address, `unknown` or an obfuscated
/// `_identifier`, the port digits or an obfuscated `_identifier`. A port
/// over 65535 makes the node unreadable.
fn parse_node(text: &[u8]) -> Option<Node> {
    let (node, port) = match text.strip_prefix(b"[") {
        Some(bracketed) => {
            let close = bracketed.iter().position(|&byte| byte == b']')?;
            let ip: Ipv6Addr = std::str::from_utf8(&bracketed[..close])
                .ok()?
                .parse()
                .ok()?;
            (
                Node::Address(IpAddr::V6(ip).to_canonical()),
                &bracketed[close + 1..],
            )
        }
        None => {
            let name_end = text
                .iter()
                .position(|&byte| byte == b':')
                .unwrap_or(text.len());
            let (name, port) = text.split_at(name_end);
            let node = if name.eq_ignore_ascii_case(b"unknown") {
                Node::Unknown
            } else if is_obfuscated(name) {
                Node::Obfuscated
            } else {
                let ip: Ipv4Addr = std::str::from_utf8(name).ok()?.parse().ok()?;
                Node::Address(IpAddr::V4(ip))
            };
            (node, port)
        }
    };
    match port {
        [] => Some(node),
        [b':', port @ ..] if is_port(port) => Some(node),
        _ => None,
    }
}

/// `obfnode` / `obfport`: `"_" 1*( ALPHA / DIGIT / "." / "_" / "-" )`.
fn is_obfuscated(text: &[u8]) -> bool {
    match text.split_first() {
        Some((b'_', rest)) => {
            !rest.is_empty()
                && rest
                    .iter()
                    .all(|&byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
        }
        _ => false,
    }
}

/// `port = 1*5DIGIT` that fits in a port number, or an obfuscated port.
fn is_port(text: &[u8]) -> bool {
    let digits = (1..=5).contains(&text.len()) && text.iter().all(u8::is_ascii_digit);
    let in_range = digits
        && std::str::from_utf8(text)
            .ok()
            .and_then(|port| port.parse::<u16>().ok())
            .is_some();
    in_range || is_obfuscated(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client_ip::tests::{client, ip};
    use crate::http::client_ip::ProxyHeader;

    fn address(text: &str) -> Node {
        Node::Address(text.parse().unwrap())
    }

    fn elements(line: &str) -> Option<Vec<String>> {
        let split = split_elements(line.as_bytes())?;
        let mut left_to_right: Vec<String> = split
            .rightmost_first()
            .map(|element| String::from_utf8(element.to_vec()).unwrap())
            .collect();
        left_to_right.reverse();
        Some(left_to_right)
    }

    #[test]
    fn rfc7239_section_4_elements_are_split_at_commas_outside_quoted_strings() {
        assert_eq!(
            elements("for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http"),
            Some(vec![
                "for=192.0.2.43".to_owned(),
                " for=198.51.100.17;by=203.0.113.60;proto=http".to_owned()
            ])
        );
        assert_eq!(
            elements(r#"for=192.0.2.1;ext="a,b\",c", for=192.0.2.2"#),
            Some(vec![
                r#"for=192.0.2.1;ext="a,b\",c""#.to_owned(),
                " for=192.0.2.2".to_owned()
            ])
        );
        // A client's unclosed quote swallows whatever a proxy appended.
        assert_eq!(elements(r#"for="192.0.2.1, for=198.51.100.17"#), None);
        assert_eq!(elements(r#"for="\""#), None);
    }

    #[test]
    fn rfc7239_section_4_pairs_are_token_equals_token_or_quoted_string() {
        assert_eq!(for_node(b"for=192.0.2.43"), Some(address("192.0.2.43")));
        assert_eq!(
            for_node(b"for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com"),
            Some(address("198.51.100.17"))
        );
        assert_eq!(
            for_node(br#"proto=https;for="192.0.2.43""#),
            Some(address("192.0.2.43"))
        );
        assert_eq!(
            for_node(br#"for="\1\9\2.0.2.43""#),
            Some(address("192.0.2.43"))
        );
        assert_eq!(
            for_node(br#"for="192.0.2.4\3""#),
            Some(address("192.0.2.43"))
        );
        assert_eq!(
            for_node(br#"ext="a\";b";for=192.0.2.43"#),
            Some(address("192.0.2.43"))
        );
        assert_eq!(
            for_node(b" for=192.0.2.43 ; proto=http "),
            Some(address("192.0.2.43"))
        );
        assert_eq!(for_node(b";;for=192.0.2.43;"), Some(address("192.0.2.43")));
        for malformed in [
            "for",
            "for=",
            "for =192.0.2.43",
            "for= 192.0.2.43",
            "=192.0.2.43",
            "for=192.0.2.43 proto=http",
            "for=192.0.2.43;proto",
            "for=\"192.0.2.43",
            "for=\"192.0.2.43\"x",
            "for=192.0.2.43\"",
            "fo r=192.0.2.43",
        ] {
            assert_eq!(for_node(malformed.as_bytes()), None, "{malformed:?}");
        }
    }

    #[test]
    fn rfc7239_section_4_parameter_names_are_case_insensitive() {
        assert_eq!(for_node(b"FOR=192.0.2.43"), Some(address("192.0.2.43")));
        assert_eq!(for_node(b"For=192.0.2.43"), Some(address("192.0.2.43")));
    }

    #[test]
    fn rfc7239_section_4_a_parameter_occurs_at_most_once_per_element() {
        assert_eq!(for_node(b"for=192.0.2.43;for=198.51.100.17"), None);
        assert_eq!(for_node(b"for=unknown;FOR=198.51.100.17"), None);
    }

    #[test]
    fn rfc7239_section_5_2_an_element_without_for_names_no_client() {
        assert_eq!(for_node(b"proto=https;by=203.0.113.60"), None);
        assert_eq!(for_node(b""), None);
        assert_eq!(for_address(b"proto=https"), None);
    }

    #[test]
    fn rfc7239_section_6_nodes_are_ipv4_or_bracketed_ipv6_with_an_optional_port() {
        assert_eq!(parse_node(b"192.0.2.43"), Some(address("192.0.2.43")));
        assert_eq!(parse_node(b"192.0.2.43:47011"), Some(address("192.0.2.43")));
        assert_eq!(
            parse_node(b"[2001:db8:cafe::17]"),
            Some(address("2001:db8:cafe::17"))
        );
        assert_eq!(
            parse_node(b"[2001:db8:cafe::17]:4711"),
            Some(address("2001:db8:cafe::17"))
        );
        assert_eq!(
            parse_node(b"[::ffff:192.0.2.43]:80"),
            Some(address("192.0.2.43"))
        );
        assert_eq!(
            for_node(br#"for="[2001:db8:cafe::17]:4711""#),
            Some(address("2001:db8:cafe::17"))
        );
        for malformed in [
            "2001:db8:cafe::17",
            "[2001:db8:cafe::17",
            "[2001:db8:cafe::17]4711",
            "[2001:db8:cafe::17]:",
            "[192.0.2.43]",
            "192.0.2.43:",
            "192.0.2.043",
            "192.0.2",
            "example.com",
            "",
        ] {
            assert_eq!(parse_node(malformed.as_bytes()), None, "{malformed:?}");
        }
        // IPv6 needs quotes: ":" and "[" are not token characters.
        assert_eq!(for_node(b"for=[2001:db8:cafe::17]"), None);
        assert_eq!(for_node(b"for=192.0.2.43:47011"), None);
    }

    #[test]
    fn rfc7239_section_6_a_port_is_digits_in_range_or_obfuscated() {
        assert_eq!(parse_node(b"192.0.2.43:65535"), Some(address("192.0.2.43")));
        assert_eq!(
            parse_node(b"192.0.2.43:_port1"),
            Some(address("192.0.2.43"))
        );
        assert_eq!(
            parse_node(b"[2001:db8::1]:_p"),
            Some(address("2001:db8::1"))
        );
        for malformed in [
            "192.0.2.43:65536",
            "192.0.2.43:99999",
            "192.0.2.43:123456",
            "192.0.2.43:-1",
            "192.0.2.43:_",
            "192.0.2.43:80:80",
            "[2001:db8::1]:99999",
        ] {
            assert_eq!(parse_node(malformed.as_bytes()), None, "{malformed:?}");
        }
    }

    #[test]
    fn rfc7239_section_6_2_unknown_names_no_address() {
        assert_eq!(parse_node(b"unknown"), Some(Node::Unknown));
        assert_eq!(parse_node(b"UNKNOWN:80"), Some(Node::Unknown));
        assert_eq!(for_node(b"for=unknown"), Some(Node::Unknown));
        assert_eq!(for_address(b"for=unknown"), None);
    }

    #[test]
    fn rfc7239_section_6_3_obfuscated_nodes_name_no_address() {
        assert_eq!(parse_node(b"_hidden"), Some(Node::Obfuscated));
        assert_eq!(parse_node(b"_SEVKISEK"), Some(Node::Obfuscated));
        assert_eq!(parse_node(b"_a.b-c_d:_port"), Some(Node::Obfuscated));
        assert_eq!(for_address(b"for=_hidden"), None);
        for malformed in ["_", "_a b", "_a/b", "_a:"] {
            assert_eq!(parse_node(malformed.as_bytes()), None, "{malformed:?}");
        }
    }

    #[test]
    fn a_long_escaped_value_of_another_parameter_is_skipped() {
        let long = format!("ext=\"\\a{}\";for=203.0.113.50", "b".repeat(1 << 20));
        assert_eq!(for_node(long.as_bytes()), Some(address("203.0.113.50")));
        let escaped_quotes = format!("ext=\"{}\";for=203.0.113.50", "\\\"".repeat(1 << 19));
        assert_eq!(
            for_node(escaped_quotes.as_bytes()),
            Some(address("203.0.113.50"))
        );
        // And the walk still finds the client behind it.
        let line = format!("for=198.51.100.1, {long}, for=10.0.0.3");
        assert_eq!(
            client(
                ProxyHeader::Forwarded,
                &["10.0.0.0/8"],
                "10.0.0.1:1",
                &[("forwarded", &line)]
            ),
            ip("203.0.113.50")
        );
    }

    #[test]
    fn a_for_value_longer_than_any_node_is_no_address() {
        // At the bound, an address with an obfuscated port still reads.
        let at_bound = |escaped: bool| {
            let address = if escaped {
                "1\\92.0.2.43:_"
            } else {
                "192.0.2.43:_"
            };
            let port_length = MAX_NODE_LEN - "192.0.2.43:_".len();
            format!("{address}{}", "p".repeat(port_length))
        };
        for escaped in [false, true] {
            let node = at_bound(escaped);
            let element = format!("for=\"{node}\"");
            assert_eq!(
                for_node(element.as_bytes()),
                Some(address("192.0.2.43")),
                "{node}"
            );
            let element = format!("for=\"{node}p\"");
            assert_eq!(for_node(element.as_bytes()), None, "{node}p");
        }
        let long_escaped = format!("for=\"\\{}\"", "1".repeat(1 << 20));
        assert_eq!(for_node(long_escaped.as_bytes()), None);
        let long_obfuscated = format!("for=_{}", "a".repeat(MAX_NODE_LEN));
        assert_eq!(for_node(long_obfuscated.as_bytes()), None);
        assert_eq!(
            client(
                ProxyHeader::Forwarded,
                &["10.0.0.0/8"],
                "10.0.0.1:1",
                &[("forwarded", &format!("for=198.51.100.1, {long_escaped}"))]
            ),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_no_address() {
        assert_eq!(for_node(b"for=\"192.0.2.43\xff\""), None);
        assert_eq!(for_node(b"for=\"[2001:db8::1\xff]\""), None);
        assert_eq!(for_node(b"for=\xff"), None);
        assert_eq!(
            split_elements(b"for=\xff, for=192.0.2.1").map(|split| split.rightmost_first().count()),
            Some(2)
        );
    }
}
