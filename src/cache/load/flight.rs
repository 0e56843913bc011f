//! One in-flight load of one key, and the callers waiting for it.
//!
//! A shard registers a `Flight` under its write lock when the first caller
//! misses a key (or when a read starts a background reload); later callers for
//! the same key find it there and wait instead of calling the origin
//! themselves. Whoever runs the load publishes one [`Outcome`] with
//! [`Flight::complete`]; every waiter, blocking or async, receives a clone.
//!
//! The flight knows nothing about shards or runtimes: blocking waiters park on
//! a condition variable, async waiters leave a `Waker`. Completing twice is
//! harmless (the first outcome wins), which is what lets a drop guard finish
//! a flight whose loader panicked or whose task was dropped, so that nobody
//! waits forever.
//!
//! Under `cfg(surgeguard_loom)` the mutex and condition variable are loom's,
//! and the model in this file's tests checks the register / wait / complete /
//! supersede protocol the shard follows. (A crate-specific name, not the
//! customary `cfg(loom)`: some dev-dependencies switch to loom types under
//! `cfg(loom)` without depending on loom, and would not build.) Run it with
//! `RUSTFLAGS="--cfg surgeguard_loom" cargo test --release --lib loom_model`.

use std::any::Any;
use std::fmt;
use std::task::Waker;
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Duration;

#[cfg(surgeguard_loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(surgeguard_loom))]
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::clock::Clock;

/// How long a blocking waiter with a timeout sleeps between looks at the
/// [`Clock`]: the timeout is measured on the cache's clock (a manual clock in
/// tests), so the waiter cannot simply sleep until it. Only waits that have a
/// timeout wake this way, and only while a load is running.
const TIMEOUT_POLL: Duration = Duration::from_millis(20);

/// What a finished load produced, as every waiter receives it.
pub(crate) enum Outcome<V> {
    /// The loader returned a value.
    Loaded(V),
    /// The loader returned an error: an `Arc<E>` for the leader's error type
    /// `E`, erased so that one flight type serves every call site.
    Failed(std::sync::Arc<dyn Any + Send + Sync>),
    /// The loader panicked.
    Panicked,
    /// The load ran past the load timeout and was dropped (async loads).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    TimedOut,
    /// The load never ran to an end (its thread could not start, or its task
    /// was dropped with the runtime): waiters should try again themselves.
    Abandoned,
}

impl<V: Clone> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Outcome::Loaded(value) => Outcome::Loaded(value.clone()),
            Outcome::Failed(error) => Outcome::Failed(error.clone()),
            Outcome::Panicked => Outcome::Panicked,
            Outcome::TimedOut => Outcome::TimedOut,
            Outcome::Abandoned => Outcome::Abandoned,
        }
    }
}

impl<V> fmt::Debug for Outcome<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Loaded(_) => "Loaded",
            Outcome::Failed(_) => "Failed",
            Outcome::Panicked => "Panicked",
            Outcome::TimedOut => "TimedOut",
            Outcome::Abandoned => "Abandoned",
        })
    }
}

/// A load of `key` in progress.
pub(crate) struct Flight<K, V> {
    key: K,
    hash: u64,
    /// The thread running the load, for a blocking load: a loader that asks
    /// for its own key on that thread would wait for itself.
    leader: Option<ThreadId>,
    state: Mutex<FlightState<V>>,
    finished: Condvar,
}

struct FlightState<V> {
    outcome: Option<Outcome<V>>,
    /// Async waiters' wakers; a waiter keeps its index so that re-polling
    /// replaces its waker instead of adding another.
    wakers: Vec<Option<Waker>>,
}

impl<K, V> Flight<K, V> {
    pub(crate) fn new(key: K, hash: u64, leader: Option<ThreadId>) -> Self {
        Flight {
            key,
            hash,
            leader,
            state: Mutex::new(FlightState {
                outcome: None,
                wakers: Vec::new(),
            }),
            finished: Condvar::new(),
        }
    }

