//! AIMD: additive increase, multiplicative decrease, as TCP Reno grows its
//! congestion window (and as concurrency-limits' `AIMDLimit` applies it to
//! requests): one more while the limit is in use, ten per cent less on a
//! drop.

use super::{Bounds, LimitAlgorithm, Sample};

/// Factor applied on a drop (concurrency-limits' default backoff ratio).
const BACKOFF: f64 = 0.9;

#[derive(Debug)]
pub(crate) struct Aimd {
    limit: f64,
    bounds: Bounds,
}

impl Aimd {
    pub(crate) fn new(initial: u32, bounds: Bounds) -> Self {
        Aimd {
            limit: f64::from(initial),
            bounds,
        }
    }
}

impl LimitAlgorithm for Aimd {
    fn limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, sample: Sample) -> u32 {
        if self.bounds.is_drop(&sample) {
            self.limit = self.bounds.clamp(self.limit * BACKOFF);
        } else if f64::from(sample.in_flight) * 2.0 >= self.limit {
            // Grow only when the limit is what holds requests back; an idle
            // server says nothing about how much more it could take.
            self.limit = self.bounds.clamp(self.limit + 1.0);
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(in_flight: u32, dropped: bool) -> Sample {
        Sample {
            latency: Duration::from_millis(10),
            in_flight,
            dropped,
        }
    }

    #[test]
    fn grows_when_used_and_backs_off_on_drops() {
        let bounds = Bounds {
            min: 2,
            max: 30,
            threshold: None,
        };
        let mut aimd = Aimd::new(10, bounds);
        assert_eq!(aimd.update(sample(2, false)), 10, "idle: no growth");
        assert_eq!(aimd.update(sample(9, false)), 11);
        assert_eq!(aimd.update(sample(9, true)), 9);
        for _ in 0..100 {
            aimd.update(sample(30, false));
        }
        assert_eq!(aimd.limit(), 30, "capped at max");
        for _ in 0..100 {
            aimd.update(sample(30, true));
        }
        assert_eq!(aimd.limit(), 2, "floored at min");
    }
}
