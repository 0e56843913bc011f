//! A local miss, read through the shared tier: the value, or the lease and
//! the loader, or a wait for the instance that holds the lease.
//!
//! This runs as the in-process cache's loader, inside its single flight, so
//! each instance sends at most one reader per key to the shared tier, and
//! the whole fleet at most one to the origin:
//!
//! ```text
//!   fetch ─► Value ─────────────► decode ─► the value (a decode error: load and store over it)
//!         ├► Leased ─► loader ─► fill (only while the lease is held) ─► the value
//!         ├► Stale ──────────────► the stale value (the holder reloads for the fleet)
//!         └► Busy ─► sleep (2 ms doubling to 25 ms, never past the lease) ─► fetch again
//!   any tier error ─► loader here, as if the tier were absent
//! ```
//!
//! Nobody waits forever: a lease expires by itself (its holder may die),
//! the next fetch after it takes the lease over, and the local cache's
//! `load_timeout` bounds the whole wait. A holder that fails, panics or is
//! cancelled gives its lease back at once (the guard below), so the fleet's
//! next reader loads without waiting out the lease.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::codec::{decode_guarded, Codec};
use super::remote::{Fetch, FetchRequest, LeaseToken, RemoteTier, TierError};
use super::stats::TierCounters;

/// The first wait for another instance's load: about one loopback round
/// trip plus a fast origin call, so a short load costs one extra poll.
const FIRST_POLL: Duration = Duration::from_millis(2);
/// The longest wait between polls: the polling traffic of a waiting
/// instance stays at most 40 calls a second per key, and a waiter learns of
/// a value at most this late.
const MAX_POLL: Duration = Duration::from_millis(25);

/// Validated settings of the shared tier.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TierSettings {
    pub(crate) remote_ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) fresh_for: Option<Duration>,
    pub(crate) max_value_bytes: usize,
}

/// What every handle of one tiered cache shares.
pub(crate) struct Through<K, V> {
    pub(crate) remote: Arc<dyn RemoteTier>,
    pub(crate) keys: Arc<dyn Codec<K>>,
    pub(crate) values: Box<dyn Codec<V>>,
    pub(crate) settings: TierSettings,
    pub(crate) counters: Arc<TierCounters>,
}

impl<K: 'static, V: 'static> Through<K, V> {
    /// `key`'s value from the shared tier, or from `load` (here, or on the
    /// instance holding the lease).
    pub(crate) async fn load<E, F, Fut>(self: Arc<Self>, key: K, load: F) -> Result<V, E>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let mut encoded = Vec::new();
        if self.keys.encode(&key, &mut encoded).is_err() {
            TierCounters::bump(&self.counters.local_loads);
            return load(key).await;
        }
        let want = FetchRequest {
            lease: self.settings.lease,
            fresh_for: self.settings.fresh_for,
        };
        let mut poll = FIRST_POLL;
        let mut waited = false;
        loop {
            let fetched = match self.remote.fetch(&encoded, want).await {
                Ok(fetched) => fetched,
                Err(_) => {
                    TierCounters::bump(&self.counters.remote_errors);
                    TierCounters::bump(&self.counters.local_loads);
                    return load(key).await;
                }
            };
            match fetched {
                Fetch::Value(bytes) => match self.read_shared(&bytes) {
                    Some(value) => {
                        TierCounters::bump(&self.counters.remote_hits);
                        return Ok(value);
                    }
                    None => return self.load_over_undecodable(key, &encoded, load).await,
                },
                Fetch::Stale(bytes) => {
                    if let Some(value) = self.read_shared(&bytes) {
                        TierCounters::bump(&self.counters.remote_stale);
                        return Ok(value);
                    }
                    // The holder is writing a new value over it: wait for
                    // that one, as for a missing value.
                }
                Fetch::Leased(token) => {
                    TierCounters::bump(&self.counters.leased_loads);
                    if waited {
                        TierCounters::bump(&self.counters.lease_takeovers);
                    }
                    return self.load_leased(key, encoded, token, load).await;
                }
                Fetch::Busy { lease_left } => {
                    if !waited {
                        waited = true;
                        TierCounters::bump(&self.counters.fleet_waits);
                    }
                    // Never sleep past the lease's end: the takeover is due.
                    let nap = poll.min(lease_left.max(Duration::from_millis(1)));
                    tokio::time::sleep(nap).await;
                    poll = (poll * 2).min(MAX_POLL);
                    continue;
                }
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(MAX_POLL);
        }
    }

