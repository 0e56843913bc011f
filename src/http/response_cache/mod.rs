//! HTTP response caching for `GET` and `HEAD` (RFC 9111) over the crate's
//! [`Cache`](crate::cache::Cache), so a miss storm reaches the handler once
//! per key.
//!
//! ```text
//!   GET ─► key: Host + URI (+ values of the headers Vary names)
//!          ├─ stored, fresh ──────────────► stored bytes + Age, or 304
//!          ├─ stored, stale (windows) ────► stale bytes now, one reload behind
//!          └─ missing ─► cache single flight ─► one handler call
//!                         ├─ shareable ──► stored (its own TTL), to every waiter
//!                         └─ not ────────► to its own request; the others call
//!                                          the handler themselves
//! ```
//!
//! * **Stored**: `GET` responses with status 200, 203, 204, 300, 301, 308,
//!   404, 405, 410, 414 or 501 and explicit freshness (`s-maxage`, else
//!   `max-age`, less any `Age` they arrived with), a body of at most
//!   [`max_body_bytes`](ResponseCacheBuilder::max_body_bytes) that ends
//!   without trailers, and none of `no-store`, `private`, `no-cache`,
//!   `Set-Cookie`, `Vary: *`. A request with `Authorization` is stored only
//!   if the response says `public`, `s-maxage` or `must-revalidate`
//!   (RFC 9111 §3.5). A larger body streams through as it comes, uncached.
//! * **Served**: `HEAD` from a stored `GET`; a request with `no-store`
//!   bypasses the cache, one with `no-cache` or `max-age=0` goes to the
//!   handler and may refresh what is stored. Conditional requests
//!   (`If-None-Match`, `If-Modified-Since`) are answered `304` from storage.
//!   Every stored answer has an `Age`.
//! * **Stale** (RFC 5861): each stored response carries its own windows,
//!   from its `stale-while-revalidate=` and `stale-if-error=`; the layer's
//!   ([`stale_while_revalidate`](ResponseCacheBuilder::stale_while_revalidate),
//!   [`stale_if_error`](ResponseCacheBuilder::stale_if_error)) are the
//!   default for a response that names none (RFC 9111 §4.2.4 lets a cache
//!   serve stale by configuration) and the most any response gets. A
//!   response with `must-revalidate` or `proxy-revalidate` is never served
//!   stale, not even when the handler fails (§5.2.2.2); `s-maxage` drops
//!   the defaults (§5.2.2.10). The windows run through the cache's stampede
//!   protection: one reload behind a stale answer, one load for a request
//!   whose entry is past its own windows. Stale-if-error covers a handler
//!   error and a 500, 502, 503 or 504.
//!
//! ## Why not `http-cache-semantics`
//!
//! It decides per request from copies of the request and response heads
//! (allocating per hit), reads time from `SystemTime` and the `Date`
//! header, so the crate's [`Clock`](crate::clock::Clock) could not drive it
//! in tests, and it models a client or proxy cache that revalidates,
//! whereas this layer sits in front of its own handler and keeps freshness
//! in the cache's per-entry expiry. The subset written here (about 200
//! lines, `policy.rs`, `conditional.rs`) is what the layer needs, each
//! rule with a test.

mod age;
mod conditional;
mod fetch;
mod future;
mod key;
mod layer;
mod policy;
mod service;
mod slot;
mod stale;
mod stored;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use future::ResponseCacheFuture;
pub use layer::{ResponseCacheBuildError, ResponseCacheBuilder, ResponseCacheLayer};
pub use service::ResponseCacheService;

use crate::cache::Cache;
use crate::clock::Clock;
use key::{ResourceKey, VariantKey, VariedResources};
use stale::StaleWindows;
use stored::StoredResponse;

/// What every service of one layer shares.
pub(crate) struct Core {
    entries: Cache<VariantKey, Arc<StoredResponse>>,
    /// The `Vary` names of resources whose responses vary.
    variants: Cache<ResourceKey, Arc<[http::HeaderName]>>,
    /// Which resources ever varied: the others skip `variants`.
    varied: VariedResources,
    /// Hashes resource keys, once per request.
    hasher: ahash::RandomState,
    max_body_bytes: usize,
    /// Bound on all stored responses (reported by the layer).
    max_bytes: u64,
    /// The layer's stale windows: each response's default and upper bound.
    stale_limits: StaleWindows,
    /// Misses counted twice: by the hit path's lookup, then again by the
    /// loading lookup after it; taken off the reported misses.
    recounted_misses: AtomicU64,
    clock: Arc<dyn Clock>,
}
