//! The RFC 9111 rules the response cache applies, written out as the small
//! subset this layer needs (see the [parent module](super) for why not
//! `http-cache-semantics`).
//!
//! * `Cache-Control` is parsed tolerantly: directive names are
//!   case-insensitive, quoted values may hold commas. A value that cannot be
//!   read (`max-age=soon`, a repeated `max-age`, a line that is not visible
//!   ASCII) makes the response count as stale, so it is not stored
//!   (RFC 9111 §4.2.1: "either the first occurrence should be used or the
//!   response should be considered stale"). Ages over 2^31 seconds are
//!   2^31 (§1.2.2).
//! * A response is stored only with explicit freshness (`s-maxage`, else
//!   `max-age`); `Expires` and heuristic freshness are not used.
//! * Stale windows are read here too, and judged in [`super::stale`].

use std::time::Duration;

use http::header::{AGE, AUTHORIZATION, CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, StatusCode};

pub(crate) use super::stale::StaleWindows;

/// The largest delta-seconds value RFC 9111 §1.2.2 asks a cache to keep.
const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// The `Cache-Control` directives the layer acts on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    /// `stale-while-revalidate=` (RFC 5861 §3), 0 when unreadable.
    pub(crate) stale_while_revalidate: Option<u64>,
    /// `stale-if-error=` (RFC 5861 §4), 0 when unreadable.
    pub(crate) stale_if_error: Option<u64>,
    /// Something could not be read; see the module docs.
    pub(crate) unreadable: bool,
}

impl Directives {
    /// The directives of every `Cache-Control` line in `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Directives {
        let mut directives = Directives::default();
        for line in headers.get_all(CACHE_CONTROL) {
            match line.to_str() {
                Ok(text) => split_list(text).for_each(|item| directives.add(item)),
                Err(_) => directives.unreadable = true,
            }
        }
        directives
    }

    fn add(&mut self, item: &str) {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (item, None),
        };
        let flag = |name: &str, wanted: &str| name.eq_ignore_ascii_case(wanted);
        if flag(name, "no-store") {
            self.no_store = true;
        } else if flag(name, "no-cache") {
            // With field names (`no-cache="set-cookie"`) too: the layer
            // does not revalidate, so it does not store.
            self.no_cache = true;
        } else if flag(name, "private") {
            self.private = true;
        } else if flag(name, "public") {
            self.public = true;
        } else if flag(name, "must-revalidate") || flag(name, "proxy-revalidate") {
            self.must_revalidate = true;
        } else if flag(name, "max-age") {
            self.max_age = self.seconds(self.max_age, value);
        } else if flag(name, "s-maxage") {
            self.s_maxage = self.seconds(self.s_maxage, value);
        } else if flag(name, "stale-while-revalidate") {
            self.stale_while_revalidate = Some(window(self.stale_while_revalidate, value));
        } else if flag(name, "stale-if-error") {
            self.stale_if_error = Some(window(self.stale_if_error, value));
        }
    }

    /// A delta-seconds value; a second occurrence or an unreadable value
    /// marks the whole as unreadable.
    fn seconds(&mut self, earlier: Option<u64>, value: Option<&str>) -> Option<u64> {
        let value = value.map(|v| v.trim_matches('"'));
        match value.and_then(delta_seconds) {
            Some(seconds) if earlier.is_none() => Some(seconds),
            _ => {
                self.unreadable = true;
                earlier
            }
        }
    }

    /// Whether a request asks the cache not to answer from storage
    /// (`no-cache`, `max-age=0`): the layer then goes to the handler, and
    /// may store what it answers.
    pub(crate) fn wants_origin(&self) -> bool {
        self.no_cache || self.max_age == Some(0)
    }
}

/// A stale window's seconds; a second occurrence or an unreadable value
/// closes it (0), so a response is never served stale on a guess.
fn window(earlier: Option<u64>, value: Option<&str>) -> u64 {
    let seconds = value.map(|v| v.trim_matches('"')).and_then(delta_seconds);
    match (earlier, seconds) {
        (None, Some(seconds)) => seconds,
        _ => 0,
    }
}

/// Digits only, saturating at 2^31.
pub(crate) fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(MAX_DELTA_SECONDS, |v| v.min(MAX_DELTA_SECONDS)),
    )
}

/// The comma-separated items of a header line, trimmed and non-empty,
/// not split inside double quotes.
pub(crate) fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || loop {
        let current = rest?;
        let mut quoted = false;
        let mut end = current.len();
        for (index, byte) in current.bytes().enumerate() {
            match byte {
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    end = index;
                    break;
                }
                _ => {}
            }
        }
        let item = current[..end].trim();
        rest = current.get(end + 1..);
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// Status codes a cache may store (RFC 9110 §15.1's heuristically
/// cacheable list; 206 is left out: the layer does not combine ranges).
fn is_cacheable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// How long a response may be stored, the age it arrived with, and how
/// long it may be served stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Storable {
    /// Freshness left: the lifetime less the age it arrived with.
    pub(crate) time_to_live: Duration,
    /// The response's `Age` when it arrived, in seconds.
    pub(crate) initial_age: u64,
    /// Its stale windows, within the layer's.
    pub(crate) windows: StaleWindows,
}

