//! Building the response-cache layer: the cache behind it, sized in bytes,
//! and the choices RFC 9111 leaves to a cache (shared or private, stale
//! windows by configuration, heuristic freshness, how long a stale
//! response is kept to revalidate).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::freshness::Heuristic;
use super::invalidate::Invalidations;
use super::key::VariedResources;
use super::policy::Rules;
use super::service::ResponseCacheService;
use super::stale::StaleWindows;
use super::Core;
use crate::cache::{BuildError, Cache, CacheStats};
use crate::clock::{Clock, SystemClock};

/// Default bound on all stored responses, when neither bound is set: 64 MiB.
const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default bound on one stored body, when neither bound is set: 1 MiB.
const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// An unset bound is derived from the set one so that the cache holds at
/// least this many bodies at the limit: a cache that holds a handful would
/// spend itself on one resource, and shards need room for several.
const BODIES_PER_CACHE: u64 = 16;
/// Room counted for a stored response's head beside its body.
const HEAD_ALLOWANCE: u64 = 4096;
/// The smallest `max_bytes` accepted: room for a head and a small body.
const MIN_MAX_BYTES: u64 = 2 * HEAD_ALLOWANCE;
/// The largest body limit accepted: a stored entry's weight is a `u32`.
const MAX_BODY_LIMIT: usize = 1 << 30;
/// Resources whose `Vary` names are remembered.
const VARIANT_SPECS: u64 = 100_000;
/// Capacity of the revalidation flights' cache, which never keeps a value.
const REVALIDATION_SLOTS: u64 = 1_024;
/// Heuristic freshness: the RFC's example fraction, 10%...
const DEFAULT_HEURISTIC_PERCENT: u32 = 10;
/// ...of the time since `Last-Modified`, at most a day.
const DEFAULT_HEURISTIC_CAP: Duration = Duration::from_secs(86_400);
/// How long a stale response with a validator is kept to revalidate.
const DEFAULT_KEEP_STALE: Duration = Duration::from_secs(600);

