//! How long a response stays fresh (RFC 9111 §4.2.1, §4.2.2) and how old
//! it already is when it arrives (§4.2.3, §5.1).
//!
//! * Lifetime, first that applies: `s-maxage` (a shared cache only), then
//!   `max-age`, then `Expires` less `Date` (an `Expires` that is not one
//!   HTTP-date, or `0`, means already expired, §5.3), then heuristic
//!   freshness: a fraction of the time since `Last-Modified`, capped, for
//!   the status codes RFC 9110 §15.1 calls heuristically cacheable.
//! * A freshness directive that cannot be read (`max-age=soon`, two
//!   different `max-age`s) makes the response stale (§4.2.1), not
//!   unstorable: with a validator it is still worth keeping, to revalidate.
//! * Age on arrival: the larger of its `Age` (of a list, the first member;
//!   an invalid `Age` is ignored, §5.1) and the apparent age, arrival time
//!   less `Date`. The layer calls the handler in process, so there is no
//!   request delay to add.
//!
//! Dates are compared with the system clock (a response without `Date` is
//! dated when it arrives); everything after arrival runs on the layer's
//! [`Clock`](crate::clock::Clock).

use std::time::Duration;

use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};

use super::date;
use super::policy::{delta_seconds, Directives};

/// Heuristic freshness (§4.2.2): `fraction` of the time since
/// `Last-Modified`, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Heuristic {
    pub(crate) fraction: f64,
    pub(crate) cap: Duration,
}

/// Where a response's freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// `s-maxage`, `max-age` or `Expires`: the origin said.
    Explicit(u64),
    /// Derived from `Last-Modified`.
    Heuristic(u64),
    /// No freshness information: fresh for no time, storable only where
    /// §3 allows without it.
    None,
}

impl Lifetime {
    pub(crate) fn seconds(self) -> u64 {
        match self {
            Lifetime::Explicit(seconds) | Lifetime::Heuristic(seconds) => seconds,
            Lifetime::None => 0,
        }
    }
}

/// Status codes RFC 9110 §15.1 lets a cache give heuristic freshness
/// (206 is left out: the layer stores only complete responses).
pub(crate) fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The freshness lifetime of a response with `headers` and `directives`,
/// arriving at `now` (seconds since 1970).
pub(crate) fn lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &Directives,
    shared: bool,
    heuristic: Option<Heuristic>,
    now: i64,
) -> Lifetime {
    if directives.conflicting {
        return Lifetime::Explicit(0);
    }
    if shared {
        if let Some(seconds) = directives.s_maxage {
            return Lifetime::Explicit(seconds);
        }
    }
    if let Some(seconds) = directives.max_age {
        return Lifetime::Explicit(seconds);
    }
    let date = single_date(headers, &DATE, now).unwrap_or(now);
    if headers.contains_key(EXPIRES) && !directives.targeted {
        return Lifetime::Explicit(match single_date(headers, &EXPIRES, now) {
            Some(expires) => clamp_seconds(expires.saturating_sub(date)),
            None => 0,
        });
    }
    let Some(heuristic) = heuristic.filter(|_| heuristically_cacheable(status)) else {
        return Lifetime::None;
    };
    let Some(modified) = single_date(headers, &LAST_MODIFIED, now) else {
        return Lifetime::None;
    };
    let since = clamp_seconds(date.saturating_sub(modified));
    let seconds = (since as f64 * heuristic.fraction) as u64;
    Lifetime::Heuristic(seconds.min(heuristic.cap.as_secs()))
}

/// The age of a response arriving at `now`: its `Age` (first member; an
/// invalid one is ignored) or its apparent age, whichever is larger.
pub(crate) fn initial_age(headers: &HeaderMap, now: i64) -> u64 {
    let stated = headers
        .get(AGE)
        .and_then(|line| line.to_str().ok())
        .and_then(|text| text.split(',').next())
        .and_then(|first| delta_seconds(first.trim()))
        .unwrap_or(0);
    let apparent =
        single_date(headers, &DATE, now).map_or(0, |date| clamp_seconds(now.saturating_sub(date)));
    stated.max(apparent)
}

