//! Gradient: scale the limit by how much slower requests are than the
//! baseline, as concurrency-limits' `Gradient2Limit` does, with two fixes.
//!
//! Each saturated sample averages the recent latency (about ten samples, so
//! one slow request is not a trend), computes `gradient = clamp(1.1 ×
//! baseline / recent, 0.5, 1)` (the 1.1 absorbs the noise averaging leaves)
//! and moves the limit a fifth of the way to `limit × gradient + headroom`,
//! where `headroom = log₁₀ limit` (at least 1) is added only while latency
//! shows no queue, to probe for more. Above the knee of a server's latency
//! curve the gradient falls below 1 and the limit shrinks; below it the
//! headroom grows it, so it settles where queueing starts.
//!
//! * **Drops decrease the limit** (x0.9). Gradient2 fed only latency, so
//!   when every call timed out at the same latency, latency looked steady
//!   and the limit grew to its maximum (concurrency-limits issue #137).
//! * **The baseline does not learn from saturated periods.** It falls
//!   quickly to lower samples but rises only from samples taken while the
//!   limit was not in use (or at its minimum). Gradient2's long-window average
//!   followed the inflated latency of modest, sustained overload, the
//!   gradient drifted back to 1, and the limit crept up for as long as the
//!   overload lasted (the discussion on concurrency-limits PR #134).
//!
//! The price of the second fix: the baseline comes from unsaturated traffic.
//! A server that starts under overload takes its first latency as the
//! baseline and holds about its initial limit until load eases (or the limit
//! reaches its minimum, where the baseline may rise again); start it with a
//! modest initial limit.

use super::{Bounds, LimitAlgorithm, Sample};

/// Factor applied on a drop.
const BACKOFF: f64 = 0.9;
/// Weight of a new sample in the recent average (about ten samples).
const RECENT_WEIGHT: f64 = 0.1;
/// Latency this much above the baseline still counts as no queue: room for
/// the noise that averaging leaves.
const TOLERANCE: f64 = 1.1;
/// Share of the way to the computed limit taken per sample (Gradient2's
/// default smoothing).
const SMOOTHING: f64 = 0.2;
/// How fast the baseline follows a lower sample, and a higher unsaturated one.
const BASELINE_FALL: f64 = 0.5;
const BASELINE_RISE: f64 = 0.05;

#[derive(Debug)]
pub(crate) struct Gradient {
    limit: f64,
    /// Recent latency, smoothed over about ten samples (nanoseconds).
    recent: Option<f64>,
    /// Nanoseconds; `None` until the first sample.
    baseline: Option<f64>,
    bounds: Bounds,
}

impl Gradient {
    pub(crate) fn new(initial: u32, bounds: Bounds) -> Self {
        Gradient {
            limit: f64::from(initial),
            recent: None,
            baseline: None,
            bounds,
        }
    }
}

impl LimitAlgorithm for Gradient {
    fn limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, sample: Sample) -> u32 {
        if self.bounds.is_drop(&sample) {
            self.limit = self.bounds.clamp(self.limit * BACKOFF);
            return self.limit();
        }
        let sampled = (sample.latency.as_nanos() as f64).max(1.0);
        // Single samples jitter (scheduling, GC, a slow disk): compare the
        // recent average, not the last request, with the baseline.
        let latency = match self.recent {
            Some(recent) => recent + (sampled - recent) * RECENT_WEIGHT,
            None => sampled,
        };
        self.recent = Some(latency);
        let saturated = f64::from(sample.in_flight) * 2.0 >= self.limit;
        let at_floor = self.limit <= f64::from(self.bounds.min);
        let baseline = match self.baseline {
            Some(current) if latency < current => current + (latency - current) * BASELINE_FALL,
            Some(current) if !saturated || at_floor => {
                current + (latency - current) * BASELINE_RISE
            }
            Some(current) => current,
            None => latency,
        };
        self.baseline = Some(baseline);
        if !saturated {
            return self.limit();
        }
        let gradient = (TOLERANCE * baseline / latency).clamp(0.5, 1.0);
        // Probe for more only while latency shows no queue.
        let headroom = if gradient >= 1.0 {
            self.limit.log10().max(1.0)
        } else {
            0.0
        };
        let target = self.limit * gradient + headroom;
        self.limit = self
            .bounds
            .clamp(self.limit + (target - self.limit) * SMOOTHING);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bounds() -> Bounds {
        Bounds {
            min: 1,
            max: 1_000,
            threshold: None,
        }
    }

    #[test]
    fn requests_that_all_time_out_at_one_latency_shrink_the_limit() {
        // concurrency-limits #137: every call times out after exactly 1 s.
        let mut gradient = Gradient::new(100, bounds());
        for _ in 0..1_000 {
            let limit = gradient.limit();
            gradient.update(Sample {
                latency: Duration::from_secs(1),
                in_flight: limit,
                dropped: true,
            });
        }
        assert_eq!(gradient.limit(), 1);
    }

    #[test]
    fn steady_modest_overload_does_not_creep_the_limit_up() {
        // A server whose latency is 10 ms up to 8 concurrent requests and
        // grows in proportion above. After a quiet start (the baseline is
        // learned), overload arrives; whatever the limit was, it settles near
        // the knee and stays there however long the overload lasts.
        for start in [4, 50, 400] {
            let mut gradient = Gradient::new(start, bounds());
            for _ in 0..100 {
                gradient.update(Sample {
                    latency: Duration::from_millis(10),
                    in_flight: 1,
                    dropped: false,
                });
            }
            for _ in 0..50_000 {
                let limit = gradient.limit().max(1);
                let latency_ms = 10.0 * (f64::from(limit) / 8.0).max(1.0);
                gradient.update(Sample {
                    latency: Duration::from_secs_f64(latency_ms / 1e3),
                    in_flight: limit,
                    dropped: false,
                });
            }
            let settled = gradient.limit();
            assert!((8..=10).contains(&settled), "from {start}: {settled}");
        }
    }
}
