//! Gradient: scale the limit by how much slower requests are than the
//! baseline, as concurrency-limits' `Gradient2Limit` does, with the fixes
//! below.
//!
//! Each saturated sample averages the recent latency (about ten samples, so
//! one slow request is not a trend), computes `gradient = clamp(tolerance ×
//! baseline / recent, 0.5, 1)` and moves the limit toward
//! `limit × gradient + headroom`, where the headroom, `log₁₀ limit` but at
//! least one, is added only while latency shows no queue, to probe for
//! more. Above the knee of a server's latency curve the gradient falls
//! below 1 and the limit shrinks; below it the headroom grows it, so it
//! settles where queueing starts.
//!
//! * **Drops decrease the limit** (x0.9). Gradient2 fed only latency, so
//!   when every call timed out at the same latency, latency looked steady
//!   and the limit grew to its maximum (concurrency-limits issue #137).
//! * **The baseline does not learn from saturated periods**, only from
//!   samples taken while the limit was not in use (or was at its minimum).
//!   Gradient2's long-window average followed the inflated latency of
//!   modest, sustained overload, the gradient drifted back to 1, and the
//!   limit crept up for as long as the overload lasted (the discussion on
//!   concurrency-limits PR #134).
//! * **The baseline is the typical latency of the traffic mix.** It is the
//!   average of those samples over a long window (600, Gradient2's default),
//!   rising and falling alike. It used to fall at once to any lower recent
//!   average: with cheap and costly requests mixed (a database answering in
//!   2 ms or 20 ms), it sank to the cheap ones' latency, the recent average
//!   of the mix stayed far above it, the gradient sat at 0.5 and the limit
//!   fell to its minimum on a server that was not overloaded (in
//!   `tests/shed_simulation.rs`, 73 % of requests shed at half capacity).
//! * **The tolerance widens with the mix's spread, up to 2.** A mix makes
//!   the ten-sample recent average wander (by about 30 % of its mean for
//!   2 ms and 20 ms at 80/20), and as the gradient is capped at 1, that
//!   noise only ever pulls the limit down. So latency may exceed the
//!   baseline by 10 % (the noise of requests that cost the same) plus two
//!   standard errors of the recent average, estimated from the spread of
//!   the baseline's samples, but never double it. Gradient2 has one fixed
//!   tolerance (1.5 by default) for every mix.
//!
//! **Steps are per round trip.** Each sample moves the limit `0.2 /
//! in_flight` of the way (Gradient2's smoothing, 0.2, shared among the
//! requests that ran beside it, which complete within about one latency):
//! a fifth of the way per round trip. Gradient2 paces itself likewise when
//! wrapped in concurrency-limits' `WindowedLimit`, which hands it one
//! averaged sample per window (a second by default), and TCP grows its
//! window by about one segment per round trip, not per acknowledgement
//! (RFC 5681). A full step per sample compounds over a round trip, and
//! under mixed costs the cheap requests report first after the limit
//! grows, the costly ones a round trip later: the limit swung from 1 to
//! hundreds in the simulation's overload.
//!
//! The price of the baseline fixes: it comes from unsaturated traffic, so a
//! server that starts under overload takes its first latency as the
//! baseline and holds about its initial limit until load eases (or the
//! limit reaches its minimum, where the baseline learns again); start it
//! with a modest initial limit. It follows a backend that became slower or
//! faster over hundreds of unsaturated samples, not at once. Under a wide
//! mix, queueing smaller than the noise goes unnoticed, so admitted latency
//! settles higher than under a uniform one (1.6x uncongested against 1.2x
//! in the simulation). The price of per-round steps: a limit far above the
//! knee when overload starts (hundreds) takes seconds, not milliseconds,
//! to come down.

use super::{Bounds, LimitAlgorithm, Sample};

