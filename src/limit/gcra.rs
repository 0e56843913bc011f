//! GCRA: a token bucket whose whole state is one timestamp.
//!
//! The generic cell rate algorithm (ATM Forum, TM 4.0, 1996; the "virtual
//! scheduling" form) keeps a *theoretical arrival time* (TAT): when the
//! bucket would be full again if nothing else arrived. With emission interval
//! `T` (time to earn one unit) and tolerance `τ = burst × T`, a request of
//! cost `n` at time `now` passes when
//!
//! ```text
//!     max(TAT, now) + n·T − now ≤ τ          and then TAT ← max(TAT, now) + n·T
//! ```
//!
//! which is exactly a bucket of `burst` tokens refilled one per `T` (the
//! bucket holds `(τ − max(0, TAT − now)) / T` tokens). A TAT at or before
//! `now` means a full bucket: that is why a keyed table may forget such a key
//! without changing any future decision.
//!
//! [`Gcra`] (one key) keeps the TAT in an `AtomicU64`; a check reads the
//! clock and runs one compare-and-swap loop, no lock. A denial writes
//! nothing, so threads that are being refused share the cache line instead
//! of fighting over it.
//!
//! **Stripes.** When every check is allowed, every check writes the same
//! word, and two cores pass its cache line back and forth (governor's direct
//! limiter, which works the same way, measures about 49 ns per check per
//! thread at two threads against 9 ns at one, on the project's 2-core
//! machine). [`GcraBuilder::stripes`] splits the budget into `n` independent
//! buckets, each with `burst / n` of the burst and `1 / n` of the rate; a
//! thread uses its own stripe first and tries the others before denying. The
//! sum of the stripes never admits more than the whole would (`burst + rate ×
//! elapsed`); the price is bounded under-admission: a request is denied when
//! no single stripe holds its cost, so at most `stripes × cost` units can be
//! left unused at a moment when the unsplit bucket would have served them,
//! and no single check may cost more than the largest stripe's burst.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::decision::DecisionParts;
use super::gcra_rule::GcraRule;
use super::keyed::{BuildError, KeyedBuilder};
use super::{CheckError, Decision, Quota, RateLimiter};
use crate::clock::{Clock, SystemClock};

/// The most stripes a direct limiter may be split into. Past a few per core
/// more stripes only add under-admission.
const MAX_STRIPES: usize = 64;

/// One bucket of a direct limiter, on a cache line pair of its own so that
/// stripes used by different cores never share one (128 bytes: adjacent-line
/// prefetchers fetch lines in pairs).
#[repr(align(128))]
struct Stripe {
    tat: AtomicU64,
    rule: GcraRule,
}

impl Stripe {
    #[inline]
    fn check(&self, now: u64, cost: u32) -> Decision {
        self.rule.decide_atomic(&self.tat, now, cost)
    }
}

/// A single-key GCRA limiter: one global limit, or one you keep per object
/// yourself. A check is one compare-and-swap, no lock.
///
/// ```
/// use surgeguard::clock::ManualClock;
/// use surgeguard::limit::{Gcra, Quota};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = Gcra::direct(Quota::per_second(10)?).clock(clock.clone()).build()?;
/// for _ in 0..10 {
///     assert!(limiter.check().is_allowed());
/// }
/// assert!(limiter.check().is_denied());
/// clock.advance(Duration::from_millis(100)); // earns one back
/// assert!(limiter.check().is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The clock is a type parameter (default [`SystemClock`]) rather than a
/// trait object, as a check takes a few nanoseconds: reading it through
/// `dyn Clock` cost an indirect call on every check and kept the clock's
/// code from being inlined.
pub struct Gcra<C = SystemClock> {
    stripes: Box<[Stripe]>,
    /// The largest cost a single stripe can serve.
    max_cost: u32,
    clock: C,
}

impl Gcra {
    /// Starts building a single-key limiter.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::direct(Quota::per_second(100)?).build()?;
    /// assert!(limiter.check().is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn direct(quota: Quota) -> GcraBuilder {
        GcraBuilder {
            quota,
            stripes: 1,
            clock: SystemClock,
        }
    }

    /// Starts building a limiter with one GCRA bucket per key.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let per_user = Gcra::keyed(Quota::per_second(10)?).max_keys(50_000).build()?;
    /// assert!(per_user.check(&"alice").is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed<K>(quota: Quota) -> KeyedBuilder<K, GcraRule> {
        KeyedBuilder::new(Ok(GcraRule::new(quota)))
    }
}

