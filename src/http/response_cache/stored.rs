//! A stored response and the responses made from it: the full one with an
//! `Age`, or a `304 Not Modified`; and how stale it is, against the windows
//! it carries.
//!
//! Answering from storage is the hit path, so it does the least it can:
//! one clone of the stored headers, which already hold an `Age` entry (so
//! setting it overwrites in place instead of growing the map), and an
//! `Age` value from a static table.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, LAST_MODIFIED, VARY,
};
use http::{HeaderMap, Response, StatusCode, Version};

use super::age::age_value;
use super::conditional::Conditions;
use super::policy::Storable;
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
            fresh_until: stored_at.saturating_add(storable.time_to_live),
            windows: storable.windows,
            initial_age: storable.initial_age,
            weight,
        }
    }

    /// How long past its freshness it is at `now`; `None` while fresh.
    pub(crate) fn staleness(&self, now: Instant) -> Option<Duration> {
        (now >= self.fresh_until).then(|| now.saturating_duration_since(self.fresh_until))
    }

    /// Freshness left at `now`; zero once stale.
    pub(crate) fn freshness_left(&self, now: Instant) -> Duration {
        self.fresh_until.saturating_duration_since(now)
    }

    /// How long past its freshness it may be served.
    pub(crate) fn windows(&self) -> StaleWindows {
        self.windows
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight
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
        let age = self.initial_age + now.saturating_duration_since(self.stored_at).as_secs();
        let age = age_value(age);
        if conditions.not_modified(self.headers.get(ETAG), self.headers.get(LAST_MODIFIED)) {
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