/// Factor applied on a drop.
const BACKOFF: f64 = 0.9;
/// Weight of a new sample in the recent average (about ten samples).
const RECENT_WEIGHT: f64 = 0.1;
/// Latency this much above the baseline counts as no queue when every
/// request costs the same: room for the noise that averaging leaves.
const TOLERANCE: f64 = 1.1;
/// Standard errors of the recent average also counted as no queue.
const NOISE_MARGIN: f64 = 2.0;
/// The widest tolerance: the limit backs off before latency doubles.
const MAX_TOLERANCE: f64 = 2.0;
/// Share of the way to the computed limit taken per round trip
/// (Gradient2's default smoothing).
const SMOOTHING: f64 = 0.2;
/// Samples in the baseline's window (Gradient2's default long window).
const BASELINE_WINDOW: f64 = 600.0;
/// A normal distribution's standard deviation over its mean absolute
/// deviation (√(π/2)): the spread is learned as the latter, which one
/// outlier disturbs far less than a variance.
const DEVIATION_TO_SPREAD: f64 = 1.2533;

#[derive(Debug)]
pub(crate) struct Gradient {
    limit: f64,
    /// Recent latency, smoothed over about ten samples (nanoseconds).
    recent: Option<f64>,
    baseline: Baseline,
    bounds: Bounds,
}

/// The typical latency of unsaturated requests, and how far single ones
/// stray from it.
#[derive(Debug, Default)]
struct Baseline {
    /// Samples learned (counting stops at the window).
    samples: f64,
    /// Mean latency, nanoseconds.
    mean: f64,
    /// Mean absolute deviation from `mean`, nanoseconds.
    deviation: f64,
}

impl Baseline {
    /// Learns from one sample: a plain average until the window is full
    /// (so the first samples are not weighed against a guess), then an
    /// exponential one over the window.
    fn learn(&mut self, latency: f64) {
        self.samples = (self.samples + 1.0).min(BASELINE_WINDOW);
        let weight = 1.0 / self.samples;
        self.mean += (latency - self.mean) * weight;
        self.deviation += ((latency - self.mean).abs() - self.deviation) * weight;
    }

    fn is_empty(&self) -> bool {
        self.samples == 0.0
    }

    /// How much slower than the baseline the recent average may be before
    /// it counts as a queue.
    fn tolerance(&self) -> f64 {
        let spread = DEVIATION_TO_SPREAD * self.deviation / self.mean;
        // An exponential average with weight w of independent samples
        // wanders by their spread times √(w / (2 − w)).
        let standard_error = spread * (RECENT_WEIGHT / (2.0 - RECENT_WEIGHT)).sqrt();
        (TOLERANCE + NOISE_MARGIN * standard_error).min(MAX_TOLERANCE)
    }
}

