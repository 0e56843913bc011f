//! The blocking loading methods: the first caller runs the loader on its own
//! thread, the others park until it ends; background reloads run on the
//! reload pool.

use std::convert::Infallible;
use std::hash::{BuildHasher, Hash};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use super::flight::Outcome;
use super::leader::{Begin, FlightGuard};
use super::LoadError;
use crate::cache::Cache;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The value for `key`, loading it with `load` on a miss; concurrent
    /// misses on the same key share one call of `load`. See
    /// [`get_or_try_load`](Self::get_or_try_load) for a loader that can fail;
    /// this one still reports a panic ([`LoadError::Panicked`]) or the load
    /// timeout.
    ///
    /// ```
    /// use surgeguard::cache::Cache;
    ///
    /// let cache: Cache<u64, String> = Cache::builder().max_capacity(100).build()?;
    /// let page = cache.get_or_load(&7, |id| format!("page {id}"));
    /// assert_eq!(page.as_deref(), Ok("page 7"));
    /// // Stored: the next call does not run its loader.
    /// let again = cache.get_or_load(&7, |_| unreachable!());
    /// assert_eq!(again.as_deref(), Ok("page 7"));
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn get_or_load<F>(&self, key: &K, load: F) -> Result<V, LoadError<Infallible>>
    where
        F: FnOnce(&K) -> V + Send + 'static,
    {
        self.get_or_try_load(key, move |key| Ok::<V, Infallible>(load(key)))
    }

    /// The value for `key`, loading it with `load` on a miss, with stampede
    /// protection (see [Loading](crate::cache#loading)):
    ///
    /// * One load per key at a time: concurrent callers that miss the same
    ///   key wait (blocking their thread) for the first caller's load and
    ///   share its value or its error. Errors are not cached.
    /// * Within [`refresh_after`](crate::cache::CacheBuilder::refresh_after)
    ///   or [`stale_while_revalidate`](crate::cache::CacheBuilder::stale_while_revalidate),
    ///   returns the stored value at once and, if no reload runs, starts one on
    ///   a pooled background thread with `load` (at most
    ///   [`background_reloads`](crate::cache::CacheBuilder::background_reloads)
    ///   at once).
    /// * Within [`stale_if_error`](crate::cache::CacheBuilder::stale_if_error),
    ///   returns the stale value if the load fails.
    ///
    /// `load` must be `Send + 'static` because it may run on a background
    /// thread: capture what it needs by value (an `Arc` of the database
    /// handle, say). If it panics, the panic is caught and every caller
    /// waiting for it gets [`LoadError::Panicked`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use surgeguard::cache::{Cache, LoadError};
    ///
    /// #[derive(Debug)]
    /// struct NotFound;
    ///
    /// let cache: Cache<u64, Arc<String>> = Cache::builder().max_capacity(100).build()?;
    /// let origin_calls = Arc::new(AtomicUsize::new(0));
    /// let fetch = |id: u64, calls: Arc<AtomicUsize>| {
    ///     move |_: &u64| {
    ///         calls.fetch_add(1, Ordering::Relaxed);
    ///         if id < 10 { Ok(Arc::new(format!("product {id}"))) } else { Err(NotFound) }
    ///     }
    /// };
    /// let product = cache.get_or_try_load(&3, fetch(3, origin_calls.clone()));
    /// assert_eq!(product.unwrap().as_str(), "product 3");
    /// let missing = cache.get_or_try_load(&42, fetch(42, origin_calls.clone()));
    /// assert!(matches!(missing, Err(LoadError::Failed(_))));
    /// assert_eq!(origin_calls.load(Ordering::Relaxed), 2);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn get_or_try_load<E, F>(&self, key: &K, load: F) -> Result<V, LoadError<E>>
    where
        F: FnOnce(&K) -> Result<V, E> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let hash = self.inner.config.hasher.hash_one(key);
        let mut retries = 0;
        loop {
            match self.begin_load(hash, key, true) {
                Begin::Value { value, reload } => {
                    if reload {
                        self.reload_on_thread(hash, key, load);
                    }
                    return Ok(value);
                }
                Begin::Wait {
                    flight,
                    fallback,
                    deadline,
                } => {
                    if flight.led_by_this_thread() {
                        return Err(LoadError::Recursive);
                    }
                    let clock = &*self.inner.config.clock;
                    let outcome = flight.wait(deadline.map(|deadline| (clock, deadline)));
                    if let Some(result) = self.settle_wait(outcome, fallback, &mut retries) {
                        return result;
                    }
                }
                Begin::Lead { guard, fallback } => {
                    return self.lead_here(guard, fallback, load);
                }
            }
        }
    }

    /// Runs `load` on this thread for the flight `guard` holds, and hands
    /// its outcome to every waiter.
    fn lead_here<E, F>(
        &self,
        guard: FlightGuard<K, V, S>,
        fallback: Option<V>,
        load: F,
    ) -> Result<V, LoadError<E>>
    where
        F: FnOnce(&K) -> Result<V, E> + Send + 'static,
        E: Send + Sync + 'static,
    {
        #[cfg(feature = "tracing")]
        let _span = super::LoadKind::Load.span().entered();
        match panic::catch_unwind(AssertUnwindSafe(|| load(guard.key()))) {
            Ok(Ok(value)) => {
                guard.finish(Outcome::Loaded(value.clone()));
                Ok(value)
            }
            Ok(Err(error)) => {
                let error = Arc::new(error);
                guard.finish(Outcome::Failed(error.clone()));
                self.fall_back(LoadError::Failed(error), fallback)
            }
            Err(_panic) => {
                guard.finish(Outcome::Panicked);
                self.fall_back(LoadError::Panicked, fallback)
            }
        }
    }

    /// Starts a background reload of `key` on the reload pool, if one is due
    /// and a background slot is free. If it cannot run, the flight's guard is
    /// dropped with it and ends the flight as abandoned.
    fn reload_on_thread<E, F>(&self, hash: u64, key: &K, load: F)
    where
        F: FnOnce(&K) -> Result<V, E> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let Some(guard) = self.begin_reload(hash, key) else {
            return;
        };
        let reload = move || {
            #[cfg(feature = "tracing")]
            let _span = super::LoadKind::Refresh.span().entered();
            let outcome = match panic::catch_unwind(AssertUnwindSafe(|| load(guard.key()))) {
                Ok(Ok(value)) => Outcome::Loaded(value),
                Ok(Err(error)) => Outcome::Failed(Arc::new(error)),
                Err(_panic) => Outcome::Panicked,
            };
            guard.finish(outcome);
        };
        // If it cannot run, the closure, and with it the guard, is dropped.
        super::reload_pool::run(Box::new(reload));
    }
}
