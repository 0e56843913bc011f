//! Conditional requests answered from storage (RFC 9110 §13): a client
//! that already holds the stored representation gets `304 Not Modified`.
//!
//! * `If-None-Match` is compared weakly against the stored `ETag`, as §13.1.2
//!   says for `GET` and `HEAD`; `*` matches any stored response. When it is
//!   present, `If-Modified-Since` is ignored (§13.2.2).
//! * `If-Modified-Since` is compared with `Last-Modified` when both are
//!   IMF-fixdates (`Sun, 06 Nov 1994 08:49:37 GMT`, the form §5.6.7 says
//!   senders must generate).
//!
//! Fallback for malformed input: an `If-None-Match` with an item that is
//! not an entity-tag, or a date that does not parse, counts as no
//! condition, so the client gets the full `200` response: never a `304`
//! it did not ask for.

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue};

/// The conditions a request carries, copied before the request moves on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<HeaderValue>,
}

impl Conditions {
    pub(crate) fn of(headers: &HeaderMap) -> Conditions {
        Conditions {
            if_none_match: single(headers, &IF_NONE_MATCH),
            if_modified_since: single(headers, &IF_MODIFIED_SINCE),
        }
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
        match (http_date(since.as_bytes()), http_date(modified.as_bytes())) {
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
    let Some(stored) = etag.and_then(opaque_tag) else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
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

/// Seconds since 1970 of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(text: &[u8]) -> Option<i64> {
    if text.len() != 29 || &text[3..5] != b", " || &text[25..] != b" GMT" {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == &text[8..11])? as i64 + 1;
    let (day, year) = (number(5..7)?, number(12..16)?);
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`, "chrono-Compatible Low-Level Date Algorithms").
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
        assert!(!conditions(&[("if-none-match", "*")]).not_modified(None, None));
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
        assert!(!since("Sunday, 06-Nov-94 08:49:37 GMT"));
        assert!(!since("Sun, 06 Nov 1994 08:49:37 UTC"));
        assert!(!since("Sun, 99 Nov 1994 08:49:37 GMT"));
        assert_eq!(http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
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
