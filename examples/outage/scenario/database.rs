//! The simulated database, with the outage's failure mode.
//!
//! A fixed pool of connections (8): a query first waits for a free
//! connection, then runs for its cost. When every connection is busy and
//! queries queue, each query runs slower (lock contention, buffer churn):
//! the cost grows by a quarter for every pool's worth of waiters, up to
//! double. So overload does not just queue work, it shrinks capacity, as in
//! the postmortem, where slow queries held connections longer and the
//! backlog fed itself.
//!
//! A query that has started runs to the end even if the request that asked
//! for it is gone: the database cannot know the user left. That is the
//! waste an unprotected shop pays for every timed-out request.
//!
//! The soak test (`examples/soak.rs`) also takes the database down now and
//! then ([`Database::set_down`]): queries then fail after a connect timeout,
//! as when a primary fails over.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

/// The database's shape.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// Connections in the pool: at most this many queries run at once.
    pub pool: usize,
    /// Extra cost per pool's worth of waiting queries (0.25: 8 waiters on
    /// a pool of 8 make every query 25 % slower).
    pub contention: f64,
    /// The contention factor stops growing here (2.0: twice as slow).
    pub max_slowdown: f64,
    /// Every query takes this many times its cost (the scenario's
    /// `Settings::slowdown`; 1.0 for the costs below).
    pub slowdown: f64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            pool: 8,
            contention: 0.25,
            max_slowdown: 2.0,
            slowdown: 1.0,
        }
    }
}

/// How long a query takes to fail while the database is down: a connect
/// attempt that times out.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(20);

/// The database refused a query: it is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatabaseDown;

/// A query the shop can run.
#[derive(Clone, Copy, Debug)]
pub enum Query {
    /// One product by id: an index lookup.
    Product(u32),
    /// The catalogue page: a join over the top categories.
    Catalogue,
    /// Full-text search: the most expensive query.
    Search(u32),
    /// An order: a write with its locks.
    Checkout,
}

impl Query {
    /// How long the query runs on an idle database.
    pub fn base_cost(self) -> Duration {
        Duration::from_millis(match self {
            Query::Product(_) => 4,
            Query::Catalogue => 20,
            Query::Search(_) => 30,
            Query::Checkout => 15,
        })
    }
}

/// One second of the database's life.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DatabaseSecond {
    /// Queries finished in this second.
    pub queries: u32,
    /// The longest wait for a connection that ended in this second, ms.
    pub max_pool_wait_ms: f64,
    /// The most queries waiting for a connection at once.
    pub max_waiting: u32,
}

/// What the database went through in a run.
#[derive(Clone, Debug, Serialize)]
pub struct DatabaseReport {
    /// Connections in the pool.
    pub pool: usize,
    /// Queries that finished.
    pub queries: u64,
    /// The most queries that ran at once (never above the pool).
    pub max_concurrent: usize,
    /// The longest any query waited for a connection, ms.
    pub peak_pool_wait_ms: f64,
    /// The most queries waiting at once.
    pub peak_waiting: usize,
    /// Second by second, from the start of the run.
    pub per_second: Vec<DatabaseSecond>,
}

/// A handle on the shared database; clones share it.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    settings: DatabaseSettings,
    pool: Arc<Semaphore>,
    started: Instant,
    waiting: AtomicUsize,
    peak_waiting: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    queries: AtomicU64,
    peak_wait_ns: AtomicU64,
    seconds: Mutex<Vec<DatabaseSecond>>,
    down: AtomicBool,
    refused: AtomicU64,
    uncontended_ns: AtomicU64,
    uncontended: AtomicU64,
}

impl Database {
    /// An idle database.
    pub fn new(settings: DatabaseSettings) -> Self {
        Database {
            inner: Arc::new(Inner {
                pool: Arc::new(Semaphore::new(settings.pool)),
                settings,
                started: Instant::now(),
                waiting: AtomicUsize::new(0),
                peak_waiting: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                max_running: AtomicUsize::new(0),
                queries: AtomicU64::new(0),
                peak_wait_ns: AtomicU64::new(0),
                seconds: Mutex::new(Vec::new()),
                down: AtomicBool::new(false),
                refused: AtomicU64::new(0),
                uncontended_ns: AtomicU64::new(0),
                uncontended: AtomicU64::new(0),
            }),
        }
    }

