//! # surgeguard
//!
//! Keep a web service standing when traffic spikes.
//!
//! An online shop went down for four and a half hours during a sales event:
//! a spike exhausted its web servers and database, failures cascaded, and most
//! users saw 30-second page loads. The fixes its engineers listed were to cache
//! hot data, rate-limit and shed load beyond capacity, and watch all of it.
//! surgeguard is those fixes as one crate that handlers call inline.
//!
//! ## The map
//!
//! ```text
//! surgeguard
//! ├── cache    sharded concurrent cache: bounded by count or weight, TTL/TTI,
//! │            scan-resistant eviction, stampede protection (single-flight
//! │            loads, refresh-ahead, stale windows)
//! │                                   (cache/{builder,shard,policy,expiry,stats,load})
//! ├── loadtest feature `loadtest`: an open-loop load tester that finds a
//! │            service's knee and prints the settings that protect it  (loadtest/)
//! ├── limit    rate limiters: GCRA (one timestamp per key, lock-free for one), sliding windows
//! │            (approximate and exact), keyed with bounded memory under key
//! │            floods, all-of composition  (limit/{quota,gcra,keyed,table,window,all_of})
//! ├── http     feature `tower`: RateLimitLayer, ResponseCacheLayer (RFC 9111)  (http/)
//! ├── metrics  feature `metrics`: Reporter publishes every component's stats
//! │            through the `metrics` facade; the saturation signal  (metrics/)
//! ├── redis    feature `redis`: one limit for a fleet, in Redis (GCRA and
//! │            sliding-window scripts, breaker + fallback, leases)  (redis/)
//! ├── shed     load shedding: concurrency limits, fixed or adaptive (AIMD,
//! │            Vegas, Gradient), priorities with a reserve for Critical,
//! │            RAII permits                (shed/{builder,shedder,limit/})
//! └── clock    Clock trait, SystemClock, ManualClock: every time-based part
//!              takes a Clock, so tests drive time by hand
//! ```
//!
//! Behind the `metrics` feature, `metrics::Reporter` publishes every
//! component's figures through the `metrics` facade, with a saturation
//! signal for autoscalers.
//! The core modules never depend on the edges.
//!
//! ## Quick start
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use surgeguard::cache::Cache;
//!
//! let cache: Cache<u64, Arc<String>> = Cache::builder()
//!     .max_capacity(100_000)
//!     .time_to_live(Duration::from_secs(60))
//!     .build()?;
//! cache.insert(1, Arc::new("page".to_string()));
//! assert_eq!(cache.get(&1).as_deref().map(String::as_str), Some("page"));
//! # Ok::<(), surgeguard::cache::BuildError>(())
//! ```
//!
//! ## Design rules
//!
//! * No global lock on a hot path; work per operation is small and bounded
//!   (eviction and expiry are incremental, never a sweep).
//! * Builders validate and return `Result`; bad settings are errors that say
//!   what to change, never panics under load.
//! * Time is injected ([`clock::Clock`]); no test sleeps.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(rust_2018_idioms, missing_debug_implementations)]

pub mod cache;
pub mod clock;
#[cfg(feature = "tracing")]
mod events;
#[cfg(feature = "tower")]
pub mod http;
pub mod limit;
#[cfg(feature = "loadtest")]
pub mod loadtest;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "redis")]
pub mod redis;
pub mod shed;
