//! A stored response and the responses made from it: the full one with an
//! `Age`, or a `304 Not Modified`; and whether it may answer a request, by
//! its freshness, the windows it carries and the request's directives.
//!
//! The cache keeps an entry past its freshness (for its stale windows, and
//! to revalidate it when it has a validator), so freshness is judged here,
//! on every use, not by the cache's expiry.
//!
//! Answering from storage is the hit path, so it does the least it can:
//! one clone of the stored headers, which already hold an `Age` entry (so
//! setting it overwrites in place instead of growing the map), and an
//! `Age` value from a static table.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_RANGE, DATE, ETAG, EXPIRES,
    LAST_MODIFIED, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};

use super::age::age_value;
use super::conditional::Conditions;
use super::policy::{Directives, Storable};
use super::range;
use super::stale::StaleWindows;
use crate::clock::Instant;
use crate::http::body::GuardedBody;

/// What a `304` repeats of the stored headers (RFC 9110 §15.4.5).
const NOT_MODIFIED_HEADERS: [http::HeaderName; 6] =
    [CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, VARY];

/// A response held in the cache: its head and its whole body.
#[derive(Debug)]
pub(crate) struct StoredResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    /// When it was stored, on the layer's clock.
    stored_at: Instant,
    /// When it stops being fresh.
    fresh_until: Instant,
    /// How long past that it may be served stale.
    windows: StaleWindows,
    /// The `Age` it arrived with, in seconds.
    initial_age: u64,
    /// Never served stale: `no-cache`, `must-revalidate`, and in a shared
    /// cache `proxy-revalidate` and `s-maxage` (not even to a request with
    /// `max-stale`).
    must_revalidate: bool,
    /// Bytes it holds, roughly: what the cache's weigher charges.
    weight: u32,
}

impl StoredResponse {
    pub(crate) fn new(
        mut head: http::response::Parts,
        body: Bytes,
        stored_at: Instant,
        storable: &Storable,
    ) -> StoredResponse {
        // The slot every answer's `Age` overwrites.
        head.headers.insert(AGE, age_value(storable.initial_age));
        // Per header: its name and value, and about 32 bytes of map
        // bookkeeping; the fixed part is the struct and its `Arc`.
        let header_bytes: usize = head
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let weight = (body.len() + header_bytes + 128).min(u32::MAX as usize) as u32;
        StoredResponse {
            status: head.status,
            version: head.version,
            headers: head.headers,
            body,
            stored_at,
            fresh_until: stored_at.saturating_add(storable.freshness),
            windows: storable.windows,
            initial_age: storable.initial_age,
            must_revalidate: storable.must_revalidate,
            weight,
        }
    }

