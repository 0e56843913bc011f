//! The limiter: local answers first, then Redis through the breaker, then
//! the fallback.

use std::fmt::{self, Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::breaker::{Admit, Breaker, Transition};
use super::connection::{Connection, Failure};
use super::fallback::Deciding;
use super::local::{Leases, OverLimit};
use super::scripts::{Reply, GCRA, WINDOW};
use super::CheckError;
use crate::limit::{Decision, Quota};

/// Which script decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Gcra,
    SlidingWindow,
}

/// A rate limit kept in Redis and shared by every server that uses the
/// same URL and prefix. Build one with
/// [`RedisGcra::builder`](super::RedisGcra::builder) or
/// [`RedisWindow::builder`](super::RedisWindow::builder).
///
/// A check goes, in order, to: the over-limit cache (a key Redis denied is
/// denied locally until its retry time), the key's lease (with leasing),
/// Redis (one script, one round trip, within the timeout), and, when Redis
/// fails or the breaker is open, the [`Fallback`](super::Fallback).
///
/// ```no_run
/// use surgeguard::limit::Quota;
/// use surgeguard::redis::{Fallback, RedisGcra};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisGcra::builder("redis://127.0.0.1:6379", Quota::per_second(100)?.burst(200)?)
///     .prefix("shop:rl:")
///     .on_unavailable(Fallback::Local { share: 1.0 / 8.0 })
///     .build()
///     .await?;
/// let client: std::net::IpAddr = "192.0.2.7".parse()?;
/// if limiter.check(&client).await?.is_denied() {
///     // answer 429
/// }
/// # Ok(()) }
/// ```
pub struct RedisLimiter {
    pub(crate) algorithm: Algorithm,
    pub(crate) quota: Quota,
    pub(crate) prefix: String,
    pub(crate) max_key_len: usize,
    pub(crate) connection: Connection,
    pub(crate) breaker: Breaker,
    pub(crate) fallback: Deciding,
    pub(crate) over_limit: OverLimit,
    pub(crate) leases: Option<Leases>,
    pub(crate) shadow: bool,
    pub(crate) stats: Counters,
}

