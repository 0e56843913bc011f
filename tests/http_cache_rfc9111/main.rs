//! RFC 9111 (HTTP Caching) and RFC 5861 (stale-while-revalidate,
//! stale-if-error) for `ResponseCacheLayer`: one test per MUST / SHOULD
//! the layer implements, each named after its section.
//!
//! Most run in process, against a counting origin that records what it
//! was asked, on a `ManualClock`; `server.rs` runs a few through a real
//! axum server on 127.0.0.1:0.

#![cfg(all(feature = "tower", feature = "axum"))]

#[path = "../http_support/mod.rs"]
mod http_support;

mod attacks;
mod origin;

mod range_rfc9110_s14;

mod conditional_rfc9110_s13;
mod rfc5861_stale;
mod rfc9213_targeted;
mod s3_1_storing_header_fields;
mod s3_5_private_and_shared;
mod s3_storing;
mod s4_1_vary;
mod s4_2_freshness;
mod s4_3_validation;
mod s4_4_invalidation;
mod s5_1_age;
mod s5_3_expires;
mod server;
