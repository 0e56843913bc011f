//! Stampede protection: loading through the cache.
//!
//! In the outage this crate exists for, every cache miss during the spike
//! went to the database at once. The loading methods make one miss per key
//! reach the origin, keep hot keys from ever expiring under load, and keep
//! serving when the origin fails:
//!
//! * **Single flight.** The first caller to miss a key registers a flight
//!   for it (under the shard's write lock) and runs the loader; everyone else
//!   who misses the key meanwhile waits for that flight and receives its
//!   value, or its error as a shared `Arc<E>` (errors are not cached).
//! * **Refresh-ahead** ([`refresh_after`](super::CacheBuilder::refresh_after)):
//!   a read of an entry older than that returns it at once and starts one
//!   reload in the background. Reloads follow Caffeine's refreshAfterWrite:
//!   one per key at a time; an insert or remove while one runs wins; a failed
//!   one keeps the old value.
//! * **Stale windows** (RFC 5861):
//!   [`stale_while_revalidate`](super::CacheBuilder::stale_while_revalidate)
//!   serves an expired value at once while one reload runs behind;
//!   [`stale_if_error`](super::CacheBuilder::stale_if_error) falls back to it
//!   when the reload fails.
//! * **Negative caching** ([`negative_caching`](super::CacheBuilder::negative_caching)):
//!   "not found" kept for a short time.
//!
//! ## Where loads run, and why nobody waits forever
//!
//! * Blocking API ([`Cache::get_or_try_load`](super::Cache::get_or_try_load)):
//!   the first caller runs the loader on its own thread while the others
//!   park. A panicking loader is caught: every waiter gets
//!   [`LoadError::Panicked`] and the key is free again. With
//!   [`load_timeout`](super::CacheBuilder::load_timeout), waiters stop waiting
//!   after that long (the load goes on for the others). Background reloads run
//!   on a small process-wide pool of threads started on demand (the reader
//!   that triggers one only queues it), at most
//!   [`background_reloads`](super::CacheBuilder::background_reloads) per cache
//!   at once.
//! * Async API (feature `tokio`,
//!   [`Cache::get_or_try_load_async`](super::Cache::get_or_try_load_async)):
//!   every load runs as its own Tokio task, so it does not depend on the
//!   caller who started it: a caller that is cancelled (its future dropped,
//!   say by a request timeout) leaves the load running for the others and for
//!   the cache. This is the difference from moka's `get_with`, whose waiters
//!   can stall behind a future nobody polls (moka issue #240). The load
//!   timeout drops the task and fails its waiters with `TimedOut`.
//!
//! Flights are keyed by key alone: callers whose loaders return different
//! error types still share a successful load; a failure is shared with
//! callers of the same error type, and the others retry with their own
//! loader.

mod blocking;
mod flight;
mod leader;
mod reload_pool;
mod settings;

#[cfg(feature = "tokio")]
mod asynchronous;

use std::fmt;
use std::sync::Arc;

pub(crate) use flight::Flight;
pub(crate) use settings::{Freshness, LoadConfig, LoadSettings};

/// Why a loading call returned no value.
///
/// ```
/// use surgeguard::cache::{Cache, LoadError};
///
/// let cache: Cache<u64, String> = Cache::builder().max_capacity(10).build()?;
/// let err = cache
///     .get_or_try_load(&1, |_| Err::<String, _>("origin down"))
///     .unwrap_err();
/// assert!(matches!(&err, LoadError::Failed(e) if **e == "origin down"));
/// assert_eq!(err.to_string(), "the loader failed: origin down");
/// # Ok::<(), surgeguard::cache::BuildError>(())
/// ```
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader returned this error; every caller that waited for the same
    /// load shares it. Nothing was cached.
    Failed(Arc<E>),
    /// The loader panicked. Every waiter was released and the key is free for
    /// the next load.
    Panicked,
    /// The load did not finish within the cache's
    /// [`load_timeout`](super::CacheBuilder::load_timeout).
    TimedOut,
    /// The loads this call joined ended without a result it could use (their
    /// thread or task could not run, or they failed with another error type)
    /// several times over.
    Abandoned,
    /// An async load was started outside a Tokio runtime.
    NoRuntime,
    /// A blocking loader asked the cache for its own key: it would have
    /// waited for itself forever.
    Recursive,
}

impl<E> LoadError<E> {
    /// The loader's error, if that is why the load failed.
    ///
    /// ```
    /// # use surgeguard::cache::LoadError;
    /// let err: LoadError<&str> = LoadError::Panicked;
    /// assert!(err.loader_error().is_none());
    /// ```
    #[must_use]
    pub fn loader_error(&self) -> Option<&E> {
        match self {
            LoadError::Failed(error) => Some(error),
            _ => None,
        }
    }
}

impl<E> Clone for LoadError<E> {
    fn clone(&self) -> Self {
        match self {
            LoadError::Failed(error) => LoadError::Failed(Arc::clone(error)),
            LoadError::Panicked => LoadError::Panicked,
            LoadError::TimedOut => LoadError::TimedOut,
            LoadError::Abandoned => LoadError::Abandoned,
            LoadError::NoRuntime => LoadError::NoRuntime,
            LoadError::Recursive => LoadError::Recursive,
        }
    }
}

/// Errors compare by the loader's error value.
impl<E: PartialEq> PartialEq for LoadError<E> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (LoadError::Failed(mine), LoadError::Failed(theirs)) => mine == theirs,
            (LoadError::Panicked, LoadError::Panicked)
            | (LoadError::TimedOut, LoadError::TimedOut)
            | (LoadError::Abandoned, LoadError::Abandoned)
            | (LoadError::NoRuntime, LoadError::NoRuntime)
            | (LoadError::Recursive, LoadError::Recursive) => true,
            _ => false,
        }
    }
}

impl<E: Eq> Eq for LoadError<E> {}

impl<E: fmt::Debug> fmt::Debug for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
            LoadError::Panicked => f.write_str("Panicked"),
            LoadError::TimedOut => f.write_str("TimedOut"),
            LoadError::Abandoned => f.write_str("Abandoned"),
            LoadError::NoRuntime => f.write_str("NoRuntime"),
            LoadError::Recursive => f.write_str("Recursive"),
        }
    }
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Failed(error) => write!(f, "the loader failed: {error}"),
            LoadError::Panicked => {
                f.write_str("the loader panicked; the key is free for the next load")
            }
            LoadError::TimedOut => f.write_str("the load did not finish within the load timeout"),
            LoadError::Abandoned => {
                f.write_str("the load ended without a usable result several times; try again later")
            }
            LoadError::NoRuntime => {
                f.write_str("get_or_try_load_async needs a Tokio runtime: call it from within one")
            }
            LoadError::Recursive => f.write_str(
                "the loader asked the cache for the key it is loading; it would wait for itself",
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Failed(error) => Some(&**error),
            _ => None,
        }
    }
}

/// Whether a load serves a caller who has no value, or refreshes one in the
/// background; named in the `tracing` span each load runs in
/// (`surgeguard.cache.load`, `kind = "load" | "refresh"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "tokio", feature = "tracing")), allow(dead_code))]
pub(crate) enum LoadKind {
    Load,
    Refresh,
}

impl LoadKind {
    #[cfg(feature = "tracing")]
    pub(crate) fn span(self) -> tracing::Span {
        let kind = match self {
            LoadKind::Load => "load",
            LoadKind::Refresh => "refresh",
        };
        tracing::debug_span!("surgeguard.cache.load", kind)
    }
}