/// Caches `GET` responses per RFC 9111 in a
/// [`Cache`](crate::cache::Cache), so a miss storm reaches the handler once
/// per key, and a stale entry is revalidated once.
///
/// ```text
///   GET ─► key: Host + URI (+ values of the headers Vary names)
///          ├─ stored, fresh ──────────────► stored bytes + Age, or 304
///          ├─ stored, stale ─► within its stale-while-revalidate: stale now,
///          │                   one revalidation behind; else wait for it:
///          │                   one conditional request per entry (single flight)
///          │                   ├─ 304 ──► stored headers freshened, stored body
///          │                   ├─ 200 ──► replaces it
///          │                   └─ error ► stale within its stale-if-error
///          └─ missing ─► cache single flight ─► one handler call
///                         ├─ shareable ──► stored (its own TTL), to every waiter
///                         └─ not ────────► to its own request; the others call
///                                          the handler themselves
///   POST, PUT, DELETE, ... ─► the handler; a 2xx/3xx invalidates the target
///                             and same-origin Location / Content-Location
/// ```
///
/// * **Stored** (RFC 9111 §3): `GET` responses with a final status (206 and
///   304 aside) and some freshness: `max-age`, `s-maxage` (shared cache),
///   `Expires` in any HTTP-date format, `public`, or a heuristically
///   cacheable status (200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501),
///   which without explicit freshness gets 10% of the time since its
///   `Last-Modified`, at most a day
///   ([`heuristic_freshness`](ResponseCacheBuilder::heuristic_freshness)).
///   Not stored: `no-store` (unless `must-understand` with a known status),
///   `private` in a shared cache (the default; see
///   [`private`](ResponseCacheBuilder::private)), `Set-Cookie` (unless
///   [`store_without_set_cookie`](ResponseCacheBuilder::store_without_set_cookie)),
///   `Vary: *`, a
///   body over [`max_body_bytes`](ResponseCacheBuilder::max_body_bytes) (it
///   streams through) or one with trailers. A request with `Authorization`
///   is stored only if the response says `public`, `s-maxage` or
///   `must-revalidate` (§3.5). `Connection` and the fields it names, the
///   other hop-by-hop fields, and fields named by `no-cache="..."` or
///   `private="..."` are dropped before storage (§3.1). An `Age` that is not
///   a number is ignored; of a list, the first member counts (§5.1).
///   Variants are keyed by the values of the fields `Vary` names, the
///   negotiation fields (`Accept-*`) normalised (§4.1).
/// * **Served**: fresh responses, with their `Age` (arrival age plus time
///   stored); `HEAD` from a stored `GET`; conditional requests
///   (`If-None-Match`, `If-Modified-Since` in any date format) answered `304`
///   from storage. A request with `no-store` bypasses the cache; `no-cache`
///   and `max-age=0` revalidate; `max-age`, `min-fresh` and `max-stale`
///   narrow or widen what storage may answer; `only-if-cached` with nothing
///   usable is a `504`. One byte range of a stored `200` is a `206`
///   (RFC 9110 §14.2), `If-Range` honoured.
/// * **Stale and revalidated** (§4.3, RFC 5861): a stale response with a
///   validator stays stored for
///   [`keep_stale`](ResponseCacheBuilder::keep_stale) (10 minutes) and is
///   revalidated with `If-None-Match` / `If-Modified-Since`; `no-cache`
///   responses are revalidated before every use, `must-revalidate` and
///   `proxy-revalidate` ones once stale. A response is served stale only
///   within its own `stale-while-revalidate=` / `stale-if-error=` (never with
///   `no-cache`, `must-revalidate`, `proxy-revalidate`); the layer's
///   [`stale_while_revalidate`](ResponseCacheBuilder::stale_while_revalidate)
///   and [`stale_if_error`](ResponseCacheBuilder::stale_if_error) are an
///   opt-in for responses that name none (§4.2.4 allows it by configuration;
///   `s-maxage` turns it off for that response). Stale-if-error covers a
///   handler error and a 500, 502, 503 or 504.
/// * **Targeted fields** (RFC 9213, opt-in):
///   [`cdn_cache_control`](ResponseCacheBuilder::cdn_cache_control) and
///   [`targeted_field`](ResponseCacheBuilder::targeted_field) name fields
///   that, when valid, decide in place of `Cache-Control` and `Expires`.
/// * **Invalidated** (§4.4): unsafe requests always reach the handler; a 2xx
///   or 3xx answer removes every stored variant of the target URI and of a
///   same-origin `Location` / `Content-Location`.
/// * 1xx interim responses never reach the layer: hyper handles them on the
///   connection, and a tower service only ever sees the final response.
///
/// ## Why not `http-cache-semantics`
///
/// It decides per request from copies of the request and response heads
/// (allocating per hit), and reads every time from `SystemTime`, so the
/// crate's [`Clock`](crate::clock::Clock) could not drive freshness and `Age`
/// in tests; here only the dates a response carries are compared with the
/// system clock, once, when it arrives, and all else runs on the layer's
/// clock. It is a policy object, and the layer would still write its own
/// storage, single flight, revalidation and invalidation around it, and
/// its decision for a hit alone costs no less than the layer's whole hit
/// (`benches/http.rs`, group `hit_decision`; BENCHMARKS.md). The
/// rules written here (`date.rs`, `freshness.rs`, `policy.rs`, `stale.rs`,
/// `fields.rs`, `conditional.rs`) are each tested by section in
/// `tests/http_cache_rfc9111/`.
///
/// ```
/// use std::time::Duration;
/// use surgeguard::http::ResponseCacheLayer;
///
/// let layer = ResponseCacheLayer::builder()
///     .max_bytes(256 << 20)
///     .max_body_bytes(2 << 20)
///     // Opt-in: cover a failing handler with responses that name no
///     // stale-if-error of their own.
///     .stale_if_error(Duration::from_secs(300))
///     .build()?;
/// assert_eq!(layer.stats().hits, 0);
/// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
/// ```
#[derive(Clone)]
pub struct ResponseCacheLayer {
    core: Arc<Core>,
}

