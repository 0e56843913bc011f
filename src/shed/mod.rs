//! Load shedding: keep concurrency near capacity and answer the excess at
//! once.
//!
//! In the outage this crate exists for, web servers accepted every request
//! until memory and CPU ran out, and latency went to 30 seconds for everyone.
//! A [`Shedder`] admits a request only while fewer than its *limit* run;
//! the rest get a [`Rejected`] at once (a 503 with `Retry-After`), and the
//! requests that were admitted stay fast.
//!
//! ```text
//!   try_acquire(priority) ── in_flight < cap(limit, priority)? ──► Permit (RAII)
//!                          └─ else ──► Rejected { reason, retry_after }
//!   acquire(priority)     ── same, else wait in a bounded queue until a
//!                            released slot is handed over or the deadline
//!   Permit::record(outcome) ── latency, drop? ──► LimitAlgorithm ──► new limit
//! ```
//!
//! * **Limits**: fixed ([`ShedderBuilder::max_concurrency`]) or adaptive
//!   ([`AdaptiveLimit`]: AIMD, Vegas, Gradient), learned from the latency of
//!   completed requests; or your own [`LimitAlgorithm`].
//! * **Priorities**: [`Priority::Critical`] may use the whole limit;
//!   [`Priority::Normal`] leaves a share reserved for Critical (20 % by
//!   default); [`Priority::Sheddable`] leaves a further 10 % (so browsing is
//!   shed before checkout).
//! * **Permits are RAII**: dropping one (a panic, a cancelled future)
//!   releases its slot; only [`Permit::record`] teaches the limit.
//! * **A bounded wait queue** ([`ShedderBuilder::queue`], waited on by
//!   `Shedder::acquire` with the `tokio` feature): each request waits at
//!   most its deadline; a queue that stays non-empty for 100 ms turns LIFO
//!   and cuts waits to 5 ms (adaptive LIFO, as Facebook describes it), so
//!   fresh requests are served and stale ones fail fast.
//!
//! ```
//! use surgeguard::shed::{AdaptiveLimit, Outcome, Priority, Shedder};
//!
//! let shedder = Shedder::builder()
//!     .limit(AdaptiveLimit::gradient().min(8).max(1_000))
//!     .build()?;
//! match shedder.try_acquire(Priority::Critical) {
//!     Ok(permit) => {
//!         // ... handle the request ...
//!         permit.record(Outcome::Success);
//!     }
//!     Err(rejected) => println!("503, Retry-After: {}", rejected.retry_after().as_secs()),
//! }
//! # Ok::<(), surgeguard::shed::BuildError>(())
//! ```

#[cfg(feature = "tokio")]
mod acquire;
mod builder;
mod limit;
mod queue;
mod shedder;

pub use builder::{BuildError, ShedderBuilder};
pub use limit::{AdaptiveLimit, LimitAlgorithm, Sample};
pub use shedder::{Outcome, Permit, RejectReason, Rejected, ShedStats, Shedder};

/// How much a request matters when the server is full.
///
/// ```
/// use surgeguard::shed::Priority;
/// assert!(Priority::Critical > Priority::Normal && Priority::Normal > Priority::Sheddable);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Shed first: work that can be skipped (recommendations, prefetches).
    Sheddable,
    /// Ordinary requests.
    Normal,
    /// Kept when everything else is shed (checkout, health checks).
    Critical,
}
