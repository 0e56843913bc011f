//! What the blocking and async loading methods share: the first step of a
//! loading call, turning a flight's outcome into a caller's result, and the
//! guard that guarantees every flight ends.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::flight::{Flight, Outcome};
use super::LoadError;
use crate::cache::shard::{Lookup, Role};
use crate::cache::stats::LoadCounters;
use crate::cache::Cache;

/// How many times a call retries after joining loads that ended without a
/// result it can use, before giving up with [`LoadError::Abandoned`].
const MAX_RETRIES: u32 = 3;

/// The first step of a loading call.
pub(super) enum Begin<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// A value to return now; `reload` asks the caller to start a reload
    /// behind it.
    Value {
        /// The value to return.
        value: V,
        /// Start a background reload.
        reload: bool,
    },
    /// Wait for another caller's load.
    Wait {
        /// The flight to wait for.
        flight: Arc<Flight<K, V>>,
        /// Stale value to fall back on.
        fallback: Option<V>,
        /// When a blocking wait gives up (the load timeout after joining),
        /// nanoseconds on the cache's clock.
        deadline: Option<u64>,
    },
    /// Run the load: the caller registered the flight.
    Lead {
        /// The flight to finish.
        guard: FlightGuard<K, V, S>,
        /// Stale value to fall back on.
        fallback: Option<V>,
    },
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Looks `key` up for a loading call: returns a value, or the flight to
    /// wait for or lead. A `blocking` caller would run the load on its own
    /// thread.
    #[inline]
    pub(super) fn begin_load(&self, hash: u64, key: &K, blocking: bool) -> Begin<K, V, S> {
        let shard = self.shard_for(hash);
        let config = &self.inner.config;
        let counters = &self.inner.loads;
        match shard.lookup_for_load(hash, key, config) {
            Lookup::Fresh(value) => {
                return Begin::Value {
                    value,
                    reload: false,
                }
            }
            Lookup::Serve {
                value,
                stale,
                reload,
            } => {
                if stale {
                    LoadCounters::bump(&counters.stale_served);
                }
                return Begin::Value { value, reload };
            }
            Lookup::Absent => {}
        }
        // Only a miss pays for finding out which thread this is.
        let leader = blocking.then(|| std::thread::current().id());
        match shard.join_or_lead(hash, key, leader, config) {
            Role::Ready(value) => Begin::Value {
                value,
                reload: false,
            },
            Role::Wait { flight, fallback } => {
                // The wait's deadline counts from joining, read before the
                // join is counted, so that whoever sees the count and then
                // moves the clock moves it past the deadline's start.
                let deadline = config.loading.load_timeout.map(|timeout| {
                    config
                        .now()
                        .saturating_add(crate::clock::duration_to_nanos(timeout))
                });
                LoadCounters::bump(&counters.coalesced);
                Begin::Wait {
                    flight,
                    fallback,
                    deadline,
                }
            }
            Role::Lead { flight, fallback } => {
                LoadCounters::bump(&counters.loads);
                Begin::Lead {
                    guard: FlightGuard::new(self.clone(), flight, false),
                    fallback,
                }
            }
        }
    }

    /// Registers a background reload of `key`, if one is due, none runs and
    /// a background slot is free. The returned guard holds the slot.
    pub(super) fn begin_reload(&self, hash: u64, key: &K) -> Option<FlightGuard<K, V, S>> {
        let running = &self.inner.background_reloads;
        let most = self.inner.config.loading.background_reloads;
        running
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |now| {
                (now < most).then_some(now + 1)
            })
            .ok()?;
        let registered = self
            .shard_for(hash)
            .begin_reload(hash, key, &self.inner.config);
        let Some(flight) = registered else {
            running.fetch_sub(1, Ordering::Release);
            return None;
        };
        LoadCounters::bump(&self.inner.loads.refreshes);
        LoadCounters::bump(&self.inner.loads.loads);
        Some(FlightGuard::new(self.clone(), flight, true))
    }

    /// Turns the outcome of a flight this call waited for into its result;
    /// `None` asks the caller to start over (the flight ended without a
    /// result for this call). A missing outcome means the wait timed out.
    pub(super) fn settle_wait<E: Send + Sync + 'static>(
        &self,
        outcome: Option<Outcome<V>>,
        fallback: Option<V>,
        retries: &mut u32,
    ) -> Option<Result<V, LoadError<E>>> {
        let error = match outcome {
            Some(Outcome::Loaded(value)) => return Some(Ok(value)),
            Some(Outcome::Failed(erased)) => match erased.downcast::<E>() {
                Ok(error) => LoadError::Failed(error),
                Err(_) => return self.retry(retries, fallback),
            },
            Some(Outcome::Panicked) => LoadError::Panicked,
            Some(Outcome::TimedOut) | None => LoadError::TimedOut,
            Some(Outcome::Abandoned) => return self.retry(retries, fallback),
        };
        Some(self.fall_back(error, fallback))
    }

    /// Like [`settle_wait`](Self::settle_wait) for the caller that started
    /// the flight: its loader is spent, so there is no starting over.
    #[cfg(feature = "tokio")]
    pub(super) fn settle_own<E: Send + Sync + 'static>(
        &self,
        outcome: Outcome<V>,
        fallback: Option<V>,
    ) -> Result<V, LoadError<E>> {
        let mut retries = MAX_RETRIES;
        self.settle_wait(Some(outcome), fallback, &mut retries)
            .unwrap_or(Err(LoadError::Abandoned))
    }

    /// Starts over, unless this call already has `MAX_RETRIES` times: then
    /// the stale value within stale-if-error, else `Abandoned`.
    fn retry<E>(&self, retries: &mut u32, fallback: Option<V>) -> Option<Result<V, LoadError<E>>> {
        *retries += 1;
        if *retries < MAX_RETRIES {
            None
        } else {
            Some(self.fall_back(LoadError::Abandoned, fallback))
        }
    }

    /// A failed load's result for its caller: the stale value within
    /// stale-if-error, else the error.
    pub(super) fn fall_back<E>(
        &self,
        error: LoadError<E>,
        fallback: Option<V>,
    ) -> Result<V, LoadError<E>> {
        match fallback {
            Some(stale) => {
                LoadCounters::bump(&self.inner.loads.stale_served);
                Ok(stale)
            }
            None => Err(error),
        }
    }
}

