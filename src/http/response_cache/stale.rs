//! Stale windows per response (RFC 5861), and when a stored response may
//! answer a request once its freshness has run out.
//!
//! * Each stored response carries its own windows, from its
//!   `stale-while-revalidate=` and `stale-if-error=`: RFC 5861 puts them on
//!   the response, so two routes behind one layer may differ, and a
//!   response that names none is never served stale (RFC 9111 §4.2.4: a
//!   cache does not serve stale unless the origin or the configuration
//!   allows it). The layer's own windows
//!   ([`stale_while_revalidate`](super::ResponseCacheBuilder::stale_while_revalidate),
//!   [`stale_if_error`](super::ResponseCacheBuilder::stale_if_error)) are
//!   an opt-in: the windows of a response that names none. A window that
//!   cannot be read (or is repeated) counts as zero.
//! * `no-cache`, `must-revalidate` and, in a shared cache,
//!   `proxy-revalidate` close both windows (RFC 9111 §5.2.2.2, §5.2.2.4,
//!   §5.2.2.8): such a response is never served stale, not even when the
//!   handler fails. `s-maxage` carries `proxy-revalidate` for a shared
//!   cache (§5.2.2.10), so it drops the layer's defaults; the windows the
//!   response itself names still apply, as CDNs read
//!   `s-maxage=60, stale-while-revalidate=30`.

use std::time::Duration;

use super::policy::Directives;

/// How long past its freshness a response may be served: while one handler
/// call revalidates it, and when the handler fails.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StaleWindows {
    pub(crate) while_revalidate: Duration,
    pub(crate) if_error: Duration,
}

impl StaleWindows {
    /// A response's own windows, from its `directives`; `defaults` for a
    /// window it does not name.
    pub(crate) fn of(directives: &Directives, shared: bool, defaults: StaleWindows) -> Self {
        if directives.no_cache
            || directives.must_revalidate
            || (shared && directives.proxy_revalidate)
        {
            return StaleWindows::default();
        }
        let defaults = if shared && directives.s_maxage.is_some() {
            StaleWindows::default()
        } else {
            defaults
        };
        let pick =
            |named: Option<u64>, default: Duration| named.map_or(default, Duration::from_secs);
        StaleWindows {
            while_revalidate: pick(directives.stale_while_revalidate, defaults.while_revalidate),
            if_error: pick(directives.stale_if_error, defaults.if_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CACHE_CONTROL;
    use http::{HeaderMap, HeaderValue};

    const DEFAULTS: StaleWindows = StaleWindows {
        while_revalidate: Duration::from_secs(60),
        if_error: Duration::from_secs(600),
    };

    /// The windows of a response with `cache_control`, in seconds.
    fn windows(cache_control: &str, defaults: StaleWindows) -> (u64, u64) {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(cache_control).unwrap());
        let windows = StaleWindows::of(&Directives::of(&headers), true, defaults);
        (
            windows.while_revalidate.as_secs(),
            windows.if_error.as_secs(),
        )
    }

    #[test]
    fn windows_come_from_the_response() {
        let none = StaleWindows::default();
        assert_eq!(windows("max-age=5", none), (0, 0));
        assert_eq!(
            windows(
                "max-age=5, stale-while-revalidate=10, STALE-IF-ERROR=\"30\"",
                none
            ),
            (10, 30)
        );
        // The response's own windows are not capped by the layer's.
        assert_eq!(
            windows("max-age=5, stale-while-revalidate=999", DEFAULTS),
            (999, 600)
        );
        // The layer's windows only fill in what a response does not name.
        assert_eq!(windows("max-age=5", DEFAULTS), (60, 600));
        assert_eq!(
            windows("max-age=5, stale-while-revalidate=0", DEFAULTS),
            (0, 600)
        );
        for odd in [
            "max-age=5, stale-while-revalidate=soon",
            "max-age=5, stale-while-revalidate",
            "max-age=5, stale-while-revalidate=-1",
            "max-age=5, stale-while-revalidate=1, stale-while-revalidate=2",
        ] {
            assert_eq!(windows(odd, none), (0, 0), "{odd}");
        }
    }

    #[test]
    fn revalidation_directives_close_the_windows() {
        for value in [
            "max-age=60, must-revalidate",
            "max-age=60, proxy-revalidate",
            "max-age=60, no-cache",
            "max-age=60, Must-Revalidate, stale-while-revalidate=30, stale-if-error=30",
        ] {
            assert_eq!(windows(value, DEFAULTS), (0, 0), "{value}");
        }
        assert_eq!(windows("s-maxage=60", DEFAULTS), (0, 0));
        assert_eq!(
            windows("s-maxage=60, stale-while-revalidate=30", DEFAULTS),
            (30, 0)
        );
        // A private cache ignores proxy-revalidate and s-maxage.
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=1, s-maxage=9, proxy-revalidate"),
        );
        let private = StaleWindows::of(&Directives::of(&headers), false, DEFAULTS);
        assert_eq!(private, DEFAULTS);
    }
}