/// The date in `name`, when it appears once and parses.
fn single_date(headers: &HeaderMap, name: &http::HeaderName, now: i64) -> Option<i64> {
    let mut lines = headers.get_all(name).iter();
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    date::parse(line.as_bytes(), now)
}

/// A span of seconds as a delta-seconds value: none below zero, none over
/// 2^31 (§1.2.2).
fn clamp_seconds(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0).min(1 << 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: i64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
    const TENTH: Option<Heuristic> = Some(Heuristic {
        fraction: 0.1,
        cap: Duration::from_secs(86_400),
    });

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

    fn life(pairs: &[(&str, &str)]) -> Lifetime {
        let headers = headers(pairs);
        let directives = Directives::of(&headers);
        lifetime(StatusCode::OK, &headers, &directives, true, TENTH, NOW)
    }

    #[test]
    fn explicit_freshness_in_order() {
        let cc = "cache-control";
        assert_eq!(
            life(&[(cc, "max-age=5, s-maxage=9")]),
            Lifetime::Explicit(9)
        );
        assert_eq!(
            life(&[
                (cc, "max-age=5"),
                ("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
            ]),
            Lifetime::Explicit(5)
        );
        let date = ("date", "Sun, 06 Nov 1994 08:00:00 GMT");
        assert_eq!(
            life(&[date, ("expires", "Sun, 06 Nov 1994 08:01:00 GMT")]),
            Lifetime::Explicit(60)
        );
        assert_eq!(
            life(&[date, ("expires", "Sunday, 06-Nov-94 08:01:00 GMT")]),
            Lifetime::Explicit(60)
        );
        assert_eq!(
            life(&[date, ("expires", "Sun Nov  6 08:01:00 1994")]),
            Lifetime::Explicit(60)
        );
        for invalid in ["0", "-1", "soon", "Sun, 06 Nov 1994 07:00:00 GMT"] {
            assert_eq!(
                life(&[date, ("expires", invalid)]),
                Lifetime::Explicit(0),
                "{invalid}"
            );
        }
        assert_eq!(life(&[(cc, "max-age=soon")]), Lifetime::Explicit(0));
        assert_eq!(life(&[(cc, "max-age=1, max-age=2")]), Lifetime::Explicit(0));
    }

    #[test]
    fn heuristic_freshness_is_a_fraction_of_the_age_of_last_modified() {
        let ten_days_ago = "Thu, 27 Oct 1994 08:49:37 GMT";
        assert_eq!(
            life(&[("last-modified", ten_days_ago)]),
            Lifetime::Heuristic(86_400)
        );
        let an_hour_ago = "Sun, 06 Nov 1994 07:49:37 GMT";
        assert_eq!(
            life(&[("last-modified", an_hour_ago)]),
            Lifetime::Heuristic(360)
        );
        assert_eq!(life(&[]), Lifetime::None);
        let headers = headers(&[("last-modified", an_hour_ago)]);
        let directives = Directives::of(&headers);
        let off = lifetime(StatusCode::OK, &headers, &directives, true, None, NOW);
        assert_eq!(off, Lifetime::None);
        let found = StatusCode::FOUND;
        let redirect = lifetime(found, &headers, &directives, true, TENTH, NOW);
        assert_eq!(redirect, Lifetime::None);
    }

    #[test]
    fn age_is_the_first_valid_member_or_the_apparent_age() {
        let age = |pairs: &[(&str, &str)]| initial_age(&headers(pairs), NOW);
        assert_eq!(age(&[("age", "30")]), 30);
        assert_eq!(age(&[("age", "30, 60")]), 30);
        assert_eq!(age(&[("age", "0, old")]), 0);
        for invalid in ["old", "-5", "1.5", "", "0x10"] {
            assert_eq!(age(&[("age", invalid)]), 0, "{invalid:?}");
        }
        assert_eq!(age(&[("date", "Sun, 06 Nov 1994 08:48:37 GMT")]), 60);
        assert_eq!(
            age(&[("date", "Sun, 06 Nov 1994 08:48:37 GMT"), ("age", "90")]),
            90
        );
        assert_eq!(age(&[("date", "Sun, 06 Nov 1994 09:00:00 GMT")]), 0);
    }
}