impl ResponseCacheLayer {
    /// Starts configuring a layer.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder().build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn builder() -> ResponseCacheBuilder {
        ResponseCacheBuilder {
            max_bytes: None,
            max_body_bytes: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            shared: true,
            heuristic_percent: DEFAULT_HEURISTIC_PERCENT,
            heuristic_cap: DEFAULT_HEURISTIC_CAP,
            keep_stale: DEFAULT_KEEP_STALE,
            targeted: Vec::new(),
            store_set_cookie: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// Counters of the cache of stored responses: hits, misses, loads
    /// (handler calls through the cache), coalesced waiters, stale serves.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder().build()?;
    /// assert_eq!(layer.stats().loads, 0);
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn stats(&self) -> CacheStats {
        let core = &self.core;
        let mut stats = core.entries.stats();
        let revalidations = core.revalidations.stats();
        let recounted_misses = core.recounted_misses.load(Ordering::Relaxed);
        let recounted_hits = core.recounted_hits.load(Ordering::Relaxed);
        stats.hits = stats.hits.saturating_sub(recounted_hits);
        stats.misses = (stats.misses + recounted_hits).saturating_sub(recounted_misses);
        stats.loads += revalidations.loads;
        stats.load_errors += revalidations.load_errors;
        stats.coalesced += revalidations.coalesced;
        stats.load_time += revalidations.load_time;
        stats.stale_served = core.stale_served.load(Ordering::Relaxed);
        stats
    }

    /// The bound on one stored body, as set or derived
    /// ([`ResponseCacheBuilder::max_body_bytes`]).
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// assert_eq!(ResponseCacheLayer::builder().build()?.max_body_bytes(), 1 << 20);
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn max_body_bytes(&self) -> usize {
        self.core.max_body_bytes
    }

    /// The bound on all stored responses, as set or derived
    /// ([`ResponseCacheBuilder::max_bytes`]).
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder().max_body_bytes(8 << 20).build()?;
    /// assert_eq!(layer.max_bytes(), 16 * ((8 << 20) + 4096));
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn max_bytes(&self) -> u64 {
        self.core.max_bytes
    }

    /// Drops every stored response.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder().build()?;
    /// layer.invalidate_all();
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn invalidate_all(&self) {
        self.core.entries.invalidate_all();
        self.core.revalidations.invalidate_all();
        self.core.variants.invalidate_all();
        self.core.varied.clear();
    }
}

impl std::fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("entries", &self.core.entries)
            .field("max_body_bytes", &self.core.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCacheService::new(inner, Arc::clone(&self.core))
    }
}

/// Settings of a [`ResponseCacheLayer`], checked by
/// [`build`](Self::build).
///
/// ```
/// # use surgeguard::http::ResponseCacheLayer;
/// let layer = ResponseCacheLayer::builder().max_bytes(16 << 20).build()?;
/// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
/// ```
#[derive(Debug)]
pub struct ResponseCacheBuilder {
    max_bytes: Option<u64>,
    max_body_bytes: Option<usize>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    shared: bool,
    heuristic_percent: u32,
    heuristic_cap: Duration,
    keep_stale: Duration,
    targeted: Vec<String>,
    store_set_cookie: bool,
    clock: Arc<dyn Clock>,
}

