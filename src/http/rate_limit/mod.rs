//! The rate-limit layer: check a limiter before the inner service is
//! called, answer `429` when it denies.
//!
//! * The layer holds its limiter, key extractor and settings behind one
//!   `Arc`: every service the layer makes, every clone axum or hyper takes
//!   per connection or request, counts against the same limiter.
//! * A denial is a response: `429 Too Many Requests` with `Retry-After`
//!   (delta-seconds, rounded up), `RateLimit-Policy` and `RateLimit`, and
//!   optionally an `application/problem+json` body (`quota-exceeded`).
//!   The inner service is not called; its readiness is not consumed.
//! * An allowed response carries `RateLimit-Policy` and `RateLimit` too,
//!   unless turned off; everything else about it, and any error of the
//!   inner service, passes through unchanged.
//!
//! * A limiter that answers later (Redis: one limit for the fleet) makes
//!   the request wait for its decision; only then is the inner service
//!   called (the one that was polled ready; a clone takes its place, so
//!   the inner service must be `Clone`, as axum's are). A local limiter is
//!   asked inline, with no future and no allocation.
//!
//! `layer.rs` builds ([`RateLimitLayer`]), `service.rs` decides (asks the
//! limiter, answers a denial), `future.rs` waits for a remote decision and
//! finishes an allowed request (adds the `RateLimit` fields to the inner
//! service's answer).

mod future;
mod layer;
mod service;

use std::sync::Arc;

use super::key::MissingKey;

pub use future::RateLimitFuture;
pub use layer::RateLimitLayer;
pub use service::RateLimitService;

/// The settings of a layer, fixed once it makes a service.
#[derive(Debug, Clone)]
struct Settings {
    missing_key: MissingKey,
    headers_on_allowed: bool,
    problem_body: bool,
    policy_name: Arc<str>,
}
