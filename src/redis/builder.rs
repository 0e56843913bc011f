//! Building a Redis limiter: every setting checked before anything
//! connects.

use std::sync::Arc;
use std::time::Duration;

use super::breaker::Breaker;
use super::connection::{Connection, Target};
use super::fallback::{Deciding, Fallback};
use super::limiter::{Algorithm, Counters, RedisLimiter};
use super::local::{Leases, OverLimit};
use super::scripts::{GCRA, WINDOW};
use super::BuildError;
use crate::clock::{Clock, SystemClock};
use crate::limit::{Gcra, Quota, SlidingWindow};

/// GCRA (a token bucket) kept in Redis: `quota.count()` per period, bursts
/// of `quota.max_burst()`.
///
/// ```no_run
/// use surgeguard::limit::Quota;
/// use surgeguard::redis::RedisGcra;
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisGcra::builder("redis://127.0.0.1:6379", Quota::per_second(10)?).build().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RedisGcra;

impl RedisGcra {
    /// A builder for a GCRA limit of `quota` on the Redis at `url`.
    ///
    /// ```
    /// use surgeguard::limit::Quota;
    /// use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(10)?);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn builder(url: &str, quota: Quota) -> RedisLimiterBuilder {
        RedisLimiterBuilder::new(Nodes::Server(url.to_owned()), quota, Algorithm::Gcra)
    }

    /// A builder for a GCRA limit of `quota` on the Redis Cluster found
    /// from `seeds` (any of its nodes; the rest are discovered). Each key
    /// lives in one slot, so no script ever answers `CROSSSLOT`; `MOVED` and
    /// `ASK` are followed, and a failover is ridden out by the breaker and
    /// the fallback.
    ///
    /// ```
    /// use surgeguard::limit::Quota;
    /// use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::cluster(
    ///     &["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"],
    ///     Quota::per_second(10)?,
    /// );
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn cluster(seeds: &[&str], quota: Quota) -> RedisLimiterBuilder {
        RedisLimiterBuilder::new(Nodes::cluster(seeds), quota, Algorithm::Gcra)
    }
}

/// The approximate sliding window (see [`crate::limit::SlidingWindow`])
/// kept in Redis: at most `quota.count()` in any window of `quota.period()`.
///
/// ```no_run
/// use surgeguard::limit::Quota;
/// use surgeguard::redis::RedisWindow;
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisWindow::builder("redis://127.0.0.1:6379", Quota::per_minute(600)?).build().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RedisWindow;

impl RedisWindow {
    /// A builder for a sliding-window limit of `quota` on the Redis at
    /// `url`.
    ///
    /// ```
    /// use surgeguard::limit::Quota;
    /// use surgeguard::redis::RedisWindow;
    /// let builder = RedisWindow::builder("redis://127.0.0.1/", Quota::per_minute(60)?);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn builder(url: &str, quota: Quota) -> RedisLimiterBuilder {
        RedisLimiterBuilder::new(
            Nodes::Server(url.to_owned()),
            quota,
            Algorithm::SlidingWindow,
        )
    }

    /// A builder for a sliding-window limit of `quota` on the Redis Cluster
    /// found from `seeds` (see [`RedisGcra::cluster`]).
    ///
    /// ```
    /// use surgeguard::limit::Quota;
    /// use surgeguard::redis::RedisWindow;
    /// let builder = RedisWindow::cluster(&["redis://10.0.0.1:7000"], Quota::per_minute(60)?);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn cluster(seeds: &[&str], quota: Quota) -> RedisLimiterBuilder {
        RedisLimiterBuilder::new(Nodes::cluster(seeds), quota, Algorithm::SlidingWindow)
    }
}