impl ResponseCacheBuilder {
    /// Bound on all stored responses, bodies and headers. Default: 64 MiB,
    /// or sixteen bodies at [`max_body_bytes`](Self::max_body_bytes) when
    /// only that is set and sixteen are more.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder().max_bytes(512 << 20).build()?;
    /// // A small bound builds too: the body limit follows it (a sixteenth).
    /// let small = ResponseCacheLayer::builder().max_bytes(1 << 20).build()?;
    /// assert_eq!(small.max_body_bytes(), 64 << 10);
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Bound on one stored body. A larger response streams through to its
    /// client unbuffered past this and is not stored. Default: 1 MiB, or a
    /// sixteenth of [`max_bytes`](Self::max_bytes) when only that is set
    /// and a sixteenth is less.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder().max_body_bytes(64 << 10).build()?;
    /// assert_eq!(layer.max_body_bytes(), 64 << 10);
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Opt-in: serve a response that names no `stale-while-revalidate=`
    /// for this long after its freshness ends, while one handler call
    /// revalidates it behind (default: off). RFC 9111 §4.2.4 lets a cache
    /// serve stale by configuration, but a `max-age` response then no
    /// longer goes stale when it says, which is what most clients and
    /// conformance suites expect; leave it off unless the handler's routes
    /// all accept it. A response's own `stale-while-revalidate=` applies
    /// whatever this is; `must-revalidate`, `proxy-revalidate`,
    /// `no-cache` and `s-maxage` turn this default off for that response.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// # use std::time::Duration;
    /// let layer = ResponseCacheLayer::builder()
    ///     .stale_while_revalidate(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// Opt-in: serve a response that names no `stale-if-error=` for this
    /// long after its freshness ends when the handler fails (an error, or
    /// 500, 502, 503, 504; default: off). The same terms as
    /// [`stale_while_revalidate`](Self::stale_while_revalidate): a
    /// response's own `stale-if-error=` applies whatever this is.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// # use std::time::Duration;
    /// let layer = ResponseCacheLayer::builder()
    ///     .stale_if_error(Duration::from_secs(600))
    ///     .build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// Makes this a private cache (RFC 9111 §1): one that serves a single
    /// user, as in a client. It may store `private` responses, ignores
    /// `s-maxage` and `proxy-revalidate`, and stores responses to requests
    /// with `Authorization`. Default: a shared cache, which does none of
    /// these; a cache in front of a server for many users must stay
    /// shared.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let per_user = ResponseCacheLayer::builder().private().build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn private(mut self) -> Self {
        self.shared = false;
        self
    }

    /// Heuristic freshness (RFC 9111 §4.2.2) for a response with no
    /// explicit freshness, a heuristically cacheable status and a
    /// `Last-Modified`: `percent` of the time since it was last modified,
    /// at most `cap`. Default: 10% (the RFC's example), at most one day;
    /// 0 turns heuristics off. Over 100 is a build error.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// # use std::time::Duration;
    /// let layer = ResponseCacheLayer::builder()
    ///     .heuristic_freshness(5, Duration::from_secs(3_600))
    ///     .build()?;
    /// let none = ResponseCacheLayer::builder()
    ///     .heuristic_freshness(0, Duration::ZERO)
    ///     .build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn heuristic_freshness(mut self, percent: u32, cap: Duration) -> Self {
        self.heuristic_percent = percent;
        self.heuristic_cap = cap;
        self
    }

    /// How long a response with a validator (`ETag`, `Last-Modified`)
    /// stays stored after its freshness ends, so that the next request
    /// revalidates it with a conditional request (a `304` without a body)
    /// instead of fetching it in full (RFC 9111 §4.3). Default: 10
    /// minutes. A response's stale windows keep it stored too.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// # use std::time::Duration;
    /// let layer = ResponseCacheLayer::builder()
    ///     .keep_stale(Duration::from_secs(3_600))
    ///     .build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn keep_stale(mut self, duration: Duration) -> Self {
        self.keep_stale = duration;
        self
    }

    /// Reads `CDN-Cache-Control` (RFC 9213): when a response carries a
    /// valid one, it decides this cache's policy in place of
    /// `Cache-Control` and `Expires`, which still go on to browsers. The
    /// same as [`targeted_field`](Self::targeted_field) with
    /// `cdn-cache-control`. Default: not read.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder().cdn_cache_control().build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn cdn_cache_control(self) -> Self {
        self.targeted_field("cdn-cache-control")
    }

    /// Adds a targeted cache-control field (RFC 9213) to those this cache
    /// reads, after the ones added before: the first on the list that a
    /// response carries with a valid value (a Structured Fields
    /// Dictionary) decides, and `Cache-Control` and `Expires` are then
    /// ignored. Add the most specific first, say your own
    /// `Example-Cache-Control`, then `CDN-Cache-Control`. A name that is
    /// not a valid header name is a build error.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder()
    ///     .targeted_field("example-cache-control")
    ///     .cdn_cache_control()
    ///     .build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn targeted_field(mut self, name: &str) -> Self {
        self.targeted.push(name.to_string());
        self
    }

    /// Stores responses that carry `Set-Cookie`, without that field: the
    /// client whose request loaded it gets its cookie, every other client
    /// the response without one (a cookie is one client's). Default: such
    /// responses are not stored at all, the safe choice when a handler
    /// sets per-user cookies on pages whose body is per-user too.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// let layer = ResponseCacheLayer::builder()
    ///     .store_without_set_cookie()
    ///     .build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn store_without_set_cookie(mut self) -> Self {
        self.store_set_cookie = true;
        self
    }

    /// The clock freshness and `Age` are measured on (default:
    /// [`SystemClock`]).
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheLayer;
    /// use surgeguard::clock::ManualClock;
    /// let layer = ResponseCacheLayer::builder().clock(ManualClock::new()).build()?;
    /// # Ok::<(), surgeguard::http::ResponseCacheBuildError>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the layer and its cache.
    ///
    /// ```
    /// # use surgeguard::http::{ResponseCacheBuildError, ResponseCacheLayer};
    /// let err = ResponseCacheLayer::builder()
    ///     .max_bytes(1 << 20)
    ///     .max_body_bytes(4 << 20)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, ResponseCacheBuildError::BodyLimitTooLarge { .. }));
    /// ```
    pub fn build(self) -> Result<ResponseCacheLayer, ResponseCacheBuildError> {
        let (max_bytes, max_body_bytes) = self.bounds()?;
        if self.heuristic_percent > 100 {
            return Err(ResponseCacheBuildError::HeuristicOverWhole {
                percent: self.heuristic_percent,
            });
        }
        // Freshness is judged per response, not by the cache: it keeps no
        // stale windows of its own, and every entry has its own lifetime.
        let entries = Cache::builder()
            .max_weight(max_bytes)
            .shards(shards_for(max_bytes, max_body_bytes))
            .weigher(|_, stored: &Arc<super::StoredResponse>| stored.weight())
            .clock(Arc::clone(&self.clock))
            .build()?;
        let revalidations = Cache::builder()
            .max_capacity(REVALIDATION_SLOTS)
            .clock(Arc::clone(&self.clock))
            .build()?;
        // A body at the limit, plus its head, must fit one shard. The
        // bounds were checked against the whole cache; a shard is a part.
        let most = entries.max_entry_weight();
        if least_max_bytes(max_body_bytes) > most {
            return Err(ResponseCacheBuildError::BodyLimitTooLarge {
                max_body_bytes,
                most: most.saturating_sub(HEAD_ALLOWANCE),
                max_bytes,
                least_max_bytes: least_max_bytes(max_body_bytes),
            });
        }
        let variants = Cache::builder().max_capacity(VARIANT_SPECS).build()?;
        let mut targeted = Vec::with_capacity(self.targeted.len());
        for name in &self.targeted {
            let Ok(parsed) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return Err(ResponseCacheBuildError::TargetedFieldName { name: name.clone() });
            };
            targeted.push(parsed);
        }
        let rules = Rules {
            targeted: targeted.into_boxed_slice(),
            shared: self.shared,
            default_windows: StaleWindows {
                while_revalidate: self.stale_while_revalidate.unwrap_or_default(),
                if_error: self.stale_if_error.unwrap_or_default(),
            },
            heuristic: (self.heuristic_percent > 0).then(|| Heuristic {
                fraction: f64::from(self.heuristic_percent) / 100.0,
                cap: self.heuristic_cap,
            }),
            keep_stale: self.keep_stale,
            store_set_cookie: self.store_set_cookie,
        };
        Ok(ResponseCacheLayer {
            core: Arc::new(Core {
                entries,
                revalidations,
                variants,
                variant_lock: parking_lot::Mutex::new(()),
                varied: VariedResources::new(),
                invalidations: Invalidations::new(),
                hasher: ahash::RandomState::new(),
                max_body_bytes,
                max_bytes,
                rules,
                recounted_misses: AtomicU64::new(0),
                recounted_hits: AtomicU64::new(0),
                stale_served: AtomicU64::new(0),
                clock: self.clock,
            }),
        })
    }
}

