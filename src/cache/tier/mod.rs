//! A cache for a fleet (feature `tokio`): the in-process [`Cache`] in
//! front of a tier every instance shares, so a key is loaded from the
//! origin once for the whole fleet, and a new instance starts warm.
//!
//! In the outage this crate exists for, each web server added during the
//! spike started with an empty cache and sent its own misses to a database
//! that was already drowning. Single flight in one process makes one load
//! per key per server; N servers still make N. Here a read goes
//!
//! ```text
//!   local Cache (hit: nanoseconds, unchanged)
//!     └─ miss ─► local single flight (one reader per key per instance)
//!                  └─► shared tier: value? ─► yes: decode, keep locally
//!                                         └─ no: lease? ─► yes: load here, write both tiers
//!                                                       └─ no: wait for the holder's value
//!   insert / invalidate ─► both tiers, and a message telling every other
//!                          instance to drop its local copy (the backplane)
//! ```
//!
//! * **The core knows no Redis.** [`RemoteTier`] is a small byte-level
//!   trait; [`RedisTier`](crate::redis::RedisTier) (feature `redis`)
//!   implements it, with the same timeout and circuit breaker as the Redis
//!   limiters.
//! * **Values cross the network** through a [`Codec`] the user chooses
//!   (a serde-based [`Postcard`] with feature `serde`). Bytes that do not
//!   decode are a miss, counted in [`TierStats::decode_errors`]; nothing
//!   panics. A value larger than
//!   [`max_value_bytes`](TieredCacheBuilder::max_value_bytes) stays local.
//! * **One load per key for the fleet**: the instance that takes a key's
//!   lease loads it; the others poll the shared tier (2 ms doubling to
//!   25 ms) until its value is there. A lease expires by itself
//!   ([`lease`](TieredCacheBuilder::lease)), so an instance killed mid-load
//!   delays the fleet by at most the lease; a failed or cancelled load gives
//!   its lease back at once; the local cache's `load_timeout` bounds every
//!   wait.
//! * **Refresh for the fleet**: with the local cache's `refresh_after`, a
//!   shared value older than that is reloaded by one instance while the
//!   others are served the old value and pick up the new one at their own
//!   next refresh.
//! * **Invalidation across the fleet**: [`insert`](TieredCache::insert) and
//!   [`invalidate`](TieredCache::invalidate) tell every other instance to
//!   drop its copy. A message can be lost only while an instance is cut off
//!   from the backplane; each time it subscribes (the first time included)
//!   it drops its whole local tier, so the worst-case staleness is the time
//!   it was cut off, and the local time-to-live for an instance that never
//!   noticed it was (a half-open connection).
//! * **The shared tier down**: every call fails within the tier's timeout
//!   (at once while its breaker is open), and the instance loads for itself
//!   as a plain [`Cache`] would. No caller sees an error for it.
//!
//! ```no_run
//! # #[cfg(all(feature = "redis", feature = "serde"))]
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use surgeguard::cache::Cache;
//! use surgeguard::cache::tier::{BigEndian, Postcard, TieredCache};
//! use surgeguard::redis::RedisTier;
//!
//! let local: Cache<u64, String> = Cache::builder()
//!     .max_capacity(100_000)
//!     .time_to_live(Duration::from_secs(60))
//!     .load_timeout(Duration::from_secs(2))
//!     .build()?;
//! let shared = RedisTier::builder("redis://127.0.0.1:6379").prefix("shop:pages:").build().await?;
//! let pages = TieredCache::builder(local, shared)
//!     .keys(BigEndian)
//!     .values(Postcard)
//!     .remote_ttl(Duration::from_secs(600))
//!     .build()?;
//! let page = pages
//!     .get_or_try_load(&7, |id| async move { Ok::<_, std::io::Error>(format!("product {id}")) })
//!     .await?;
//! assert_eq!(page, "product 7");
//! # Ok(()) }
//! # #[cfg(not(all(feature = "redis", feature = "serde")))] fn main() {}
//! ```

mod builder;
mod codec;
mod remote;
mod stats;
mod through;

use std::borrow::Borrow;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

pub use builder::{TierBuildError, TieredCacheBuilder};
#[cfg(feature = "serde")]
pub use codec::Postcard;
pub use codec::{BigEndian, Codec, DecodeError, EncodeError, RawBytes, Utf8};
pub use remote::{
    Fetch, FetchRequest, Invalidation, InvalidationListener, LeaseToken, RemoteTier, TierError,
    TierFuture,
};
pub use stats::TierStats;

use super::{Cache, LoadError};
use stats::TierCounters;
use through::Through;

/// The in-process [`Cache`] in front of a shared [`RemoteTier`]; see the
/// [module documentation](self). Clones share both tiers.
pub struct TieredCache<K, V, S = ahash::RandomState> {
    local: Cache<K, V, S>,
    through: Arc<Through<K, V>>,
    /// What the shared tier calls with the fleet's invalidations, kept
    /// here because the tier may hold it weakly: it lives as long as a
    /// handle does.
    heard: InvalidationListener,
}