/// What a [`RedisLimiter`] has done since it was built.
///
/// ```
/// use surgeguard::redis::RedisStats;
/// let stats = RedisStats::default();
/// assert_eq!(stats.redis_decisions + stats.fallback_decisions, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Checks Redis decided.
    pub redis_decisions: u64,
    /// Checks denied locally because Redis had denied the key until later.
    pub over_limit_cache_denials: u64,
    /// Checks answered from a lease.
    pub lease_decisions: u64,
    /// Checks the fallback decided (Redis failed, or the breaker was open).
    pub fallback_decisions: u64,
    /// Calls that failed because Redis was unreachable or slow.
    pub redis_failures: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Times it closed again after a successful probe.
    pub breaker_closed: u64,
    /// Whether the breaker is open (or probing) now.
    pub breaker_open: bool,
    /// Shadow mode: denials returned as allowances.
    pub shadow_denials: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    redis_decisions: AtomicU64,
    over_limit_cache_denials: AtomicU64,
    lease_decisions: AtomicU64,
    fallback_decisions: AtomicU64,
    redis_failures: AtomicU64,
    breaker_opened: AtomicU64,
    breaker_closed: AtomicU64,
    shadow_denials: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl RedisLimiter {
    /// Takes one unit from `key`'s limit. `key` is written with `Display`
    /// (an IP address, a user id, a route) under the limiter's prefix.
    ///
    /// Errors only for input that can never pass (a key over
    /// `max_key_len`) or a script Redis refuses; Redis being down is
    /// decided by the fallback.
    ///
    /// ```no_run
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RedisGcra::builder("redis://127.0.0.1/", Quota::per_minute(60)?).build().await?;
    /// let decision = limiter.check("user:42").await?;
    /// println!("allowed: {}, remaining: {}", decision.is_allowed(), decision.remaining());
    /// # Ok(()) }
    /// ```
    pub async fn check<K: Display + ?Sized>(&self, key: &K) -> Result<Decision, CheckError> {
        self.check_n(key, 1).await
    }

    /// Takes `cost` units from `key`'s limit if it has them all.
    ///
    /// ```no_run
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::{CheckError, RedisGcra};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let uploads = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(1_000)?).build().await?;
    /// assert_eq!(
    ///     uploads.check_n("alice", 1_001).await,
    ///     Err(CheckError::CostExceedsBurst { cost: 1_001, burst: 1_000 })
    /// );
    /// # Ok(()) }
    /// ```
    pub async fn check_n<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u32,
    ) -> Result<Decision, CheckError> {
        let decision = self.decide_n(key, cost).await?;
        match decision.denial_as_allowance() {
            Some(allowance) if self.shadow => {
                bump(&self.stats.shadow_denials);
                Ok(allowance)
            }
            _ => Ok(decision),
        }
    }

    async fn decide_n<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u32,
    ) -> Result<Decision, CheckError> {
        let limit = self.limit();
        if cost > limit {
            return Err(CheckError::CostExceedsBurst { cost, burst: limit });
        }
        let key = self.redis_key(key)?;
        if let Some(retry_after) = self.over_limit.denied_for(&key, cost) {
            bump(&self.stats.over_limit_cache_denials);
            return Ok(Decision::Denied {
                limit,
                remaining: 0,
                retry_after,
                reset_after: retry_after,
                policy_window: self.policy_window(),
            });
        }
        if let Some(leases) = &self.leases {
            if let Some(left) = leases.spend(&key, cost) {
                bump(&self.stats.lease_decisions);
                return Ok(Decision::Allowed {
                    limit,
                    remaining: left,
                    reset_after: Duration::ZERO,
                    policy_window: self.policy_window(),
                });
            }
        }
        if self.breaker.admit() == Admit::Fallback {
            return Ok(self.fall_back(&key, cost));
        }

        let want = match &self.leases {
            Some(leases) if cost > 0 => leases.batch.max(cost),
            _ => cost,
        };
        match self
            .connection
            .run(self.script(), &key, self.args(want, cost))
            .await
        {
            Ok(reply) => {
                self.note(self.breaker.success());
                bump(&self.stats.redis_decisions);
                Ok(self.decide(&key, cost, reply))
            }
            Err(Failure::Refused(message)) => {
                // Redis is up and answering; the script or key is wrong.
                self.note(self.breaker.success());
                Err(CheckError::Script(message))
            }
            Err(Failure::Unavailable(reason)) => {
                bump(&self.stats.redis_failures);
                tracing::debug!(%reason, "Redis call failed; the fallback decides");
                self.note(self.breaker.failure());
                Ok(self.fall_back(&key, cost))
            }
        }
    }

    /// Counters since the limiter was built.
    ///
    /// ```no_run
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisGcra;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(5)?).build().await?;
    /// let _ = limiter.check("k").await?;
    /// let stats = limiter.stats();
    /// assert_eq!(stats.redis_decisions + stats.fallback_decisions, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> RedisStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        RedisStats {
            redis_decisions: load(&s.redis_decisions),
            over_limit_cache_denials: load(&s.over_limit_cache_denials),
            lease_decisions: load(&s.lease_decisions),
            fallback_decisions: load(&s.fallback_decisions),
            redis_failures: load(&s.redis_failures),
            breaker_opened: load(&s.breaker_opened),
            breaker_closed: load(&s.breaker_closed),
            breaker_open: self.breaker.is_open(),
            shadow_denials: load(&s.shadow_denials),
        }
    }

    /// The most units one check may take (the GCRA burst, or the window's
    /// limit).
    ///
    /// ```no_run
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::redis::RedisWindow;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RedisWindow::builder("redis://127.0.0.1/", Quota::per_minute(600)?).build().await?;
    /// assert_eq!(limiter.limit(), 600);
    /// # Ok(()) }
    /// ```
    pub fn limit(&self) -> u32 {
        match self.algorithm {
            Algorithm::Gcra => self.quota.max_burst(),
            Algorithm::SlidingWindow => self.quota.count(),
        }
    }

    fn policy_window(&self) -> Duration {
        match self.algorithm {
            Algorithm::Gcra => self.quota.refill_time(),
            Algorithm::SlidingWindow => self.quota.period(),
        }
    }

    fn script(&self) -> &'static redis::Script {
        match self.algorithm {
            Algorithm::Gcra => &GCRA,
            Algorithm::SlidingWindow => &WINDOW,
        }
    }

    fn args(&self, want: u32, need: u32) -> [u64; 4] {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        match self.algorithm {
            Algorithm::Gcra => [
                micros(self.quota.emission_interval()),
                u64::from(self.quota.max_burst()),
                u64::from(want),
                u64::from(need),
            ],
            Algorithm::SlidingWindow => [
                micros(self.quota.period()),
                u64::from(self.quota.count()),
                u64::from(want),
                u64::from(need),
            ],
        }
    }

    /// `prefix{key}`: the braces make the key its own hash tag, so any
    /// keys a future script adds for it land in the same Cluster slot.
    fn redis_key<K: Display + ?Sized>(&self, key: &K) -> Result<String, CheckError> {
        let mut redis_key = String::with_capacity(self.prefix.len() + 24);
        redis_key.push_str(&self.prefix);
        let _ = write!(redis_key, "{{{key}}}");
        if redis_key.len() > self.max_key_len {
            return Err(CheckError::KeyTooLong {
                len: redis_key.len(),
                max: self.max_key_len,
            });
        }
        Ok(redis_key)
    }

    fn decide(&self, key: &str, cost: u32, reply: Reply) -> Decision {
        let limit = self.limit();
        let policy_window = self.policy_window();
        let reset_after = Duration::from_micros(reply.reset_after_us);
        if reply.allowed {
            if let Some(leases) = &self.leases {
                leases.keep(key, reply.taken.saturating_sub(cost));
            }
            Decision::Allowed {
                limit,
                remaining: reply.remaining,
                reset_after,
                policy_window,
            }
        } else {
            let retry_after = Duration::from_micros(reply.retry_after_us);
            self.over_limit.remember(key, cost, retry_after);
            Decision::Denied {
                limit,
                remaining: reply.remaining,
                retry_after,
                reset_after,
                policy_window,
            }
        }
    }

    fn fall_back(&self, key: &str, cost: u32) -> Decision {
        bump(&self.stats.fallback_decisions);
        self.fallback.decide(
            key,
            cost,
            self.limit(),
            self.policy_window(),
            self.breaker.retry_in(),
        )
    }

    /// Logs and counts a breaker transition, once per transition.
    fn note(&self, transition: Option<Transition>) {
        match transition {
            Some(Transition::Opened) => {
                bump(&self.stats.breaker_opened);
                tracing::warn!(
                    prefix = %self.prefix,
                    "Redis unavailable: breaker open, the fallback decides until a probe succeeds"
                );
            }
            Some(Transition::Closed) => {
                bump(&self.stats.breaker_closed);
                tracing::info!(prefix = %self.prefix, "Redis is back: breaker closed");
            }
            None => {}
        }
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("algorithm", &self.algorithm)
            .field("quota", &self.quota)
            .field("prefix", &self.prefix)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