    /// Whether it is fresh at `now`: the hit path's one test.
    #[inline]
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until
    }

    /// How long past its freshness it is at `now`; `None` while fresh.
    pub(crate) fn staleness(&self, now: Instant) -> Option<Duration> {
        (now >= self.fresh_until).then(|| now.saturating_duration_since(self.fresh_until))
    }

    /// Its age at `now`, in seconds (RFC 9111 §4.2.3).
    pub(crate) fn age(&self, now: Instant) -> u64 {
        self.initial_age + now.saturating_duration_since(self.stored_at).as_secs()
    }

    /// Whether it may answer at once while one handler call revalidates it
    /// (within its stale-while-revalidate).
    pub(crate) fn may_serve_while_revalidating(&self, now: Instant) -> bool {
        self.staleness(now)
            .is_some_and(|stale| stale < self.windows.while_revalidate)
    }

    /// Whether it may answer in place of a failed handler call (fresh, or
    /// within its stale-if-error).
    pub(crate) fn may_serve_on_error(&self, now: Instant) -> bool {
        self.staleness(now)
            .is_none_or(|stale| stale < self.windows.if_error)
    }

    /// Whether it may answer a request with `directives` at `now` without
    /// going to the handler: fresh enough for the request's `max-age` and
    /// `min-fresh`, or stale within its `max-stale` (RFC 9111 §5.2.1).
    #[inline]
    pub(crate) fn satisfies(&self, now: Instant, directives: &Directives) -> bool {
        if directives.wants_origin() {
            return false;
        }
        if !directives.limits_age() {
            return self.is_fresh(now);
        }
        if directives.max_age.is_some_and(|most| self.age(now) > most) {
            return false;
        }
        let left = self.fresh_until.saturating_duration_since(now);
        if let Some(min_fresh) = directives.min_fresh {
            if left < Duration::from_secs(min_fresh) {
                return false;
            }
        }
        match (self.staleness(now), directives.max_stale) {
            (None, _) => true,
            (Some(stale), Some(most)) => !self.must_revalidate && stale.as_secs() <= most,
            (Some(_), None) => false,
        }
    }

    /// Its validators, for a conditional request: `ETag`, `Last-Modified`.
    pub(crate) fn validators(&self) -> (Option<&HeaderValue>, Option<&HeaderValue>) {
        (self.headers.get(ETAG), self.headers.get(LAST_MODIFIED))
    }

    /// Its status, version and header fields.
    pub(crate) fn head(&self) -> (StatusCode, Version, &HeaderMap) {
        (self.status, self.version, &self.headers)
    }

    /// Its body.
    pub(crate) fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// The same response stored again at `now` with a new `verdict`: what
    /// a `304` that freshened its headers makes of it.
    pub(crate) fn freshened(
        &self,
        headers: HeaderMap,
        stored_at: Instant,
        verdict: &Storable,
    ) -> StoredResponse {
        let mut head = Response::new(()).into_parts().0;
        head.status = self.status;
        head.version = self.version;
        head.headers = headers;
        StoredResponse::new(head, self.body.clone(), stored_at, verdict)
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight
    }

    /// Whether `conditions` hold for this response: its `ETag`, and its
    /// `Last-Modified` or else its `Date` (RFC 9111 §4.3.2).
    fn not_modified(&self, conditions: &Conditions) -> bool {
        let modified = self
            .headers
            .get(LAST_MODIFIED)
            .or_else(|| self.headers.get(DATE));
        conditions.not_modified(self.headers.get(ETAG), modified)
    }

    /// The `206` or `416` answer to a request for `range` of a stored
    /// `200` (see [`super::range`]); `None` for the whole response.
    fn partial<B: http_body::Body>(
        &self,
        range: &HeaderValue,
        conditions: &Conditions,
        head_only: bool,
        age: &HeaderValue,
    ) -> Option<Response<GuardedBody<B>>> {
        if self.status != StatusCode::OK {
            return None;
        }
        if let Some(if_range) = &conditions.if_range {
            let (etag, last_modified) = self.validators();
            if !range::if_range_holds(if_range, etag, last_modified) {
                return None;
            }
        }
        let length = self.body.len() as u64;
        let (status, body, content_range) = match range::select(range, length) {
            range::Selected::Whole => return None,
            range::Selected::Part { first, last } => (
                StatusCode::PARTIAL_CONTENT,
                self.body.slice(first as usize..=last as usize),
                format!("bytes {first}-{last}/{length}"),
            ),
            range::Selected::Unsatisfiable => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Bytes::new(),
                format!("bytes */{length}"),
            ),
        };
        let mut headers = self.headers.clone();
        headers.insert(AGE, age.clone());
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        if let Ok(value) = HeaderValue::from_str(&content_range) {
            headers.insert(CONTENT_RANGE, value);
        }
        let body = if head_only {
            GuardedBody::empty()
        } else {
            GuardedBody::full(body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = self.version;
        *response.headers_mut() = headers;
        Some(response)
    }

    /// The answer to a request with `conditions` at `now`: a `304` if they
    /// hold, else the stored response (without its body for `HEAD`). Both
    /// carry `Age` (RFC 9111 §5.1: its age in whole seconds).
    pub(crate) fn respond<B: http_body::Body>(
        &self,
        now: Instant,
        conditions: &Conditions,
        head_only: bool,
    ) -> Response<GuardedBody<B>> {
        let age = age_value(self.age(now));
        if conditions.any() && self.not_modified(conditions) {
            let mut response = Response::new(GuardedBody::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.version_mut() = self.version;
            let headers = response.headers_mut();
            for name in NOT_MODIFIED_HEADERS {
                for value in self.headers.get_all(&name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            headers.insert(AGE, age);
            return response;
        }
        if let Some(range) = &conditions.range {
            if let Some(partial) = self.partial(range, conditions, head_only, &age) {
                return partial;
            }
        }
        let body = if head_only {
            GuardedBody::empty()
        } else {
            GuardedBody::full(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers.clone();
        response.headers_mut().insert(AGE, age);
        response
    }
}
