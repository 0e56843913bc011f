//! The reporter: reads components' `stats()` and publishes them.

use std::fmt;
#[cfg(feature = "redis")]
use std::sync::Arc;

use metrics::{counter, gauge, Counter, Gauge};
use parking_lot::Mutex;

use crate::cache::{Cache, CacheStats};
use crate::shed::{Priority, RejectReason, ShedStats, Shedder};

/// Publishes registered components' figures through the `metrics` facade;
/// see the [module docs](super) for the names.
///
/// ```
/// use surgeguard::metrics::Reporter;
/// use surgeguard::shed::Shedder;
///
/// let shedder = Shedder::builder().max_concurrency(8).build()?;
/// let reporter = Reporter::new().shedder("api", &shedder);
/// reporter.report();
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[derive(Default)]
pub struct Reporter {
    sources: Vec<Box<dyn Source>>,
}

/// One registered component.
trait Source: Send + Sync {
    fn publish(&self);
}

impl Reporter {
    /// A reporter with nothing registered.
    ///
    /// ```
    /// let reporter = surgeguard::metrics::Reporter::new();
    /// reporter.report(); // publishes nothing
    /// ```
    pub fn new() -> Self {
        Reporter::default()
    }

    /// Adds `cache` under the label `cache = name`.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use surgeguard::metrics::Reporter;
    /// let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build()?;
    /// let reporter = Reporter::new().cache("sessions", &cache);
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn cache<K, V, S>(mut self, name: &str, cache: &Cache<K, V, S>) -> Self
    where
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
        S: Send + Sync + 'static,
        Cache<K, V, S>: CacheSource,
    {
        self.sources
            .push(Box::new(CacheMetrics::new(name, cache.clone())));
        self
    }

    /// Adds `shedder` under the label `shedder = name`, with its saturation
    /// signal.
    ///
    /// ```
    /// # use surgeguard::metrics::Reporter;
    /// # use surgeguard::shed::Shedder;
    /// let shedder = Shedder::builder().max_concurrency(8).build()?;
    /// let reporter = Reporter::new().shedder("checkout", &shedder);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn shedder(mut self, name: &str, shedder: &Shedder) -> Self {
        self.sources
            .push(Box::new(ShedMetrics::new(name, shedder.clone())));
        self
    }

    /// Adds a [`TieredCache`](crate::cache::TieredCache) under the label
    /// `cache = name` (feature `tokio`): its local tier as
    /// [`cache`](Self::cache) reports a cache, and its traffic with the
    /// shared tier.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use surgeguard::cache::tier::{BigEndian, TieredCache, Utf8};
    /// use surgeguard::cache::Cache;
    /// use surgeguard::metrics::Reporter;
    /// use surgeguard::redis::RedisTier;
    ///
    /// let local: Cache<u64, String> = Cache::builder().max_capacity(1_000).build()?;
    /// let shared = RedisTier::builder("redis://127.0.0.1/").build().await?;
    /// let pages = TieredCache::builder(local, shared).keys(BigEndian).values(Utf8).build()?;
    /// let reporter = Reporter::new().tiered_cache("pages", &pages);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "redis"))] fn main() {}
    /// ```
    #[cfg(feature = "tokio")]
    pub fn tiered_cache<K, V, S>(
        mut self,
        name: &str,
        cache: &crate::cache::TieredCache<K, V, S>,
    ) -> Self
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: std::hash::BuildHasher + Send + Sync + 'static,
    {
        self = self.cache(name, cache.local());
        self.sources
            .push(Box::new(TierMetrics::new(name, cache.clone())));
        self
    }

    /// Adds a rate limiter whose decisions are [`Counted`](crate::limit::Counted),
    /// under the label `limiter = name`; wrap it in
    /// [`Shadow`](crate::limit::Shadow) outside the count to roll it out
    /// in shadow mode (the count then says what it would have denied).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use surgeguard::limit::{Counted, Gcra, Quota};
    /// # use surgeguard::metrics::Reporter;
    /// let per_ip = Arc::new(Counted::new(Gcra::keyed::<std::net::IpAddr>(Quota::per_second(10)?).build()?));
    /// let reporter = Reporter::new().limiter("per-ip", &per_ip);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limiter<L: Send + Sync + 'static>(
        mut self,
        name: &str,
        limiter: &std::sync::Arc<crate::limit::Counted<L>>,
    ) -> Self {
        let name = name.to_owned();
        let decisions = |decision: &'static str| counter!("surgeguard_ratelimit_decisions_total", "limiter" => name.clone(), "decision" => decision);
        self.sources.push(Box::new(LimiterMetrics {
            allowed: decisions("allowed"),
            denied: decisions("denied"),
            limiter: std::sync::Arc::clone(limiter),
        }));
        self
    }

    /// Adds a Redis limiter under the label `limiter = name` (feature
    /// `redis`).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use surgeguard::limit::Quota;
    /// # use surgeguard::metrics::Reporter;
    /// # use surgeguard::redis::RedisGcra;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = Arc::new(RedisGcra::builder("redis://127.0.0.1/", Quota::per_second(10)?).build().await?);
    /// let reporter = Reporter::new().redis("fleet", &limiter);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, name: &str, limiter: &Arc<crate::redis::RedisLimiter>) -> Self {
        self.sources
            .push(Box::new(RedisMetrics::new(name, Arc::clone(limiter))));
        self
    }

    /// Publishes every registered component's figures now.
    ///
    /// ```
    /// # use surgeguard::metrics::Reporter;
    /// Reporter::new().report();
    /// ```
    pub fn report(&self) {
        for source in &self.sources {
            source.publish();
        }
    }

    /// Publishes every `interval` for as long as the future runs (spawn it).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use surgeguard::metrics::Reporter;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let reporting = tokio::spawn(Reporter::new().run(Duration::from_secs(1)));
    /// # reporting.abort();
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn run(self, interval: std::time::Duration) {
        let mut ticks = tokio::time::interval(interval.max(std::time::Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.report();
        }
    }
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("sources", &self.sources.len())
            .finish()
    }
}

