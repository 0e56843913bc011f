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
use std::time::Duration;

use super::decision::DecisionParts;
use super::keyed::{BuildError, KeyedBuilder};
use super::table::{sealed, KeyRule};
use super::tag_table::TagTable;
use super::{CheckError, Decision, Quota, RateLimiter};
use crate::clock::{Clock, SystemClock};

/// The most stripes a direct limiter may be split into. Past a few per core
/// more stripes only add under-admission.
const MAX_STRIPES: usize = 64;

/// The GCRA arithmetic for one quota: what a keyed limiter runs per key.
///
/// Obtained through [`Gcra::keyed`]; shown here because it names the rule
/// in [`KeyedGcra`](super::KeyedGcra).
///
/// ```
/// use surgeguard::limit::{Gcra, KeyedGcra, Quota};
///
/// let limiter: KeyedGcra<u64> = Gcra::keyed(Quota::per_second(5)?).build()?;
/// assert_eq!(limiter.rule().quota().count(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraRule {
    quota: Quota,
    /// `T`: nanoseconds per unit of cost.
    interval: u64,
    /// `⌊(2⁶⁴ − 1) / T⌋`, to divide by `T` with a multiplication.
    reciprocal: u64,
    /// `τ = burst × T`: how far the TAT may run ahead of now after a check.
    tolerance: u64,
    burst: u32,
    /// What decisions announce as the limit and the policy window (for a
    /// stripe: the whole limiter's, not the stripe's).
    announced_limit: u32,
    policy_window: Duration,
}

impl GcraRule {
    pub(crate) fn new(quota: Quota) -> GcraRule {
        GcraRule {
            quota,
            interval: quota.interval_nanos(),
            reciprocal: u64::MAX / quota.interval_nanos(),
            tolerance: quota.refill_nanos(),
            burst: quota.max_burst(),
            announced_limit: quota.max_burst(),
            policy_window: quota.refill_time(),
        }
    }

    /// One of `stripes` equal parts of `whole`: `burst` units (the caller
    /// spreads the remainder of `burst / stripes`), refilled `stripes` times
    /// more slowly, so the parts add up to the whole's rate.
    fn stripe(whole: &GcraRule, stripes: u64, burst: u32) -> GcraRule {
        let interval = whole.interval.saturating_mul(stripes);
        GcraRule {
            interval,
            reciprocal: u64::MAX / interval,
            tolerance: u64::from(burst).saturating_mul(interval),
            burst,
            ..*whole
        }
    }

    /// The quota this rule enforces.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let quota = Quota::per_minute(10)?;
    /// assert_eq!(Gcra::keyed::<u64>(quota).build()?.rule().quota(), quota);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Decides a request of `cost` (at most `burst`) at `now` against a
    /// bucket whose TAT is `tat`. Returns the decision and, when it takes
    /// something, the new TAT to store.
    #[inline]
    pub(crate) fn decide(&self, tat: u64, now: u64, cost: u32) -> (Decision, Option<u64>) {
        match self.admit(tat, now, cost) {
            Admission::Allowed {
                new_tat,
                backlog_after,
            } => (self.allowed(backlog_after), (cost > 0).then_some(new_tat)),
            Admission::Denied {
                backlog,
                backlog_after,
            } => (self.denied(backlog, backlog_after), None),
        }
    }

    /// The GCRA test alone: whether `cost` passes at `now` against `tat`,
    /// and the figures the decision is built from. Kept apart from building
    /// the [`Decision`] so that a compare-and-swap loop retries only this,
    /// and so that a caller who reads only [`Decision::is_allowed`] lets the
    /// compiler drop the header arithmetic once the check is inlined.
    #[inline]
    pub(super) fn admit(&self, tat: u64, now: u64, cost: u32) -> Admission {
        let start = tat.max(now);
        // Time the bucket is short of full; beyond τ only after a clock
        // went backwards, hence the saturating arithmetic below.
        let backlog = start - now;
        let increment = u64::from(cost) * self.interval;
        let backlog_after = backlog.saturating_add(increment);
        if backlog_after <= self.tolerance {
            Admission::Allowed {
                new_tat: start.saturating_add(increment),
                backlog_after,
            }
        } else {
            Admission::Denied {
                backlog,
                backlog_after,
            }
        }
    }

    /// The decision for an allowed request that leaves the bucket
    /// `backlog_after` short of full (at most `τ`).
    #[inline]
    pub(super) fn allowed(&self, backlog_after: u64) -> Decision {
        Decision::Allowed {
            limit: self.announced_limit,
            remaining: self.whole_units(self.tolerance - backlog_after),
            reset_after: Duration::from_nanos(backlog_after),
            policy_window: self.policy_window,
        }
    }

    /// The decision for a denied request, the bucket `backlog` short of full
    /// now and `backlog_after` (over `τ`) had it passed.
    #[inline]
    pub(super) fn denied(&self, backlog: u64, backlog_after: u64) -> Decision {
        Decision::Denied {
            limit: self.announced_limit,
            remaining: self.whole_units(self.tolerance.saturating_sub(backlog)),
            retry_after: Duration::from_nanos(backlog_after - self.tolerance),
            reset_after: Duration::from_nanos(backlog),
            policy_window: self.policy_window,
        }
    }