/// Whether a shared cache may store a response to a `GET` (RFC 9111 §3,
/// §3.5 for `Authorization`), for how long, and its stale windows within
/// the layer's `limits`.
pub(crate) fn storable(
    request_headers: &HeaderMap,
    status: StatusCode,
    headers: &HeaderMap,
    limits: StaleWindows,
) -> Option<Storable> {
    if !is_cacheable_status(status) || headers.contains_key(SET_COOKIE) {
        return None;
    }
    let directives = Directives::of(headers);
    if directives.unreadable || directives.no_store || directives.private || directives.no_cache {
        return None;
    }
    if request_headers.contains_key(AUTHORIZATION)
        && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
    {
        return None;
    }
    // `Vary: *` or an unreadable `Vary`: no request could be matched to it.
    super::key::vary_names(headers)?;
    let lifetime = directives.s_maxage.or(directives.max_age)?;
    let initial_age = match headers.get(AGE) {
        None => 0,
        Some(age) => age.to_str().ok().and_then(delta_seconds)?,
    };
    let left = lifetime.checked_sub(initial_age).filter(|&left| left > 0)?;
    Some(Storable {
        time_to_live: Duration::from_secs(left),
        initial_age,
        windows: StaleWindows::of(&directives, limits),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const LIMITS: StaleWindows = StaleWindows {
        while_revalidate: Duration::from_secs(60),
        if_error: Duration::from_secs(600),
    };

    fn ttl(pairs: &[(&str, &str)]) -> Option<u64> {
        storable(&HeaderMap::new(), StatusCode::OK, &headers(pairs), LIMITS)
            .map(|s| s.time_to_live.as_secs())
    }

    #[test]
    fn freshness_comes_from_s_maxage_then_max_age() {
        assert_eq!(ttl(&[("cache-control", "max-age=60")]), Some(60));
        assert_eq!(
            ttl(&[("cache-control", "public, max-age=60, s-maxage=30")]),
            Some(30)
        );
        assert_eq!(ttl(&[("cache-control", "MAX-AGE=\"5\"")]), Some(5));
        assert_eq!(
            ttl(&[("cache-control", "max-age=60"), ("age", "20")]),
            Some(40)
        );
        assert_eq!(ttl(&[("cache-control", "max-age=60"), ("age", "60")]), None);
        assert_eq!(
            ttl(&[("cache-control", "max-age=99999999999999")]),
            Some(1 << 31)
        );
        assert_eq!(ttl(&[]), None);
    }

    #[test]
    fn what_forbids_storing() {
        for value in [
            "no-store, max-age=60",
            "private, max-age=60",
            "no-cache, max-age=60",
        ] {
            assert_eq!(ttl(&[("cache-control", value)]), None, "{value}");
        }
        assert_eq!(
            ttl(&[("cache-control", "private=\"a, b\", max-age=9")]),
            None
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
            None
        );
        assert_eq!(ttl(&[("cache-control", "max-age=60"), ("vary", "*")]), None);
        let partial = storable(
            &HeaderMap::new(),
            StatusCode::PARTIAL_CONTENT,
            &headers(&[("cache-control", "max-age=60")]),
            LIMITS,
        );
        assert!(partial.is_none());
    }

    #[test]
    fn malformed_cache_control_is_not_stored_and_never_panics() {
        for value in [
            "max-age=soon",
            "max-age=",
            "max-age=-1",
            "max-age=1, max-age=2",
            "max-age=1e3",
            "\"unterminated, max-age=5",
        ] {
            assert_eq!(ttl(&[("cache-control", value)]), None, "{value}");
        }
        assert_eq!(ttl(&[("cache-control", ",,, max-age=5 ,,")]), Some(5));
        let huge = format!("{}max-age=7", "x, ".repeat(50_000));
        assert_eq!(ttl(&[("cache-control", huge.as_str())]), Some(7));
        let mut opaque = HeaderMap::new();
        opaque.insert(
            CACHE_CONTROL,
            HeaderValue::from_bytes(b"max-age=5\xff").unwrap(),
        );
        assert!(Directives::of(&opaque).unreadable);
    }

    #[test]
    fn authorization_needs_an_explicit_permission() {
        let request = headers(&[("authorization", "Bearer t")]);
        let plain = headers(&[("cache-control", "max-age=60")]);
        assert!(storable(&request, StatusCode::OK, &plain, LIMITS).is_none());
        let public = headers(&[("cache-control", "public, max-age=60")]);
        assert!(storable(&request, StatusCode::OK, &public, LIMITS).is_some());
        let revalidated = headers(&[("cache-control", "must-revalidate, max-age=60")]);
        assert!(storable(&request, StatusCode::OK, &revalidated, LIMITS).is_some());
    }

    #[test]
    fn request_directives() {
        assert!(Directives::of(&headers(&[("cache-control", "no-cache")])).wants_origin());
        assert!(Directives::of(&headers(&[("cache-control", "max-age=0")])).wants_origin());
        assert!(!Directives::of(&headers(&[("cache-control", "max-age=5")])).wants_origin());
    }
}
