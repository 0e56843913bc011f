//! Sliding windows: "at most `limit` in any window of length `W`".
//!
//! **Approximate ([`SlidingWindow`]).** Cloudflare's two-counter estimate
//! ("How we built rate limiting capable of scaling to millions of domains",
//! 2017): count requests in fixed windows aligned to multiples of `W`, and
//! estimate the sliding count at time `start + e` of the current window as
//!
//! ```text
//!     estimate = current + ⌈previous × (W − e) / W⌉
//! ```
//!
//! i.e. assume the previous window's requests were spread evenly. The exact
//! count of the last `W` is `current + x`, where `x` (the previous window's
//! requests inside the last `W`) lies between 0 and `previous`. So the
//! estimate is off by less than `previous` (at most `limit`), in detail:
//! **`exact − previous × e / W ≤ estimate ≤ exact + previous × (W − e) / W + 1`**
//! (the +1 is the rounding up). A request is allowed only if
//! `estimate + cost ≤ limit`, so in the worst case (the whole previous window
//! arrived at its very end) a sliding window of length `W` can see up to
//! `2 × limit − 1`; with traffic spread out the error is small (Cloudflare
//! measured 0.003 % of 400 million requests decided differently from an
//! exact count). State: 16 bytes per key. `tests/limit_window.rs` checks the
//! bound against an exact count.
//!
//! **Exact ([`ExactWindow`]).** A log of the last `limit` admissions per key
//! (their expiry times, oldest first, in a ring): a request of cost `n`
//! passes when the `n` oldest have left the window. Memory per key is
//! bounded by the limit, `8 × limit` bytes (at most [`MAX_EXACT_LIMIT`]),
//! allocated on a key's first admission.

use std::time::Duration;

use super::keyed::{BuildError, Keyed, KeyedBuilder};
use super::store::{sealed, KeyRule, Table};
use super::{Decision, Quota};
use crate::clock::duration_to_nanos;

/// The largest limit an [`ExactWindow`] accepts: its log takes 8 bytes per
/// unit of limit per key (512 KiB per key at this size).
///
/// ```
/// use surgeguard::limit::{BuildError, ExactWindow, Quota, MAX_EXACT_LIMIT};
///
/// let quota = Quota::per_minute(MAX_EXACT_LIMIT + 1)?;
/// let err = ExactWindow::<u64>::keyed(quota).build().unwrap_err();
/// assert!(matches!(err, BuildError::ExactWindowTooLarge { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const MAX_EXACT_LIMIT: u32 = 1 << 16;

/// The approximate sliding window per key: Cloudflare's two-counter
/// estimate, 16 bytes of state per key.
///
/// Requests are counted in fixed windows aligned to multiples of `W`; at
/// time `e` into the current window the count of the last `W` is estimated
/// as `current + ⌈previous × (W − e) / W⌉`, i.e. as if the previous
/// window's requests had been evenly spread, and a request passes if
/// `estimate + cost ≤ limit`. The exact count differs by less than
/// `previous`:
///
/// `exact − previous × e / W ≤ estimate ≤ exact + previous × (W − e) / W + 1`
///
/// so in the worst case (the previous window's requests all at its very end)
/// a sliding window of length `W` sees up to `2 × limit − 1`. With spread-out
/// traffic the error is small (Cloudflare measured 0.003 % of 400 million
/// requests decided differently from an exact count). Use [`ExactWindow`]
/// where that matters.
///
/// ```
/// use surgeguard::clock::ManualClock;
/// use surgeguard::limit::{Quota, SlidingWindow};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = SlidingWindow::keyed(Quota::per_minute(10)?).clock(clock.clone()).build()?;
/// for _ in 0..10 {
///     assert!(limiter.check(&"k").is_allowed());
/// }
/// assert!(limiter.check(&"k").is_denied());
/// clock.advance(Duration::from_secs(90)); // half of the previous window still counts
/// assert_eq!(limiter.check(&"k").remaining(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type SlidingWindow<K, S = ahash::RandomState> = Keyed<K, SlidingWindowRule, S>;

