//! One rate limit shared by a fleet of servers, kept in Redis (feature
//! `redis`).
//!
//! In the outage this crate exists for, the fix was more servers behind a
//! load balancer, and per-server limits then no longer add up to one limit.
//! Redis is the shared engine:
//!
//! ```text
//!  check(key) ─► over-limit cache ─► lease ─► breaker ─► Redis: EVALSHA, one round trip
//!                (denied until T)   (units    (closed?)    GCRA or sliding window,
//!                                    in hand)               Redis's own clock
//!                                                 └─ open / failed ─► Fallback
//!                                                    (FailOpen, FailClosed, Local { share })
//! ```
//!
//! * **One atomic step per decision**: a Lua script ([`RedisGcra`]: GCRA,
//!   [`RedisWindow`]: the approximate sliding window) runs with `EVALSHA`,
//!   loaded again on `NOSCRIPT`, and reads the time from Redis, so servers'
//!   clocks may drift without changing decisions.
//! * **One key per decision**, `prefix{key}` with an expiry: Redis memory
//!   stays bounded and Redis Cluster never answers `CROSSSLOT` (several
//!   published limiters failed open on exactly that).
//! * **Local answers first**: a key Redis denied is denied locally until its
//!   retry time (an attacker's flood costs Redis one call per retry time);
//!   with [`lease`](RedisLimiterBuilder::lease), a hot key costs one call
//!   per batch.
//! * **Failure policy**: a per-call timeout (50 ms by default, connecting
//!   included), a circuit breaker so a dead Redis does not add the timeout to
//!   every request, and a [`Fallback`]; recovery is automatic (one probe per
//!   cool-down). Each breaker transition is logged once (`tracing`) and
//!   counted in [`RedisStats`].
//! * Concurrent checks share one multiplexed connection (pipelined by the
//!   `redis` crate's connection manager).
//!
//! ```no_run
//! use surgeguard::limit::Quota;
//! use surgeguard::redis::{Fallback, RedisGcra};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RedisGcra::builder("redis://127.0.0.1:6379", Quota::per_second(100)?)
//!     .prefix("shop:rl:")
//!     .on_unavailable(Fallback::Local { share: 1.0 / 8.0 }) // or FailOpen / FailClosed
//!     .build()
//!     .await?;
//! let client_ip: std::net::IpAddr = "198.51.100.4".parse()?;
//! let decision = limiter.check(&client_ip).await?; // the same Decision as the local limiters
//! # let _ = decision;
//! # Ok(()) }
//! ```

mod async_limit;
mod breaker;
mod builder;
mod connection;
mod error;
mod fallback;
mod limiter;
mod local;
mod scripts;
mod tier;

pub use async_limit::RedisKey;
pub use builder::{RedisGcra, RedisLimiterBuilder, RedisWindow};
pub use error::{BuildError, CheckError};
pub use fallback::Fallback;
pub use limiter::{RedisLimiter, RedisStats};
pub use tier::{RedisTier, RedisTierBuilder, RedisTierStats};
