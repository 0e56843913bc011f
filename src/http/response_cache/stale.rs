//! Stale windows per response (RFC 5861), and whether a stored response
//! the cache hands back may answer a request.
//!
//! * Each stored response carries its own windows: RFC 5861 puts
//!   `stale-while-revalidate=` and `stale-if-error=` on the response, so
//!   two routes behind one layer may differ. The layer's settings are the
//!   default for a response that names none and the most any response
//!   gets. A window that cannot be read (or is repeated) counts as zero:
//!   the response is still stored, it is just never served stale.
//! * `must-revalidate` and `proxy-revalidate` close both windows (RFC 9111
//!   §5.2.2.2, §5.2.2.8): such a response is never served stale, not even
//!   when the handler fails; the handler's error or 5xx goes to the client.
//!   `s-maxage` carries `proxy-revalidate` for a shared cache (§5.2.2.10),
//!   so it drops the layer's default windows; the windows the response
//!   itself names still apply, as CDNs read
//!   `s-maxage=60, stale-while-revalidate=30`.
//!
//! The cache behind the layer runs one pair of windows, the layer's: it
//! serves an entry stale at once within stale-while-revalidate (and starts
//! one reload), and past that hands it back only after a load failed. A
//! response with narrower windows is judged again here when the cache hands
//! it back; one it may not answer with is removed, so the request joins
//! (or starts) the one load of it, and kept aside for stale-if-error.

use std::time::Duration;

use super::policy::Directives;
use super::stored::StoredResponse;
use crate::clock::Instant;

/// How long past its freshness a response may be served: while one handler
/// call replaces it, and when the handler fails.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StaleWindows {
    pub(crate) while_revalidate: Duration,
    pub(crate) if_error: Duration,
}

impl StaleWindows {
    /// A response's own windows, from its `directives`, within the layer's
    /// `limits`.
    pub(crate) fn of(directives: &Directives, limits: StaleWindows) -> StaleWindows {
        if directives.must_revalidate {
            return StaleWindows::default();
        }
        let default = if directives.s_maxage.is_some() {
            StaleWindows::default()
        } else {
            limits
        };
        let pick = |named: Option<u64>, default: Duration, most: Duration| {
            named.map_or(default, |seconds| Duration::from_secs(seconds).min(most))
        };
        StaleWindows {
            while_revalidate: pick(
                directives.stale_while_revalidate,
                default.while_revalidate,
                limits.while_revalidate,
            ),
            if_error: pick(directives.stale_if_error, default.if_error, limits.if_error),
        }
    }
}

/// Whether `stored`, handed back by the cache's loading at `now`, may
/// answer: fresh, or stale within its own window. `origin_failed`: a load
/// for it just failed, so stale-if-error is the window that applies.
/// Otherwise the cache's own classification tells which: within the
/// layer's stale-while-revalidate it served the entry without loading;
/// past it, only as the fallback of a failed load.
pub(crate) fn may_answer(
    stored: &StoredResponse,
    now: Instant,
    limits: StaleWindows,
    origin_failed: bool,
) -> bool {
    let Some(stale_for) = stored.staleness(now) else {
        return true;
    };
    let windows = stored.windows();
    if origin_failed || stale_for >= limits.while_revalidate {
        stale_for < windows.if_error
    } else {
        stale_for < windows.while_revalidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response_cache::policy::Storable;
    use bytes::Bytes;
    use http::header::CACHE_CONTROL;
    use http::{HeaderMap, HeaderValue};

    const LIMITS: StaleWindows = StaleWindows {
        while_revalidate: Duration::from_secs(60),
        if_error: Duration::from_secs(600),
    };

    /// The windows of a response with `cache_control`, in seconds.
    fn windows(cache_control: &str) -> (u64, u64) {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(cache_control).unwrap());
        let windows = StaleWindows::of(&Directives::of(&headers), LIMITS);
        (
            windows.while_revalidate.as_secs(),
            windows.if_error.as_secs(),
        )
    }

    #[test]
    fn windows_come_from_the_response_within_the_layers() {
        // None named: the layer's defaults.
        assert_eq!(windows("max-age=5"), (60, 600));
        assert_eq!(
            windows("max-age=5, stale-while-revalidate=10, STALE-IF-ERROR=\"30\""),
            (10, 30)
        );
        // Never wider than the layer's.
        assert_eq!(
            windows("max-age=5, stale-while-revalidate=999, stale-if-error=99999"),
            (60, 600)
        );
        assert_eq!(windows("max-age=5, stale-while-revalidate=0"), (0, 600));
        // Unreadable or repeated: closed.
        for odd in [
            "max-age=5, stale-while-revalidate=soon",
            "max-age=5, stale-while-revalidate",
            "max-age=5, stale-while-revalidate=-1",
            "max-age=5, stale-while-revalidate=1, stale-while-revalidate=2",
        ] {
            assert_eq!(windows(odd), (0, 600), "{odd}");
        }
    }

    #[test]
    fn revalidation_directives_close_the_windows() {
        for value in [
            "max-age=60, must-revalidate",
            "max-age=60, proxy-revalidate",
            "max-age=60, Must-Revalidate, stale-while-revalidate=30, stale-if-error=30",
        ] {
            assert_eq!(windows(value), (0, 0), "{value}");
        }
        // s-maxage carries proxy-revalidate: no defaults, named windows kept.
        assert_eq!(windows("s-maxage=60"), (0, 0));
        assert_eq!(windows("s-maxage=60, stale-while-revalidate=30"), (30, 0));
        // A layer without windows serves nothing stale, whatever is named.
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=1, stale-while-revalidate=30"),
        );
        let none = StaleWindows::default();
        assert_eq!(StaleWindows::of(&Directives::of(&headers), none), none);
    }

    #[test]
    fn stored_responses_answer_within_their_own_windows() {
        let stored = |swr: u64, sie: u64| {
            let (head, ()) = http::Response::new(()).into_parts();
            let storable = Storable {
                time_to_live: Duration::from_secs(10),
                initial_age: 0,
                windows: StaleWindows {
                    while_revalidate: Duration::from_secs(swr),
                    if_error: Duration::from_secs(sie),
                },
            };
            StoredResponse::new(head, Bytes::new(), Instant::ZERO, &storable)
        };
        let at = |seconds: u64| Instant::ZERO + Duration::from_secs(seconds);
        let short = stored(5, 20);
        assert!(may_answer(&short, at(9), LIMITS, false));
        assert!(may_answer(&short, at(14), LIMITS, false));
        assert!(!may_answer(&short, at(15), LIMITS, false));
        // After a failure, stale-if-error decides.
        assert!(may_answer(&short, at(29), LIMITS, true));
        assert!(!may_answer(&short, at(30), LIMITS, true));
        // Past the layer's stale-while-revalidate, the cache hands an entry
        // back only after a failed load.
        assert!(may_answer(&short, at(29), StaleWindows::default(), false));
        let revalidated = stored(0, 0);
        assert!(may_answer(&revalidated, at(9), LIMITS, true));
        assert!(!may_answer(&revalidated, at(10), LIMITS, false));
        assert!(!may_answer(&revalidated, at(10), LIMITS, true));
    }
}
