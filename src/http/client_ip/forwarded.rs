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

use std::borrow::Cow;
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
            node = Some(parse_node(&value)?);
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

/// A parameter value (a token or a quoted string, RFC 7239 §4) at the start
/// of `text`, unescaped, and what follows it.
fn value(text: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    let Some(quoted) = text.strip_prefix(b"\"") else {
        let (token, rest) = token(text)?;
        return Some((Cow::Borrowed(token), rest));
    };
    let end = quoted
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\')?;
    if quoted[end] == b'"' {
        // No escapes, the common case: nothing to copy.
        return Some((Cow::Borrowed(&quoted[..end]), &quoted[end + 1..]));
    }
    let mut unescaped = quoted[..end].to_vec();
    let mut bytes = quoted.iter().enumerate().skip(end);
    while let Some((index, &byte)) = bytes.next() {
        match byte {
            b'"' => return Some((Cow::Owned(unescaped), &quoted[index + 1..])),
            b'\\' => unescaped.push(*bytes.next()?.1),
            _ => unescaped.push(byte),
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
