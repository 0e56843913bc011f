//! The interface a shared second tier implements: a few byte-level calls,
//! each one round trip, so the cache core never learns what is behind it.
//!
//! The calls are shaped by what fleet-wide single flight needs. A reader
//! must learn, in one atomic step, either the value or that it now holds
//! the right to load it (a *lease*), or that another instance holds it;
//! otherwise two instances that miss at the same moment both load. A filled
//! value must land only while its lease is still held, so an `insert` or a
//! `remove` that happened during the load wins, as it does for the local
//! flights.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The future every [`RemoteTier`] call returns.
pub type TierFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TierError>> + Send + 'a>>;

/// A shared tier behind the in-process [`Cache`](crate::cache::Cache), such
/// as [`RedisTier`](crate::redis::RedisTier) (feature `redis`). Keys and
/// values are bytes: the [`TieredCache`](super::TieredCache) encodes them
/// with its [`Codec`](super::Codec)s.
///
/// Every call is bounded in time by the implementation (a per-call timeout)
/// and fails with [`TierError`] rather than hang: the tiered cache then
/// serves from its own process, as if the tier were absent.
pub trait RemoteTier: Send + Sync + 'static {
    /// Reads `key`, or takes its lease when there is no value fresher than
    /// `want.fresh_for`, in one atomic step.
    fn fetch<'a>(&'a self, key: &'a [u8], want: FetchRequest) -> TierFuture<'a, Fetch>;

    /// Stores a loaded `value` under `key` for `ttl` if `lease` is still
    /// held, and gives the lease back. `Ok(false)`: the lease was lost (it
    /// expired, or an `insert` or `remove` cleared it) and nothing was
    /// stored.
    fn fill<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        ttl: Duration,
        lease: &'a LeaseToken,
    ) -> TierFuture<'a, bool>;

    /// Gives `lease` back without a value (the load failed or was
    /// cancelled), so the next reader loads at once instead of after the
    /// lease's expiry.
    fn release<'a>(&'a self, key: &'a [u8], lease: &'a LeaseToken) -> TierFuture<'a, ()>;

    /// Stores `value` under `key` for `ttl` whoever holds the lease (which
    /// it clears), and tells the other instances to drop their copy.
    fn store<'a>(&'a self, key: &'a [u8], value: &'a [u8], ttl: Duration) -> TierFuture<'a, ()>;

    /// Removes `key` and its lease, and tells the other instances to drop
    /// their copy.
    fn remove<'a>(&'a self, key: &'a [u8]) -> TierFuture<'a, ()>;

    /// Calls `listener` for every key another instance stored or removed,
    /// for as long as the tier lives and the caller keeps a clone of
    /// `listener` (a tier may hold it weakly, so that a dropped cache is
    /// not kept alive by its tier). When messages may have been lost (the
    /// connection to the backplane was lost and made again), it is called
    /// with [`Invalidation::All`].
    fn subscribe(&self, listener: InvalidationListener);
}

/// What [`RemoteTier::subscribe`] calls with.
pub type InvalidationListener = Arc<dyn Fn(Invalidation<'_>) + Send + Sync>;

/// A change another instance made, heard on the backplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation<'a> {
    /// This (encoded) key changed.
    Key(&'a [u8]),
    /// Messages may have been lost: every copy may be out of date.
    All,
}

/// The terms of a [`RemoteTier::fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    /// How long a lease this reader takes holds before it expires by
    /// itself (the holder may die).
    pub lease: Duration,
    /// A stored value older than this is stale: the reader takes the lease
    /// to reload it if it can, and gets [`Fetch::Stale`] otherwise. `None`:
    /// a stored value is fresh for as long as it is stored.
    pub fresh_for: Option<Duration>,
}

/// What a [`RemoteTier::fetch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// A fresh value.
    Value(Vec<u8>),
    /// No fresh value, and this reader now holds the lease: it loads.
    Leased(LeaseToken),
    /// A stale value, and another instance holds the lease (it is
    /// reloading for the fleet).
    Stale(Vec<u8>),
    /// No value, and another instance holds the lease for about this long
    /// still.
    Busy {
        /// The lease's remaining time, as the tier reports it.
        lease_left: Duration,
    },
}

/// Proof of holding a key's lease: a token unique to one lease, so a holder
/// whose lease expired cannot clear its successor's by mistake. (It is not
/// a secret: [`RedisTier`](crate::redis::RedisTier)'s tokens are its
/// instance id, which its backplane messages carry, and a counter.)
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseToken(pub(crate) Arc<str>);

impl LeaseToken {
    /// A token with this text (a tier makes its own, unique per lease).
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        LeaseToken(text.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kept out of logs all the same: a token copied from a log line
        // into a script would clear a live lease.
        f.write_str("LeaseToken(..)")
    }
}

/// Why a [`RemoteTier`] call did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// The tier is unreachable, slow, or its breaker is open.
    #[error("the shared tier is unavailable: {0}")]
    Unavailable(String),
    /// The tier answered with an error that retrying will not fix (a key
    /// of the wrong type, a script error, a reply of an unexpected shape).
    #[error("the shared tier refused the call: {0}")]
    Refused(String),
}

/// A tier shared by handle: the cache keeps one, the caller another (for
/// its stats, say).
impl<T: RemoteTier + ?Sized> RemoteTier for Arc<T> {
    fn fetch<'a>(&'a self, key: &'a [u8], want: FetchRequest) -> TierFuture<'a, Fetch> {
        (**self).fetch(key, want)
    }

    fn fill<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        ttl: Duration,
        lease: &'a LeaseToken,
    ) -> TierFuture<'a, bool> {
        (**self).fill(key, value, ttl, lease)
    }

    fn release<'a>(&'a self, key: &'a [u8], lease: &'a LeaseToken) -> TierFuture<'a, ()> {
        (**self).release(key, lease)
    }

    fn store<'a>(&'a self, key: &'a [u8], value: &'a [u8], ttl: Duration) -> TierFuture<'a, ()> {
        (**self).store(key, value, ttl)
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> TierFuture<'a, ()> {
        (**self).remove(key)
    }

    fn subscribe(&self, listener: InvalidationListener) {
        (**self).subscribe(listener);
    }
}