impl<C: Clock> Gcra<C> {
    /// Takes one unit if there is one.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::direct(Quota::per_hour(1)?).build()?;
    /// assert!(limiter.check().is_allowed());
    /// assert!(limiter.check().is_denied());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn check(&self) -> Decision {
        self.check_at(self.clock.now().as_nanos(), 1)
    }

    /// Takes `cost` units if they are all there; a cost of 0 only looks.
    ///
    /// ```
    /// # use surgeguard::limit::{CheckError, Gcra, Quota};
    /// let limiter = Gcra::direct(Quota::per_second(10)?)
    /// #   // A clock that stands still: no unit refills between the checks,
    /// #   // however slowly the example runs.
    /// #   .clock(surgeguard::clock::ManualClock::new())
    ///     .build()?;
    /// assert_eq!(limiter.check_n(4)?.remaining(), 6);
    /// assert_eq!(limiter.check_n(0)?.remaining(), 6);
    /// assert!(matches!(limiter.check_n(11), Err(CheckError::CostExceedsBurst { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn check_n(&self, cost: u32) -> Result<Decision, CheckError> {
        if cost > self.max_cost {
            return Err(CheckError::CostExceedsBurst {
                cost,
                burst: self.max_cost,
            });
        }
        Ok(self.check_at(self.clock.now().as_nanos(), cost))
    }

    /// Gives back `cost` units an allowed check took.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::direct(Quota::per_hour(1)?).build()?;
    /// assert!(limiter.check().is_allowed());
    /// limiter.refund(1);
    /// assert!(limiter.check().is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refund(&self, cost: u32) {
        let [only] = &*self.stripes else {
            return refund_stripes(&self.stripes, self.clock.now().as_nanos(), cost);
        };
        // fetch_update never fails with a closure that always returns Some.
        let _ = only
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(only.rule.refunded(tat, cost))
            });
    }

    /// The number of stripes the budget is split into (1: not split).
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let limiter = Gcra::direct(Quota::per_second(100)?).stripes(4).build()?;
    /// assert_eq!(limiter.stripes(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn stripes(&self) -> usize {
        self.stripes.len()
    }

    /// An unsplit limiter decides inline; the stripes' loop is a call of
    /// its own, so that it does not swell every caller's code, and returns
    /// [`DecisionParts`] (see there why).
    #[inline]
    fn check_at(&self, now: u64, cost: u32) -> Decision {
        match &*self.stripes {
            [only] => only.check(now, cost),
            stripes => check_stripes(stripes, now, cost).into_decision(),
        }
    }
}

/// A check of a striped limiter: home stripe first; on a denial the others
/// before refusing, so that one busy thread can still spend the budget of
/// idle stripes.
#[inline(never)]
fn check_stripes(stripes: &[Stripe], now: u64, cost: u32) -> DecisionParts {
    let count = stripes.len();
    let home = home_stripe(count);
    let mut denial = None;
    for offset in 0..count {
        let stripe = &stripes[(home + offset) & (count - 1)];
        if cost > stripe.rule.burst {
            continue;
        }
        let decision = stripe.check(now, cost);
        if decision.is_allowed() {
            return scale_estimate(decision, count).into();
        }
        denial = Some(match denial {
            None => decision,
            Some(earlier) => merge_denials(earlier, decision),
        });
    }
    // Stripe 0 has the largest share, so `cost <= max_cost` always found a
    // stripe above; this only satisfies the type.
    denial.unwrap_or_else(|| stripes[0].check(now, cost)).into()
}

/// A refund to a striped limiter: the check may have taken from any
/// stripe (another thread's home, or one it stole from), so the units go
/// back, home stripe first, to stripes that have spent some; a stripe
/// whose TAT is not ahead of now has nothing to take back, and a refund
/// there would be lost.
#[inline(never)]
fn refund_stripes(stripes: &[Stripe], now: u64, cost: u32) {
    let count = stripes.len();
    let home = home_stripe(count);
    // Every stripe has the same interval, so the units owed are one span
    // of nanoseconds, shared out among the stripes that can take it.
    let mut owed = stripes[0].rule.cost_nanos(cost);
    for offset in 0..count {
        if owed == 0 {
            return;
        }
        let stripe = &stripes[(home + offset) & (count - 1)];
        let mut given = 0;
        // fetch_update never fails with a closure that always returns Some.
        let _ = stripe
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                let new = tat.saturating_sub(owed).max(now.min(tat));
                given = tat - new;
                Some(new)
            });
        owed -= given;
    }
}

/// The thread's own stripe. Threads take numbers in order of their first
/// check, so threads started together land on different stripes.
#[inline]
fn home_stripe(stripes: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: Cell<Option<usize>> = const { Cell::new(None) };
    }
    if stripes == 1 {
        return 0;
    }
    HOME.with(|home| {
        let number = home.get().unwrap_or_else(|| {
            let number = NEXT.fetch_add(1, Ordering::Relaxed);
            home.set(Some(number));
            number
        });
        // `stripes` is a power of two.
        number & (stripes - 1)
    })
}

/// An allowed stripe's decision reported for the whole limiter. Reading the
/// other stripes would bring back the cache-line traffic that striping
/// avoids, so `remaining` is estimated as this stripe's times the stripe
/// count (exact when threads use the stripes evenly).
fn scale_estimate(decision: Decision, stripes: usize) -> Decision {
    match decision {
        Decision::Allowed {
            limit,
            remaining,
            reset_after,
            policy_window,
        } => Decision::Allowed {
            limit,
            remaining: remaining
                .saturating_mul(u32::try_from(stripes).unwrap_or(u32::MAX))
                .min(limit),
            reset_after,
            policy_window,
        },
        denied => denied,
    }
}

