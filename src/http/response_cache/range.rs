//! Range requests answered from a complete stored response (RFC 9110 §14):
//! a client resuming a download, or a media player seeking, gets `206
//! Partial Content` with the bytes it asked for, without the handler.
//!
//! One range of bytes (`bytes=0-99`, `bytes=100-`, `bytes=-100`) is
//! served; a request for several ranges, a unit other than bytes, or a
//! range that does not parse gets the whole `200` (a server MAY ignore
//! `Range`, §14.2), and a range that starts past the end gets `416`.
//! `If-Range` (§13.1.5) is honoured: the range is served only if it names
//! the stored strong entity tag or its `Last-Modified` date, else the
//! whole response.

use http::HeaderValue;

use super::date;

/// What a request's `Range` asks of a stored body of `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selected {
    /// The whole response.
    Whole,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// Nothing the body has: `416`.
    Unsatisfiable,
}

/// The part of a body of `length` bytes that `range` asks for.
pub(crate) fn select(range: &HeaderValue, length: u64) -> Selected {
    let Ok(text) = range.to_str() else {
        return Selected::Whole;
    };
    let Some((unit, spec)) = text.trim().split_once('=') else {
        return Selected::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Selected::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Selected::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || length == 0 {
                Selected::Unsatisfiable
            } else {
                Selected::Part {
                    first: length.saturating_sub(suffix),
                    last: length - 1,
                }
            }
        }
        (false, Some(first), last) => {
            if last.is_some_and(|last| last < first) || (!last_empty(spec) && last.is_none()) {
                return Selected::Whole;
            }
            if first >= length {
                return Selected::Unsatisfiable;
            }
            let last = last.map_or(length - 1, |last| last.min(length - 1));
            Selected::Part { first, last }
        }
        _ => Selected::Whole,
    }
}

/// Whether the part after `-` is empty (`bytes=100-`).
fn last_empty(spec: &str) -> bool {
    spec.split_once('-')
        .is_some_and(|(_, last)| last.trim().is_empty())
}

/// Whether `if_range` lets the range be served from a response with
/// `etag` and `last_modified`: a strong tag equal to its `ETag`, or a date
/// equal to its `Last-Modified`.
pub(crate) fn if_range_holds(
    if_range: &HeaderValue,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
) -> bool {
    let text = if_range.as_bytes();
    if text.starts_with(b"\"") {
        return etag.is_some_and(|etag| etag.as_bytes() == text);
    }
    if text.starts_with(b"W/") {
        return false;
    }
    let now = date::system_now();
    match (date::parse(text, now), last_modified) {
        (Some(since), Some(modified)) => date::parse(modified.as_bytes(), now) == Some(since),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(range: &str, length: u64) -> Selected {
        select(&HeaderValue::from_str(range).unwrap(), length)
    }

    #[test]
    fn one_range_of_bytes_is_selected() {
        use Selected::*;
        assert_eq!(pick("bytes=0-9", 100), Part { first: 0, last: 9 });
        assert_eq!(
            pick("bytes=90-", 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            pick("bytes=90-500", 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            pick("bytes=-10", 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(pick("bytes=-500", 100), Part { first: 0, last: 99 });
        assert_eq!(pick("BYTES = 5-5", 100), Part { first: 5, last: 5 });
        assert_eq!(pick("bytes=100-", 100), Unsatisfiable);
        assert_eq!(pick("bytes=-0", 100), Unsatisfiable);
        for whole in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=9-2",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes=1-x",
            "0-9",
        ] {
            assert_eq!(pick(whole, 100), Whole, "{whole}");
        }
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let etag = HeaderValue::from_static("\"v1\"");
        let modified = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        let holds = |value: &str| {
            if_range_holds(
                &HeaderValue::from_str(value).unwrap(),
                Some(&etag),
                Some(&modified),
            )
        };
        assert!(holds("\"v1\""));
        assert!(!holds("\"v2\""));
        assert!(!holds("W/\"v1\""));
        assert!(holds("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!holds("Sun, 06 Nov 1994 08:49:38 GMT"));
    }
}