/// Settings of a [`RedisLimiter`]; [`build`](Self::build) checks them.
///
/// ```
/// use std::time::Duration;
/// use surgeguard::limit::Quota;
/// use surgeguard::redis::{Fallback, RedisGcra};
///
/// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(100)?)
///     .prefix("shop:rl:")
///     .on_unavailable(Fallback::FailOpen)
///     .timeout(Duration::from_millis(20))
///     .breaker(5, Duration::from_secs(2))
///     .lease(10, Duration::from_millis(200));
/// # Ok::<(), surgeguard::limit::QuotaError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisLimiterBuilder {
    nodes: Nodes,
    quota: Quota,
    algorithm: Algorithm,
    prefix: String,
    fallback: Fallback,
    timeout: Duration,
    failures_to_open: u32,
    cool_down: Duration,
    max_key_len: usize,
    local_keys: usize,
    lease: Option<(u32, Duration)>,
    shadow: bool,
    clock: Arc<dyn Clock>,
}

impl RedisLimiterBuilder {
    fn new(nodes: Nodes, quota: Quota, algorithm: Algorithm) -> Self {
        RedisLimiterBuilder {
            nodes,
            quota,
            algorithm,
            prefix: "surgeguard:rl:".to_owned(),
            fallback: Fallback::default(),
            timeout: Duration::from_millis(50),
            failures_to_open: 3,
            cool_down: Duration::from_secs(1),
            max_key_len: 512,
            local_keys: 100_000,
            lease: None,
            shadow: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// Prefix of every Redis key (default `surgeguard:rl:`). Limiters that
    /// share a prefix and URL share their limits.
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?).prefix("api:v2:");
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// What decides when Redis cannot (default
    /// [`Fallback::Local`] with the whole quota).
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::{Fallback, RedisGcra};
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?)
    ///     .on_unavailable(Fallback::FailClosed);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn on_unavailable(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The longest one check waits for Redis, connecting included (default
    /// 50 ms); past it the fallback decides.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?)
    ///     .timeout(Duration::from_millis(10));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The breaker opens after `failures` failed calls in a row (default
    /// 3) and lets one probe through after `cool_down` (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?)
    ///     .breaker(1, Duration::from_millis(500));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.failures_to_open = failures;
        self.cool_down = cool_down;
        self
    }

    /// The longest Redis key, prefix and braces included (default 512
    /// bytes); longer keys are a [`CheckError::KeyTooLong`](super::CheckError::KeyTooLong).
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?).max_key_len(128);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// How many keys the local parts track (the fallback limiter, the
    /// over-limit cache, the leases; default 100,000 each).
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?).local_keys(10_000);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn local_keys(mut self, keys: usize) -> Self {
        self.local_keys = keys;
        self
    }

    /// Takes `batch` units per round trip and spends them locally for up to
    /// `ttl`: a hot key costs one call per batch. The fleet may admit up to
    /// `servers × (batch − 1)` beyond the limit in an interval; unspent
    /// units expire (see the module docs).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1_000)?)
    ///     .lease(20, Duration::from_millis(100));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn lease(mut self, batch: u32, ttl: Duration) -> Self {
        self.lease = Some((batch, ttl));
        self
    }

    /// Shadow mode (a dry run): every check is decided and counted as
    /// usual, but a denial is returned as an allowance and counted in
    /// [`RedisStats::shadow_denials`](super::RedisStats::shadow_denials).
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?).shadow(true);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self
    }

    /// The clock of the local parts: the breaker's cool-down, the
    /// over-limit cache, leases, the local fallback (default
    /// [`SystemClock`]). Redis decides on its own clock.
    ///
    /// ```
    /// # use surgeguard::clock::ManualClock;
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// let builder = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1)?).clock(ManualClock::new());
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings, then loads the scripts into Redis if it answers
    /// within the timeout. A Redis that is down is not an error: checks go
    /// to the fallback until it answers.
    ///
    /// ```no_run
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(10)?).build().await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<RedisLimiter, BuildError> {
        check_failure_policy(self.timeout, self.cool_down, self.failures_to_open)?;
        let target = self.nodes.target(self.timeout)?;
        // The shortest key: prefix, braces, one byte.
        if self.prefix.len() + 3 > self.max_key_len {
            return Err(BuildError::PrefixTooLong {
                prefix_len: self.prefix.len(),
                max_key_len: self.max_key_len,
            });
        }
        let limit = match self.algorithm {
            Algorithm::Gcra => self.quota.max_burst(),
            Algorithm::SlidingWindow => self.quota.count(),
        };
        let leases = match self.lease {
            None => None,
            Some((batch, ttl)) => {
                if !(2..=limit).contains(&batch) {
                    return Err(BuildError::InvalidLeaseBatch {
                        batch,
                        burst: limit,
                    });
                }
                if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&ttl) {
                    return Err(BuildError::InvalidDuration {
                        what: "lease time",
                        value: ttl,
                    });
                }
                Some(Leases::new(
                    batch,
                    ttl,
                    self.local_keys as u64,
                    Arc::clone(&self.clock),
                )?)
            }
        };
        let fallback = self.local_fallback()?;
        let connection = Connection::new(target, self.timeout);
        connection.warm_up(&[&GCRA, &WINDOW]).await;
        Ok(RedisLimiter {
            algorithm: self.algorithm,
            quota: self.quota,
            prefix: self.prefix,
            max_key_len: self.max_key_len,
            connection,
            breaker: Breaker::new(
                self.failures_to_open,
                self.cool_down,
                Arc::clone(&self.clock),
            ),
            fallback,
            over_limit: OverLimit::new(self.local_keys as u64, Arc::clone(&self.clock))?,
            leases,
            shadow: self.shadow,
            stats: Counters::default(),
        })
    }

    fn local_fallback(&self) -> Result<Deciding, BuildError> {
        let share = match self.fallback {
            Fallback::FailOpen => return Ok(Deciding::FailOpen),
            Fallback::FailClosed => return Ok(Deciding::FailClosed),
            Fallback::Local { share } => share,
        };
        if !(share > 0.0 && share <= 1.0) {
            return Err(BuildError::InvalidShare(share));
        }
        let scale = |n: u32| ((f64::from(n) * share).floor() as u32).max(1);
        let quota = Quota::with_period(scale(self.quota.count()), self.quota.period())?
            .burst(scale(self.quota.max_burst()))?;
        let clock = Arc::clone(&self.clock);
        Ok(Deciding::Local(match self.algorithm {
            Algorithm::Gcra => Box::new(
                Gcra::keyed::<String>(quota)
                    .max_keys(self.local_keys)
                    .clock(clock)
                    .build()?,
            ),
            Algorithm::SlidingWindow => Box::new(
                SlidingWindow::keyed(quota)
                    .max_keys(self.local_keys)
                    .clock(clock)
                    .build()?,
            ),
        }))
    }
}

