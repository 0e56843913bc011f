//! The figures of a run: per step of the schedule (what the knee is found
//! from), per second (what the report draws), and errors by kind.
//!
//! Latency here is what a user would have seen: from when the request was
//! due to its last byte, a timed-out request counting as the timeout, and
//! failures counted with the rest. Percentiles over successes alone would
//! let an overloaded server that fails fast look healthy.

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::Outcome;
use super::schedule::Schedule;

/// A step's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// The step's index.
    pub step: usize,
    /// The rate the schedule asked for, requests per second.
    pub target_rate: f64,
    /// When the step started, from the start of the run.
    pub start: Duration,
    /// How long it lasted.
    pub duration: Duration,
    /// Requests due in the step.
    pub sent: u64,
    /// The rate the client actually sent at, measured from when each
    /// request went out.
    pub send_rate: f64,
    /// 2xx answers (of any step) finished within the step's time shifted
    /// by its median latency, per second: the server's throughput while
    /// the step ran. The shift matters when the latency is not small
    /// against the step: an unshifted window would lose the step's last
    /// answers to the next step, and the first step, having no step before
    /// it, would look as if it fell behind.
    pub answered_rate: f64,
    /// Requests of the step that did not end in 2xx.
    pub errors: u64,
    /// Median latency of the step's requests.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
    /// Mean latency.
    pub mean: Duration,
    /// 99th percentile of the client's own lag in sending.
    pub send_lag_p99: Duration,
}

/// One second of the run, by when requests were due.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecondStats {
    /// The second, from 0.
    pub second: u32,
    /// Requests due in it.
    pub sent: u32,
    /// 2xx answers that finished in it.
    pub answered: u32,
    /// Requests due in it that did not end in 2xx.
    pub errors: u32,
    /// Median latency of the requests due in it.
    pub p50: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
}

/// The value at `quantile` (0 to 1) of `sorted` by nearest rank; `None`
/// when empty.
pub(crate) fn nearest_rank(sorted: &[Duration], quantile: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Each step's figures, from the outcomes of a run of `schedule`.
pub fn steps(schedule: &Schedule, outcomes: &[Outcome]) -> Vec<StepStats> {
    let mut by_step: Vec<Vec<&Outcome>> = vec![Vec::new(); schedule.steps().len()];
    for outcome in outcomes {
        if let Some(bucket) = by_step.get_mut(outcome.due.step) {
            bucket.push(outcome);
        }
    }
    let mut answered_at: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.ending.is_success())
        .map(Outcome::finished_at)
        .collect();
    answered_at.sort_unstable();
    let answered_within = |from: Duration, to: Duration| {
        answered_at.partition_point(|&t| t < to) - answered_at.partition_point(|&t| t < from)
    };
    schedule
        .steps()
        .iter()
        .zip(by_step)
        .enumerate()
        .map(|(index, (step, inside))| {
            let mut latencies: Vec<Duration> = inside.iter().map(|o| o.latency).collect();
            latencies.sort_unstable();
            let mut lags: Vec<Duration> = inside.iter().map(|o| o.send_lag).collect();
            lags.sort_unstable();
            let sent_at = inside.iter().map(|o| o.due.at + o.send_lag);
            let first = sent_at.clone().min().unwrap_or_default();
            let last = sent_at.max().unwrap_or_default();
            // n requests sent over (last - first) is n - 1 intervals; the
            // schedule's own spacing gives the rate it asked for.
            let send_rate = if inside.len() > 1 && last > first {
                (inside.len() - 1) as f64 / (last - first).as_secs_f64()
            } else {
                step.rate
            };
            let total: Duration = latencies.iter().sum();
            let seconds = step.duration.as_secs_f64();
            let p50 = nearest_rank(&latencies, 0.50).unwrap_or_default();
            let window = step.start + p50;
            let answered = answered_within(window, window + step.duration);
            StepStats {
                step: index,
                target_rate: step.rate,
                start: step.start,
                duration: step.duration,
                sent: inside.len() as u64,
                send_rate,
                answered_rate: answered as f64 / seconds,
                errors: inside.iter().filter(|o| !o.ending.is_success()).count() as u64,
                p50,
                p99: nearest_rank(&latencies, 0.99).unwrap_or_default(),
                max: latencies.last().copied().unwrap_or_default(),
                mean: total
                    .checked_div(latencies.len().max(1) as u32)
                    .unwrap_or_default(),
                send_lag_p99: nearest_rank(&lags, 0.99).unwrap_or_default(),
            }
        })
        .collect()
}

/// The run second by second, for `seconds` seconds.
pub fn seconds(outcomes: &[Outcome], seconds: u32) -> Vec<SecondStats> {
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); seconds as usize];
    let mut timeline: Vec<SecondStats> = (0..seconds)
        .map(|second| SecondStats {
            second,
            ..SecondStats::default()
        })
        .collect();
    for outcome in outcomes {
        let due = outcome.due.at.as_secs() as usize;
        if let Some(slot) = timeline.get_mut(due) {
            slot.sent += 1;
            if !outcome.ending.is_success() {
                slot.errors += 1;
            }
            latencies[due].push(outcome.latency);
        }
        let finished = outcome.finished_at().as_secs() as usize;
        if outcome.ending.is_success() {
            if let Some(slot) = timeline.get_mut(finished) {
                slot.answered += 1;
            }
        }
    }
    for (slot, mut inside) in timeline.iter_mut().zip(latencies) {
        inside.sort_unstable();
        slot.p50 = nearest_rank(&inside, 0.50);
        slot.p99 = nearest_rank(&inside, 0.99);
    }
    timeline
}

/// How many requests failed, by kind (`HTTP 503`, `timed out`, ...).
pub fn errors_by_kind(outcomes: &[Outcome]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for kind in outcomes.iter().filter_map(|o| o.ending.error_kind()) {
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_value_at_or_above_the_quantile() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(nearest_rank(&values, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(nearest_rank(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(nearest_rank(&values, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(nearest_rank(&values, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