    /// Runs the loader holding `token`, and writes what it returns while
    /// the lease still holds.
    async fn load_leased<E, F, Fut>(
        &self,
        key: K,
        encoded: Vec<u8>,
        token: LeaseToken,
        load: F,
    ) -> Result<V, E>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let mut lease = HeldLease {
            remote: Arc::clone(&self.remote),
            key: encoded,
            token: Some(token),
        };
        let value = match load(key).await {
            Ok(value) => value,
            Err(error) => {
                // Given back before the error reaches anyone, so the next
                // reader (here or elsewhere) finds the key free.
                lease.give_back().await;
                return Err(error);
            }
        };
        let Some(bytes) = self.encode_value(&value) else {
            lease.give_back().await;
            return Ok(value);
        };
        match lease.fill(&bytes, self.settings.remote_ttl).await {
            Ok(true) => Ok(value),
            Ok(false) => Ok(self.newer_than_ours(&lease.key, value).await),
            Err(_) => {
                TierCounters::bump(&self.counters.remote_errors);
                Ok(value)
            }
        }
    }

    /// The lease was lost while loading: an `insert` or `invalidate`
    /// happened meanwhile (or the lease expired and another instance
    /// loaded). What the tier holds now is newer than what was loaded, and
    /// wins, as an insert during a local load does.
    async fn newer_than_ours(&self, key: &[u8], ours: V) -> V {
        let want = FetchRequest {
            lease: self.settings.lease,
            fresh_for: None,
        };
        match self.remote.fetch(key, want).await {
            Ok(Fetch::Value(bytes) | Fetch::Stale(bytes)) => {
                decode_guarded(&*self.values, &bytes).unwrap_or(ours)
            }
            // Invalidated: nothing newer to serve. A lease taken by this
            // look is not wanted.
            Ok(Fetch::Leased(token)) => {
                let _ = self.remote.release(key, &token).await;
                ours
            }
            Ok(Fetch::Busy { .. }) | Err(_) => ours,
        }
    }

    /// The stored bytes do not decode (another version of the service, a
    /// stray writer): load here and store over them.
    async fn load_over_undecodable<E, F, Fut>(
        &self,
        key: K,
        encoded: &[u8],
        load: F,
    ) -> Result<V, E>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        TierCounters::bump(&self.counters.local_loads);
        let value = load(key).await?;
        if let Some(bytes) = self.encode_value(&value) {
            let stored = self
                .remote
                .store(encoded, &bytes, self.settings.remote_ttl)
                .await;
            if stored.is_err() {
                TierCounters::bump(&self.counters.remote_errors);
            }
        }
        Ok(value)
    }

    /// The value in bytes someone stored in the shared tier, or `None` (a
    /// miss, counted) when they are larger than this cache shares (another
    /// writer's limit, or not this cache at all) or do not decode.
    fn read_shared(&self, bytes: &[u8]) -> Option<V> {
        if bytes.len() > self.settings.max_value_bytes {
            TierCounters::bump(&self.counters.too_large);
            return None;
        }
        match decode_guarded(&*self.values, bytes) {
            Ok(value) => Some(value),
            Err(_) => {
                TierCounters::bump(&self.counters.decode_errors);
                None
            }
        }
    }

    /// `value`'s bytes, or `None` when they are not to be shared (too
    /// large, or the codec refused).
    pub(crate) fn encode_value(&self, value: &V) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        if self.values.encode(value, &mut bytes).is_err() {
            return None;
        }
        if bytes.len() > self.settings.max_value_bytes {
            TierCounters::bump(&self.counters.too_large);
            return None;
        }
        Some(bytes)
    }
}

/// A lease this instance holds while its loader runs and its value is
/// written. Dropped before [`fill`](Self::fill) or
/// [`give_back`](Self::give_back) returned (the loader panicked, or the
/// load was cancelled by its timeout), it gives the lease back from a task
/// of its own, so the fleet's next reader need not wait out the lease.
struct HeldLease {
    remote: Arc<dyn RemoteTier>,
    key: Vec<u8>,
    token: Option<LeaseToken>,
}

impl HeldLease {
    /// Writes `value` while the lease holds (which gives it back). The
    /// guard stays armed until the tier answers: a load cancelled during
    /// the call (its timeout) still gives the lease back, which is harmless
    /// if the write landed (the token no longer holds anything).
    async fn fill(&mut self, value: &[u8], ttl: Duration) -> Result<bool, TierError> {
        let Some(token) = self.token.clone() else {
            return Ok(false);
        };
        let filled = self.remote.fill(&self.key, value, ttl, &token).await;
        self.token = None;
        filled
    }

    async fn give_back(mut self) {
        if let Some(token) = self.token.clone() {
            // Best effort: a lost release only makes the next reader wait
            // for the lease to expire. Armed until it returns, as above.
            let _ = self.remote.release(&self.key, &token).await;
            self.token = None;
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let remote = Arc::clone(&self.remote);
        let key = std::mem::take(&mut self.key);
        runtime.spawn(async move {
            let _ = remote.release(&key, &token).await;
        });
    }
}