impl ResponseCacheBuilder {
    /// The two bounds, the unset ones derived from the set ones, so that
    /// any one bound a user would write builds; an error only when the
    /// user set something impossible, naming what to change.
    fn bounds(&self) -> Result<(u64, usize), ResponseCacheBuildError> {
        if let Some(max_body_bytes) = self.max_body_bytes {
            if max_body_bytes > MAX_BODY_LIMIT {
                return Err(ResponseCacheBuildError::BodyLimitOverMaximum {
                    max_body_bytes,
                    most: MAX_BODY_LIMIT,
                });
            }
        }
        if let Some(max_bytes) = self.max_bytes {
            if max_bytes < MIN_MAX_BYTES {
                return Err(ResponseCacheBuildError::MaxBytesTooSmall {
                    max_bytes,
                    least: MIN_MAX_BYTES,
                });
            }
        }
        Ok(match (self.max_bytes, self.max_body_bytes) {
            (None, None) => (DEFAULT_MAX_BYTES, DEFAULT_MAX_BODY_BYTES),
            (Some(max_bytes), None) => {
                let share = usize::try_from(max_bytes / BODIES_PER_CACHE).unwrap_or(usize::MAX);
                (max_bytes, share.min(DEFAULT_MAX_BODY_BYTES))
            }
            (None, Some(max_body_bytes)) => (
                DEFAULT_MAX_BYTES.max(BODIES_PER_CACHE * least_max_bytes(max_body_bytes)),
                max_body_bytes,
            ),
            (Some(max_bytes), Some(max_body_bytes)) => {
                if least_max_bytes(max_body_bytes) > max_bytes {
                    return Err(ResponseCacheBuildError::BodyLimitTooLarge {
                        max_body_bytes,
                        most: max_bytes - HEAD_ALLOWANCE,
                        max_bytes,
                        least_max_bytes: least_max_bytes(max_body_bytes),
                    });
                }
                (max_bytes, max_body_bytes)
            }
        })
    }
}

