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
//!   acquire(priority)     ── same, else wait in a bounded queue until room
//!                            appears (a release, a raised limit) or the deadline
//!   Permit::record(outcome) ── latency, drop? ──► LimitAlgorithm ──► new limit
//! ```
//!
//! * **Limits**: fixed ([`ShedderBuilder::max_concurrency`]) or adaptive
//!   ([`AdaptiveLimit`]: AIMD, Vegas, Gradient), learned from the latency of
//!   completed requests; or your own [`LimitAlgorithm`].
//! * **Priorities**: [`Priority::Critical`] may use the whole limit;
//!   [`Priority::Normal`] leaves a share reserved for Critical (20 % by
//!   default); [`Priority::Sheddable`] leaves a further 10 % (so browsing is
//!   shed before checkout). At small limits Critical still keeps a slot of
//!   its own, and Sheddable gets less than Normal (see
//!   [below](#priorities-at-small-limits)).
//! * **Permits are RAII**: dropping one (a panic, a cancelled future)
//!   releases its slot; only [`Permit::record`] teaches the limit.
//! * **A bounded wait queue** ([`ShedderBuilder::queue`], waited on by
//!   `Shedder::acquire` with the `tokio` feature): whenever room appears (a
//!   permit released, the limit raised), as many waiters as now fit are
//!   admitted, Critical ones first, before any newcomer, and a released
//!   slot goes straight to a waiter; a newcomer never overtakes a waiter
//!   of its priority or a higher one.
//!   Each request waits at most its deadline; a priority's line that stays
//!   non-empty for 100 ms turns LIFO and cuts its waits to 5 ms (adaptive
//!   LIFO, as Facebook describes it), so fresh requests are served and
//!   stale ones fail fast; a standing line of browsing does not cut the
//!   wait of a checkout behind it. A full queue turns away its least important waiter to make
//!   room for a request that outranks it.
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
//!
//! # Priorities at small limits
//!
//! A share of the limit rounded down is nothing at a small limit: 20 % of 4
//! is 0, so Critical would have no slot of its own just when an overloaded
//! limit has fallen that low, and Sheddable would get as much as Normal.
//! So, for a limit `L` (at least 1) and the shares `r`
//! ([`critical_reserve`](ShedderBuilder::critical_reserve), default 0.2)
//! and `m` ([`sheddable_margin`](ShedderBuilder::sheddable_margin), default
//! 0.1), a request of each priority is admitted while fewer than its cap
//! are in flight:
//!
//! * **Critical**: `L`.
//! * **Normal**: `L - reserve`, with `reserve = max(1, floor(L × r))`, but at
//!   most `L - 1`; nothing when `r` is 0.
//! * **Sheddable**: Normal's cap less `max(1, floor(L × (r + m)) - reserve)`,
//!   but at most Normal's cap less 1; Normal's cap when `m` is 0.
//!
//! So from a limit of 2 up Critical always keeps a slot Normal cannot
//! take; Sheddable gets strictly less than Normal whenever Normal's cap is
//! 2 or more (with the default shares, from a limit of 3 up; a reserve of
//! two thirds or more leaves Normal one slot at a limit of 3, and then
//! Sheddable gets that one too); every priority gets at least one slot (a limit of 1 serves whoever comes
//! first), and no cap falls as the limit rises. Once `floor(L × r)` and
//! `floor(L × m)` are 1 or more (with the default shares, from a limit of
//! 10 up) the caps are the nominal shares rounded down, `L - floor(L × r)`
//! and `L - floor(L × (r + m))`: what is held back is never more than the
//! nominal 20 % and 30 %. The price of the small-limit rule: a limit that
//! has collapsed to a few requests keeps one of them for Critical even
//! when none comes (`critical_reserve(0.0)` gives it away). With the
//! default shares:
//!
//! | limit     | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 20 | 50 | 100 | 1,000 |
//! |-----------|---|---|---|---|---|---|---|---|---|----|----|----|-----|-------|
//! | Critical  | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 20 | 50 | 100 | 1,000 |
//! | Normal    | 1 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 8  | 16 | 40 | 80  | 800   |
//! | Sheddable | 1 | 1 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 7  | 14 | 35 | 70  | 700   |
//!
//! ```
//! use surgeguard::shed::{Priority, Shedder};
//!
//! // A limit of 3: one slot each for Sheddable, Normal and Critical.
//! let shedder = Shedder::builder().max_concurrency(3).build()?;
//! let sheddable = shedder.try_acquire(Priority::Sheddable).unwrap();
//! assert!(shedder.try_acquire(Priority::Sheddable).is_err());
//! let normal = shedder.try_acquire(Priority::Normal).unwrap();
//! assert!(shedder.try_acquire(Priority::Normal).is_err());
//! let critical = shedder.try_acquire(Priority::Critical).unwrap();
//! # drop((sheddable, normal, critical));
//! # Ok::<(), surgeguard::shed::BuildError>(())
//! ```

#[cfg(feature = "tokio")]
mod acquire;
mod admission;
mod builder;
mod limit;
mod queue;
mod shedder;
mod sync;

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