    /// Takes the database down (every query fails after a connect timeout)
    /// or brings it back. Queries already running finish.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::Relaxed);
    }

    /// Queries refused while the database was down.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Runs `query`: waits for a connection, then for the query's cost.
    /// Dropping the future while it waits for a connection leaves the queue;
    /// once the query runs, it finishes whatever happens to the caller.
    pub async fn query(&self, query: Query) -> Result<String, DatabaseDown> {
        let inner = &self.inner;
        if inner.down.load(Ordering::Relaxed) {
            tokio::time::sleep(CONNECT_TIMEOUT).await;
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(DatabaseDown);
        }
        let asked = Instant::now();
        let waiting = WaitingGuard::enter(inner);
        let Ok(connection) = inner.pool.clone().acquire_owned().await else {
            unreachable!("the pool is never closed");
        };
        let queue = waiting.leave();
        let waited = asked.elapsed();
        inner
            .peak_wait_ns
            .fetch_max(waited.as_nanos() as u64, Ordering::Relaxed);

        let pools_waiting = queue as f64 / inner.settings.pool as f64;
        let slowdown =
            (1.0 + inner.settings.contention * pools_waiting).min(inner.settings.max_slowdown);
        let cost = query
            .base_cost()
            .mul_f64(slowdown * inner.settings.slowdown);
        let running = inner.running.fetch_add(1, Ordering::Relaxed) + 1;
        inner.max_running.fetch_max(running, Ordering::Relaxed);

        let inner = Arc::clone(&self.inner);
        let execution = tokio::spawn(async move {
            let began = Instant::now();
            tokio::time::sleep(cost).await;
            if queue <= 1 {
                // Only this query was waiting: no contention, so the time
                // it held its connection is the query's real cost here
                // (its base cost plus the timer's and scheduler's lag).
                inner
                    .uncontended_ns
                    .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
                inner.uncontended.fetch_add(1, Ordering::Relaxed);
            }
            inner.running.fetch_sub(1, Ordering::Relaxed);
            drop(connection);
            inner.finished(waited, queue);
            match query {
                Query::Product(id) => format!("product {id}: in stock"),
                Query::Catalogue => "catalogue: 40 categories".to_owned(),
                Query::Search(term) => format!("results for {term}: 20 products"),
                Query::Checkout => "order placed".to_owned(),
            }
        });
        Ok(execution.await.unwrap_or_default())
    }

    /// The most `query`s a second the pool can finish: every connection
    /// busy, none waiting (a queue only slows each query down). The shop's
    /// real capacity for a route that runs `query`, for a load test to find.
    pub fn capacity_per_second(&self, query: Query) -> f64 {
        let settings = &self.inner.settings;
        settings.pool as f64 / (query.base_cost().as_secs_f64() * settings.slowdown)
    }

    /// The mean time a query held its connection when none were waiting
    /// (its real cost on this machine, timer lag included), and how many
    /// such queries there were.
    pub fn uncontended_cost(&self) -> (Duration, u64) {
        let count = self.inner.uncontended.load(Ordering::Relaxed);
        let total = self.inner.uncontended_ns.load(Ordering::Relaxed);
        (Duration::from_nanos(total / count.max(1)), count)
    }

    /// Queries waiting for a connection right now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Everything recorded so far.
    pub fn report(&self) -> DatabaseReport {
        let inner = &self.inner;
        DatabaseReport {
            pool: inner.settings.pool,
            queries: inner.queries.load(Ordering::Relaxed),
            max_concurrent: inner.max_running.load(Ordering::Relaxed),
            peak_pool_wait_ms: inner.peak_wait_ns.load(Ordering::Relaxed) as f64 / 1e6,
            peak_waiting: inner.peak_waiting.load(Ordering::Relaxed),
            per_second: inner.seconds.lock().unwrap().clone(),
        }
    }
}

impl Inner {
    fn finished(&self, waited: Duration, queue: usize) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let second = self.started.elapsed().as_secs() as usize;
        let mut seconds = self.seconds.lock().unwrap();
        if seconds.len() <= second {
            seconds.resize(second + 1, DatabaseSecond::default());
        }
        let slot = &mut seconds[second];
        slot.queries += 1;
        slot.max_pool_wait_ms = slot.max_pool_wait_ms.max(waited.as_secs_f64() * 1e3);
        slot.max_waiting = slot.max_waiting.max(queue as u32);
    }
}

/// Counts a query as waiting until it gets a connection or is dropped.
struct WaitingGuard<'a> {
    inner: &'a Inner,
    left: bool,
}

impl<'a> WaitingGuard<'a> {
    fn enter(inner: &'a Inner) -> Self {
        let now = inner.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        inner.peak_waiting.fetch_max(now, Ordering::Relaxed);
        WaitingGuard { inner, left: false }
    }

    /// Leaves the queue; returns how many were waiting, this one included.
    fn leave(mut self) -> usize {
        self.left = true;
        self.inner.waiting.fetch_sub(1, Ordering::Relaxed)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        if !self.left {
            self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
