//! Conditional requests answered from storage (RFC 9110 §13): a client
//! that already holds the stored representation gets `304 Not Modified`.
//!
//! * `If-None-Match` is compared weakly against the stored `ETag`, as §13.1.2
//!   says for `GET` and `HEAD`; `*` matches any stored response. When it is
//!   present, `If-Modified-Since` is ignored (§13.2.2).
//! * `If-Modified-Since` is compared with `Last-Modified` (or, without
//!   one, the stored `Date`, RFC 9111 §4.3.2), both read in any of the
//!   three HTTP-date formats (RFC 9110 §5.6.7).
//!
//! Fallback for malformed input: an `If-None-Match` with an item that is
//! not an entity-tag, or a date that does not parse, counts as no
//! condition, so the client gets the full `200` response: never a `304`
//! it did not ask for.

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use http::{HeaderMap, HeaderValue};

use super::date;

/// The conditions a request carries, copied before the request moves on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<HeaderValue>,
    /// `Range`, and `If-Range` when there is a range (RFC 9110 §14.2).
    pub(crate) range: Option<HeaderValue>,
    pub(crate) if_range: Option<HeaderValue>,
}

impl Conditions {
    pub(crate) fn of(headers: &HeaderMap) -> Conditions {
        let range = single(headers, &RANGE);
        let if_range = range.as_ref().and_then(|_| single(headers, &IF_RANGE));
        Conditions {
            if_none_match: single(headers, &IF_NONE_MATCH),
            if_modified_since: single(headers, &IF_MODIFIED_SINCE),
            range,
            if_range,
        }
    }

    /// Whether the request carries a condition at all.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.if_none_match.is_some() || self.if_modified_since.is_some()
    }

    /// Whether a stored response with these validators satisfies the
    /// conditions, so `304 Not Modified` is the answer.
    pub(crate) fn not_modified(
        &self,
        etag: Option<&HeaderValue>,
        last_modified: Option<&HeaderValue>,
    ) -> bool {
        if let Some(if_none_match) = &self.if_none_match {
            return match (if_none_match.to_str(), etag) {
                (Ok(list), etag) => matches_any(list, etag.and_then(|e| e.to_str().ok())),
                (Err(_), _) => false,
            };
        }
        let (Some(since), Some(modified)) = (&self.if_modified_since, last_modified) else {
            return false;
        };
        let now = date::system_now();
        match (
            date::parse(since.as_bytes(), now),
            date::parse(modified.as_bytes(), now),
        ) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        }
    }
}

/// The header's value when it appears once (several lines of
/// `If-None-Match` are rare enough to treat as no condition).
fn single(headers: &HeaderMap, name: &http::HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then(|| first.clone())
}

/// Whether the `If-None-Match` list matches `etag` weakly; `false` when
/// any item is not an entity-tag.
fn matches_any(list: &str, etag: Option<&str>) -> bool {
    // `*` holds for any current representation, tagged or not (RFC 9110
    // §13.1.2): the stored response is one.
    if list.trim() == "*" {
        return true;
    }
    let Some(stored) = etag.and_then(opaque_tag) else {
        return false;
    };
    let mut matched = false;
    for item in super::policy::split_list(list) {
        match opaque_tag(item) {
            Some(tag) => matched |= tag == stored,
            None => return false,
        }
    }
    matched
}

/// The quoted opaque tag of an entity-tag (`"x"` or `W/"x"`), quotes kept.
fn opaque_tag(tag: &str) -> Option<&str> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let valid = tag.len() >= 2
        && tag.starts_with('"')
        && tag.ends_with('"')
        && !tag[1..tag.len() - 1].contains('"');
    valid.then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(pairs: &[(&str, &str)]) -> Conditions {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Conditions::of(&headers)
    }

    #[test]
    fn etags_compare_weakly() {
        let etag = HeaderValue::from_static("W/\"v1\"");
        let yes = |inm: &str| conditions(&[("if-none-match", inm)]).not_modified(Some(&etag), None);
        assert!(yes("\"v1\""));
        assert!(yes("\"v0\", W/\"v1\""));
        assert!(yes("*"));
        assert!(!yes("\"v2\""));
        for malformed in ["v1", "\"v1", "\"v1\", garbage", "W/", "\"\"\"", ""] {
            assert!(!yes(malformed), "{malformed:?}");
        }
        let huge = format!("{}\"v1\"", "\"x\", ".repeat(20_000));
        assert!(yes(&huge));
        assert!(conditions(&[("if-none-match", "*")]).not_modified(None, None));
    }

    #[test]
    fn dates_compare_when_both_parse() {
        let modified = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        let since = |date: &str| {
            conditions(&[("if-modified-since", date)]).not_modified(None, Some(&modified))
        };
        assert!(since("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(since("Mon, 07 Nov 1994 00:00:00 GMT"));
        assert!(!since("Sat, 05 Nov 1994 08:49:37 GMT"));
        // RFC 9110 §5.6.7: all three formats.
        assert!(since("Sunday, 06-Nov-94 08:49:37 GMT"));
        assert!(since("Sun Nov  6 08:49:37 1994"));
        assert!(!since("Saturday, 05-Nov-94 08:49:37 GMT"));
        assert!(!since("Sun, 06 Nov 1994 08:49:37 UTC"));
        assert!(!since("Sun, 99 Nov 1994 08:49:37 GMT"));
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let etag = HeaderValue::from_static("\"v1\"");
        let modified = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        let both = conditions(&[
            ("if-none-match", "\"v2\""),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(!both.not_modified(Some(&etag), Some(&modified)));
    }
}
