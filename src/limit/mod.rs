//! Rate limiters: an inline check that costs nanoseconds and says what to
//! tell the client.
//!
//! In the outage this crate exists for, nothing stopped a surge or a handful
//! of abusive clients from taking all capacity. A handler asks a limiter
//! before doing work; the [`Decision`] carries what the `RateLimit`,
//! `RateLimit-Policy` and `Retry-After` headers need.
//!
//! ```text
//!   Quota (rate, burst; validated) ──► Gcra (one key: one atomic word)
//!                                  ──► Keyed<K, rule> ── hash once ──► GCRA: tag table, no lock
//!                                        rule: GCRA | sliding window | exact window (locked shards)
//!   AllOf (per IP + global …) ── consumes from none unless all allow
//! ```
//!
//! * [`Gcra`]: the generic cell rate algorithm, equivalent to a token bucket
//!   whose state is one timestamp, the *theoretical arrival time* (TAT). A
//!   check is one compare-and-swap on an `AtomicU64`, no lock
//!   (`gcra.rs`; the arithmetic it shares with the keyed store:
//!   `gcra_rule.rs`). An opt-in split into stripes trades a documented, bounded
//!   under-admission for no shared write between threads (`Gcra::direct` →
//!   [`GcraBuilder::stripes`]).
//! * [`KeyedGcra`], [`SlidingWindow`], [`ExactWindow`]: one limit per key
//!   (client IP, API token) in a table that holds at most `max_keys` keys
//!   whatever arrives (`keyed.rs`, over the key store in `store/`: its
//!   module doc says why there are two storages); what happens when it is
//!   full of active keys is a [`WhenFull`] policy. A keyed GCRA
//!   checks a tracked key with no lock at all: plain loads to find it, and
//!   the same compare-and-swap when it is allowed, so threads sharing keys do
//!   not queue.
//! * [`SlidingWindow`] is the two-counter weighted approximation Cloudflare
//!   describes, with its error bound documented; [`ExactWindow`] keeps a log
//!   of at most `limit` timestamps per key (`window.rs`).
//! * [`AllOf`]: several limits, all-or-nothing (`all_of.rs`).
//!
//! Every limiter reads time through a [`Clock`](crate::clock::Clock), so
//! tests drive a [`ManualClock`](crate::clock::ManualClock) and never sleep.
//! A clock that goes backwards is treated as "no time has passed": no panic,
//! no refill.
//!
//! ```
//! use std::net::IpAddr;
//! use surgeguard::limit::{Decision, Gcra, Quota, RateLimiter};
//!
//! let quota = Quota::per_second(100)?.burst(200)?;
//! let per_ip = Gcra::keyed(quota).max_keys(1_000_000).build()?;
//! let client_ip: IpAddr = "192.0.2.7".parse()?;
//! match per_ip.check(&client_ip) {
//!     Decision::Allowed { remaining, .. } => assert_eq!(remaining, 199),
//!     Decision::Denied { retry_after, .. } => panic!("429, Retry-After: {retry_after:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod all_of;
mod counted;
mod decision;
mod gcra;
mod gcra_rule;
mod keyed;
mod quota;
mod remote;
mod shadow;
mod store;
mod window;

use std::sync::Arc;

pub use all_of::AllOf;
pub use counted::Counted;
pub use decision::{CheckError, Decision};
pub use gcra::{Gcra, GcraBuilder};
pub use keyed::{BuildError, Keyed, KeyedBuilder, KeyedGcra, WhenFull};
pub use quota::{Quota, QuotaError, MAX_PERIOD};
pub use remote::{AsyncRateLimiter, Checked, Local, LocalThenRemote, NeverPending};
pub use shadow::Shadow;
pub use store::MAX_SHARDS;
pub use window::{ExactWindow, SlidingWindow, MAX_EXACT_LIMIT};

/// What every limiter offers: check a request's cost against a key's limit.
/// The HTTP middleware and the Redis backend are written against this trait.
///
/// * [`check`](Self::check) asks for one unit and cannot fail.
/// * [`check_n`](Self::check_n) asks for `cost` units: a cost that can never
///   pass (more than the burst) is a [`CheckError`], not an eternal denial.
///   A cost of 0 looks without taking anything.
/// * [`refund`](Self::refund) gives back what an allowed check took; it is
///   how [`AllOf`] rolls back when a later limit denies.
///
/// ```
/// use surgeguard::limit::{Decision, Gcra, Quota, RateLimiter};
///
/// fn serve<L: RateLimiter<u64>>(limiter: &L, user: u64) -> u16 {
///     match limiter.check(&user) {
///         Decision::Allowed { .. } => 200,
///         Decision::Denied { .. } => 429,
///     }
/// }
/// let limiter = Gcra::keyed(Quota::per_minute(1)?).max_keys(10).build()?;
/// assert_eq!(serve(&limiter, 7), 200);
/// assert_eq!(serve(&limiter, 7), 429);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait RateLimiter<K: ?Sized>: Send + Sync {
    /// Takes one unit from `key`'s limit if it has one.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota, RateLimiter};
    /// let global = Gcra::direct(Quota::per_second(1)?).build()?;
    /// assert!(RateLimiter::check(&global, &()).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn check(&self, key: &K) -> Decision;

    /// Takes `cost` units from `key`'s limit if it has them all; takes
    /// nothing otherwise.
    ///
    /// ```
    /// # use surgeguard::limit::{CheckError, Gcra, Quota, RateLimiter};
    /// let upload = Gcra::keyed(Quota::per_second(1_000)?)
    /// #   // A clock that stands still: no unit refills between the checks,
    /// #   // however slowly the example runs.
    /// #   .clock(surgeguard::clock::ManualClock::new())
    ///     .max_keys(10)
    ///     .build()?;
    /// assert_eq!(upload.check_n(&"alice", 600)?.remaining(), 400);
    /// assert!(upload.check_n(&"alice", 600)?.is_denied());
    /// assert_eq!(
    ///     upload.check_n(&"alice", 1_001),
    ///     Err(CheckError::CostExceedsBurst { cost: 1_001, burst: 1_000 }),
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn check_n(&self, key: &K, cost: u32) -> Result<Decision, CheckError>;

    /// Gives back `cost` units that an allowed check of `key` took. Refunds
    /// are for undoing a check at once (as [`AllOf`] does); a refund never
    /// leaves more than a full burst.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota, RateLimiter};
    /// let limiter = Gcra::keyed(Quota::per_minute(1)?).max_keys(10).build()?;
    /// assert!(limiter.check(&1).is_allowed());
    /// limiter.refund(&1, 1);
    /// assert!(limiter.check(&1).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn refund(&self, key: &K, cost: u32);
}

impl<K: ?Sized, L: RateLimiter<K> + ?Sized> RateLimiter<K> for Arc<L> {
    #[inline]
    fn check(&self, key: &K) -> Decision {
        (**self).check(key)
    }

    #[inline]
    fn check_n(&self, key: &K, cost: u32) -> Result<Decision, CheckError> {
        (**self).check_n(key, cost)
    }

    #[inline]
    fn refund(&self, key: &K, cost: u32) {
        (**self).refund(key, cost);
    }
}
