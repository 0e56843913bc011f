//! The async loading methods (feature `tokio`): every load and reload runs
//! as its own Tokio task, and callers await its outcome without blocking a
//! thread. Because the load does not live in any caller's future, a caller
//! that is cancelled takes nothing down with it.

use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

use super::flight::{Flight, Outcome};
use super::leader::{Begin, FlightGuard};
use super::{LoadError, LoadKind};
use crate::cache::Cache;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The async form of [`get_or_load`](Self::get_or_load) (feature
    /// `tokio`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use surgeguard::cache::Cache;
    ///
    /// let cache: Cache<u64, String> = Cache::builder().max_capacity(100).build()?;
    /// let page = cache
    ///     .get_or_load_async(&7, |id| async move { format!("page {id}") })
    ///     .await?;
    /// assert_eq!(page, "page 7");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_load_async<F, Fut>(
        &self,
        key: &K,
        load: F,
    ) -> Result<V, LoadError<Infallible>>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        self.get_or_try_load_async(key, move |key| {
            let loading = load(key);
            async move { Ok::<V, Infallible>(loading.await) }
        })
        .await
    }

    /// The async form of [`get_or_try_load`](Self::get_or_try_load) (feature
    /// `tokio`), with the same single-flight, refresh and stale behaviour.
    /// Must be called within a Tokio runtime ([`LoadError::NoRuntime`]
    /// otherwise).
    ///
    /// The load runs as a Tokio task of its own, not inside the caller's
    /// future: if the caller is cancelled (its future dropped, say by a
    /// request timeout), the load goes on, its value is stored, and the
    /// other waiters get it. A panicking load fails its waiters with
    /// [`LoadError::Panicked`]; with a
    /// [`load_timeout`](crate::cache::CacheBuilder::load_timeout), a load
    /// that runs longer is dropped and fails them with
    /// [`LoadError::TimedOut`]. Either way the key is free for the next load.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use surgeguard::cache::Cache;
    ///
    /// struct Db;
    /// impl Db {
    ///     async fn fetch(&self, id: u64) -> Result<String, std::io::Error> {
    ///         Ok(format!("row {id}"))
    ///     }
    /// }
    ///
    /// let db = Arc::new(Db);
    /// let cache: Cache<u64, String> = Cache::builder().max_capacity(100).build()?;
    /// let row = cache
    ///     .get_or_try_load_async(&1, move |id| async move { db.fetch(id).await })
    ///     .await?;
    /// assert_eq!(row, "row 1");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_try_load_async<E, F, Fut>(
        &self,
        key: &K,
        load: F,
    ) -> Result<V, LoadError<E>>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let hash = self.inner.config.hasher.hash_one(key);
        let mut retries = 0;
        loop {
            match self.begin_load(hash, key, false) {
                Begin::Value { value, reload } => {
                    if reload {
                        if let Ok(runtime) = Handle::try_current() {
                            if let Some(guard) = self.begin_reload(hash, key) {
                                self.spawn_load(&runtime, guard, LoadKind::Refresh, load);
                            }
                        }
                    }
                    return Ok(value);
                }
                Begin::Wait {
                    flight, fallback, ..
                } => {
                    let outcome = FlightWait::new(flight).await;
                    if let Some(result) = self.settle_wait(Some(outcome), fallback, &mut retries) {
                        return result;
                    }
                }
                Begin::Lead { guard, fallback } => {
                    let Ok(runtime) = Handle::try_current() else {
                        // Dropping the guard releases anyone who joined.
                        drop(guard);
                        return Err(LoadError::NoRuntime);
                    };
                    let flight = guard.flight();
                    self.spawn_load(&runtime, guard, LoadKind::Load, load);
                    let outcome = FlightWait::new(flight).await;
                    return self.settle_own(outcome, fallback);
                }
            }
        }
    }

    /// Runs `load` as a task on `runtime` for the flight `guard` holds. A
    /// panic unwinds through the guard, which fails the flight; a task
    /// dropped before it ends (the runtime shutting down) abandons it.
    fn spawn_load<E, F, Fut>(
        &self,
        runtime: &Handle,
        guard: FlightGuard<K, V, S>,
        kind: LoadKind,
        load: F,
    ) where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let timeout = self.inner.config.loading.load_timeout;
        let loading = async move {
            let loading = load(guard.key().clone());
            let result = match timeout {
                None => Some(loading.await),
                Some(timeout) => tokio::time::timeout(timeout, loading).await.ok(),
            };
            guard.finish(match result {
                Some(Ok(value)) => Outcome::Loaded(value),
                Some(Err(error)) => Outcome::Failed(Arc::new(error)),
                None => Outcome::TimedOut,
            });
        };
        #[cfg(feature = "tracing")]
        let loading = tracing::Instrument::instrument(loading, kind.span());
        #[cfg(not(feature = "tracing"))]
        let _ = kind;
        drop(runtime.spawn(loading));
    }
}

/// Waits for a flight without blocking: ready with its outcome.
struct FlightWait<K, V> {
    flight: Arc<Flight<K, V>>,
    slot: Option<usize>,
    done: bool,
}

impl<K, V> FlightWait<K, V> {
    fn new(flight: Arc<Flight<K, V>>) -> Self {
        FlightWait {
            flight,
            slot: None,
            done: false,
        }
    }
}

impl<K, V: Clone> Future for FlightWait<K, V> {
    type Output = Outcome<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let polled = this.flight.poll_wait(cx, &mut this.slot);
        this.done = polled.is_ready();
        polled
    }
}

impl<K, V> Drop for FlightWait<K, V> {
    fn drop(&mut self) {
        if let (false, Some(slot)) = (self.done, self.slot) {
            self.flight.forget_waiter(slot);
        }
    }
}
