//! Vegas: estimate the queue from latency, as TCP Vegas does (Brakmo and
//! Peterson, SIGCOMM 1994), and keep it between two small bounds.
//!
//! With `L` the limit, `R₀` the no-load latency and `R` the fastest latency
//! of a round trip, `queue = L × (1 − R₀ / R)` requests are waiting rather
//! than being served. Once per round trip, the limit grows by `6·log₁₀ L`
//! while the queue is under `log₁₀ L`, by `log₁₀ L` while it is under
//! `3·log₁₀ L`, and shrinks by `log₁₀ L` when it is over `6·log₁₀ L`
//! (concurrency-limits' `VegasLimit` thresholds). A round trip is as many
//! samples as the most requests in flight beside any of them, and it is
//! saturated if any of them started with half the limit or more in use; an
//! unsaturated one leaves the limit alone.
//!
//! The no-load latency falls at once to any lower sample but rises only
//! toward the fastest of at least ten samples in unsaturated round trips in
//! a row (or taken while the limit was at its minimum): a sample taken
//! under sustained overload includes queueing and must not become the new
//! "no load", or the estimate ratchets up with the load and the limit with
//! it (concurrency-limits issue #165).
//!
//! **Why round trips, and their fastest request.** `VegasLimit` judges every
//! sample on its own, against the no-load latency and the limit of the
//! moment, and so did this one, with two results that a mix of cheap and
//! costly requests (2 ms and 20 ms at 80/20, `tests/shed_simulation.rs`)
//! turned into a runaway: the limit climbed to its maximum (1,000) under a
//! 10x overload and admitted latency reached 90x uncongested.
//!
//! * Whether a sample was saturated was judged from the requests in flight
//!   when it *started*. A request that started in a lull but finished behind
//!   the overload that arrived after it (or under a limit that had since
//!   grown by `6·log₁₀ L` a few times) looked unsaturated and taught the
//!   no-load estimate its queued latency: a dozen of them, when an overload
//!   began, doubled it (10 ms to 19.5 ms for requests that all cost 10 ms).
//!   An inflated estimate hides the queue, the limit grows, and more samples
//!   start under a limit they no longer fill. Now a round trip is judged
//!   whole: the requests admitted after a slow one, which slowed it, finish
//!   in its round and mark it saturated.
//! * The no-load estimate is the cheap requests' latency, so a costly request
//!   alone read as a queue of nine tenths of the limit, and one costly
//!   request alone in a quiet moment raised the estimate by half (2 ms to
//!   2.9 ms). Now a round trip's queue is read from its fastest request (as
//!   Linux's `tcp_vegas` reads the minimum RTT of each round trip), whose
//!   latency grows with the queue like any other's, and the estimate rises
//!   only toward the fastest of ten samples.
//! * A step per sample compounded within a round trip (the limit went from
//!   49 to 81 in three samples). One step per round trip is what TCP Vegas
//!   takes.
//!
//! In the simulation Vegas now settles at a limit of 16 (13 in flight, the
//! knee is 8) under both workloads: admitted p99 1.5x uncongested under the
//! mix, 1.4x where every request costs 10 ms (2.2x before, when the no-load
//! estimate had doubled). The price: a limit far from the knee moves by
//! `log₁₀ L` per round trip, not per request, so from hundreds it takes
//! seconds to come down, and a no-load latency that became slower is
//! followed over hundreds of quiet samples, not at once.

use super::{Bounds, LimitAlgorithm, Sample};

/// How fast the no-load estimate follows higher unsaturated latency.
const NO_LOAD_RISE: f64 = 0.05;
/// Unsaturated samples in a row that the no-load estimate rises from, toward
/// their fastest: under a mix with 20 % costly requests, ten are all costly
/// once in ten million (0.2¹⁰).
const QUIET_SAMPLES: u32 = 10;

#[derive(Debug)]
pub(crate) struct Vegas {
    limit: f64,
    /// Nanoseconds; `None` until the first sample.
    no_load: Option<f64>,
    /// The round trip in progress.
    round: Round,
    /// Samples in the unsaturated rounds since the last saturated one (or
    /// since the no-load estimate last rose) ...
    quiet_samples: u32,
    /// ... and the fastest latency among them, nanoseconds.
    quiet_fastest: f64,
    bounds: Bounds,
}

/// What the samples of one round trip showed.
#[derive(Debug)]
struct Round {
    /// Samples seen so far.
    samples: u32,
    /// The round ends once it has seen this many: the most requests that
    /// were in flight beside any of its samples, which complete within
    /// about one latency.
    length: u32,
    /// The lowest latency seen, nanoseconds.
    fastest: f64,
    /// Some sample started with half the limit or more in use.
    saturated: bool,
}

impl Round {
    const START: Round = Round {
        samples: 0,
        length: 0,
        fastest: f64::INFINITY,
        saturated: false,
    };
}

impl Vegas {
    pub(crate) fn new(initial: u32, bounds: Bounds) -> Self {
        Vegas {
            limit: f64::from(initial),
            no_load: None,
            round: Round::START,
            quiet_samples: 0,
            quiet_fastest: f64::INFINITY,
            bounds,
        }
    }

    /// The no-load latency estimate, in nanoseconds.
    #[cfg(test)]
    pub(crate) fn no_load(&self) -> Option<f64> {
        self.no_load
    }