impl Gradient {
    pub(crate) fn new(initial: u32, bounds: Bounds) -> Self {
        Gradient {
            limit: f64::from(initial),
            recent: None,
            baseline: Baseline::default(),
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
        // Single samples jitter (scheduling, GC, a slow disk, a costly
        // query): compare the recent average, not the last request, with the
        // baseline.
        let recent = match self.recent {
            Some(recent) => recent + (sampled - recent) * RECENT_WEIGHT,
            None => sampled,
        };
        self.recent = Some(recent);
        let saturated = f64::from(sample.in_flight) * 2.0 >= self.limit;
        let at_floor = self.limit <= f64::from(self.bounds.min);
        if !saturated || at_floor || self.baseline.is_empty() {
            self.baseline.learn(sampled);
        }
        if !saturated {
            return self.limit();
        }
        let gradient = (self.baseline.tolerance() * self.baseline.mean / recent).clamp(0.5, 1.0);
        // Probe for more only while latency shows no queue.
        let headroom = if gradient >= 1.0 {
            self.limit.log10().max(1.0)
        } else {
            0.0
        };
        let target = self.limit * gradient + headroom;
        // The requests that ran beside this one complete within about its
        // latency, each with a sample: each takes its share of one round
        // trip's step.
        let step = SMOOTHING / f64::from(sample.in_flight).max(1.0);
        self.limit = self.bounds.clamp(self.limit + (target - self.limit) * step);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_costs::mixed_cost_ms;
    use super::*;
    use std::time::Duration;

    fn bounds() -> Bounds {
        Bounds {
            min: 1,
            max: 1_000,
            threshold: None,
        }
    }

    fn success(latency_ms: f64, in_flight: u32) -> Sample {
        Sample {
            latency: Duration::from_secs_f64(latency_ms / 1e3),
            in_flight,
            dropped: false,
        }
    }

    /// A quiet start at one request in flight (the baseline is learned),
    /// then `overload` samples of a server with 8 workers shared by the
    /// requests above 8 (latency grows in proportion); the limit at the end
    /// of each half of the overload.
    fn modest_overload(start: u32, cost_ms: fn(usize) -> f64, overload: usize) -> (u32, u32) {
        let mut gradient = Gradient::new(start, bounds());
        for request in 0..1_000 {
            gradient.update(success(cost_ms(request), 1));
        }
        let mut halfway = 0;
        for request in 0..overload {
            let limit = gradient.limit().max(1);
            let slowdown = (f64::from(limit) / 8.0).max(1.0);
            gradient.update(success(cost_ms(request) * slowdown, limit));
            if request == overload / 2 {
                halfway = gradient.limit();
            }
        }
        (halfway, gradient.limit())
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
        // Every request costs 10 ms. Whatever the limit was when overload
        // arrived, it settles near the knee (8) and stays there however long
        // the overload lasts.
        for start in [4, 50, 400] {
            let (halfway, settled) = modest_overload(start, |_| 10.0, 50_000);
            assert!((8..=10).contains(&settled), "from {start}: {settled}");
            assert!(
                halfway.abs_diff(settled) <= 1,
                "from {start}: {halfway}, then {settled}"
            );
        }
    }

    #[test]
    fn mixed_costs_under_modest_overload_settle_without_creeping() {
        // The tolerance is wider for the mix, so the limit settles above the
        // knee, but below twice it (latency never doubles), and stays.
        for start in [4, 50, 400] {
            let (halfway, settled) = modest_overload(start, mixed_cost_ms, 50_000);
            assert!((8..=16).contains(&settled), "from {start}: {settled}");
            assert!(
                halfway.abs_diff(settled) <= 1,
                "from {start}: {halfway}, then {settled}"
            );
        }
    }

    #[test]
    fn a_mix_of_cheap_and_costly_requests_without_a_queue_keeps_the_limit() {
        // No queue: every request takes its cost, whatever runs beside it.
        // Now and then a burst uses the limit (a saturated sample).
        let mut gradient = Gradient::new(20, bounds());
        for request in 0..20_000 {
            let in_flight = if request % 4 == 3 {
                gradient.limit()
            } else {
                2
            };
            gradient.update(success(mixed_cost_ms(request), in_flight));
        }
        let baseline_ms = gradient.baseline.mean / 1e6;
        assert!(
            (5.0..=6.2).contains(&baseline_ms),
            "baseline {baseline_ms:.2} ms, the mix averages 5.6"
        );
        assert!(
            gradient.limit() >= 20,
            "the limit sank to {}",
            gradient.limit()
        );
    }

    #[test]
    fn the_tolerance_widens_with_the_spread_of_costs_up_to_double() {
        let learned = |cost_ms: fn(usize) -> f64| {
            let mut baseline = Baseline::default();
            for request in 0..1_000 {
                baseline.learn(cost_ms(request) * 1e6);
            }
            baseline.tolerance()
        };
        assert!((learned(|_| 10.0) - TOLERANCE).abs() < 1e-9);
        let mixed = learned(mixed_cost_ms);
        assert!((1.5..1.9).contains(&mixed), "{mixed}");
        let one_in_a_hundred_slow = learned(|request| if request % 100 == 0 { 500.0 } else { 1.0 });
        assert_eq!(one_in_a_hundred_slow, MAX_TOLERANCE);
    }

    #[test]
    fn the_baseline_follows_a_slower_backend_when_unloaded() {
        let mut gradient = Gradient::new(20, bounds());
        for _ in 0..1_000 {
            gradient.update(success(10.0, 1));
        }
        for _ in 0..5_000 {
            gradient.update(success(30.0, 1));
        }
        let baseline_ms = gradient.baseline.mean / 1e6;
        assert!((29.0..=30.0).contains(&baseline_ms), "{baseline_ms}");
    }
}
