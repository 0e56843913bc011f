//! Building the response-cache layer: the cache behind it, sized in bytes,
//! and its stale windows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::key::VariedResources;
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

/// Caches `GET` responses per RFC 9111 in a
/// [`Cache`](crate::cache::Cache), so a miss storm reaches the handler once
/// per key.
///
///
/// ```text
///   GET ─► key: Host + URI (+ values of the headers Vary names)
///          ├─ stored, fresh ──────────────► stored bytes + Age, or 304
///          ├─ stored, stale (windows) ────► stale bytes now, one reload behind
///          └─ missing ─► cache single flight ─► one handler call
///                         ├─ shareable ──► stored (its own TTL), to every waiter
///                         └─ not ────────► to its own request; the others call
///                                          the handler themselves
/// ```
///
/// * **Stored**: `GET` responses with status 200, 203, 204, 300, 301, 308,
///   404, 405, 410, 414 or 501 and explicit freshness (`s-maxage`, else
///   `max-age`, less any `Age` they arrived with), a body of at most
///   [`max_body_bytes`](ResponseCacheBuilder::max_body_bytes) that ends
///   without trailers, and none of `no-store`, `private`, `no-cache`,
///   `Set-Cookie`, `Vary: *`. A request with `Authorization` is stored only
///   if the response says `public`, `s-maxage` or `must-revalidate`
///   (RFC 9111 §3.5). A larger body streams through as it comes, uncached.
/// * **Served**: `HEAD` from a stored `GET`; a request with `no-store`
///   bypasses the cache, one with `no-cache` or `max-age=0` goes to the
///   handler and may refresh what is stored. Conditional requests
///   (`If-None-Match`, `If-Modified-Since`) are answered `304` from storage.
///   Every stored answer has an `Age`.
/// * **Stale** (RFC 5861): each stored response carries its own windows,
///   from its `stale-while-revalidate=` and `stale-if-error=`; the layer's
///   ([`stale_while_revalidate`](ResponseCacheBuilder::stale_while_revalidate),
///   [`stale_if_error`](ResponseCacheBuilder::stale_if_error)) are the
///   default for a response that names none (RFC 9111 §4.2.4 lets a cache
///   serve stale by configuration) and the most any response gets. A
///   response with `must-revalidate` or `proxy-revalidate` is never served
///   stale, not even when the handler fails (§5.2.2.2); `s-maxage` drops
///   the defaults (§5.2.2.10). The windows run through the cache's stampede
///   protection: one reload behind a stale answer, one load for a request
///   whose entry is past its own windows. Stale-if-error covers a handler
///   error and a 500, 502, 503 or 504.
///
/// ## Why not `http-cache-semantics`
///
/// It decides per request from copies of the request and response heads
/// (allocating per hit), reads time from `SystemTime` and the `Date`
/// header, so the crate's [`Clock`](crate::clock::Clock) could not drive it
/// in tests, and it models a client or proxy cache that revalidates,
/// whereas this layer sits in front of its own handler and keeps freshness
/// in the cache's per-entry expiry. The subset written here (about 200
/// lines, `policy.rs`, `conditional.rs`) is what the layer needs, each
/// rule with a test.
///
/// ```
/// use std::time::Duration;
/// use surgeguard::http::ResponseCacheLayer;
///
/// let layer = ResponseCacheLayer::builder()
///     .max_bytes(256 << 20)
///     .max_body_bytes(2 << 20)
///     .stale_while_revalidate(Duration::from_secs(10))
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
        let mut stats = self.core.entries.stats();
        let recounted = self.core.recounted_misses.load(Ordering::Relaxed);
        stats.misses = stats.misses.saturating_sub(recounted);
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

    /// After a response's freshness ends, serve it for this long while one
    /// handler call replaces it behind (RFC 5861; default: off). This is
    /// the window of a response that names none and the most a response's
    /// own `stale-while-revalidate=` gets; without it nothing is served
    /// while revalidating, whatever a response says.
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

    /// After a response's freshness ends, serve it for this long when the
    /// handler fails (an error, or 500, 502, 503, 504; RFC 5861; default:
    /// off). This is the window of a response that names none and the most
    /// a response's own `stale-if-error=` gets; without it nothing is
    /// served on error, whatever a response says.
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
        let mut entries = Cache::builder()
            .max_weight(max_bytes)
            .shards(shards_for(max_bytes, max_body_bytes))
            .weigher(|_, stored: &Arc<super::StoredResponse>| stored.weight())
            .clock(Arc::clone(&self.clock));
        if let Some(window) = self.stale_while_revalidate {
            entries = entries.stale_while_revalidate(window);
        }
        if let Some(window) = self.stale_if_error {
            entries = entries.stale_if_error(window);
        }
        let entries = entries.build()?;
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
        let stale_limits = StaleWindows {
            while_revalidate: self.stale_while_revalidate.unwrap_or_default(),
            if_error: self.stale_if_error.unwrap_or_default(),
        };
        Ok(ResponseCacheLayer {
            core: Arc::new(Core {
                entries,
                variants,
                varied: VariedResources::new(),
                hasher: ahash::RandomState::new(),
                max_body_bytes,
                max_bytes,
                stale_limits,
                recounted_misses: AtomicU64::new(0),
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
    /// The cache behind the layer rejected its settings.
    #[error("the response cache: {0}")]
    Cache(#[from] BuildError),
}