    /// Learns from a round trip's samples: one step of the limit.
    fn end_round(&mut self, round: Round) {
        let Some(mut no_load) = self.no_load else {
            return;
        };
        let at_floor = self.limit <= f64::from(self.bounds.min);
        if round.saturated && !at_floor {
            self.quiet_samples = 0;
            self.quiet_fastest = f64::INFINITY;
        } else {
            self.quiet_samples = self.quiet_samples.saturating_add(round.samples);
            self.quiet_fastest = self.quiet_fastest.min(round.fastest);
            if self.quiet_samples >= QUIET_SAMPLES {
                if self.quiet_fastest > no_load {
                    no_load += (self.quiet_fastest - no_load) * NO_LOAD_RISE;
                    self.no_load = Some(no_load);
                }
                self.quiet_samples = 0;
                self.quiet_fastest = f64::INFINITY;
            }
        }
        if !round.saturated {
            return;
        }
        let log = self.limit.log10().max(1.0);
        let queue = self.limit * (1.0 - no_load / round.fastest);
        let next = if queue <= log {
            self.limit + 6.0 * log
        } else if queue < 3.0 * log {
            self.limit + log
        } else if queue > 6.0 * log {
            self.limit - log
        } else {
            self.limit
        };
        self.limit = self.bounds.clamp(next);
    }
}

impl LimitAlgorithm for Vegas {
    fn limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, sample: Sample) -> u32 {
        if self.bounds.is_drop(&sample) {
            let log = self.limit.log10().max(1.0);
            self.limit = self.bounds.clamp(self.limit - log);
            return self.limit();
        }
        let latency = (sample.latency.as_nanos() as f64).max(1.0);
        self.no_load = Some(self.no_load.map_or(latency, |current| current.min(latency)));
        let round = &mut self.round;
        round.samples = round.samples.saturating_add(1);
        round.length = round.length.max(sample.in_flight.min(self.bounds.max));
        round.fastest = round.fastest.min(latency);
        round.saturated |= f64::from(sample.in_flight) * 2.0 >= self.limit;
        if round.samples >= round.length {
            let finished = std::mem::replace(&mut self.round, Round::START);
            self.end_round(finished);
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_costs::mixed_cost_ms;
    use super::*;
    use std::time::Duration;

    fn sample(latency_ms: u64, in_flight: u32) -> Sample {
        Sample {
            latency: Duration::from_millis(latency_ms),
            in_flight,
            dropped: false,
        }
    }

    fn bounds() -> Bounds {
        Bounds {
            min: 1,
            max: 1_000,
            threshold: None,
        }
    }

    /// Latency of a request costing `cost_ms` on a server with 8 workers
    /// shared by the requests above 8 (latency grows in proportion).
    fn shared(cost_ms: f64, in_flight: u32) -> Sample {
        let slowdown = (f64::from(in_flight) / 8.0).max(1.0);
        Sample {
            latency: Duration::from_secs_f64(cost_ms * slowdown / 1e3),
            in_flight,
            dropped: false,
        }
    }

    #[test]
    fn requests_that_started_before_an_overload_do_not_teach_queued_latency() {
        // The simulation's uniform workload when the overload arrives: the
        // requests that started with 4 to 14 in flight, under a limit of 30,
        // looked unsaturated, but finished at almost three times their cost
        // behind the requests admitted after them.
        let mut vegas = Vegas::new(30, bounds());
        for _ in 0..100 {
            vegas.update(sample(10, 1));
        }
        for in_flight in 4..=14 {
            vegas.update(sample(28, in_flight));
        }
        for _ in 0..20_000 {
            let limit = vegas.limit();
            vegas.update(shared(10.0, limit));
        }
        assert_eq!(vegas.no_load().unwrap(), 10e6);
        assert!(
            (10..=16).contains(&vegas.limit()),
            "the limit settles near the knee (8), not at {}",
            vegas.limit()
        );
    }

    #[test]
    fn mixed_costs_under_overload_settle_near_the_knee() {
        // The cheap requests show the queue; the costly ones, ten times
        // slower than the no-load estimate, must not read as a queue of
        // nine tenths of the limit.
        for start in [4, 50, 200] {
            let mut vegas = Vegas::new(start, bounds());
            for request in 0..1_000 {
                vegas.update(shared(mixed_cost_ms(request), 1));
            }
            let mut halfway = 0;
            for request in 0..100_000 {
                let limit = vegas.limit();
                vegas.update(shared(mixed_cost_ms(request), limit));
                if request == 50_000 {
                    halfway = vegas.limit();
                }
            }
            let settled = vegas.limit();
            assert!((10..=16).contains(&settled), "from {start}: {settled}");
            assert!(
                halfway.abs_diff(settled) <= 1,
                "from {start}: {halfway}, then {settled}"
            );
        }
    }

    #[test]
    fn sustained_overload_does_not_drift_the_no_load_estimate_up() {
        let bounds = Bounds {
            min: 1,
            max: 1_000,
            threshold: None,
        };
        let mut vegas = Vegas::new(20, bounds);
        vegas.update(sample(10, 20));
        let learned = vegas.no_load().unwrap();
        // Hours of saturated samples, all slowed by queueing.
        for _ in 0..100_000 {
            let limit = vegas.limit();
            vegas.update(sample(40, limit));
        }
        assert_eq!(vegas.no_load().unwrap(), learned);
        assert!(vegas.limit() < 20, "the queue estimate shrinks the limit");
    }

    #[test]
    fn the_no_load_estimate_follows_a_slower_backend_when_unloaded() {
        let bounds = Bounds {
            min: 1,
            max: 1_000,
            threshold: None,
        };
        let mut vegas = Vegas::new(20, bounds);
        vegas.update(sample(10, 20));
        for _ in 0..1_000 {
            vegas.update(sample(30, 1));
        }
        let no_load_ms = vegas.no_load().unwrap() / 1e6;
        assert!((29.0..=30.0).contains(&no_load_ms), "{no_load_ms}");
    }
}
