//! The shard's side of loading: classifying a stored entry for a loading
//! read, registering and finding flights, and storing a load's result.
//!
//! Every decision that must be atomic (is there a value? a flight? may this
//! caller lead?) is taken under the shard's write lock, so exactly one
//! caller registers the flight for a key; the load itself runs with no lock
//! held. A flight's result is stored only if the flight is still registered
//! when it ends: an insert or remove in between supersedes it.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::thread::ThreadId;

use super::{Shard, State};
use crate::cache::expiry::Deadlines;
use crate::cache::load::{Flight, Freshness, LoadConfig};
use crate::cache::Config;

/// What a loading read found without waiting.
pub(crate) enum Lookup<V> {
    /// A fresh value.
    Fresh(V),
    /// A value to return at once: due for a refresh, or stale within its
    /// window. `reload` says a reload is due and none is in flight.
    Serve {
        /// The stored value.
        value: V,
        /// Past its time-to-live.
        stale: bool,
        /// Start a reload behind it.
        reload: bool,
    },
    /// Nothing to return at once: the caller must load or wait (the write
    /// lock then tells which, and finds any stale-if-error fallback).
    Absent,
}

/// A caller's part in a load, decided under the write lock.
pub(crate) enum Role<K, V> {
    /// A value appeared meanwhile (someone else's load finished).
    Ready(V),
    /// Another caller's load is in flight: wait for it.
    Wait {
        /// The flight to wait for.
        flight: Arc<Flight<K, V>>,
        /// Stale value to fall back on if it fails.
        fallback: Option<V>,
    },
    /// This caller registered the flight and must run the load.
    Lead {
        /// The flight to complete.
        flight: Arc<Flight<K, V>>,
        /// Stale value to fall back on if it fails.
        fallback: Option<V>,
    },
}

impl<K: Hash + Eq + Clone, V: Clone> Shard<K, V> {
    /// The loading counterpart of `get`: under the read lock, classifies the
    /// stored entry (counting a hit or a miss).
    #[inline]
    pub(crate) fn lookup_for_load<S>(
        &self,
        hash: u64,
        key: &K,
        config: &Config<K, V, S>,
    ) -> Lookup<V> {
        let state = self.state.read();
        let Some(&index) = state.find(hash, key) else {
            drop(state);
            self.lookups.miss();
            return Lookup::Absent;
        };
        let freshness = state.freshness(index, config);
        let slot = &state.slots[index as usize];
        let lookup = match freshness {
            Freshness::Fresh => Lookup::Fresh(slot.value.clone()),
            Freshness::RefreshDue => Lookup::Serve {
                value: slot.value.clone(),
                stale: false,
                reload: !state.in_flight(hash, key),
            },
            Freshness::ServeStale { reload } => Lookup::Serve {
                value: slot.value.clone(),
                stale: true,
                reload: reload && !state.in_flight(hash, key),
            },
            Freshness::StaleIfError | Freshness::Expired => Lookup::Absent,
        };
        if matches!(lookup, Lookup::Absent) {
            drop(state);
            self.lookups.miss();
        } else {
            slot.meta.record_hit();
            drop(state);
            self.lookups.hit();
        }
        lookup
    }

    /// Under the write lock: returns a value that appeared since the lookup,
    /// or joins the key's flight, or registers a new one for the caller to
    /// lead (`leader`: the thread that will run it, for a blocking load).
    pub(crate) fn join_or_lead<S>(
        &self,
        hash: u64,
        key: &K,
        leader: Option<ThreadId>,
        config: &Config<K, V, S>,
    ) -> Role<K, V> {
        let mut state = self.state.write();
        let mut fallback = None;
        if let Some(&index) = state.find(hash, key) {
            let value = &state.slots[index as usize].value;
            match state.freshness(index, config) {
                Freshness::Fresh | Freshness::RefreshDue | Freshness::ServeStale { .. } => {
                    return Role::Ready(value.clone())
                }
                Freshness::StaleIfError => fallback = Some(value.clone()),
                Freshness::Expired => {}
            }
        }
        if let Some(flight) = state.flight(hash, key) {
            return Role::Wait {
                flight: Arc::clone(flight),
                fallback,
            };
        }
        let flight = state.register(hash, key, leader);
        Role::Lead { flight, fallback }
    }

    /// Under the write lock: registers a background reload of `key` if its
    /// stored entry still wants one and none is in flight.
    pub(crate) fn begin_reload<S>(
        &self,
        hash: u64,
        key: &K,
        config: &Config<K, V, S>,
    ) -> Option<Arc<Flight<K, V>>> {
        let mut state = self.state.write();
        let &index = state.find(hash, key)?;
        let due = matches!(
            state.freshness(index, config),
            Freshness::RefreshDue | Freshness::ServeStale { reload: true }
        );
        if !due || state.in_flight(hash, key) {
            return None;
        }
        Some(state.register(hash, key, None))
    }

    /// Ends `flight`'s hold on its key. With `loaded` (value, weight,
    /// deadlines) the value is stored, unless an explicit write superseded
    /// the flight; without, a stored entry backs off its next reload. Returns
    /// what storing displaced, to drop outside the lock.
    pub(crate) fn finish_load<S: BuildHasher>(
        &self,
        flight: &Arc<Flight<K, V>>,
        loaded: Option<(V, u32, Deadlines)>,
        config: &Config<K, V, S>,
    ) -> Option<V> {
        let mut state = self.state.write();
        let hash = flight.hash();
        let Ok(registered) = state
            .flights
            .find_entry(hash, |other| Arc::ptr_eq(other, flight))
        else {
            return None;
        };
        registered.remove();
        let displaced = match loaded {
            Some((value, weight, deadlines)) => state.store(
                self.capacity,
                hash,
                flight.key().clone(),
                value,
                weight,
                deadlines,
                config,
            ),
            None => {
                if let Some(&index) = state.find(hash, flight.key()) {
                    let retry = LoadConfig::<V>::retry_at(config.now());
                    if let Some(expiry) = &mut state.expiry {
                        expiry.set_refresh_at(index, retry);
                    }
                }
                None
            }
        };
        self.publish_size(&state);
        displaced
    }
}

impl<K: Hash + Eq + Clone, V> State<K, V> {
    /// Where the entry at `index` stands now; records the access (for
    /// time-to-idle) when it is still fresh.
    #[inline]
    fn freshness<S>(&self, index: u32, config: &Config<K, V, S>) -> Freshness {
        match &self.expiry {
            Some(expiry) if expiry.may_expire(index) => {
                let now = config.now();
                let freshness = Freshness::of(expiry.deadlines(index), now, &config.loading);
                if matches!(freshness, Freshness::Fresh | Freshness::RefreshDue) {
                    expiry.record_access(index, now);
                }
                freshness
            }
            _ => Freshness::Fresh,
        }
    }

    fn flight<Q>(&self, hash: u64, key: &Q) -> Option<&Arc<Flight<K, V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.flights.is_empty() {
            return None;
        }
        self.flights
            .find(hash, |flight| flight.key().borrow() == key)
    }

    fn in_flight(&self, hash: u64, key: &K) -> bool {
        self.flight(hash, key).is_some()
    }

    fn register(&mut self, hash: u64, key: &K, leader: Option<ThreadId>) -> Arc<Flight<K, V>>
    where
        V: Clone,
    {
        let flight = Arc::new(Flight::new(key.clone(), hash, leader));
        self.flights
            .insert_unique(hash, Arc::clone(&flight), |other| other.hash());
        flight
    }
}