impl<K, V, S> Clone for TieredCache<K, V, S> {
    fn clone(&self) -> Self {
        TieredCache {
            local: self.local.clone(),
            through: Arc::clone(&self.through),
            heard: Arc::clone(&self.heard),
        }
    }
}

impl<K, V, S> std::fmt::Debug for TieredCache<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("settings", &self.through.settings)
            .finish_non_exhaustive()
    }
}

impl<K, V, S> TieredCache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// A builder over `local` (its capacity, time-to-live, load timeout and
    /// refresh settings are the local tier's) and the shared tier `remote`.
    pub fn builder(local: Cache<K, V, S>, remote: impl RemoteTier) -> TieredCacheBuilder<K, V, S> {
        TieredCacheBuilder::new(local, Arc::new(remote))
    }

    fn start(local: Cache<K, V, S>, through: Arc<Through<K, V>>) -> Self {
        let listening = local.clone();
        let keys = Arc::clone(&through.keys);
        let counters = Arc::clone(&through.counters);
        // The listener holds the local tier, the key codec and the
        // counters, not the remote tier, which keeps it (RedisTier
        // weakly, so a dropped cache frees its local tier even while the
        // tier lives on): no cycle outlives the last handle.
        let heard: InvalidationListener = Arc::new(move |invalidation| {
            TierCounters::bump(&counters.invalidations_heard);
            match invalidation {
                Invalidation::All => listening.invalidate_all(),
                Invalidation::Key(bytes) => match codec::decode_guarded(&*keys, bytes) {
                    Ok(key) => {
                        listening.remove(&key);
                    }
                    Err(_) => TierCounters::bump(&counters.decode_errors),
                },
            }
        });
        through.remote.subscribe(Arc::clone(&heard));
        TieredCache {
            local,
            through,
            heard,
        }
    }

    /// The local tier's value for `key`, if it holds one (no call to the
    /// shared tier).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.local.get(key)
    }

    /// `key`'s value from the local tier, else the shared tier, else from
    /// `load` (run by one instance of the fleet); see the [module
    /// documentation](self). The errors are the local cache's
    /// [`LoadError`]s: the shared tier's own failures never reach the
    /// caller.
    pub async fn get_or_try_load<E, F, Fut>(&self, key: &K, load: F) -> Result<V, LoadError<E>>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let through = Arc::clone(&self.through);
        self.local
            .get_or_try_load_async(key, move |key| through.load(key, load))
            .await
    }

    /// [`get_or_try_load`](Self::get_or_try_load) for a loader that cannot
    /// fail.
    pub async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<V, LoadError<Infallible>>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        self.get_or_try_load(key, move |key| {
            let loading = load(key);
            async move { Ok::<V, Infallible>(loading.await) }
        })
        .await
    }

    /// Stores `value` in both tiers and tells every other instance to drop
    /// its local copy. The local tier is updated whatever happens; an error
    /// says the shared tier (and so the fleet) did not hear of it.
    pub async fn insert(&self, key: K, value: V) -> Result<(), TierError> {
        let mut encoded_key = Vec::new();
        let encoded = self.through.keys.encode(&key, &mut encoded_key);
        let bytes = self.through.encode_value(&value);
        self.local.insert(key, value);
        encoded.map_err(|error| TierError::Refused(error.to_string()))?;
        let result = match bytes {
            Some(bytes) => {
                self.through
                    .remote
                    .store(&encoded_key, &bytes, self.through.settings.remote_ttl)
                    .await
            }
            // Not shareable: the fleet must still drop what it holds.
            None => self.through.remote.remove(&encoded_key).await,
        };
        self.count_failure(result)
    }

    /// Removes `key` from both tiers and tells every other instance to drop
    /// its local copy. The local tier is cleared whatever happens; an error
    /// says the shared tier (and so the fleet) did not hear of it.
    pub async fn invalidate(&self, key: &K) -> Result<(), TierError> {
        self.local.remove(key);
        let mut encoded_key = Vec::new();
        self.through
            .keys
            .encode(key, &mut encoded_key)
            .map_err(|error| TierError::Refused(error.to_string()))?;
        let result = self.through.remote.remove(&encoded_key).await;
        // A read here between the first removal and the shared tier's may
        // have fetched the old value again and kept it; this instance does
        // not hear its own announcement, so drop the key once more.
        self.local.remove(key);
        self.count_failure(result)
    }

    fn count_failure(&self, result: Result<(), TierError>) -> Result<(), TierError> {
        if result.is_err() {
            TierCounters::bump(&self.through.counters.remote_errors);
        }
        result
    }

    /// The local tier.
    pub fn local(&self) -> &Cache<K, V, S> {
        &self.local
    }

    /// What this instance did with the shared tier.
    pub fn stats(&self) -> TierStats {
        self.through.counters.snapshot()
    }
}
