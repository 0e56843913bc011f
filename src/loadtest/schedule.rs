//! When each request is due: a fixed rate, or a ramp of rising steps.
//!
//! The schedule is the whole of the open loop. It is fixed before the first
//! request goes out and nothing the server does changes it, so a slow
//! answer cannot hold the next request back (the coordinated omission that
//! makes closed-loop tools report a stalled server as a fast one).
//! Requests of a step are evenly spaced: a steady arrival rate makes the
//! knee a property of the server, not of the arrivals' randomness.

use std::fmt;
use std::time::Duration;

/// The highest rate a schedule accepts, requests per second: far above
/// what one machine's client sends, so only a typo is refused.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The most requests one schedule may hold (bounded memory: each outcome
/// is kept for the report, under a hundred bytes apiece).
pub const MAX_REQUESTS: u64 = 10_000_000;
/// The longest a schedule may run.
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);
/// The most steps a ramp may have.
pub const MAX_STEPS: u32 = 1_000;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A rate of zero, below zero, or not a number.
    #[error("the rate is {0}: give a positive number of requests per second")]
    Rate(f64),
    /// A rate above [`MAX_RATE`].
    #[error("the rate {0} is above {MAX_RATE} requests per second")]
    RateTooHigh(f64),
    /// A ramp whose end is below its start.
    #[error("the ramp goes down ({from}..{to}): a ramp rises, from the lower rate to the higher")]
    RampGoesDown {
        /// Where the ramp starts.
        from: f64,
        /// Where it ends.
        to: f64,
    },
    /// A ramp of fewer than 2 or more than [`MAX_STEPS`] steps.
    #[error("a ramp needs 2 to {MAX_STEPS} steps, got {0}")]
    Steps(u32),
    /// A step (or the whole run) of no time.
    #[error("the duration is zero: give each step some time (for example 10s)")]
    ZeroDuration,
    /// A run longer than [`MAX_DURATION`].
    #[error("the run would last {0:?}, over the hour a load test may take")]
    TooLong(Duration),
    /// More than [`MAX_REQUESTS`] requests.
    #[error("the run would send {0} requests, over the {MAX_REQUESTS} a run may hold")]
    TooManyRequests(u64),
    /// A step so short at its rate that it sends nothing.
    #[error(
        "step {step} sends no request at {rate} requests/s for {duration:?}: lengthen the step"
    )]
    EmptyStep {
        /// The step's index, from 0.
        step: usize,
        /// Its rate.
        rate: f64,
        /// Its duration.
        duration: Duration,
    },
    /// A rate written neither as `N` nor as `FROM..TO`.
    #[error("cannot read the rate {0:?}: write a number (500) or a ramp (100..5000)")]
    Unreadable(String),
}

/// One step of a schedule: a rate held for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Requests per second.
    pub rate: f64,
    /// How long the rate is held.
    pub duration: Duration,
    /// When the step starts, from the start of the run.
    pub start: Duration,
    /// Requests due in this step.
    pub requests: u64,
}

/// A request's place in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Its number in the run, from 0.
    pub index: u64,
    /// The step it belongs to.
    pub step: usize,
    /// When it is due, from the start of the run.
    pub at: Duration,
}

/// When every request of a run is due. Built with [`Schedule::fixed`],
/// [`Schedule::ramp`] or [`Schedule::parse`], each of which checks the
/// figures.
///
/// ```
/// use std::time::Duration;
/// use surgeguard::loadtest::Schedule;
///
/// let ramp = Schedule::ramp(100.0, 400.0, 4, Duration::from_secs(10))?;
/// let rates: Vec<f64> = ramp.steps().iter().map(|s| s.rate).collect();
/// assert_eq!(rates, [100.0, 200.0, 300.0, 400.0]);
/// assert_eq!(ramp.requests(), 10_000);
/// # Ok::<(), surgeguard::loadtest::ScheduleError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    steps: Vec<Step>,
}

impl Schedule {
    /// One rate for `duration`.
    pub fn fixed(rate: f64, duration: Duration) -> Result<Schedule, ScheduleError> {
        Schedule::from_rates(&[rate], duration)
    }

