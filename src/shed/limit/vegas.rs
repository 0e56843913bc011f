//! Vegas: estimate the queue from latency, as TCP Vegas does (Brakmo and
//! Peterson, SIGCOMM 1994), and keep it between two small bounds.
//!
//! With `L` the limit, `R₀` the no-load latency and `R` the latency of a
//! completed request, `queue = L × (1 − R₀ / R)` requests are waiting rather
//! than being served. The limit grows by `6·log₁₀ L` while the queue is under
//! `log₁₀ L`, by `log₁₀ L` while it is under `3·log₁₀ L`, and shrinks by
//! `log₁₀ L` when it is over `6·log₁₀ L` (concurrency-limits' `VegasLimit`
//! thresholds).
//!
//! The no-load latency falls at once to any lower sample but rises only from
//! samples taken while the limit was not in use (or was at its minimum): a
//! sample taken under sustained overload includes queueing and must not
//! become the new "no load", or the estimate ratchets up with the load and
//! the limit with it (concurrency-limits issue #165).

use super::{Bounds, LimitAlgorithm, Sample};

/// How fast the no-load estimate follows a higher unsaturated sample.
const NO_LOAD_RISE: f64 = 0.05;

#[derive(Debug)]
pub(crate) struct Vegas {
    limit: f64,
    /// Nanoseconds; `None` until the first sample.
    no_load: Option<f64>,
    bounds: Bounds,
}

impl Vegas {
    pub(crate) fn new(initial: u32, bounds: Bounds) -> Self {
        Vegas {
            limit: f64::from(initial),
            no_load: None,
            bounds,
        }
    }

    /// The no-load latency estimate, in nanoseconds.
    #[cfg(test)]
    pub(crate) fn no_load(&self) -> Option<f64> {
        self.no_load
    }
}

impl LimitAlgorithm for Vegas {
    fn limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, sample: Sample) -> u32 {
        let log = self.limit.log10().max(1.0);
        if self.bounds.is_drop(&sample) {
            self.limit = self.bounds.clamp(self.limit - log);
            return self.limit();
        }
        let latency = (sample.latency.as_nanos() as f64).max(1.0);
        let saturated = f64::from(sample.in_flight) * 2.0 >= self.limit;
        let at_floor = self.limit <= f64::from(self.bounds.min);
        let no_load = match self.no_load {
            Some(current) if latency < current => latency,
            Some(current) if !saturated || at_floor => current + (latency - current) * NO_LOAD_RISE,
            Some(current) => current,
            None => latency,
        };
        self.no_load = Some(no_load);
        if !saturated {
            return self.limit();
        }
        let queue = self.limit * (1.0 - no_load / latency);
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
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(latency_ms: u64, in_flight: u32) -> Sample {
        Sample {
            latency: Duration::from_millis(latency_ms),
            in_flight,
            dropped: false,
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
