//! HTTP response caching for `GET` and `HEAD` (RFC 9111) over the crate's
//! [`Cache`](crate::cache::Cache), so a miss storm reaches the handler once
//! per key, and a stale entry is revalidated once.
//!
//! ```text
//!   GET ─► key: Host + URI (+ values of the headers Vary names)
//!          ├─ stored, fresh ──────────────► stored bytes + Age, or 304
//!          ├─ stored, stale ─► within its stale-while-revalidate: stale now,
//!          │                   one revalidation behind; else wait for it:
//!          │                   one conditional request per entry (single flight)
//!          │                   ├─ 304 ──► stored headers freshened, stored body
//!          │                   ├─ 200 ──► replaces it
//!          │                   └─ error ► stale within its stale-if-error
//!          └─ missing ─► cache single flight ─► one handler call
//!                         ├─ shareable ──► stored (its own TTL), to every waiter
//!                         └─ not ────────► to its own request; the others call
//!                                          the handler themselves
//!   POST, PUT, DELETE, ... ─► the handler; a 2xx/3xx invalidates the target
//!                             and same-origin Location / Content-Location
//! ```
//!
//! * **Stored** (RFC 9111 §3): `GET` responses with a final status (206 and
//!   304 aside) and some freshness: `max-age`, `s-maxage` (shared cache),
//!   `Expires` in any HTTP-date format, `public`, or a heuristically
//!   cacheable status (200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501),
//!   which without explicit freshness gets 10% of the time since its
//!   `Last-Modified`, at most a day
//!   ([`heuristic_freshness`](ResponseCacheBuilder::heuristic_freshness)).
//!   Not stored: `no-store` (unless `must-understand` with a known status),
//!   `private` in a shared cache (the default; see
//!   [`private`](ResponseCacheBuilder::private)), `Set-Cookie` (unless
//!   [`store_without_set_cookie`](ResponseCacheBuilder::store_without_set_cookie)),
//!   `Vary: *`, a
//!   body over [`max_body_bytes`](ResponseCacheBuilder::max_body_bytes) (it
//!   streams through) or one with trailers. A request with `Authorization`
//!   is stored only if the response says `public`, `s-maxage` or
//!   `must-revalidate` (§3.5). `Connection` and the fields it names, the
//!   other hop-by-hop fields, and fields named by `no-cache="..."` or
//!   `private="..."` are dropped before storage (§3.1). An `Age` that is not
//!   a number is ignored; of a list, the first member counts (§5.1).
//!   Variants are keyed by the values of the fields `Vary` names, the
//!   negotiation fields (`Accept-*`) normalised (§4.1).
//! * **Served**: fresh responses, with their `Age` (arrival age plus time
//!   stored); `HEAD` from a stored `GET`; conditional requests
//!   (`If-None-Match`, `If-Modified-Since` in any date format) answered `304`
//!   from storage. A request with `no-store` bypasses the cache; `no-cache`
//!   and `max-age=0` revalidate; `max-age`, `min-fresh` and `max-stale`
//!   narrow or widen what storage may answer; `only-if-cached` with nothing
//!   usable is a `504`. One byte range of a stored `200` is a `206`
//!   (RFC 9110 §14.2), `If-Range` honoured.
//! * **Stale and revalidated** (§4.3, RFC 5861): a stale response with a
//!   validator stays stored for
//!   [`keep_stale`](ResponseCacheBuilder::keep_stale) (10 minutes) and is
//!   revalidated with `If-None-Match` / `If-Modified-Since`; `no-cache`
//!   responses are revalidated before every use, `must-revalidate` and
//!   `proxy-revalidate` ones once stale. A response is served stale only
//!   within its own `stale-while-revalidate=` / `stale-if-error=` (never with
//!   `no-cache`, `must-revalidate`, `proxy-revalidate`); the layer's
//!   [`stale_while_revalidate`](ResponseCacheBuilder::stale_while_revalidate)
//!   and [`stale_if_error`](ResponseCacheBuilder::stale_if_error) are an
//!   opt-in for responses that name none (§4.2.4 allows it by configuration;
//!   `s-maxage` turns it off for that response). Stale-if-error covers a
//!   handler error and a 500, 502, 503 or 504.
//! * **Targeted fields** (RFC 9213, opt-in):
//!   [`cdn_cache_control`](ResponseCacheBuilder::cdn_cache_control) and
//!   [`targeted_field`](ResponseCacheBuilder::targeted_field) name fields
//!   that, when valid, decide in place of `Cache-Control` and `Expires`.
//! * **Invalidated** (§4.4): unsafe requests always reach the handler; a 2xx
//!   or 3xx answer removes every stored variant of the target URI and of a
//!   same-origin `Location` / `Content-Location`.
//! * 1xx interim responses never reach the layer: hyper handles them on the
//!   connection, and a tower service only ever sees the final response.
//!
//! ## Why not `http-cache-semantics`
//!
//! It decides per request from copies of the request and response heads
//! (allocating per hit), and reads every time from `SystemTime`, so the
//! crate's [`Clock`](crate::clock::Clock) could not drive freshness and `Age`
//! in tests; here only the dates a response carries are compared with the
//! system clock, once, when it arrives, and all else runs on the layer's
//! clock. It is a policy object, and the layer would still write its own
//! storage, single flight, revalidation and invalidation around it, and
//! its decision for a hit alone costs no less than the layer's whole hit
//! (`benches/http.rs`, group `hit_decision`; BENCHMARKS.md). The
//! rules written here (`date.rs`, `freshness.rs`, `policy.rs`, `stale.rs`,
//! `fields.rs`, `conditional.rs`) are each tested by section in
//! `tests/http_cache_rfc9111/`.