/// Where a limiter or a cache tier connects: one server, or a cluster's
/// seed nodes.
#[derive(Debug, Clone)]
pub(crate) enum Nodes {
    Server(String),
    Cluster(Vec<String>),
}

impl Nodes {
    pub(crate) fn cluster(seeds: &[&str]) -> Self {
        Nodes::Cluster(seeds.iter().map(|seed| (*seed).to_owned()).collect())
    }

    /// Checks the URLs and makes the connection's target (nothing
    /// connects yet).
    pub(crate) fn target(&self, timeout: Duration) -> Result<Target, BuildError> {
        let target = match self {
            Nodes::Server(url) => Target::server(url),
            Nodes::Cluster(seeds) => Target::cluster(seeds, timeout),
        };
        target.map_err(|e| BuildError::InvalidUrl(e.to_string()))
    }
}

/// The failure policy's settings, checked the same way for a limiter and a
/// cache tier: a timeout and a cool-down of 1 ms to 60 s, a breaker that
/// opens after at least one failure.
pub(crate) fn check_failure_policy(
    timeout: Duration,
    cool_down: Duration,
    failures_to_open: u32,
) -> Result<(), BuildError> {
    for (what, value) in [("timeout", timeout), ("cool-down", cool_down)] {
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&value) {
            return Err(BuildError::InvalidDuration { what, value });
        }
    }
    if failures_to_open == 0 {
        return Err(BuildError::InvalidFailureThreshold);
    }
    Ok(())
}