/// The exact sliding window per key: a log of the last `limit` admissions'
/// expiry times, so memory per key is bounded by the limit (`8 × limit`
/// bytes, allocated on the key's first admission; limit at most
/// [`MAX_EXACT_LIMIT`]). A request of cost `n` passes when the `n` oldest
/// admissions have left the window.
///
/// ```
/// use surgeguard::clock::ManualClock;
/// use surgeguard::limit::{ExactWindow, Quota};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = ExactWindow::keyed(Quota::per_second(2)?).clock(clock.clone()).build()?;
/// assert!(limiter.check(&1u64).is_allowed());
/// clock.advance(Duration::from_millis(600));
/// assert!(limiter.check(&1u64).is_allowed());
/// assert_eq!(limiter.check(&1u64).retry_after(), Some(Duration::from_millis(400)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type ExactWindow<K, S = ahash::RandomState> = Keyed<K, ExactWindowRule, S>;

impl<K> SlidingWindow<K> {
    /// Starts building an approximate sliding window of `quota.count()` per
    /// `quota.period()` per key. A window has no separate burst.
    ///
    /// ```
    /// # use surgeguard::limit::{BuildError, Quota, SlidingWindow};
    /// let limiter = SlidingWindow::keyed(Quota::per_second(100)?).build()?;
    /// assert!(limiter.check(&"k").is_allowed());
    /// let err = SlidingWindow::<u64>::keyed(Quota::per_second(1)?.burst(5)?).build();
    /// assert!(matches!(err, Err(BuildError::WindowBurst { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed(quota: Quota) -> KeyedBuilder<K, SlidingWindowRule> {
        KeyedBuilder::new(WindowShape::of(quota).map(|shape| SlidingWindowRule { shape }))
    }
}

impl<K> ExactWindow<K> {
    /// Starts building an exact sliding window of `quota.count()` per
    /// `quota.period()` per key (count at most [`MAX_EXACT_LIMIT`]).
    ///
    /// ```
    /// # use surgeguard::limit::{ExactWindow, Quota};
    /// let limiter = ExactWindow::keyed(Quota::per_second(3)?).build()?;
    /// assert!(limiter.check_n(&"k", 3)?.is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed(quota: Quota) -> KeyedBuilder<K, ExactWindowRule> {
        let rule = WindowShape::of(quota).and_then(|shape| {
            if shape.limit > MAX_EXACT_LIMIT {
                return Err(BuildError::ExactWindowTooLarge {
                    limit: shape.limit,
                    max: MAX_EXACT_LIMIT,
                });
            }
            Ok(ExactWindowRule { shape })
        });
        KeyedBuilder::new(rule)
    }
}

/// A window's limit and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowShape {
    limit: u32,
    /// `W`, nanoseconds; at least 1 and at most 100 years (from [`Quota`]).
    length: u64,
    length_as_duration: Duration,
}

impl WindowShape {
    fn of(quota: Quota) -> Result<WindowShape, BuildError> {
        if quota.max_burst() != quota.count() {
            return Err(BuildError::WindowBurst {
                count: quota.count(),
                burst: quota.max_burst(),
            });
        }
        Ok(WindowShape {
            limit: quota.count(),
            length: duration_to_nanos(quota.period()),
            length_as_duration: quota.period(),
        })
    }

    fn decision(&self, allowed: bool, remaining: u32, retry: u64, reset: u64) -> Decision {
        let reset_after = Duration::from_nanos(reset);
        if allowed {
            Decision::Allowed {
                limit: self.limit,
                remaining,
                reset_after,
                policy_window: self.length_as_duration,
            }
        } else {
            Decision::Denied {
                limit: self.limit,
                remaining,
                retry_after: Duration::from_nanos(retry),
                reset_after,
                policy_window: self.length_as_duration,
            }
        }
    }
}

/// The two-counter approximation's rule: see [`SlidingWindow`].
///
/// ```
/// # use surgeguard::limit::{Quota, SlidingWindow};
/// let limiter = SlidingWindow::<u64>::keyed(Quota::per_second(5)?).build()?;
/// assert!(format!("{:?}", limiter.rule()).contains("limit: 5"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindowRule {
    shape: WindowShape,
}

