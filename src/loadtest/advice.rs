//! From the knee to settings: the shedder's limits, the limiter's rate and
//! the queue's wait, as Rust code to paste, with warnings where the
//! measurement cannot carry a recommendation.
//!
//! The reasoning, which `docs/operations.md` spells out for people:
//!
//! * **Fixed `max_concurrency`**: the requests in flight at the knee
//!   (Little's law), rounded up. More in flight than that is queueing.
//! * **Gradient `min`**: the service's parallelism, the knee's rate times
//!   the unloaded latency (the first step's mean): the concurrency the
//!   knee's rate needs with no queue at all. Below it the limit would
//!   refuse work the service can do.
//! * **Gradient `max`**: twice the knee's concurrency, room for the limit
//!   to probe upwards when the service gets faster.
//! * **Global rate**: 80 % of the knee's rate, with a fifth of a second's
//!   burst, as a backstop for what per-client limits cannot see.
//! * **Queue `max_wait`**: the latency bound less the unloaded p99: a
//!   request that waits longer than that finishes past the bound anyway,
//!   so waiting only delays its refusal. Its capacity is what arrives at
//!   the knee's rate during one `max_wait`.

use std::fmt;
use std::time::Duration;

use super::knee::{ms, Knee, NoKnee};
use super::record::StepStats;

/// The longest `max_wait` the shedder's builder accepts.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(3_600);

/// The settings that follow from a knee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// For `Shedder::builder().max_concurrency(..)`.
    pub max_concurrency: u32,
    /// For `AdaptiveLimit::gradient().min(..)`.
    pub gradient_min: u32,
    /// For `AdaptiveLimit::gradient().max(..)`.
    pub gradient_max: u32,
    /// Requests per second for a global `Gcra::direct(Quota::per_second(..))`.
    pub global_rate: u32,
    /// Its burst.
    pub global_burst: u32,
    /// The queue's capacity, for `.queue(capacity, max_wait)`.
    pub queue_capacity: u32,
    /// The queue's `max_wait`, whole milliseconds.
    pub queue_max_wait: Duration,
    /// The knee's rate, requests per second (for the snippet's comment).
    pub knee_rate: u32,
    /// The knee's p99, whole milliseconds (for the snippet's comment).
    pub knee_p99: Duration,
}

impl Recommendation {
    /// The settings that follow from `knee` (see the module docs).
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgeguard::loadtest::{Knee, Recommendation};
    ///
    /// let ms = Duration::from_millis;
    /// let knee = Knee {
    ///     step: 14, target_rate: 380.0, rate: 380.0, p99: ms(28), mean: ms(22),
    ///     in_flight: 8.4, baseline_p99: ms(21), baseline_mean: ms(20), bound: ms(42),
    ///     beyond_tested: false, first_failure: None,
    /// };
    /// let advice = Recommendation::from_knee(&knee);
    /// assert_eq!(advice.max_concurrency, 9);
    /// assert_eq!((advice.gradient_min, advice.gradient_max), (8, 17));
    /// assert_eq!(advice.global_rate, 304);
    /// assert_eq!(advice.queue_max_wait, ms(21));
    /// ```
    pub fn from_knee(knee: &Knee) -> Recommendation {
        // `max` before `min`: a NaN figure becomes 1, not 0.
        let whole = |x: f64| x.ceil().max(1.0).min(f64::from(u32::MAX)) as u32;
        let max_concurrency = whole(knee.in_flight);
        let gradient_min = whole(knee.rate * knee.baseline_mean.as_secs_f64()).min(max_concurrency);
        let gradient_max = whole(2.0 * knee.in_flight).max(gradient_min.saturating_add(1));
        // A quota allows at most one request a nanosecond.
        let global_rate = whole((0.8 * knee.rate).floor()).min(1_000_000_000);
        let global_burst = whole(f64::from(global_rate) / 5.0);
        // The shedder refuses a queue wait over an hour; a bound that far
        // out leaves the queue the longest wait it takes.
        let headroom = knee
            .bound
            .saturating_sub(knee.baseline_p99)
            .min(MAX_QUEUE_WAIT);
        let queue_max_wait = Duration::from_millis(whole(ms(headroom)).into());
        let queue_capacity = whole(knee.rate * queue_max_wait.as_secs_f64());
        Recommendation {
            max_concurrency,
            gradient_min,
            gradient_max,
            global_rate,
            global_burst,
            queue_capacity,
            queue_max_wait,
            knee_rate: whole(knee.rate.floor()),
            knee_p99: Duration::from_millis(whole(ms(knee.p99)).into()),
        }
    }