    pub(crate) fn key(&self) -> &K {
        &self.key
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// Whether the current thread is running this flight's load.
    pub(crate) fn led_by_this_thread(&self) -> bool {
        self.leader == Some(std::thread::current().id())
    }

    /// Publishes `outcome` to every waiter. Returns `false` (and changes
    /// nothing) if the flight was already complete.
    pub(crate) fn complete(&self, outcome: Outcome<V>) -> bool {
        let mut state = self.lock();
        if state.outcome.is_some() {
            return false;
        }
        state.outcome = Some(outcome);
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        self.finished.notify_all();
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
        true
    }

    /// An async waiter gave up: forget its waker.
    #[cfg(feature = "tokio")]
    pub(crate) fn forget_waiter(&self, slot: usize) {
        let mut state = self.lock();
        if let Some(entry) = state.wakers.get_mut(slot) {
            *entry = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, FlightState<V>> {
        // Nothing panics while holding this lock (no user code runs under
        // it), so a poisoned lock still holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K, V: Clone> Flight<K, V> {
    /// Blocks until the flight completes, or until `clock` reaches `deadline`
    /// (nanoseconds) if one is given; `None` means the wait timed out.
    pub(crate) fn wait(&self, deadline: Option<(&dyn Clock, u64)>) -> Option<Outcome<V>> {
        let mut state = self.lock();
        loop {
            if let Some(outcome) = &state.outcome {
                return Some(outcome.clone());
            }
            state = match deadline {
                None => self
                    .finished
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some((clock, deadline)) => {
                    let now = clock.now().as_nanos();
                    if now >= deadline {
                        return None;
                    }
                    let left = Duration::from_nanos(deadline - now).min(TIMEOUT_POLL);
                    match self.finished.wait_timeout(state, left) {
                        Ok((state, _)) => state,
                        Err(poisoned) => poisoned.into_inner().0,
                    }
                }
            };
        }
    }

    /// The async counterpart of [`wait`](Self::wait): ready with the outcome
    /// once the flight completes. `slot` is the caller's place in the waker
    /// list, kept between polls.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_wait(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Option<usize>,
    ) -> Poll<Outcome<V>> {
        let mut state = self.lock();
        if let Some(outcome) = &state.outcome {
            return Poll::Ready(outcome.clone());
        }
        match *slot {
            Some(index) => match &mut state.wakers[index] {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            None => {
                *slot = Some(state.wakers.len());
                state.wakers.push(Some(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl<K, V> fmt::Debug for Flight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flight").field("hash", &self.hash).finish()
    }
}

#[cfg(all(test, not(surgeguard_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    #[cfg(feature = "tokio")]
    use std::task::{Context, Poll};

    #[test]
    fn every_waiter_gets_the_one_outcome() {
        let flight = Arc::new(Flight::<u32, u32>::new(1, 7, None));
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let flight = Arc::clone(&flight);
                std::thread::spawn(move || flight.wait(None))
            })
            .collect();
        assert!(flight.complete(Outcome::Loaded(42)));
        assert!(!flight.complete(Outcome::Panicked), "first outcome wins");
        for waiter in waiters {
            assert!(matches!(waiter.join().unwrap(), Some(Outcome::Loaded(42))));
        }
    }

    #[test]
    fn a_timed_wait_ends_when_the_clock_passes_its_deadline() {
        let clock = ManualClock::new();
        let flight = Arc::new(Flight::<u32, u32>::new(1, 7, None));
        let waiter = {
            let (flight, clock) = (Arc::clone(&flight), clock.clone());
            std::thread::spawn(move || flight.wait(Some((&clock, 1_000))))
        };
        clock.advance(Duration::from_micros(2));
        assert!(waiter.join().unwrap().is_none());
        // The flight itself is unaffected.
        assert!(flight.complete(Outcome::TimedOut));
    }

    #[test]
    #[cfg(feature = "tokio")]
    fn async_waiters_are_woken() {
        use std::task::Wake;
        struct Flag(std::sync::atomic::AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        let flight = Flight::<u32, u32>::new(1, 7, None);
        let mut slot = None;
        assert!(flight.poll_wait(&mut cx, &mut slot).is_pending());
        assert!(flight.poll_wait(&mut cx, &mut slot).is_pending());
        assert_eq!(slot, Some(0), "re-polling reuses the slot");
        flight.complete(Outcome::Loaded(5));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(
            flight.poll_wait(&mut cx, &mut slot),
            Poll::Ready(Outcome::Loaded(5))
        ));
    }
}

/// A loom model of the protocol the shard runs around a flight: the shard's
/// lock is a mutex over "the stored value and the registered flight".
#[cfg(all(test, surgeguard_loom))]
mod loom_model {
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;

    #[derive(Default)]
    struct Slot {
        value: Option<u32>,
        flight: Option<Arc<Flight<u32, u32>>>,
        /// Loader calls made by each flight, by flight number.
        flights_started: usize,
    }

    struct Model {
        shard: loom::sync::Mutex<Slot>,
        loader_calls: AtomicUsize,
    }

    enum Role {
        Ready(u32),
        Wait(Arc<Flight<u32, u32>>),
        Lead(Arc<Flight<u32, u32>>),
    }

    /// get-or-load: the value, or the outcome of the flight it joined or led.
    fn get_or_load(model: &Model, loaded: u32, fail: bool) -> Result<u32, ()> {
        let role = {
            let mut slot = model.shard.lock().unwrap();
            if let Some(value) = slot.value {
                Role::Ready(value)
            } else if let Some(flight) = &slot.flight {
                Role::Wait(Arc::clone(flight))
            } else {
                let flight = Arc::new(Flight::new(1, 1, None));
                slot.flight = Some(Arc::clone(&flight));
                slot.flights_started += 1;
                Role::Lead(flight)
            }
        };
        match role {
            Role::Ready(value) => Ok(value),
            Role::Wait(flight) => match flight.wait(None) {
                Some(Outcome::Loaded(value)) => Ok(value),
                Some(Outcome::Failed(_)) => Err(()),
                other => panic!("unexpected outcome {other:?}"),
            },
            Role::Lead(flight) => {
                model.loader_calls.fetch_add(1, Ordering::SeqCst);
                let outcome = if fail {
                    Outcome::Failed(std::sync::Arc::new(()))
                } else {
                    Outcome::Loaded(loaded)
                };
                {
                    let mut slot = model.shard.lock().unwrap();
                    let registered = slot
                        .flight
                        .as_ref()
                        .is_some_and(|current| Arc::ptr_eq(current, &flight));
                    if registered {
                        slot.flight = None;
                        if let Outcome::Loaded(value) = outcome {
                            slot.value = Some(value);
                        }
                    }
                }
                flight.complete(outcome.clone());
                match outcome {
                    Outcome::Loaded(value) => Ok(value),
                    _ => Err(()),
                }
            }
        }
    }

    /// An explicit write supersedes any flight: its result is not stored.
    fn insert(model: &Model, value: u32) {
        let mut slot = model.shard.lock().unwrap();
        slot.flight = None;
        slot.value = Some(value);
    }

    fn remove(model: &Model) {
        let mut slot = model.shard.lock().unwrap();
        slot.flight = None;
        slot.value = None;
    }

    fn model() -> Arc<Model> {
        Arc::new(Model {
            shard: loom::sync::Mutex::new(Slot::default()),
            loader_calls: AtomicUsize::new(0),
        })
    }

    #[test]
    fn two_callers_share_one_load() {
        loom::model(|| {
            let model = model();
            let other = {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || get_or_load(&model, 10, false))
            };
            let mine = get_or_load(&model, 10, false);
            let theirs = other.join().unwrap();
            assert_eq!((mine, theirs), (Ok(10), Ok(10)));
            assert_eq!(model.loader_calls.load(Ordering::SeqCst), 1);
            assert_eq!(model.shard.lock().unwrap().value, Some(10));
        });
    }

    #[test]
    fn a_failure_is_shared_and_not_stored() {
        loom::model(|| {
            let model = model();
            let other = {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || get_or_load(&model, 10, true))
            };
            let mine = get_or_load(&model, 10, true);
            let theirs = other.join().unwrap();
            let calls = model.loader_calls.load(Ordering::SeqCst);
            let slot = model.shard.lock().unwrap();
            // One flight per loader call, nothing stored, the key free again.
            assert_eq!(calls, slot.flights_started);
            assert!(mine.is_err() && theirs.is_err());
            assert_eq!(slot.value, None);
            assert!(slot.flight.is_none());
        });
    }

    #[test]
    fn an_insert_during_a_load_wins() {
        loom::model(|| {
            let model = model();
            let loader = {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || get_or_load(&model, 10, false))
            };
            let writer = {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || insert(&model, 20))
            };
            let loaded = loader.join().unwrap();
            writer.join().unwrap();
            let slot = model.shard.lock().unwrap();
            // Either the load finished first and the insert overwrote it, or
            // the insert superseded the flight (or came first and was read):
            // the explicit write is what stays.
            assert_eq!(slot.value, Some(20));
            assert!(loaded == Ok(10) || loaded == Ok(20));
            assert!(slot.flight.is_none());
        });
    }

    #[test]
    fn a_remove_during_a_load_discards_its_result() {
        loom::model(|| {
            let model = model();
            let loader = {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || get_or_load(&model, 10, false))
            };
            let waiter = {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || get_or_load(&model, 11, false))
            };
            remove(&model);
            let results = [loader.join().unwrap(), waiter.join().unwrap()];
            let calls = model.loader_calls.load(Ordering::SeqCst);
            let slot = model.shard.lock().unwrap();
            // Each flight called its loader once; every caller got a value.
            assert_eq!(calls, slot.flights_started);
            assert!(results.iter().all(|result| result.is_ok()));
            assert!(slot.flight.is_none());
        });
    }
}