/// One key's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowCounters {
    /// Start of the current fixed window, a multiple of `W`.
    start: u64,
    current: u32,
    previous: u32,
}

impl SlidingWindowRule {
    /// Moves the counters to the fixed window holding `now` and returns the
    /// time elapsed in it. A clock that went backwards counts as no time
    /// passing.
    fn roll(&self, counters: &mut WindowCounters, now: u64) -> u64 {
        let length = self.shape.length;
        let now = now.max(counters.start);
        let start = now - now % length;
        if start > counters.start {
            counters.previous = if start - counters.start == length {
                counters.current
            } else {
                0
            };
            counters.current = 0;
            counters.start = start;
        }
        now - start
    }

    /// `⌈previous × (W − elapsed) / W⌉`.
    fn weighted_previous(&self, previous: u32, elapsed: u64) -> u64 {
        let length = u128::from(self.shape.length);
        let weighted = (u128::from(previous) * (length - u128::from(elapsed))).div_ceil(length);
        // At most `previous`, so it fits.
        weighted as u64
    }

    /// The elapsed time in a window from which `⌈count × (W − e) / W⌉ ≤ room`.
    fn elapsed_for_room(&self, count: u32, room: u64) -> u64 {
        if count == 0 {
            return 0;
        }
        let length = u128::from(self.shape.length);
        let allowed_rest = u128::from(room) * length / u128::from(count);
        // allowed_rest < length unless room >= count (then 0 is enough).
        length.saturating_sub(allowed_rest) as u64
    }
}

impl sealed::Sealed for SlidingWindowRule {}

impl KeyRule for SlidingWindowRule {
    type State = WindowCounters;

    /// A window's state is wider than a word: the locked table.
    type Store<K, S> = Table<K, Self, S>;

    fn fresh_state(&self) -> WindowCounters {
        WindowCounters::default()
    }

    fn max_cost(&self) -> u32 {
        self.shape.limit
    }

    fn decide(&self, counters: &mut WindowCounters, now: u64, cost: u32) -> Decision {
        let elapsed = self.roll(counters, now);
        let length = self.shape.length;
        let limit = u64::from(self.shape.limit);
        let estimate =
            u64::from(counters.current) + self.weighted_previous(counters.previous, elapsed);
        let cost = u64::from(cost);
        let allowed = estimate + cost <= limit;
        if allowed {
            // Fits in u32: current + cost <= estimate + cost <= limit.
            counters.current += cost as u32;
        }
        let used = if allowed { estimate + cost } else { estimate };
        let remaining = limit.saturating_sub(used) as u32;
        let until_window_end = length - elapsed;
        let reset = if counters.current > 0 {
            until_window_end + length
        } else if counters.previous > 0 {
            until_window_end
        } else {
            0
        };
        let retry = if allowed {
            0
        } else if u64::from(counters.current) + cost <= limit {
            // Waiting in this window: the previous window's weight shrinks.
            let room = limit - cost - u64::from(counters.current);
            self.elapsed_for_room(counters.previous, room)
                .saturating_sub(elapsed)
        } else {
            // Only in the next window, once this one weighs little enough.
            until_window_end + self.elapsed_for_room(counters.current, limit - cost)
        };
        self.shape.decision(allowed, remaining, retry, reset)
    }

    fn refund(&self, counters: &mut WindowCounters, now: u64, cost: u32) {
        self.roll(counters, now);
        let from_current = cost.min(counters.current);
        counters.current -= from_current;
        counters.previous = counters.previous.saturating_sub(cost - from_current);
    }

    fn idle_at(&self, counters: &WindowCounters) -> u64 {
        let length = self.shape.length;
        if counters.current > 0 {
            counters.start.saturating_add(2 * length)
        } else if counters.previous > 0 {
            counters.start.saturating_add(length)
        } else {
            counters.start
        }
    }

    fn limit(&self) -> u32 {
        self.shape.limit
    }

    fn policy_window(&self) -> Duration {
        self.shape.length_as_duration
    }
}