/// The `max_bytes` that holds one body of `max_body_bytes` in every shard
/// layout [`shards_for`] may pick: with one shard, the body and its head.
fn least_max_bytes(max_body_bytes: usize) -> u64 {
    (max_body_bytes as u64).saturating_add(HEAD_ALLOWANCE)
}

/// Shards for the cache: 16 per core as the cache would pick, but few
/// enough that each shard (an equal part of `max_bytes`) holds at least
/// four bodies at the limit, since an entry heavier than its shard's part
/// is never stored.
fn shards_for(max_bytes: u64, max_body_bytes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shards = (cores * 16).next_power_of_two().min(1 << 12);
    let wanted = (max_body_bytes as u64 + HEAD_ALLOWANCE) * 4;
    while shards > 1 && max_bytes / shards as u64 <= wanted {
        shards /= 2;
    }
    shards
}

/// Why a [`ResponseCacheBuilder`] could not build.
///
/// ```
/// # use surgeguard::http::{ResponseCacheBuildError, ResponseCacheLayer};
/// let err = ResponseCacheLayer::builder().max_bytes(0).build().unwrap_err();
/// assert!(matches!(err, ResponseCacheBuildError::MaxBytesTooSmall { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseCacheBuildError {
    /// One body at the limit would not fit the cache (each of its shards
    /// holds an equal part of `max_bytes`).
    #[error("max_body_bytes {max_body_bytes} is more than one stored response may take with max_bytes {max_bytes} ({most} bytes): lower max_body_bytes to {most} or less, or raise max_bytes to {least_max_bytes} or more")]
    BodyLimitTooLarge {
        /// The body limit asked for.
        max_body_bytes: usize,
        /// The most it may be with this `max_bytes`.
        most: u64,
        /// The bound on all stored responses it was checked against.
        max_bytes: u64,
        /// The least `max_bytes` that holds a body at this limit.
        least_max_bytes: u64,
    },
    /// The body limit is over the largest accepted, whatever `max_bytes`:
    /// a stored entry's weight is a `u32`.
    #[error(
        "max_body_bytes {max_body_bytes} is over the largest body limit accepted ({most} bytes)"
    )]
    BodyLimitOverMaximum {
        /// The body limit asked for.
        max_body_bytes: usize,
        /// The largest accepted.
        most: usize,
    },
    /// `max_bytes` cannot hold even one small response.
    #[error("max_bytes {max_bytes} cannot hold a stored response: set it to {least} or more")]
    MaxBytesTooSmall {
        /// The bound asked for.
        max_bytes: u64,
        /// The least accepted.
        least: u64,
    },
    /// Heuristic freshness over 100% of the time since `Last-Modified`.
    #[error(
        "heuristic freshness of {percent}% is over 100%: use 0 to 100 (the RFC's example is 10)"
    )]
    HeuristicOverWhole {
        /// The percentage asked for.
        percent: u32,
    },
    /// A targeted cache-control field name that is not a header name.
    #[error("targeted field {name:?} is not a valid header field name")]
    TargetedFieldName {
        /// The name given.
        name: String,
    },
    /// The cache behind the layer rejected its settings.
    #[error("the response cache: {0}")]
    Cache(#[from] BuildError),
}