    /// The settings as Rust code to paste into a function that returns
    /// `Result<_, Box<dyn std::error::Error>>`. `tests/loadtest_snippet.rs`
    /// compiles and runs one, so the names are the crate's own.
    pub fn rust_snippet(&self) -> String {
        let wait = self.queue_max_wait.as_millis();
        format!(
            "use std::time::Duration;
use surgeguard::limit::{{Gcra, Quota}};
use surgeguard::shed::{{AdaptiveLimit, Shedder}};

// From the load test's knee: {rate} requests/s answered, p99 {p99} ms.
// A fixed limit at the knee's concurrency...
let fixed = Shedder::builder()
    .max_concurrency({fixed})
    .queue({capacity}, Duration::from_millis({wait}))
    .build()?;
// ...or an adaptive one between the service's parallelism and twice that.
let adaptive = Shedder::builder()
    .limit(AdaptiveLimit::gradient().min({min}).max({max}))
    .queue({capacity}, Duration::from_millis({wait}))
    .build()?;
// A global rate limit at 80 % of the knee, a fifth of a second's burst.
let global = Gcra::direct(Quota::per_second({global})?.burst({burst})?).build()?;
",
            rate = self.knee_rate,
            p99 = self.knee_p99.as_millis(),
            fixed = self.max_concurrency,
            capacity = self.queue_capacity,
            min = self.gradient_min,
            max = self.gradient_max,
            global = self.global_rate,
            burst = self.global_burst,
        )
    }
}

/// Something the measurement cannot support.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Warning {
    /// No knee: errors or slowness from the first step on.
    NoKnee(NoKnee),
    /// The highest rate tested was still healthy: the settings are for a
    /// capacity of at least the knee, and too low if it is higher.
    BeyondTested {
        /// The highest rate tested.
        rate: f64,
    },
    /// The knee is the first step: the baseline and the knee are the same
    /// measurement, so the latency bound is guessed from a loaded service.
    KneeAtFirstStep,
    /// A step at or below the knee (or the one after it) asked for more
    /// than the client can send on this machine: the latencies measured
    /// there are partly the client's own queueing.
    BeyondClient {
        /// The step.
        step: usize,
        /// Its rate.
        rate: f64,
        /// The client's measured capacity.
        capacity: f64,
    },
    /// The client sent late in a step that counts (its lag's p99 over a
    /// quarter of the step's latency p99): it was saturated, or the
    /// machine was busy, and that much of each latency is its own.
    ClientFellBehind {
        /// The step.
        step: usize,
        /// The 99th percentile of its send lag.
        lag_p99: Duration,
    },
    /// The knee's step has too few requests for a steady p99.
    FewSamples {
        /// Requests in the knee's step.
        requests: u64,
    },
    /// Little's law and the service's own `surgeguard_shed_inflight` gauge
    /// disagree by more than half: the shedder guards something other than
    /// what the load test's URLs exercise, or the service queues elsewhere.
    GaugeDisagrees {
        /// Little's law's figure.
        little: f64,
        /// The gauge's mean at the knee.
        gauge: f64,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NoKnee(why) => write!(f, "no recommendation: {why}"),
            Warning::BeyondTested { rate } => write!(
                f,
                "every step was healthy up to {rate:.0} requests/s: the capacity is higher; ramp further before trusting these settings"
            ),
            Warning::KneeAtFirstStep => write!(
                f,
                "the knee is the first step: start the ramp lower so the baseline is an unloaded service"
            ),
            Warning::BeyondClient { step, rate, capacity } => write!(
                f,
                "step {step} asked for {rate:.0} requests/s, beyond the {capacity:.0}/s this client can send on this machine: its latencies include the client's own queueing"
            ),
            Warning::ClientFellBehind { step, lag_p99 } => write!(
                f,
                "in step {step} the client sent late (p99 lag {:.1} ms, over a quarter of the step's p99): that much of the latencies measured is the client's own delay",
                ms(*lag_p99)
            ),
            Warning::FewSamples { requests } => write!(
                f,
                "the knee's step has only {requests} requests: lengthen the steps for a steady p99"
            ),
            Warning::GaugeDisagrees { little, gauge } => write!(
                f,
                "Little's law gives {little:.1} in flight at the knee, the service's surgeguard_shed_inflight {gauge:.1}: the shedder sees other work than this test's"
            ),
        }
    }
}

/// A step's send lag counts as the client's saturation when its p99 is
/// above this and above a quarter of the step's latency p99 (the lag is
/// part of every latency measured, so then the figures are the client's).
const LAG_FLOOR: Duration = Duration::from_millis(1);
/// Fewer requests than this in the knee's step give a shaky p99.
const FEW_SAMPLES: u64 = 500;