/// Two stripes' denials as one: what is left adds up, the earliest retry and
/// the latest reset win.
fn merge_denials(a: Decision, b: Decision) -> Decision {
    match (a, b) {
        (
            Decision::Denied {
                limit,
                remaining,
                retry_after,
                reset_after,
                policy_window,
            },
            Decision::Denied {
                remaining: other_remaining,
                retry_after: other_retry,
                reset_after: other_reset,
                ..
            },
        ) => Decision::Denied {
            limit,
            remaining: remaining.saturating_add(other_remaining).min(limit),
            retry_after: retry_after.min(other_retry),
            reset_after: reset_after.max(other_reset),
            policy_window,
        },
        (denied, _) => denied,
    }
}

impl<C: Clock> RateLimiter<()> for Gcra<C> {
    #[inline]
    fn check(&self, _key: &()) -> Decision {
        Gcra::check(self)
    }

    #[inline]
    fn check_n(&self, _key: &(), cost: u32) -> Result<Decision, CheckError> {
        Gcra::check_n(self, cost)
    }

    fn refund(&self, _key: &(), cost: u32) {
        Gcra::refund(self, cost);
    }
}

impl<C: Clock> fmt::Debug for Gcra<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcra")
            .field("quota", &self.stripes[0].rule.quota)
            .field("stripes", &self.stripes.len())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Gcra`]; obtained from [`Gcra::direct`].
///
/// ```
/// use surgeguard::clock::ManualClock;
/// use surgeguard::limit::{Gcra, Quota};
///
/// let limiter = Gcra::direct(Quota::per_second(1_000)?)
///     .stripes(2)
///     .clock(ManualClock::new())
///     .build()?;
/// assert!(limiter.check().is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
#[derive(Debug)]
pub struct GcraBuilder<C = SystemClock> {
    quota: Quota,
    stripes: usize,
    clock: C,
}

impl<C: Clock> GcraBuilder<C> {
    /// Splits the budget into `stripes` buckets (default 1: exact), each with
    /// `1 / stripes` of the burst and of the rate, so that threads allowed
    /// at once write different cache lines. A thread uses its own stripe
    /// first and tries the others before denying.
    ///
    /// Bounded error: the stripes together never admit more than the whole
    /// (`burst + rate × elapsed`), but a request is denied when no single
    /// stripe holds its cost, so fewer than `stripes × cost` units can sit
    /// unused at a moment when an unsplit bucket would have served them;
    /// each stripe refills at `rate / stripes`, so units come back in lumps;
    /// `remaining` on an allowed decision is estimated (the serving stripe's
    /// times `stripes`); and the largest cost a check may ask becomes
    /// `burst / stripes` (rounded up). Use it for a very hot global key
    /// checked from many cores. A power of two, at most 64, and at most the
    /// burst.
    ///
    /// ```
    /// # use surgeguard::limit::{BuildError, Gcra, Quota};
    /// let limiter = Gcra::direct(Quota::per_second(100)?).stripes(2).build()?;
    /// assert_eq!(limiter.check_n(50)?.limit(), 100);
    /// assert!(limiter.check_n(51).is_err());
    /// let err = Gcra::direct(Quota::per_second(1)?).stripes(2).build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidStripes { stripes: 2, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stripes(mut self, stripes: usize) -> Self {
        self.stripes = stripes;
        self
    }

    /// The clock (default: [`SystemClock`]). The limiter is generic over
    /// it, so this returns a builder of a `Gcra<D>`.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// use surgeguard::clock::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let limiter = Gcra::direct(Quota::per_second(1)?).clock(clock.clone()).build()?;
    /// assert!(limiter.check().is_allowed());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(limiter.check().is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock<D: Clock>(self, clock: D) -> GcraBuilder<D> {
        GcraBuilder {
            quota: self.quota,
            stripes: self.stripes,
            clock,
        }
    }

    /// Validates the settings and builds the limiter.
    ///
    /// ```
    /// # use surgeguard::limit::{BuildError, Gcra, Quota};
    /// let err = Gcra::direct(Quota::per_second(10)?).stripes(0).build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidStripes { stripes: 0, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Gcra<C>, BuildError> {
        let burst = self.quota.max_burst();
        let count = self.stripes;
        if !count.is_power_of_two() || count > MAX_STRIPES || count > burst as usize {
            return Err(BuildError::InvalidStripes {
                stripes: count,
                burst,
            });
        }
        let whole = GcraRule::new(self.quota);
        // `count` is at most 64, so it fits in u32.
        let parts = count as u32;
        let stripes: Box<[Stripe]> = (0..parts)
            .map(|index| {
                let share = burst / parts + u32::from(index < burst % parts);
                let rule = if count == 1 {
                    whole
                } else {
                    GcraRule::stripe(&whole, u64::from(parts), share)
                };
                Stripe {
                    tat: AtomicU64::new(0),
                    rule,
                }
            })
            .collect();
        Ok(Gcra {
            max_cost: burst.div_ceil(parts),
            stripes,
            clock: self.clock,
        })
    }
}
