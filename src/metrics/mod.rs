//! Every component's figures through the [`metrics`](https://docs.rs/metrics)
//! facade, and a saturation signal for autoscalers (feature `metrics`).
//!
//! In the outage, alerts fired 15 minutes after customers noticed, and the
//! capacity fix was manual. The numbers that would have shown it coming
//! (shed and queued requests, a shrinking concurrency limit, a cache's
//! stale serves, Redis fallbacks) are all counted by the components
//! already; this module publishes them.
//!
//! **Pull, not push: no cost on a hot path.** The components keep their own
//! counters (a cache hit bumps one atomic in its shard, which `stats()`
//! sums); a [`Reporter`] reads `stats()` when asked ([`Reporter::report`],
//! or every interval with [`Reporter::run`]) and sets `metrics` counters
//! (`absolute`) and gauges through handles registered once, when each
//! component is added. Nothing is looked up per operation, and a cache hit
//! costs the same with the feature on or off.
//!
//! **Names** (Prometheus conventions; the label in brackets is the name you
//! give the component):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `surgeguard_cache_requests_total` | counter | `cache`, `result` = `hit` \| `miss` \| `stale` (a stale serve is a miss that found an expired value in its stale window) |
//! | `surgeguard_cache_loads_total` | counter | `cache`, `result` = `ok` \| `error` |
//! | `surgeguard_cache_loads_coalesced_total` | counter | `cache` |
//! | `surgeguard_cache_load_duration_seconds_sum`, `_count` | gauge (growing), counter | `cache`: time spent in loads and loads begun, so `rate(sum) / rate(count)` is the mean load time (a summary without quantiles: a histogram would need the load path to push every sample) |
//! | `surgeguard_cache_refreshes_total` | counter | `cache` |
//! | `surgeguard_cache_evictions_total` | counter | `cache`, `cause` = `size` \| `expired` |
//! | `surgeguard_cache_entries` | gauge | `cache` |
//! | `surgeguard_cache_tier_misses_total` | counter | `cache`, `result` = `remote_hit` \| `remote_stale` \| `leased_load` \| `local_load`: how a [`TieredCache`](crate::cache::TieredCache)'s local misses were answered (the shared tier's fresh value, its stale value while another instance reloads, a load here holding the lease, a load here without the shared tier) |
//! | `surgeguard_cache_tier_fleet_waits_total` | counter | `cache`: loads that waited for another instance's |
//! | `surgeguard_cache_tier_lease_takeovers_total` | counter | `cache`: leases taken after another holder's ended without a value |
//! | `surgeguard_cache_tier_decode_errors_total` | counter | `cache`: shared bytes that did not decode (each a miss) |
//! | `surgeguard_cache_tier_too_large_total` | counter | `cache`: values kept local for their size |
//! | `surgeguard_cache_tier_remote_errors_total` | counter | `cache`: failed calls to the shared tier |
//! | `surgeguard_cache_tier_invalidations_total` | counter | `cache`: invalidations heard from the fleet |
//! | `surgeguard_shed_limit` | gauge | `shedder` |
//! | `surgeguard_shed_inflight` | gauge | `shedder` |
//! | `surgeguard_shed_queued` | gauge | `shedder` |
//! | `surgeguard_shed_rejected_total` | counter | `shedder`, `priority` = `critical` \| `normal` \| `sheddable`, `reason` = `limit` \| `queue_full` \| `deadline` |
//! | `surgeguard_shed_shadow_rejected_total` | counter | `shedder` (shadow mode: admitted, would have been refused) |
//! | `surgeguard_saturation` | gauge, 0 to 1 | `shedder` (see below) |
//! | `surgeguard_ratelimit_decisions_total` | counter | `limiter`, `decision` = `allowed` \| `denied` (a [`Counted`](crate::limit::Counted) limiter) |
//! | `surgeguard_redis_decisions_total` | counter | `limiter`, `source` = `redis` \| `over_limit_cache` \| `lease` \| `fallback` |
//! | `surgeguard_redis_failures_total` | counter | `limiter` |
//! | `surgeguard_redis_fallback_active` | gauge, 0 or 1 | `limiter` (the breaker is open) |
//! | `surgeguard_redis_breaker_transitions_total` | counter | `limiter`, `to` = `open` \| `closed` |
//! | `surgeguard_redis_shadow_denials_total` | counter | `limiter` (shadow mode: allowed, would have been denied) |
//!
//! **Saturation** (`surgeguard_saturation`), per shedder, between reports:
//! 1 if it refused or queued anything since the last report (it is past
//! capacity), else the peak of `in_flight / limit` seen at the report. It
//! rises as in-flight work approaches the limit, before latency does (the
//! limit is set where latency starts to climb), and saturates at 1 while
//! load is shed. Scale out on it: for example a Kubernetes
//! HorizontalPodAutoscaler on this custom metric (through
//! prometheus-adapter) with a target average of 0.7. `docs/operations.md`
//! has the runbook.
//!
//! ```
//! use surgeguard::cache::Cache;
//! use surgeguard::metrics::Reporter;
//! use surgeguard::shed::Shedder;
//!
//! // Install a recorder first (metrics-exporter-prometheus, for example):
//! // handles are bound to the recorder installed when a component is added.
//! let products: Cache<u64, String> = Cache::builder().max_capacity(1_000).build()?;
//! let database = Shedder::builder().max_concurrency(16).build()?;
//! let reporter = Reporter::new().cache("products", &products).shedder("database", &database);
//! reporter.report(); // or: tokio::spawn(reporter.run(Duration::from_secs(1)))
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod reporter;

pub use reporter::{saturation, Reporter};
