//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control`, and
//! fields a deployment names for its own caches, which let an origin give
//! this cache different instructions from the browsers and other caches
//! downstream.
//!
//! The layer is configured with a list of such fields, most specific
//! first. Of a response's fields on the list, the first with a valid,
//! non-empty value decides the caching policy, and then `Cache-Control`
//! and `Expires` are ignored (RFC 9213 §2.1); when none is valid, they
//! apply as usual. The fields themselves go on downstream unchanged.
//!
//! A targeted field is a Structured Fields Dictionary (RFC 8941 §3.2):
//! lower-case keys, values that are integers, tokens or strings, with
//! parameters. A value that does not parse as one is invalid, so the next
//! field on the list is tried; the check here is of that syntax only, and
//! the directives are then read as `Cache-Control` ones.

use http::{HeaderMap, HeaderName};

use super::policy::{split_list, Directives};

/// The directives that decide for a response: those of the first
/// `targeted` field with a valid, non-empty value, else `Cache-Control`'s.
pub(crate) fn response_directives(headers: &HeaderMap, targeted: &[HeaderName]) -> Directives {
    for name in targeted {
        let mut lines = headers.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            continue;
        }
        let valid = headers
            .get_all(name)
            .iter()
            .all(|line| line.to_str().is_ok_and(is_dictionary));
        let non_empty = headers
            .get_all(name)
            .iter()
            .any(|line| line.to_str().is_ok_and(|text| !text.trim().is_empty()));
        if !(valid && non_empty) {
            continue;
        }
        let mut directives = Directives::default();
        for line in lines {
            directives.read_line(line);
        }
        directives.targeted = true;
        return directives;
    }
    Directives::of(headers)
}

/// Whether `text` is a Structured Fields Dictionary, or empty.
fn is_dictionary(text: &str) -> bool {
    split_list(text).all(member)
}

/// `key[=value](;param[=value])*`
fn member(item: &str) -> bool {
    let mut parts = item.split(';');
    let Some(first) = parts.next() else {
        return false;
    };
    pair(first.trim()) && parts.all(|param| pair(param.trim()))
}

fn pair(text: &str) -> bool {
    match text.split_once('=') {
        None => key(text),
        Some((name, value)) => key(name) && bare_item(value),
    }
}

/// RFC 8941 §3.1.2: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
fn key(text: &str) -> bool {
    let mut bytes = text.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_lowercase() || first == b'*')
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        })
}

/// An integer, decimal, string, token, byte sequence or boolean.
fn bare_item(text: &str) -> bool {
    let bytes = text.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'"') => {
            text.len() >= 2
                && text.ends_with('"')
                && text[1..text.len() - 1]
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b))
        }
        Some(b'?') => text == "?0" || text == "?1",
        Some(b':') => text.len() >= 2 && text.ends_with(':'),
        Some(b'-' | b'0'..=b'9') => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            let mut halves = digits.splitn(2, '.');
            let whole = halves.next().unwrap_or("");
            let whole_ok =
                !whole.is_empty() && whole.len() <= 15 && whole.bytes().all(|b| b.is_ascii_digit());
            match halves.next() {
                None => whole_ok,
                Some(fraction) => {
                    whole_ok
                        && whole.len() <= 12
                        && (1..=3).contains(&fraction.len())
                        && fraction.bytes().all(|b| b.is_ascii_digit())
                }
            }
        }
        Some(first) if first.is_ascii_alphabetic() || *first == b'*' => bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(b)),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn structured_dictionaries_are_told_apart() {
        for valid in [
            "max-age=60",
            "max-age=60, stale-while-revalidate=30",
            "private, no-store",
            "max-age=60;a=1",
            "foo=\"bar\", baz=?1, q=1.5, t=tok/en",
        ] {
            assert!(is_dictionary(valid), "{valid}");
        }
        for invalid in [
            "MAX-AGE=60",
            "max-age=",
            "max-age=6 0",
            "max-age=\"60",
            "=1",
            "max-age=1.5555",
        ] {
            assert!(!is_dictionary(invalid), "{invalid}");
        }
    }

    #[test]
    fn the_first_valid_targeted_field_wins() {
        let list = [
            HeaderName::from_static("edge-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ];
        let pick = |pairs: &[(&str, &str)]| {
            let directives = response_directives(&headers(pairs), &list);
            (directives.max_age, directives.targeted)
        };
        let cc = ("cache-control", "max-age=1");
        assert_eq!(pick(&[cc]), (Some(1), false));
        assert_eq!(
            pick(&[cc, ("cdn-cache-control", "max-age=20")]),
            (Some(20), true)
        );
        assert_eq!(
            pick(&[
                cc,
                ("cdn-cache-control", "max-age=20"),
                ("edge-cache-control", "max-age=30")
            ]),
            (Some(30), true)
        );
        // An invalid one is skipped; an empty one too.
        assert_eq!(
            pick(&[
                cc,
                ("cdn-cache-control", "max-age=20"),
                ("edge-cache-control", "MAX-AGE=30")
            ]),
            (Some(20), true)
        );
        assert_eq!(pick(&[cc, ("cdn-cache-control", "")]), (Some(1), false));
        assert_eq!(
            pick(&[cc, ("cdn-cache-control", "max-age=1 2")]),
            (Some(1), false)
        );
        // A valid dictionary whose max-age is no number: it decides, and
        // the response is stale (RFC 9111 §4.2.1).
        assert_eq!(
            pick(&[cc, ("cdn-cache-control", "max-age=x")]),
            (Some(0), true)
        );
    }
}
