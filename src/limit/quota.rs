//! How much traffic a limit lets through, validated once.
//!
//! A [`Quota`] is a rate (`count` per `period`) plus a burst. Every limiter in
//! [`crate::limit`] is built from one, so a bad setting (a zero, a unit
//! mistake that makes a period of centuries, a rate no clock can resolve) is
//! a [`QuotaError`] at construction, never a limiter that silently admits
//! everything or nothing.
//!
//! Internally a quota becomes an *emission interval*: nanoseconds per unit of
//! cost, rounded **up**, so a limiter never admits more than the stated rate
//! (the rounding loses at most one nanosecond per unit).

use std::time::Duration;

use crate::clock::duration_to_nanos;

/// The longest accepted period, and the longest time a full burst may take
/// to refill: 100 years, as for the cache's durations. Anything longer is
/// almost certainly a unit mistake, and staying below it keeps every sum of
/// nanoseconds far from `u64::MAX`.
///
/// ```
/// use surgeguard::limit::{Quota, QuotaError, MAX_PERIOD};
/// use std::time::Duration;
///
/// let err = Quota::with_period(1, MAX_PERIOD + Duration::from_secs(1)).unwrap_err();
/// assert!(matches!(err, QuotaError::PeriodTooLong { .. }));
/// ```
pub const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Why a [`Quota`] was refused. Each message names the setting and what to
/// change.
///
/// ```
/// use surgeguard::limit::{Quota, QuotaError};
///
/// assert_eq!(Quota::per_second(0).unwrap_err(), QuotaError::ZeroRate);
/// assert!(QuotaError::ZeroRate.to_string().contains("at least 1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// A count of zero per period.
    #[error("the rate is 0 per period: allow at least 1, or do not install a limiter")]
    ZeroRate,
    /// A burst of zero.
    #[error("the burst is 0: no request could ever pass; use at least 1")]
    ZeroBurst,
    /// A period of zero.
    #[error("the period is zero: give the length of time the count refers to")]
    ZeroPeriod,
    /// A period over [`MAX_PERIOD`].
    #[error("the period of {period:?} is over 100 years: check the unit")]
    PeriodTooLong {
        /// The rejected period.
        period: Duration,
    },
    /// More than one unit per nanosecond, finer than any clock resolves.
    #[error("{count} per {period:?} is more than one per nanosecond: use a longer period or a smaller count")]
    RateAboveOnePerNanosecond {
        /// The requested count.
        count: u32,
        /// The requested period.
        period: Duration,
    },
    /// A burst that takes over [`MAX_PERIOD`] to refill.
    #[error("a burst of {burst} takes over 100 years to refill at this rate: lower the burst or raise the rate")]
    BurstTooLong {
        /// The rejected burst.
        burst: u32,
    },
}

/// A rate (`count` per `period`) and a burst (how much may pass at once).
///
/// The burst defaults to the count: `Quota::per_second(100)` lets 100
/// requests through at once, then one every 10 ms.
///
/// ```
/// use surgeguard::limit::Quota;
/// use std::time::Duration;
///
/// let quota = Quota::per_second(100)?.burst(200)?;
/// assert_eq!(quota.count(), 100);
/// assert_eq!(quota.max_burst(), 200);
/// assert_eq!(quota.emission_interval(), Duration::from_millis(10));
/// # Ok::<(), surgeguard::limit::QuotaError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
    /// Nanoseconds per unit of cost, rounded up.
    interval_nanos: u64,
}

impl Quota {
    /// `count` per second.
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// assert_eq!(Quota::per_second(5)?.count(), 5);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn per_second(count: u32) -> Result<Quota, QuotaError> {
        Quota::with_period(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use std::time::Duration;
    /// assert_eq!(Quota::per_minute(60)?.emission_interval(), Duration::from_secs(1));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn per_minute(count: u32) -> Result<Quota, QuotaError> {
        Quota::with_period(count, Duration::from_secs(60))
    }

