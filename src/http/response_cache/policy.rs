//! The RFC 9111 rules the response cache applies, written out as the
//! subset this layer needs (see the [parent module](super) for why not
//! `http-cache-semantics`): the `Cache-Control` directives, and whether a
//! response may be stored (§3).
//!
//! * `Cache-Control` is parsed tolerantly: directive names are
//!   case-insensitive, quoted values may hold commas. A line that is not
//!   visible ASCII makes the response unstorable; a freshness value that
//!   cannot be read (`max-age=soon`, a repeated `max-age`) makes it stale
//!   (§4.2.1: "either the first occurrence should be used or the response
//!   should be considered stale"), so it is stored only to be revalidated.
//!   Ages over 2^31 seconds are 2^31 (§1.2.2).
//! * A response is stored when §3 allows it: a final status (206 and 304
//!   aside: the layer keeps complete responses), no `no-store` (unless
//!   `must-understand` with a status the layer understands, §5.2.2.3), not
//!   `private` in a shared cache, `Authorization` only with an explicit
//!   permission (§3.5), and some freshness: `public`, `max-age`,
//!   `s-maxage`, `Expires`, or a heuristically cacheable status. One that
//!   is stale on arrival is still stored if it has a validator or a stale
//!   window, since either makes it useful.
//! * Freshness is computed in [`super::freshness`], stale windows judged
//!   in [`super::stale`], header fields trimmed in [`super::headers`].

use std::time::Duration;

use http::header::{AUTHORIZATION, CACHE_CONTROL, ETAG, LAST_MODIFIED, SET_COOKIE};
use http::{HeaderMap, StatusCode};

use super::freshness::{self, heuristically_cacheable, Heuristic, Lifetime};
pub(crate) use super::stale::StaleWindows;

/// The largest delta-seconds value RFC 9111 §1.2.2 asks a cache to keep.
const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// The `Cache-Control` directives the layer acts on, of a request or a
/// response. Copied, never allocated: the hit path reads a request's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    /// `no-cache` without field names: revalidate before every use.
    pub(crate) no_cache: bool,
    /// `no-cache="field, ..."`: those fields are not stored.
    pub(crate) no_cache_fields: bool,
    /// `private` without field names.
    pub(crate) private: bool,
    /// `private="field, ..."`: a shared cache does not store those fields.
    pub(crate) private_fields: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) must_understand: bool,
    pub(crate) only_if_cached: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    /// A request's `max-stale`; `u64::MAX` when it names no limit.
    pub(crate) max_stale: Option<u64>,
    pub(crate) min_fresh: Option<u64>,
    /// `stale-while-revalidate=` (RFC 5861 §3), 0 when unreadable.
    pub(crate) stale_while_revalidate: Option<u64>,
    /// `stale-if-error=` (RFC 5861 §4), 0 when unreadable.
    pub(crate) stale_if_error: Option<u64>,
    /// A line could not be read at all.
    pub(crate) unreadable: bool,
    /// A freshness value could not be read or was repeated: stale.
    pub(crate) conflicting: bool,
    /// Read from a targeted field (RFC 9213), so `Expires` is ignored.
    pub(crate) targeted: bool,
}

impl Directives {
    /// The directives of every `Cache-Control` line in `headers`.
    #[inline]
    pub(crate) fn of(headers: &HeaderMap) -> Directives {
        let mut directives = Directives::default();
        for line in headers.get_all(CACHE_CONTROL) {
            directives.read_line(line);
        }
        directives
    }

    /// Adds the directives of one field line (of `Cache-Control` or a
    /// targeted field).
    pub(crate) fn read_line(&mut self, line: &http::HeaderValue) {
        match line.to_str() {
            Ok(text) => split_list(text).for_each(|item| self.add(item)),
            Err(_) => self.unreadable = true,
        }
    }