/// The exact window's rule: see [`ExactWindow`].
///
/// ```
/// # use surgeguard::limit::{ExactWindow, Quota};
/// let limiter = ExactWindow::<u64>::keyed(Quota::per_second(5)?).build()?;
/// assert!(format!("{:?}", limiter.rule()).contains("limit: 5"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactWindowRule {
    shape: WindowShape,
}

/// One key's log: the expiry times of its last `limit` admissions, oldest
/// first from `oldest`, in a ring. Empty until the first admission; a 0
/// is an admission that expired long ago.
#[derive(Debug, Default)]
pub struct AdmissionLog {
    expiries: Box<[u64]>,
    oldest: u32,
}

impl AdmissionLog {
    /// The `n`-th oldest expiry (0-based), 0 for a log never written.
    fn nth_oldest(&self, n: u32) -> u64 {
        let len = self.expiries.len();
        if len == 0 {
            return 0;
        }
        self.expiries[(self.oldest as usize + n as usize) % len]
    }

    fn newest(&self, limit: u32) -> u64 {
        self.nth_oldest(limit - 1)
    }

    /// Entries still in the window at `now`: expiries are sorted oldest
    /// first, so count from the newest end by binary search.
    fn in_window(&self, limit: u32, now: u64) -> u32 {
        let (mut expired, mut live) = (0u32, limit);
        // Invariant: entries [0, expired) have expired, [live, limit) have not.
        while expired < live {
            let middle = expired + (live - expired) / 2;
            if self.nth_oldest(middle) <= now {
                expired = middle + 1;
            } else {
                live = middle;
            }
        }
        limit - expired
    }
}

impl sealed::Sealed for ExactWindowRule {}

impl KeyRule for ExactWindowRule {
    type State = AdmissionLog;

    /// A window's state is wider than a word: the locked table.
    type Store<K, S> = Table<K, Self, S>;

    fn fresh_state(&self) -> AdmissionLog {
        AdmissionLog::default()
    }

    fn max_cost(&self) -> u32 {
        self.shape.limit
    }

    fn decide(&self, log: &mut AdmissionLog, now: u64, cost: u32) -> Decision {
        let limit = self.shape.limit;
        let length = self.shape.length;
        let newest = log.newest(limit);
        // A clock that went backwards counts as no time passing, which also
        // keeps the log sorted.
        let now = now.max(newest.saturating_sub(length));
        let live = log.in_window(limit, now);
        // The `cost` oldest entries must have left the window.
        let allowed = cost == 0 || log.nth_oldest(cost - 1) <= now;
        if allowed && cost > 0 {
            if log.expiries.is_empty() {
                log.expiries = vec![0; limit as usize].into_boxed_slice();
            }
            let expiry = now.saturating_add(length);
            for n in 0..cost {
                let index = (log.oldest as usize + n as usize) % limit as usize;
                log.expiries[index] = expiry;
            }
            log.oldest = ((log.oldest as usize + cost as usize) % limit as usize) as u32;
        }
        let used = if allowed { live + cost } else { live };
        let retry = if allowed {
            0
        } else {
            log.nth_oldest(cost - 1).saturating_sub(now)
        };
        let reset = log.newest(limit).saturating_sub(now);
        self.shape
            .decision(allowed, limit.saturating_sub(used), retry, reset)
    }

    fn refund(&self, log: &mut AdmissionLog, _now: u64, cost: u32) {
        let limit = self.shape.limit as usize;
        if log.expiries.is_empty() {
            return;
        }
        // The newest `cost` entries become the oldest, expired long ago; the
        // entries they had overwritten had already left the window.
        let cost = (cost as usize).min(limit);
        let oldest = (log.oldest as usize + limit - cost) % limit;
        for n in 0..cost {
            log.expiries[(oldest + n) % limit] = 0;
        }
        log.oldest = oldest as u32;
    }

    fn idle_at(&self, log: &AdmissionLog) -> u64 {
        log.newest(self.shape.limit)
    }

    fn limit(&self) -> u32 {
        self.shape.limit
    }

    fn policy_window(&self) -> Duration {
        self.shape.length_as_duration
    }
}