    /// `count` per hour.
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use std::time::Duration;
    /// assert_eq!(Quota::per_hour(1)?.period(), Duration::from_secs(3600));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    pub fn per_hour(count: u32) -> Result<Quota, QuotaError> {
        Quota::with_period(count, Duration::from_secs(3600))
    }

    /// `count` per `period`, with a burst of `count`.
    ///
    /// ```
    /// # use surgeguard::limit::{Quota, QuotaError};
    /// # use std::time::Duration;
    /// let quota = Quota::with_period(3, Duration::from_secs(1))?;
    /// // 333,333,333.3 ns rounds up: never more than 3 per second.
    /// assert_eq!(quota.emission_interval(), Duration::from_nanos(333_333_334));
    /// assert_eq!(
    ///     Quota::with_period(2, Duration::from_nanos(1)).unwrap_err(),
    ///     QuotaError::RateAboveOnePerNanosecond { count: 2, period: Duration::from_nanos(1) },
    /// );
    /// # Ok::<(), QuotaError>(())
    /// ```
    pub fn with_period(count: u32, period: Duration) -> Result<Quota, QuotaError> {
        if count == 0 {
            return Err(QuotaError::ZeroRate);
        }
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        if period > MAX_PERIOD {
            return Err(QuotaError::PeriodTooLong { period });
        }
        let period_nanos = duration_to_nanos(period);
        if u64::from(count) > period_nanos {
            return Err(QuotaError::RateAboveOnePerNanosecond { count, period });
        }
        Ok(Quota {
            count,
            period,
            burst: count,
            interval_nanos: period_nanos.div_ceil(u64::from(count)),
        })
    }

    /// The same rate with a different burst: how much may pass at once after
    /// a quiet spell, and the largest cost a single check may ask for.
    ///
    /// ```
    /// # use surgeguard::limit::{Quota, QuotaError};
    /// assert_eq!(Quota::per_second(10)?.burst(1)?.max_burst(), 1);
    /// assert_eq!(Quota::per_second(10)?.burst(0).unwrap_err(), QuotaError::ZeroBurst);
    /// assert!(matches!(Quota::per_hour(1)?.burst(u32::MAX), Err(QuotaError::BurstTooLong { .. })));
    /// # Ok::<(), QuotaError>(())
    /// ```
    pub fn burst(self, burst: u32) -> Result<Quota, QuotaError> {
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        let refill = u128::from(burst) * u128::from(self.interval_nanos);
        if refill > MAX_PERIOD.as_nanos() {
            return Err(QuotaError::BurstTooLong { burst });
        }
        Ok(Quota { burst, ..self })
    }

    /// Units of cost replenished per [`period`](Self::period).
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// assert_eq!(Quota::per_minute(30)?.count(), 30);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period the [`count`](Self::count) refers to.
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use std::time::Duration;
    /// assert_eq!(Quota::per_minute(30)?.period(), Duration::from_secs(60));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The most that may pass at once.
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// assert_eq!(Quota::per_second(7)?.max_burst(), 7);
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    #[must_use]
    pub fn max_burst(&self) -> u32 {
        self.burst
    }

    /// Time to earn back one unit of cost (`period / count`, rounded up to
    /// the nanosecond).
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use std::time::Duration;
    /// assert_eq!(Quota::per_second(4)?.emission_interval(), Duration::from_millis(250));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    #[must_use]
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    /// Time for an empty bucket to fill up to the whole burst: the window the
    /// `RateLimit-Policy` header announces for a GCRA limiter.
    ///
    /// ```
    /// # use surgeguard::limit::Quota;
    /// # use std::time::Duration;
    /// let quota = Quota::per_second(100)?.burst(200)?;
    /// assert_eq!(quota.refill_time(), Duration::from_secs(2));
    /// # Ok::<(), surgeguard::limit::QuotaError>(())
    /// ```
    #[must_use]
    pub fn refill_time(&self) -> Duration {
        Duration::from_nanos(self.refill_nanos())
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }

    /// Cannot overflow: [`Quota::burst`] and [`Quota::with_period`] keep it
    /// under [`MAX_PERIOD`] (a burst equal to the count refills in one
    /// period, give or take the rounding of the interval).
    pub(crate) fn refill_nanos(&self) -> u64 {
        u64::from(self.burst).saturating_mul(self.interval_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            Quota::with_period(1, Duration::ZERO),
            Err(QuotaError::ZeroPeriod)
        );
        assert!(matches!(
            Quota::with_period(1, Duration::MAX),
            Err(QuotaError::PeriodTooLong { .. })
        ));
        assert!(Quota::with_period(1, MAX_PERIOD).is_ok());
        assert!(Quota::with_period(1_000_000_000, Duration::from_secs(1)).is_ok());
        assert!(matches!(
            Quota::with_period(u32::MAX, Duration::from_secs(1)),
            Err(QuotaError::RateAboveOnePerNanosecond { .. })
        ));
    }

    #[test]
    fn interval_rounds_up() {
        let quota = Quota::with_period(3, Duration::from_nanos(10)).unwrap();
        assert_eq!(quota.interval_nanos(), 4);
        assert_eq!(quota.refill_nanos(), 12);
    }

    #[test]
    fn longest_refill_is_accepted() {
        let quota = Quota::with_period(1, MAX_PERIOD).unwrap();
        assert_eq!(quota.refill_time(), MAX_PERIOD);
        assert!(quota.burst(2).is_err());
    }
}