/// What a cache must offer to be reported: its counters and size. Sealed
/// in practice (only [`Cache`] implements it).
#[doc(hidden)]
pub trait CacheSource: Send + Sync + 'static {
    fn stats(&self) -> CacheStats;
    fn entries(&self) -> usize;
}

impl<K, V, S> CacheSource for Cache<K, V, S>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: std::hash::BuildHasher + Send + Sync + 'static,
{
    fn stats(&self) -> CacheStats {
        Cache::stats(self)
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

struct CacheMetrics<C> {
    cache: C,
    hits: Counter,
    misses: Counter,
    stale: Counter,
    loads_ok: Counter,
    loads_error: Counter,
    coalesced: Counter,
    refreshes: Counter,
    evicted_size: Counter,
    evicted_expired: Counter,
    entries: Gauge,
    load_seconds: Gauge,
    load_count: Counter,
}

impl<C: CacheSource> CacheMetrics<C> {
    fn new(name: &str, cache: C) -> Self {
        let name = name.to_owned();
        let requests = |result: &'static str| counter!("surgeguard_cache_requests_total", "cache" => name.clone(), "result" => result);
        let loads = |result: &'static str| counter!("surgeguard_cache_loads_total", "cache" => name.clone(), "result" => result);
        let evictions = |cause: &'static str| counter!("surgeguard_cache_evictions_total", "cache" => name.clone(), "cause" => cause);
        CacheMetrics {
            hits: requests("hit"),
            misses: requests("miss"),
            stale: requests("stale"),
            loads_ok: loads("ok"),
            loads_error: loads("error"),
            coalesced: counter!("surgeguard_cache_loads_coalesced_total", "cache" => name.clone()),
            refreshes: counter!("surgeguard_cache_refreshes_total", "cache" => name.clone()),
            evicted_size: evictions("size"),
            evicted_expired: evictions("expired"),
            load_seconds: gauge!("surgeguard_cache_load_duration_seconds_sum", "cache" => name.clone()),
            load_count: counter!("surgeguard_cache_load_duration_seconds_count", "cache" => name.clone()),
            entries: gauge!("surgeguard_cache_entries", "cache" => name),
            cache,
        }
    }
}

impl<C: CacheSource> Source for CacheMetrics<C> {
    fn publish(&self) {
        let s = self.cache.stats();
        self.hits.absolute(s.hits);
        self.misses
            .absolute(s.misses.saturating_sub(s.stale_served));
        self.stale.absolute(s.stale_served);
        self.loads_ok
            .absolute(s.loads.saturating_sub(s.load_errors));
        self.loads_error.absolute(s.load_errors);
        self.coalesced.absolute(s.coalesced);
        self.refreshes.absolute(s.refreshes);
        self.evicted_size.absolute(s.evictions);
        self.evicted_expired.absolute(s.expirations);
        self.entries.set(self.cache.entries() as f64);
        self.load_seconds.set(s.load_time.as_secs_f64());
        self.load_count.absolute(s.loads);
    }
}

#[cfg(feature = "tokio")]
struct TierMetrics<K, V, S> {
    cache: crate::cache::TieredCache<K, V, S>,
    remote_hit: Counter,
    remote_stale: Counter,
    leased_load: Counter,
    local_load: Counter,
    fleet_waits: Counter,
    lease_takeovers: Counter,
    decode_errors: Counter,
    too_large: Counter,
    remote_errors: Counter,
    invalidations: Counter,
}

#[cfg(feature = "tokio")]
impl<K, V, S> TierMetrics<K, V, S> {
    fn new(name: &str, cache: crate::cache::TieredCache<K, V, S>) -> Self {
        let name = name.to_owned();
        let misses = |result: &'static str| counter!("surgeguard_cache_tier_misses_total", "cache" => name.clone(), "result" => result);
        let named = |metric: &'static str| counter!(metric, "cache" => name.clone());
        TierMetrics {
            remote_hit: misses("remote_hit"),
            remote_stale: misses("remote_stale"),
            leased_load: misses("leased_load"),
            local_load: misses("local_load"),
            fleet_waits: named("surgeguard_cache_tier_fleet_waits_total"),
            lease_takeovers: named("surgeguard_cache_tier_lease_takeovers_total"),
            decode_errors: named("surgeguard_cache_tier_decode_errors_total"),
            too_large: named("surgeguard_cache_tier_too_large_total"),
            remote_errors: named("surgeguard_cache_tier_remote_errors_total"),
            invalidations: named("surgeguard_cache_tier_invalidations_total"),
            cache,
        }
    }
}

#[cfg(feature = "tokio")]
impl<K, V, S> Source for TierMetrics<K, V, S>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: std::hash::BuildHasher + Send + Sync + 'static,
{
    fn publish(&self) {
        let s = self.cache.stats();
        self.remote_hit.absolute(s.remote_hits);
        self.remote_stale.absolute(s.remote_stale);
        self.leased_load.absolute(s.leased_loads);
        self.local_load.absolute(s.local_loads);
        self.fleet_waits.absolute(s.fleet_waits);
        self.lease_takeovers.absolute(s.lease_takeovers);
        self.decode_errors.absolute(s.decode_errors);
        self.too_large.absolute(s.too_large);
        self.remote_errors.absolute(s.remote_errors);
        self.invalidations.absolute(s.invalidations_heard);
    }
}

struct LimiterMetrics<L> {
    limiter: std::sync::Arc<crate::limit::Counted<L>>,
    allowed: Counter,
    denied: Counter,
}

impl<L: Send + Sync> Source for LimiterMetrics<L> {
    fn publish(&self) {
        self.allowed.absolute(self.limiter.allowed());
        self.denied.absolute(self.limiter.denied());
    }
}

const PRIORITIES: [(Priority, &str); 3] = [
    (Priority::Critical, "critical"),
    (Priority::Normal, "normal"),
    (Priority::Sheddable, "sheddable"),
];
const REASONS: [(RejectReason, &str); 3] = [
    (RejectReason::LimitReached, "limit"),
    (RejectReason::QueueFull, "queue_full"),
    (RejectReason::Deadline, "deadline"),
];

struct ShedMetrics {
    shedder: Shedder,
    limit: Gauge,
    in_flight: Gauge,
    queued: Gauge,
    rejected: Vec<(Priority, RejectReason, Counter)>,
    shadow_rejected: Counter,
    saturation: Gauge,
    /// Refusals and shadow refusals at the previous report.
    previous: Mutex<ShedStats>,
}

impl ShedMetrics {
    fn new(name: &str, shedder: Shedder) -> Self {
        let name = name.to_owned();
        let mut rejected = Vec::new();
        for (priority, priority_label) in PRIORITIES {
            for (reason, reason_label) in REASONS {
                let handle = counter!(
                    "surgeguard_shed_rejected_total",
                    "shedder" => name.clone(),
                    "priority" => priority_label,
                    "reason" => reason_label
                );
                rejected.push((priority, reason, handle));
            }
        }
        ShedMetrics {
            previous: Mutex::new(shedder.stats()),
            shedder,
            limit: gauge!("surgeguard_shed_limit", "shedder" => name.clone()),
            in_flight: gauge!("surgeguard_shed_inflight", "shedder" => name.clone()),
            queued: gauge!("surgeguard_shed_queued", "shedder" => name.clone()),
            rejected,
            shadow_rejected: counter!("surgeguard_shed_shadow_rejected_total", "shedder" => name.clone()),
            saturation: gauge!("surgeguard_saturation", "shedder" => name),
        }
    }
}

/// The saturation signal between two readings of a shedder's
/// [`stats`](Shedder::stats): 1 if it refused anything (or would have, in
/// shadow mode) between `before` and `now`, or has a queue now; else the
/// share of its limit in use. What `surgeguard_saturation` reports.
///
/// ```
/// use surgeguard::metrics::saturation;
/// use surgeguard::shed::{Priority, Shedder};
///
/// let shedder = Shedder::builder().max_concurrency(4).build()?;
/// let before = shedder.stats();
/// let _one = shedder.try_acquire(Priority::Normal).unwrap();
/// assert_eq!(saturation(&before, &shedder.stats()), 0.25);
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
pub fn saturation(before: &ShedStats, now: &ShedStats) -> f64 {
    let refused = |s: &ShedStats| {
        s.rejected_critical + s.rejected_normal + s.rejected_sheddable + s.shadow_rejected
    };
    if refused(now) > refused(before) || now.queued > 0 {
        return 1.0;
    }
    (f64::from(now.in_flight) / f64::from(now.limit.max(1))).clamp(0.0, 1.0)
}

impl Source for ShedMetrics {
    fn publish(&self) {
        let s = self.shedder.stats();
        self.limit.set(f64::from(s.limit));
        self.in_flight.set(f64::from(s.in_flight));
        self.queued.set(s.queued as f64);
        for (priority, reason, counter) in &self.rejected {
            counter.absolute(s.rejected(*priority, *reason));
        }
        self.shadow_rejected.absolute(s.shadow_rejected);
        let mut previous = self.previous.lock();
        self.saturation.set(saturation(&previous, &s));
        *previous = s;
    }
}

#[cfg(feature = "redis")]
struct RedisMetrics {
    limiter: Arc<crate::redis::RedisLimiter>,
    from_redis: Counter,
    from_over_limit_cache: Counter,
    from_lease: Counter,
    from_fallback: Counter,
    failures: Counter,
    fallback_active: Gauge,
    opened: Counter,
    closed: Counter,
    shadow_denials: Counter,
}

#[cfg(feature = "redis")]
impl RedisMetrics {
    fn new(name: &str, limiter: Arc<crate::redis::RedisLimiter>) -> Self {
        let name = name.to_owned();
        let decisions = |source: &'static str| counter!("surgeguard_redis_decisions_total", "limiter" => name.clone(), "source" => source);
        let transitions = |to: &'static str| counter!("surgeguard_redis_breaker_transitions_total", "limiter" => name.clone(), "to" => to);
        RedisMetrics {
            from_redis: decisions("redis"),
            from_over_limit_cache: decisions("over_limit_cache"),
            from_lease: decisions("lease"),
            from_fallback: decisions("fallback"),
            failures: counter!("surgeguard_redis_failures_total", "limiter" => name.clone()),
            opened: transitions("open"),
            closed: transitions("closed"),
            shadow_denials: counter!("surgeguard_redis_shadow_denials_total", "limiter" => name.clone()),
            fallback_active: gauge!("surgeguard_redis_fallback_active", "limiter" => name),
            limiter,
        }
    }
}

#[cfg(feature = "redis")]
impl Source for RedisMetrics {
    fn publish(&self) {
        let s = self.limiter.stats();
        self.from_redis.absolute(s.redis_decisions);
        self.from_over_limit_cache
            .absolute(s.over_limit_cache_denials);
        self.from_lease.absolute(s.lease_decisions);
        self.from_fallback.absolute(s.fallback_decisions);
        self.failures.absolute(s.redis_failures);
        self.opened.absolute(s.breaker_opened);
        self.closed.absolute(s.breaker_closed);
        self.shadow_denials.absolute(s.shadow_denials);
        self.fallback_active
            .set(if s.breaker_open { 1.0 } else { 0.0 });
    }
}
