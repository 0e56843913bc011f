//! The knee: the highest rate a service answers well.
//!
//! Below its capacity a service's latency barely moves as the rate rises;
//! past it, a queue forms and grows for as long as the excess lasts, so the
//! p99 climbs without bound. The knee is the last step of a rising ramp
//! before that: every request answered with 2xx, the p99 within a bound
//! (by default twice the p99 of the ramp's first, low step), and the
//! answers keeping up with the requests. The search stops at the first
//! step that fails, since a later step that looks healthy again is a
//! service that started refusing fast, not one with capacity to spare.
//!
//! The concurrency in flight at the knee follows from Little's law: the
//! rate answered times the mean time a request spends in the system. That
//! is the figure a concurrency limit is set from.

use std::fmt;
use std::time::Duration;

use super::record::StepStats;

/// How slow the p99 may get before a step counts as past the knee.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyBound {
    /// This many times the first step's p99 (the default is 2).
    TimesBaseline(f64),
    /// A fixed p99.
    Absolute(Duration),
}

impl Default for LatencyBound {
    fn default() -> Self {
        LatencyBound::TimesBaseline(2.0)
    }
}

/// A step whose answers fall this far behind its requests is past the
/// knee even if its p99 has not caught up yet (a queue is forming).
const KEEPING_UP: f64 = 0.9;

/// What the ramp says about the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Knee {
    /// The knee's step.
    pub step: usize,
    /// The rate the schedule asked for there.
    pub target_rate: f64,
    /// The rate answered with 2xx there: the capacity measured.
    pub rate: f64,
    /// The p99 there.
    pub p99: Duration,
    /// The mean latency there.
    pub mean: Duration,
    /// Requests in flight there (Little's law: rate times mean latency).
    pub in_flight: f64,
    /// The first step's p99 and mean latency: the service unloaded.
    pub baseline_p99: Duration,
    /// The first step's mean latency.
    pub baseline_mean: Duration,
    /// The p99 a healthy step stays within.
    pub bound: Duration,
    /// Every step was healthy: the capacity is above the highest rate
    /// tested, and the knee is only a lower bound.
    pub beyond_tested: bool,
    /// The first step past the knee, and why it failed.
    pub first_failure: Option<(usize, StepFailure)>,
}

/// Why a step counts as past the knee.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepFailure {
    /// Some requests did not end in 2xx.
    Errors(u64),
    /// The p99 went over the bound.
    SlowP99(Duration),
    /// The answers fell behind the requests.
    FellBehind {
        /// Answered per second.
        answered: f64,
        /// Sent per second.
        sent: f64,
    },
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepFailure::Errors(n) => write!(f, "{n} requests did not end in 2xx"),
            StepFailure::SlowP99(p99) => write!(f, "p99 {:.1} ms is over the bound", ms(*p99)),
            StepFailure::FellBehind { answered, sent } => write!(
                f,
                "answered {answered:.0}/s of {sent:.0}/s sent: a queue was forming"
            ),
        }
    }
}

/// Why no knee could be found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NoKnee {
    /// No step had any request.
    #[error("the run has no requests to measure")]
    NoSteps,
    /// The first step already failed: the service is past its capacity,
    /// or broken, at the lowest rate tested.
    #[error("the first step ({rate:.0} requests/s) already failed: {failure}; start the ramp lower or fix the errors first")]
    FromTheStart {
        /// The first step's rate.
        rate: f64,
        /// How it failed.
        failure: StepFailure,
    },
}