/// Owns a registered flight until it ends. [`finish`](Self::finish) stores
/// the result and releases every waiter; if the guard is dropped first (the
/// loader panicked and unwound through it, or its thread or task never ran or
/// was dropped) it finishes the flight as `Panicked` or `Abandoned`, so no
/// waiter is left behind and the key is free. A background reload's guard
/// also holds its background slot until then.
pub(super) struct FlightGuard<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    cache: Cache<K, V, S>,
    flight: Arc<Flight<K, V>>,
    ended: bool,
    holds_background_slot: bool,
    /// When the load began, nanoseconds on the cache's clock.
    started: u64,
}

impl<K, V, S> FlightGuard<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn new(cache: Cache<K, V, S>, flight: Arc<Flight<K, V>>, holds_background_slot: bool) -> Self {
        let started = cache.inner.config.now();
        FlightGuard {
            cache,
            flight,
            ended: false,
            holds_background_slot,
            started,
        }
    }

    /// The key being loaded.
    pub(super) fn key(&self) -> &K {
        self.flight.key()
    }

    /// The flight, for the leader to wait on like any waiter.
    #[cfg(feature = "tokio")]
    pub(super) fn flight(&self) -> Arc<Flight<K, V>> {
        Arc::clone(&self.flight)
    }

    /// Ends the flight with `outcome`: stores a loaded value (unless an
    /// explicit write superseded the flight), or backs off the entry's next
    /// reload after a failure, then releases every waiter.
    pub(super) fn finish(mut self, outcome: Outcome<V>) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Outcome<V>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let flight = &self.flight;
        let inner = &self.cache.inner;
        let config = &inner.config;
        inner
            .loads
            .load_nanos
            .fetch_add(config.now().saturating_sub(self.started), Ordering::Relaxed);
        let loaded = match &outcome {
            Outcome::Loaded(value) => {
                let weight = config.weigh(flight.key(), value);
                let deadlines = config.deadlines(value, config.time_to_live);
                Some((value.clone(), weight, deadlines))
            }
            Outcome::Abandoned => None,
            Outcome::Failed(_) | Outcome::Panicked | Outcome::TimedOut => {
                LoadCounters::bump(&inner.loads.load_errors);
                None
            }
        };
        let displaced = self
            .cache
            .shard_for(flight.hash())
            .finish_load(flight, loaded, config);
        drop(displaced);
        flight.complete(outcome);
    }
}

impl<K, V, S> Drop for FlightGuard<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            Outcome::Panicked
        } else {
            Outcome::Abandoned
        };
        self.end(outcome);
        if self.holds_background_slot {
            self.cache
                .inner
                .background_reloads
                .fetch_sub(1, Ordering::Release);
        }
    }
}