    /// `steps` rates evenly spaced from `from` to `to` (both included),
    /// each held for `step_duration`.
    pub fn ramp(
        from: f64,
        to: f64,
        steps: u32,
        step_duration: Duration,
    ) -> Result<Schedule, ScheduleError> {
        check_rate(from)?;
        check_rate(to)?;
        if to < from {
            return Err(ScheduleError::RampGoesDown { from, to });
        }
        if !(2..=MAX_STEPS).contains(&steps) {
            return Err(ScheduleError::Steps(steps));
        }
        let last = f64::from(steps - 1);
        let rates: Vec<f64> = (0..steps)
            .map(|i| from + (to - from) * f64::from(i) / last)
            .collect();
        Schedule::from_rates(&rates, step_duration)
    }

    /// Reads a rate as the command line writes it: `500` (a fixed rate for
    /// `step_duration`) or `100..5000` (a ramp of `steps` steps, each
    /// `step_duration` long).
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgeguard::loadtest::{Schedule, ScheduleError};
    ///
    /// let ten = Duration::from_secs(10);
    /// assert_eq!(Schedule::parse("500", 10, ten)?.steps().len(), 1);
    /// assert_eq!(Schedule::parse("100..5000", 10, ten)?.steps().len(), 10);
    /// assert!(matches!(
    ///     Schedule::parse("5000..100", 10, ten),
    ///     Err(ScheduleError::RampGoesDown { .. })
    /// ));
    /// assert_eq!(Schedule::parse("0", 10, ten), Err(ScheduleError::Rate(0.0)));
    /// # Ok::<(), ScheduleError>(())
    /// ```
    pub fn parse(
        spec: &str,
        steps: u32,
        step_duration: Duration,
    ) -> Result<Schedule, ScheduleError> {
        let number = |text: &str| {
            text.trim()
                .parse::<f64>()
                .map_err(|_| ScheduleError::Unreadable(spec.to_owned()))
        };
        match spec.split_once("..") {
            Some((from, to)) => Schedule::ramp(number(from)?, number(to)?, steps, step_duration),
            None => Schedule::fixed(number(spec)?, step_duration),
        }
    }

    fn from_rates(rates: &[f64], step_duration: Duration) -> Result<Schedule, ScheduleError> {
        if step_duration.is_zero() {
            return Err(ScheduleError::ZeroDuration);
        }
        let total = step_duration.saturating_mul(rates.len() as u32);
        if total > MAX_DURATION {
            return Err(ScheduleError::TooLong(total));
        }
        let mut steps = Vec::with_capacity(rates.len());
        let mut start = Duration::ZERO;
        let mut requests = 0u64;
        for (index, &rate) in rates.iter().enumerate() {
            check_rate(rate)?;
            let count = (rate * step_duration.as_secs_f64()).round() as u64;
            if count == 0 {
                return Err(ScheduleError::EmptyStep {
                    step: index,
                    rate,
                    duration: step_duration,
                });
            }
            requests += count;
            if requests > MAX_REQUESTS {
                let all: f64 = rates.iter().map(|r| r * step_duration.as_secs_f64()).sum();
                return Err(ScheduleError::TooManyRequests(all.round() as u64));
            }
            steps.push(Step {
                rate,
                duration: step_duration,
                start,
                requests: count,
            });
            start += step_duration;
        }
        Ok(Schedule { steps })
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How long requests are sent (the last answers may come later).
    pub fn duration(&self) -> Duration {
        self.steps
            .last()
            .map_or(Duration::ZERO, |s| s.start + s.duration)
    }

    /// Requests in the whole run.
    pub fn requests(&self) -> u64 {
        self.steps.iter().map(|s| s.requests).sum()
    }

    /// The highest rate of the run.
    pub fn peak_rate(&self) -> f64 {
        self.steps.iter().map(|s| s.rate).fold(0.0, f64::max)
    }

    /// Every request's due time, in order. Within a step the `k`-th request
    /// is due `k / rate` after the step starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgeguard::loadtest::Schedule;
    ///
    /// let schedule = Schedule::fixed(4.0, Duration::from_secs(1))?;
    /// let at: Vec<Duration> = schedule.due_times().map(|d| d.at).collect();
    /// assert_eq!(at, [0, 250, 500, 750].map(Duration::from_millis));
    /// # Ok::<(), surgeguard::loadtest::ScheduleError>(())
    /// ```
    pub fn due_times(&self) -> impl Iterator<Item = Due> + Send + '_ {
        let mut index = 0u64;
        self.steps
            .iter()
            .enumerate()
            .flat_map(move |(number, step)| {
                let first = index;
                index += step.requests;
                (0..step.requests).map(move |k| Due {
                    index: first + k,
                    step: number,
                    at: step.start + Duration::from_secs_f64(k as f64 / step.rate),
                })
            })
    }
}