mod age;
mod conditional;
mod date;
mod fetch;
mod fields;
mod freshness;
mod future;
mod invalidate;
mod key;
mod layer;
mod policy;
mod range;
mod revalidate;
mod service;
mod slot;
mod stale;
mod stored;
mod targeted;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub use future::ResponseCacheFuture;
pub use layer::{ResponseCacheBuildError, ResponseCacheBuilder, ResponseCacheLayer};
pub use service::ResponseCacheService;

use crate::cache::Cache;
use crate::clock::Clock;
use invalidate::Invalidations;
use key::{ResourceKey, VariantKey, Variants, VariedResources};
use policy::Rules;
use stored::StoredResponse;

/// What every service of one layer shares.
pub(crate) struct Core {
    /// Stored responses, each kept past its freshness for as long as it
    /// may still serve (its stale windows) or be revalidated.
    entries: Cache<VariantKey, Arc<StoredResponse>>,
    /// Only for its single flight: one revalidation per stale entry. Never
    /// holds a value (see `revalidate.rs`).
    revalidations: Cache<VariantKey, Arc<StoredResponse>>,
    /// What is known of resources whose responses vary.
    variants: Cache<ResourceKey, Arc<Variants>>,
    /// Taken to record a stored variant, so that two stores of a resource
    /// at once do not lose one (storing is rare next to hits).
    variant_lock: parking_lot::Mutex<()>,
    /// Which resources ever varied: the others skip `variants`.
    varied: VariedResources,
    /// Counts invalidations per resource bucket, so that a load running
    /// across one does not store what it read before (see `invalidate.rs`).
    invalidations: Invalidations,
    /// Hashes resource keys, once per request.
    hasher: ahash::RandomState,
    max_body_bytes: usize,
    /// Bound on all stored responses (reported by the layer).
    max_bytes: u64,
    rules: Rules,
    /// Misses counted twice: by the hit path's lookup, then again by the
    /// loading lookup after it; taken off the reported misses.
    recounted_misses: AtomicU64,
    /// Lookups the cache counted as hits that found a response that could
    /// not answer as it was (stale); reported as misses.
    recounted_hits: AtomicU64,
    /// Stale answers: within stale-while-revalidate or stale-if-error.
    stale_served: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl Core {
    /// Records that `variant` is stored under the `vary` names; `false`
    /// when its resource has as many variants as it may keep.
    ///
    /// When the resource's `Vary` changed, the variants stored under the
    /// old one go: nothing would find them now, and nothing could
    /// invalidate them (§4.4) once their record is replaced, yet a later
    /// return to the old `Vary` would find them again.
    fn remember_variant(&self, variant: &VariantKey, vary: Box<[http::HeaderName]>) -> bool {
        let resource = &variant.resource;
        if vary.is_empty() {
            if self.variants.contains_key(resource) {
                if let Some(old) = self.variants.remove(resource) {
                    self.forget_variants(&old);
                }
            }
            return true;
        }
        let _recording = self.variant_lock.lock();
        let known = match self.variants.get(resource) {
            Some(known) if known.names == vary => known,
            replaced => {
                if let Some(old) = replaced {
                    self.forget_variants(&old);
                }
                let fresh = Arc::new(Variants::new(vary));
                self.variants.insert(resource.clone(), Arc::clone(&fresh));
                fresh
            }
        };
        self.varied.mark(resource);
        known.record(variant)
    }

    /// Stores `stored` under `variant` for `ttl`, unless its resource was
    /// invalidated since `seen` (its count when the load that made
    /// `stored` called the handler): that answer may predate the change.
    fn store(&self, variant: &VariantKey, stored: &Arc<StoredResponse>, ttl: Duration, seen: u64) {
        // Inserted first, checked after: `invalidate` counts before it
        // removes, so either its removal comes after this insert, or this
        // check sees its count (see `invalidate.rs`).
        self.entries
            .insert_with_ttl(variant.clone(), Arc::clone(stored), ttl);
        if self.invalidations.count(&variant.resource) != seen {
            drop(self.entries.remove(variant));
        }
    }

    /// Removes the stored responses `old` recorded.
    fn forget_variants(&self, old: &Variants) {
        for stored in old.stored() {
            drop(self.entries.remove(&stored));
        }
    }

    /// Removes every stored variant of `resource` (RFC 9111 §4.4).
    fn invalidate(&self, resource: &ResourceKey) {
        self.invalidations.record(resource);
        drop(self.entries.remove(&VariantKey::whole(resource.clone())));
        if !self.varied.may_vary(resource) {
            return;
        }
        if let Some(variants) = self.variants.get(resource) {
            for variant in variants.stored() {
                drop(self.entries.remove(&variant));
            }
        }
    }
}