/// Finds the knee in a ramp's steps (see the module docs).
///
/// ```
/// use std::time::Duration;
/// use surgeguard::loadtest::{find_knee, LatencyBound, StepStats};
///
/// let ms = Duration::from_millis;
/// let step = |step: usize, rate: f64, p99: u64| StepStats {
///     step, target_rate: rate, start: Duration::from_secs(10 * step as u64),
///     duration: Duration::from_secs(10), sent: (rate * 10.0) as u64, send_rate: rate,
///     answered_rate: rate.min(350.0), errors: 0, p50: ms(p99 / 2), p99: ms(p99),
///     max: ms(p99), mean: ms(p99 / 2), send_lag_p99: Duration::ZERO,
/// };
/// let steps = [step(0, 100.0, 10), step(1, 200.0, 11), step(2, 300.0, 14), step(3, 400.0, 900)];
/// let knee = find_knee(&steps, LatencyBound::default())?;
/// assert_eq!(knee.target_rate, 300.0);
/// assert_eq!(knee.bound, ms(20));
/// # Ok::<(), surgeguard::loadtest::NoKnee>(())
/// ```
pub fn find_knee(steps: &[StepStats], bound: LatencyBound) -> Result<Knee, NoKnee> {
    let steps: Vec<&StepStats> = steps.iter().filter(|s| s.sent > 0).collect();
    let first = *steps.first().ok_or(NoKnee::NoSteps)?;
    let bound = match bound {
        // `max` also turns a NaN factor into 1; a product too large for a
        // Duration (an infinite factor) is no bound at all.
        LatencyBound::TimesBaseline(factor) => {
            Duration::try_from_secs_f64(first.p99.as_secs_f64() * factor.max(1.0))
                .unwrap_or(Duration::MAX)
        }
        LatencyBound::Absolute(bound) => bound,
    };
    let failure = |s: &StepStats| {
        if s.errors > 0 {
            Some(StepFailure::Errors(s.errors))
        } else if s.p99 > bound {
            Some(StepFailure::SlowP99(s.p99))
        } else if s.answered_rate < KEEPING_UP * s.send_rate {
            Some(StepFailure::FellBehind {
                answered: s.answered_rate,
                sent: s.send_rate,
            })
        } else {
            None
        }
    };
    if let Some(failure) = failure(first) {
        return Err(NoKnee::FromTheStart {
            rate: first.target_rate,
            failure,
        });
    }
    let failed_at = steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| failure(s).map(|f| (i, s.step, f)));
    let knee = match failed_at {
        Some((position, _, _)) => steps[position - 1],
        None => *steps.last().expect("a first step"),
    };
    Ok(Knee {
        step: knee.step,
        target_rate: knee.target_rate,
        rate: knee.answered_rate,
        p99: knee.p99,
        mean: knee.mean,
        in_flight: knee.answered_rate * knee.mean.as_secs_f64(),
        baseline_p99: first.p99,
        baseline_mean: first.mean,
        bound,
        beyond_tested: failed_at.is_none(),
        first_failure: failed_at.map(|(_, step, failure)| (step, failure)),
    })
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::loadtest::client::{Ending, Outcome};
    use crate::loadtest::record;
    use crate::loadtest::schedule::Schedule;
    use http::StatusCode;

    /// A synthetic server: `workers` requests served at once, each taking
    /// `service`, first come first served; its capacity is exactly
    /// `workers / service`. Simulated, not run: the outcomes follow from
    /// the schedule's due times alone, so the test is deterministic.
    fn serve(
        schedule: &Schedule,
        workers: usize,
        service: Duration,
        timeout: Duration,
    ) -> Vec<Outcome> {
        let mut free_at = vec![Duration::ZERO; workers];
        schedule
            .due_times()
            .map(|due| {
                let (worker, &free) = free_at
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, t)| **t)
                    .expect("workers");
                let start = free.max(due.at);
                let done = start + service;
                let latency = done - due.at;
                let ending = if latency > timeout {
                    Ending::TimedOut
                } else {
                    free_at[worker] = done;
                    Ending::Answered {
                        status: StatusCode::OK,
                        retry_after: false,
                    }
                };
                Outcome {
                    due,
                    send_lag: Duration::ZERO,
                    latency: latency.min(timeout),
                    ending,
                }
            })
            .collect()
    }

    #[test]
    fn the_knee_of_a_synthetic_server_is_within_a_step_of_its_capacity() {
        // 8 workers of 20 ms: 400 requests/s.
        let capacity = 400.0;
        let schedule = Schedule::ramp(100.0, 600.0, 26, Duration::from_secs(5)).unwrap();
        let outcomes = serve(
            &schedule,
            8,
            Duration::from_millis(20),
            Duration::from_secs(5),
        );
        let steps = record::steps(&schedule, &outcomes);
        let knee = find_knee(&steps, LatencyBound::default()).unwrap();
        assert!(!knee.beyond_tested);
        assert!(
            (knee.rate - capacity).abs() <= 0.1 * capacity,
            "knee {:.0}/s, capacity {capacity}/s",
            knee.rate
        );
        assert!(knee.rate <= capacity + 1.0, "{knee:?}");
        // Little's law: 8 workers busy at capacity, fewer below it.
        assert!(
            knee.in_flight <= 8.0 + 0.5 && knee.in_flight >= 6.0,
            "{knee:?}"
        );
        let (failed, _) = knee.first_failure.unwrap();
        assert_eq!(failed, knee.step + 1);
    }

    #[test]
    fn a_service_that_never_tires_has_its_knee_at_the_top_marked_as_a_lower_bound() {
        let schedule = Schedule::ramp(10.0, 100.0, 4, Duration::from_secs(2)).unwrap();
        let outcomes = serve(
            &schedule,
            64,
            Duration::from_millis(5),
            Duration::from_secs(5),
        );
        let knee = find_knee(
            &record::steps(&schedule, &outcomes),
            LatencyBound::default(),
        )
        .unwrap();
        assert!(knee.beyond_tested);
        assert_eq!(knee.step, 3);
    }

    #[test]
    fn errors_from_the_start_leave_no_knee() {
        let schedule = Schedule::ramp(10.0, 100.0, 4, Duration::from_secs(2)).unwrap();
        let mut outcomes = serve(
            &schedule,
            64,
            Duration::from_millis(5),
            Duration::from_secs(5),
        );
        outcomes[0].ending = Ending::ConnectFailed;
        let error = find_knee(
            &record::steps(&schedule, &outcomes),
            LatencyBound::default(),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            NoKnee::FromTheStart {
                failure: StepFailure::Errors(1),
                ..
            }
        ));
        assert!(error.to_string().contains("already failed"), "{error}");
        assert_eq!(
            find_knee(&[], LatencyBound::default()),
            Err(NoKnee::NoSteps)
        );
    }

    #[test]
    fn an_absolute_bound_is_used_as_given() {
        let schedule = Schedule::ramp(100.0, 600.0, 6, Duration::from_secs(5)).unwrap();
        let outcomes = serve(
            &schedule,
            8,
            Duration::from_millis(20),
            Duration::from_secs(5),
        );
        let steps = record::steps(&schedule, &outcomes);
        let error =
            find_knee(&steps, LatencyBound::Absolute(Duration::from_millis(5))).unwrap_err();
        assert!(matches!(
            error,
            NoKnee::FromTheStart {
                failure: StepFailure::SlowP99(_),
                ..
            }
        ));
    }
}