/// What to warn about, for a run whose steps are `steps`, whose knee search
/// gave `knee`, whose client can send `client_capacity` requests/s on this
/// machine, and whose service's in-flight gauge averaged `gauge` at the knee.
pub fn warnings(
    steps: &[StepStats],
    knee: &Result<Knee, NoKnee>,
    client_capacity: Option<f64>,
    gauge: Option<f64>,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let knee = match knee {
        Ok(knee) => knee,
        Err(why) => {
            warnings.push(Warning::NoKnee(why.clone()));
            return warnings;
        }
    };
    // The steps whose figures the knee rests on: up to the first one past it.
    let counted = steps.iter().take(knee.step + 2);
    for step in counted {
        if let Some(capacity) = client_capacity {
            if step.target_rate > capacity {
                warnings.push(Warning::BeyondClient {
                    step: step.step,
                    rate: step.target_rate,
                    capacity,
                });
                continue;
            }
        }
        if step.send_lag_p99 > LAG_FLOOR && step.send_lag_p99 > step.p99 / 4 {
            warnings.push(Warning::ClientFellBehind {
                step: step.step,
                lag_p99: step.send_lag_p99,
            });
        }
    }
    if knee.beyond_tested {
        warnings.push(Warning::BeyondTested {
            rate: knee.target_rate,
        });
    }
    if knee.step == 0 {
        warnings.push(Warning::KneeAtFirstStep);
    }
    if let Some(step) = steps.get(knee.step) {
        if step.sent < FEW_SAMPLES {
            warnings.push(Warning::FewSamples {
                requests: step.sent,
            });
        }
    }
    if let Some(gauge) = gauge {
        let (low, high) = (gauge.min(knee.in_flight), gauge.max(knee.in_flight));
        if high > 1.0 && low < 0.5 * high {
            warnings.push(Warning::GaugeDisagrees {
                little: knee.in_flight,
                gauge,
            });
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::knee::{find_knee, LatencyBound};

    fn step(step: usize, rate: f64, p99_ms: u64, errors: u64) -> StepStats {
        let ms = Duration::from_millis;
        StepStats {
            step,
            target_rate: rate,
            start: Duration::from_secs(10 * step as u64),
            duration: Duration::from_secs(10),
            sent: (rate * 10.0) as u64,
            send_rate: rate,
            answered_rate: rate,
            errors,
            p50: ms(p99_ms / 2),
            p99: ms(p99_ms),
            max: ms(p99_ms),
            mean: ms(p99_ms / 2),
            send_lag_p99: Duration::ZERO,
        }
    }

    #[test]
    fn errors_from_the_start_give_a_warning_and_no_settings() {
        let steps = [step(0, 100.0, 10, 3), step(1, 200.0, 10, 0)];
        let knee = find_knee(&steps, LatencyBound::default());
        let warnings = warnings(&steps, &knee, None, None);
        assert!(
            matches!(warnings.as_slice(), [Warning::NoKnee(_)]),
            "{warnings:?}"
        );
        assert!(warnings[0].to_string().starts_with("no recommendation"));
    }

    #[test]
    fn a_rate_beyond_the_client_and_a_late_client_are_called_out() {
        let mut steps = vec![
            step(0, 100.0, 10, 0),
            step(1, 200.0, 10, 0),
            step(2, 300.0, 90, 0),
        ];
        steps[0].send_lag_p99 = Duration::from_millis(8);
        let knee = find_knee(&steps, LatencyBound::default());
        assert_eq!(knee.as_ref().unwrap().step, 1);
        let warnings = warnings(&steps, &knee, Some(150.0), None);
        assert!(warnings.contains(&Warning::ClientFellBehind {
            step: 0,
            lag_p99: Duration::from_millis(8)
        }));
        assert!(warnings
            .iter()
            .any(|w| matches!(w, Warning::BeyondClient { step: 1, .. })));
        assert!(warnings
            .iter()
            .any(|w| matches!(w, Warning::BeyondClient { step: 2, .. })));
    }

    #[test]
    fn a_ramp_that_never_found_the_knee_says_so() {
        let steps = [step(0, 100.0, 10, 0), step(1, 200.0, 11, 0)];
        let knee = find_knee(&steps, LatencyBound::default());
        let warnings = warnings(&steps, &knee, None, Some(40.0));
        assert!(warnings.contains(&Warning::BeyondTested { rate: 200.0 }));
        // 200/s at 5 ms mean is 1 in flight; a gauge of 40 is other work.
        assert!(warnings
            .iter()
            .any(|w| matches!(w, Warning::GaugeDisagrees { .. })));
    }

    #[test]
    fn the_settings_are_never_zero_and_the_gradient_bounds_are_ordered() {
        let knee = Knee {
            step: 1,
            target_rate: 0.5,
            rate: 0.5,
            p99: Duration::from_micros(10),
            mean: Duration::from_micros(10),
            in_flight: 0.000_005,
            baseline_p99: Duration::from_micros(10),
            baseline_mean: Duration::from_micros(10),
            bound: Duration::from_micros(10),
            beyond_tested: false,
            first_failure: None,
        };
        let advice = Recommendation::from_knee(&knee);
        assert!(advice.max_concurrency >= 1 && advice.global_rate >= 1 && advice.global_burst >= 1);
        assert!(advice.queue_capacity >= 1 && !advice.queue_max_wait.is_zero());
        assert!(advice.gradient_min >= 1 && advice.gradient_min < advice.gradient_max);
    }
}
