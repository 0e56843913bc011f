//! Which header fields a stored response keeps (RFC 9111 §3.1), and how a
//! `304 Not Modified` updates them (§3.2, §4.3.4).
//!
//! A stored response is replayed to other clients over other connections,
//! so it must not carry what belonged to the one connection it came on:
//! `Connection` and the fields it names, the hop-by-hop fields RFC 9110
//! §7.6.1 lists, and the proxy authentication fields (§3.1). Fields named
//! by `no-cache="..."` may not be reused without revalidation, and fields
//! named by `private="..."` may not be stored by a shared cache: both are
//! dropped before storage, which keeps the rest of the response cacheable
//! as those directives intend.
//!
//! A `304` answering a revalidation carries the fields the origin wants
//! updated; each replaces the stored field of that name, except the ones
//! that describe the stored body (`Content-Length`) or a connection.

use http::header::{HeaderName, AGE, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH};
use http::HeaderMap;

use super::policy::{split_list, Directives};

/// Fields never stored besides those `Connection` names.
fn never_stored(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "trailer"
            | "proxy-authenticate"
            | "proxy-authentication-info"
            | "proxy-authorization"
            // Never replayed to another client (stored only when the
            // layer is told to, and then without it).
            | "set-cookie"
    )
}

/// The field names `Connection` lists.
fn connection_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for line in headers.get_all(CONNECTION) {
        let Ok(text) = line.to_str() else { continue };
        for item in split_list(text) {
            if let Ok(name) = HeaderName::from_bytes(item.as_bytes()) {
                names.push(name);
            }
        }
    }
    names
}

/// The field names a qualified `directive="a, b"` lists, in every
/// `Cache-Control` line.
fn qualified_names(headers: &HeaderMap, directive: &str) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for line in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = line.to_str() else { continue };
        for item in split_list(text) {
            let Some((name, value)) = item.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case(directive) {
                continue;
            }
            let value = value.trim().trim_matches('"');
            for field in value.split(',') {
                if let Ok(name) = HeaderName::from_bytes(field.trim().as_bytes()) {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// Drops from `headers` what a stored response must not keep.
pub(crate) fn trim_for_storage(headers: &mut HeaderMap, directives: &Directives, shared: bool) {
    let mut dropped = connection_names(headers);
    if directives.no_cache_fields {
        dropped.extend(qualified_names(headers, "no-cache"));
    }
    if shared && directives.private_fields {
        dropped.extend(qualified_names(headers, "private"));
    }
    for name in dropped {
        headers.remove(name);
    }
    let hop_by_hop: Vec<HeaderName> = headers
        .keys()
        .filter(|name| never_stored(name))
        .cloned()
        .collect();
    for name in hop_by_hop {
        headers.remove(name);
    }
}

/// The stored fields updated with those of a `304` (RFC 9111 §3.2): each
/// field the `304` carries replaces the stored one of that name. The
/// stored `Age` goes too: the freshened response's age is the `304`'s.
pub(crate) fn freshen(stored: &HeaderMap, update: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    headers.remove(AGE);
    let connection = connection_names(update);
    for name in update.keys() {
        if name == CONTENT_LENGTH || never_stored(name) || connection.contains(name) {
            continue;
        }
        headers.remove(name);
        for value in update.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
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

    fn names(map: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn connection_fields_are_not_stored() {
        let mut map = headers(&[
            ("connection", "x-hop, close"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authenticate", "Basic"),
            ("x-kept", "1"),
            ("cache-control", "max-age=5"),
        ]);
        let directives = Directives::of(&map);
        trim_for_storage(&mut map, &directives, true);
        assert_eq!(names(&map), ["cache-control", "x-kept"]);
    }

    #[test]
    fn qualified_fields_are_dropped() {
        let mut map = headers(&[
            (
                "cache-control",
                "max-age=5, no-cache=\"x-a\", private=\"x-b, x-c\"",
            ),
            ("x-a", "1"),
            ("x-b", "1"),
            ("x-c", "1"),
            ("x-d", "1"),
        ]);
        let directives = Directives::of(&map);
        let mut private = map.clone();
        trim_for_storage(&mut map, &directives, true);
        assert_eq!(names(&map), ["cache-control", "x-d"]);
        trim_for_storage(&mut private, &directives, false);
        assert_eq!(names(&private), ["cache-control", "x-b", "x-c", "x-d"]);
    }

    #[test]
    fn a_304_replaces_fields_but_not_the_body_length() {
        let stored = headers(&[
            ("cache-control", "max-age=5"),
            ("content-length", "10"),
            ("x-old", "1"),
            ("x-multi", "a"),
            ("age", "7"),
        ]);
        let update = headers(&[
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("x-multi", "b"),
            ("x-multi", "c"),
            ("x-new", "1"),
            ("connection", "x-conn"),
            ("x-conn", "1"),
        ]);
        let merged = freshen(&stored, &update);
        assert_eq!(merged["cache-control"], "max-age=60");
        assert_eq!(merged["content-length"], "10");
        assert_eq!(merged["x-old"], "1");
        assert_eq!(merged["x-new"], "1");
        let multi: Vec<_> = merged.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["b", "c"]);
        assert!(!merged.contains_key("age") && !merged.contains_key("x-conn"));
        assert!(!merged.contains_key("connection"));
    }
}