    /// Whole units of cost in `nanos` of credit (at most `burst`, since
    /// credit never exceeds `τ`).
    ///
    /// A 64-bit division costs up to 45 cycles on the project's AMD EPYC,
    /// a third of a whole check; multiplying by a precomputed reciprocal and
    /// correcting the estimate costs a few. `reciprocal = ⌊(2⁶⁴ − 1) / T⌋`
    /// makes `⌊nanos × reciprocal / 2⁶⁴⌋` at most 1 below the quotient
    /// when `nanos < 2⁶³` (here `nanos ≤ τ < 2⁶²`): one correction at most,
    /// made without a loop or a branch (a loop compiled to two dependent
    /// multiplications and a loop branch on every check).
    #[inline]
    fn whole_units(&self, nanos: u64) -> u32 {
        let estimate = ((u128::from(nanos) * u128::from(self.reciprocal)) >> 64) as u64;
        let units = estimate + u64::from((estimate + 1).saturating_mul(self.interval) <= nanos);
        u32::try_from(units).unwrap_or(u32::MAX)
    }

    /// The TAT after giving back `cost` units. Going below `now` is harmless:
    /// every TAT at or before now means the same full bucket.
    #[inline]
    pub(super) fn refunded(&self, tat: u64, cost: u32) -> u64 {
        tat.saturating_sub(u64::from(cost).saturating_mul(self.interval))
    }

    /// Decides against a TAT shared between threads: the compare-and-swap
    /// loop. Relaxed ordering is enough: the TAT is the only state, and a
    /// single atomic word has one modification order that every thread
    /// agrees on, so concurrent checks decide as if one after the other.
    /// The loop retries only the GCRA test; the decision is built once,
    /// from the attempt that stuck.
    #[inline]
    fn decide_atomic(&self, tat: &AtomicU64, now: u64, cost: u32) -> Decision {
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            match self.admit(current, now, cost) {
                Admission::Denied {
                    backlog,
                    backlog_after,
                } => return self.denied(backlog, backlog_after),
                Admission::Allowed {
                    new_tat,
                    backlog_after,
                } => {
                    if cost == 0 {
                        return self.allowed(backlog_after);
                    }
                    match tat.compare_exchange_weak(
                        current,
                        new_tat,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return self.allowed(backlog_after),
                        Err(actual) => current = actual,
                    }
                }
            }
        }
    }
}

/// The outcome of the GCRA test, before it becomes a [`Decision`].
#[derive(Clone, Copy)]
pub(super) enum Admission {
    /// Passes; the TAT becomes `new_tat`, `backlog_after` short of full.
    Allowed { new_tat: u64, backlog_after: u64 },
    /// Refused: `backlog` short of full now, `backlog_after` had it passed.
    Denied { backlog: u64, backlog_after: u64 },
}

impl sealed::Sealed for GcraRule {}

impl KeyRule for GcraRule {
    /// The TAT in nanoseconds; 0 is "full since the clock's origin". (The
    /// tag table keeps TATs in its own words; this is the state of the
    /// overflow bucket, and of the locked table in its unit tests.)
    type State = AtomicU64;

    /// GCRA's state is one word: the lock-free tag table.
    type Store<K, S> = TagTable<S>;

    fn fresh_state(&self) -> AtomicU64 {
        AtomicU64::new(0)
    }

    fn max_cost(&self) -> u32 {
        self.burst
    }

    #[inline]
    fn decide(&self, tat: &mut AtomicU64, now: u64, cost: u32) -> Decision {
        let tat = tat.get_mut();
        let (decision, new_tat) = GcraRule::decide(self, *tat, now, cost);
        if let Some(new_tat) = new_tat {
            *tat = new_tat;
        }
        decision
    }

    fn refund(&self, tat: &mut AtomicU64, _now: u64, cost: u32) {
        let tat = tat.get_mut();
        *tat = self.refunded(*tat, cost);
    }

    /// Read where no check can update it (the overflow bucket's mutex).
    #[inline]
    fn idle_at(&self, tat: &AtomicU64) -> u64 {
        tat.load(Ordering::Relaxed)
    }

    fn limit(&self) -> u32 {
        self.announced_limit
    }

    fn policy_window(&self) -> Duration {
        self.policy_window
    }
}

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
        let stripe = &self.stripes[home_stripe(self.stripes.len())];
        // fetch_update never fails with a closure that always returns Some.
        let _ = stripe
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(stripe.rule.refunded(tat, cost))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_units_divide_exactly() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let interval = 1 + next() % [1, 10, 1_000, 1 << 20, 1 << 40][next() as usize % 5];
            let quota = Quota::with_period(1, Duration::from_nanos(interval)).unwrap();
            let rule = GcraRule::new(quota);
            let nanos = next() >> 2;
            let expected = u32::try_from(nanos / interval).unwrap_or(u32::MAX);
            assert_eq!(rule.whole_units(nanos), expected, "{nanos} / {interval}");
            let edge = (nanos / interval).min(1 << 20) * interval;
            assert_eq!(u64::from(rule.whole_units(edge)), edge / interval);
            assert_eq!(
                u64::from(rule.whole_units(edge.saturating_sub(1))),
                edge.saturating_sub(1) / interval
            );
        }
    }
}