fn check_rate(rate: f64) -> Result<(), ScheduleError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(ScheduleError::Rate(rate));
    }
    if rate > MAX_RATE {
        return Err(ScheduleError::RateTooHigh(rate));
    }
    Ok(())
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0} requests/s for {:?} from {:?}",
            self.rate, self.duration, self.start
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_spaces_its_rates_evenly_and_its_steps_back_to_back() {
        let s = Schedule::ramp(100.0, 500.0, 5, Duration::from_secs(2)).unwrap();
        let steps = s.steps();
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[2].rate, 300.0);
        assert_eq!(steps[3].start, Duration::from_secs(6));
        assert_eq!(s.duration(), Duration::from_secs(10));
        assert_eq!(s.requests(), 2 * (100 + 200 + 300 + 400 + 500));
    }

    #[test]
    fn due_times_are_in_order_numbered_and_each_step_holds_its_rate() {
        let s = Schedule::ramp(10.0, 40.0, 4, Duration::from_secs(1)).unwrap();
        let due: Vec<Due> = s.due_times().collect();
        assert_eq!(due.len() as u64, s.requests());
        assert!(due.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(due.iter().enumerate().all(|(i, d)| d.index == i as u64));
        for (number, step) in s.steps().iter().enumerate() {
            let inside = due.iter().filter(|d| d.step == number);
            assert!(inside
                .clone()
                .all(|d| d.at >= step.start && d.at < step.start + step.duration));
            assert_eq!(inside.count() as u64, step.requests);
        }
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        let ten = Duration::from_secs(10);
        assert_eq!(Schedule::fixed(0.0, ten), Err(ScheduleError::Rate(0.0)));
        assert_eq!(Schedule::fixed(-5.0, ten), Err(ScheduleError::Rate(-5.0)));
        assert!(matches!(
            Schedule::fixed(f64::NAN, ten),
            Err(ScheduleError::Rate(_))
        ));
        assert!(matches!(
            Schedule::fixed(f64::INFINITY, ten),
            Err(ScheduleError::Rate(_))
        ));
        assert_eq!(
            Schedule::fixed(100.0, Duration::ZERO),
            Err(ScheduleError::ZeroDuration)
        );
        assert!(matches!(
            Schedule::fixed(100.0, Duration::from_secs(7_200)),
            Err(ScheduleError::TooLong(_))
        ));
        assert!(matches!(
            Schedule::fixed(900_000.0, Duration::from_secs(20)),
            Err(ScheduleError::TooManyRequests(_))
        ));
        assert!(matches!(
            Schedule::fixed(2e6, ten),
            Err(ScheduleError::RateTooHigh(_))
        ));
        assert_eq!(
            Schedule::ramp(500.0, 100.0, 5, ten),
            Err(ScheduleError::RampGoesDown {
                from: 500.0,
                to: 100.0
            })
        );
        assert_eq!(
            Schedule::ramp(100.0, 500.0, 1, ten),
            Err(ScheduleError::Steps(1))
        );
        assert!(matches!(
            Schedule::fixed(0.5, Duration::from_millis(100)),
            Err(ScheduleError::EmptyStep { step: 0, .. })
        ));
        for unreadable in ["", "fast", "100..", "..100", "1..2..3"] {
            assert!(
                matches!(
                    Schedule::parse(unreadable, 10, ten),
                    Err(ScheduleError::Unreadable(_))
                ),
                "{unreadable:?}"
            );
        }
        let message = Schedule::parse("5000..100", 10, ten)
            .unwrap_err()
            .to_string();
        assert!(message.contains("goes down"), "{message}");
    }
}