    fn add(&mut self, item: &str) {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (item, None),
        };
        let flag = |wanted: &str| name.eq_ignore_ascii_case(wanted);
        if flag("no-store") {
            self.no_store = true;
        } else if flag("no-cache") {
            match value {
                Some(_) => self.no_cache_fields = true,
                None => self.no_cache = true,
            }
        } else if flag("private") {
            match value {
                Some(_) => self.private_fields = true,
                None => self.private = true,
            }
        } else if flag("public") {
            self.public = true;
        } else if flag("must-revalidate") {
            self.must_revalidate = true;
        } else if flag("proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if flag("must-understand") {
            self.must_understand = true;
        } else if flag("only-if-cached") {
            self.only_if_cached = true;
        } else if flag("max-age") {
            self.max_age = self.seconds(self.max_age, value);
        } else if flag("s-maxage") {
            self.s_maxage = self.seconds(self.s_maxage, value);
        } else if flag("min-fresh") {
            self.min_fresh = self.seconds(self.min_fresh, value);
        } else if flag("max-stale") {
            self.max_stale = match value {
                None => Some(u64::MAX),
                Some(_) => self.seconds(self.max_stale, value),
            };
        } else if flag("stale-while-revalidate") {
            self.stale_while_revalidate = Some(window(self.stale_while_revalidate, value));
        } else if flag("stale-if-error") {
            self.stale_if_error = Some(window(self.stale_if_error, value));
        }
    }

    /// A delta-seconds value; a second, different occurrence or an
    /// unreadable value marks the freshness as conflicting.
    fn seconds(&mut self, earlier: Option<u64>, value: Option<&str>) -> Option<u64> {
        let value = value.map(|v| v.trim_matches('"'));
        match (value.and_then(delta_seconds), earlier) {
            (Some(seconds), None) => Some(seconds),
            (Some(seconds), Some(first)) if seconds == first => Some(first),
            (_, earlier) => {
                self.conflicting = true;
                earlier.or(Some(0))
            }
        }
    }

    /// Whether a request asks for the origin's word (`no-cache`,
    /// `max-age=0`): a stored response is revalidated before it answers.
    #[inline]
    pub(crate) fn wants_origin(&self) -> bool {
        self.no_cache || self.max_age == Some(0)
    }

    /// Whether a request limits what a stored response may answer it
    /// (`max-age`, `min-fresh`, `max-stale`).
    #[inline]
    pub(crate) fn limits_age(&self) -> bool {
        self.max_age.is_some() || self.min_fresh.is_some() || self.max_stale.is_some()
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

/// Status codes whose caching rules the layer knows (RFC 9110 §15), for
/// `must-understand` (RFC 9111 §5.2.2.3).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// The layer's settings the rules depend on.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Targeted cache-control fields (RFC 9213), most specific first.
    pub(crate) targeted: Box<[http::HeaderName]>,
    /// A shared cache (§3.5, `s-maxage`, `private`) or a private one.
    pub(crate) shared: bool,
    /// Stale windows for a response that names none (an opt-in; none by
    /// default).
    pub(crate) default_windows: StaleWindows,
    pub(crate) heuristic: Option<Heuristic>,
    /// How long a stale response with a validator stays stored, to be
    /// revalidated.
    pub(crate) keep_stale: Duration,
    /// Store responses with `Set-Cookie`, without that field.
    pub(crate) store_set_cookie: bool,
}

/// How long a response may be stored, the age it arrived with, and how
/// long it may be served stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Storable {
    /// Freshness left: the lifetime less the age it arrived with; zero for
    /// one stale on arrival.
    pub(crate) freshness: Duration,
    /// The response's age when it arrived, in seconds.
    pub(crate) initial_age: u64,
    /// Its stale windows.
    pub(crate) windows: StaleWindows,
    /// How long past its freshness it stays stored: its widest window, or
    /// the layer's `keep_stale` when it has a validator.
    pub(crate) kept_stale: Duration,
    /// Its freshness came from a heuristic, not from the origin.
    pub(crate) heuristic: bool,
    /// Never served stale (`no-cache`, `must-revalidate`, in a shared
    /// cache `proxy-revalidate` and `s-maxage`), not even to a request
    /// with `max-stale`.
    pub(crate) must_revalidate: bool,
}

