//! The GCRA arithmetic for one quota, shared by the direct limiter
//! (`gcra.rs`) and the keyed one's tag store (`store/tags.rs`): the test,
//! the decision it becomes, a refund. Its whole state is one TAT, which the
//! callers keep in their own words; it depends on nothing else in `limit`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Decision, Quota};

/// The GCRA arithmetic for one quota: what a keyed limiter runs per key.
///
/// Obtained through [`Gcra::keyed`](super::Gcra::keyed) and
/// [`Keyed::rule`](super::Keyed::rule); not nameable outside the crate.
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
    pub(crate) quota: Quota,
    /// `T`: nanoseconds per unit of cost.
    interval: u64,
    /// `⌊(2⁶⁴ − 1) / T⌋`, to divide by `T` with a multiplication.
    reciprocal: u64,
    /// `τ = burst × T`: how far the TAT may run ahead of now after a check.
    tolerance: u64,
    pub(crate) burst: u32,
    /// What decisions announce as the limit and the policy window (for a
    /// stripe: the whole limiter's, not the stripe's).
    pub(crate) announced_limit: u32,
    pub(crate) policy_window: Duration,
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
    pub(crate) fn stripe(whole: &GcraRule, stripes: u64, burst: u32) -> GcraRule {
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
    pub(crate) fn admit(&self, tat: u64, now: u64, cost: u32) -> Admission {
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
    pub(crate) fn allowed(&self, backlog_after: u64) -> Decision {
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
    pub(crate) fn denied(&self, backlog: u64, backlog_after: u64) -> Decision {
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
    pub(crate) fn refunded(&self, tat: u64, cost: u32) -> u64 {
        tat.saturating_sub(self.cost_nanos(cost))
    }

    /// How far `cost` units move the TAT.
    pub(crate) fn cost_nanos(&self, cost: u32) -> u64 {
        u64::from(cost).saturating_mul(self.interval)
    }

    /// Decides against a TAT shared between threads: the compare-and-swap
    /// loop. Relaxed ordering is enough: the TAT is the only state, and a
    /// single atomic word has one modification order that every thread
    /// agrees on, so concurrent checks decide as if one after the other.
    /// The loop retries only the GCRA test; the decision is built once,
    /// from the attempt that stuck.
    #[inline]
    pub(crate) fn decide_atomic(&self, tat: &AtomicU64, now: u64, cost: u32) -> Decision {
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
pub(crate) enum Admission {
    /// Passes; the TAT becomes `new_tat`, `backlog_after` short of full.
    Allowed { new_tat: u64, backlog_after: u64 },
    /// Refused: `backlog` short of full now, `backlog_after` had it passed.
    Denied { backlog: u64, backlog_after: u64 },
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