impl Storable {
    /// The entry's time-to-live in the cache.
    pub(crate) fn time_to_live(&self) -> Duration {
        self.freshness.saturating_add(self.kept_stale)
    }
}

/// Whether the cache may store a response to a `GET` (RFC 9111 §3, §3.5
/// for `Authorization`) that arrived at `now` (seconds since 1970), and on
/// what terms.
pub(crate) fn storable(
    request_headers: &HeaderMap,
    status: StatusCode,
    headers: &HeaderMap,
    rules: &Rules,
    now: i64,
) -> Option<Storable> {
    let code = status.as_u16();
    if code < 200 || code == 206 || code == 304 {
        return None;
    }
    if headers.contains_key(SET_COOKIE) && !rules.store_set_cookie {
        return None;
    }
    let directives = super::targeted::response_directives(headers, &rules.targeted);
    if directives.unreadable {
        return None;
    }
    if directives.must_understand {
        if !understood(status) {
            return None;
        }
    } else if directives.no_store {
        return None;
    }
    if rules.shared && directives.private {
        return None;
    }
    if rules.shared
        && request_headers.contains_key(AUTHORIZATION)
        && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
    {
        return None;
    }
    // `Vary: *` or an unreadable `Vary`: no request could be matched to it.
    super::key::vary_names(headers)?;
    let lifetime = freshness::lifetime(
        status,
        headers,
        &directives,
        rules.shared,
        rules.heuristic,
        now,
    );
    let permitted = directives.public
        || (!rules.shared && directives.private)
        || matches!(lifetime, Lifetime::Explicit(_))
        || heuristically_cacheable(status);
    if !permitted {
        return None;
    }
    let initial_age = freshness::initial_age(headers, now);
    let lifetime_seconds = if directives.no_cache {
        0
    } else {
        lifetime.seconds()
    };
    let freshness = Duration::from_secs(lifetime_seconds.saturating_sub(initial_age));
    let windows = StaleWindows::of(&directives, rules.shared, rules.default_windows);
    let validated = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
    let kept_stale = windows
        .while_revalidate
        .max(windows.if_error)
        .max(if validated {
            rules.keep_stale
        } else {
            Duration::ZERO
        });
    if freshness.is_zero() && kept_stale.is_zero() {
        return None;
    }
    Some(Storable {
        freshness,
        initial_age,
        windows,
        kept_stale,
        heuristic: matches!(lifetime, Lifetime::Heuristic(_)),
        // `s-maxage` carries `proxy-revalidate` for a shared cache
        // (§5.2.2.10).
        must_revalidate: directives.no_cache
            || directives.must_revalidate
            || (rules.shared && (directives.proxy_revalidate || directives.s_maxage.is_some())),
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

    fn rules() -> Rules {
        Rules {
            targeted: Box::new([]),
            shared: true,
            default_windows: StaleWindows {
                while_revalidate: Duration::ZERO,
                if_error: Duration::ZERO,
            },
            heuristic: None,
            keep_stale: Duration::from_secs(300),
            store_set_cookie: false,
        }
    }
    const NOW: i64 = 784_111_777;

    fn verdict(status: u16, pairs: &[(&str, &str)]) -> Option<Storable> {
        let status = StatusCode::from_u16(status).unwrap();
        storable(&HeaderMap::new(), status, &headers(pairs), &rules(), NOW)
    }

    fn ttl(pairs: &[(&str, &str)]) -> Option<u64> {
        verdict(200, pairs).map(|s| s.freshness.as_secs())
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
        // Stale on arrival, and nothing to revalidate with: not stored.
        assert_eq!(ttl(&[("cache-control", "max-age=60"), ("age", "60")]), None);
        assert_eq!(
            ttl(&[
                ("cache-control", "max-age=60"),
                ("age", "60"),
                ("etag", "\"a\"")
            ]),
            Some(0)
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=99999999999999")]),
            Some(1 << 31)
        );
        assert_eq!(ttl(&[]), None);
    }

    #[test]
    fn what_forbids_storing() {
        for value in ["no-store, max-age=60", "private, max-age=60"] {
            assert_eq!(ttl(&[("cache-control", value)]), None, "{value}");
        }
        assert_eq!(
            ttl(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
            None
        );
        assert_eq!(ttl(&[("cache-control", "max-age=60"), ("vary", "*")]), None);
        assert!(verdict(206, &[("cache-control", "max-age=60")]).is_none());
        assert!(verdict(304, &[("cache-control", "max-age=60")]).is_none());
        // No freshness and a status that is not heuristically cacheable.
        assert!(verdict(302, &[("etag", "\"a\"")]).is_none());
    }

    #[test]
    fn any_final_status_with_explicit_freshness_is_stored() {
        for status in [200, 302, 303, 307, 400, 403, 404, 500, 503, 599] {
            let stored = verdict(status, &[("cache-control", "max-age=60")]);
            assert_eq!(stored.map(|s| s.freshness.as_secs()), Some(60), "{status}");
        }
    }

    #[test]
    fn qualified_private_and_no_cache_still_store() {
        assert_eq!(
            ttl(&[("cache-control", "private=\"x-user, x-b\", max-age=9")]),
            Some(9)
        );
        assert_eq!(
            ttl(&[("cache-control", "no-cache=\"x-user\", max-age=9")]),
            Some(9)
        );
        // Unqualified no-cache: stored (with a validator) but never fresh.
        assert_eq!(ttl(&[("cache-control", "no-cache, max-age=60")]), None);
        assert_eq!(
            ttl(&[("cache-control", "no-cache, max-age=60"), ("etag", "\"a\"")]),
            Some(0)
        );
    }

    #[test]
    fn must_understand_overrides_no_store_for_known_statuses() {
        let cc = [("cache-control", "max-age=60, no-store, must-understand")];
        assert!(verdict(200, &cc).is_some());
        assert!(verdict(299, &cc).is_none());
    }

    #[test]
    fn malformed_cache_control_is_stale_and_never_panics() {
        for value in [
            "max-age=soon",
            "max-age=",
            "max-age=-1",
            "max-age=1, max-age=2",
            "max-age=1e3",
        ] {
            assert_eq!(ttl(&[("cache-control", value)]), None, "{value}");
            assert_eq!(
                ttl(&[("cache-control", value), ("etag", "\"a\"")]),
                Some(0),
                "{value}"
            );
        }
        assert_eq!(ttl(&[("cache-control", "max-age=5, max-age=5")]), Some(5));
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
        let check = |cc: &str| {
            let response = headers(&[("cache-control", cc)]);
            storable(&request, StatusCode::OK, &response, &rules(), NOW).is_some()
        };
        assert!(!check("max-age=60"));
        assert!(check("public, max-age=60"));
        assert!(check("must-revalidate, max-age=60"));
        assert!(check("s-maxage=60"));
    }

    #[test]
    fn request_directives() {
        let of = |value: &str| Directives::of(&headers(&[("cache-control", value)]));
        assert!(of("no-cache").wants_origin());
        assert!(of("max-age=0").wants_origin());
        assert!(!of("max-age=5").wants_origin());
        assert_eq!(of("max-stale").max_stale, Some(u64::MAX));
        assert_eq!(of("max-stale=5").max_stale, Some(5));
        assert_eq!(of("min-fresh=5").min_fresh, Some(5));
        assert!(of("only-if-cached").only_if_cached);
    }
}
