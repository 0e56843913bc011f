//! Zipf sampling by inverse CDF: a table of cumulative probabilities and a
//! binary search per draw. Exact for any exponent, O(log n) per sample, and
//! the table (8 bytes per key) is built once.

use super::rng::{mix64, SplitMix64};

/// Zipf distribution over ranks `0..n`: P(rank k) is proportional to
/// `1 / (k + 1)^exponent`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, exponent: f64) -> Self {
        assert!(n > 0, "Zipf needs at least one rank");
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0f64;
        for rank in 1..=n {
            total += (rank as f64).powf(-exponent);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        // Rounding may leave the last entry a hair below 1.0; a draw of
        // u in [0, 1) must always find a rank.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Self { cdf }
    }

    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Draws a rank: 0 is the most popular.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c <= u)
    }

    /// `len` keys drawn from this distribution. Ranks are scattered over the
    /// `u64` space by a bijection, so popular keys are not small neighbours
    /// and a weak hash cannot look better than it is.
    pub fn key_sequence(&self, len: usize, seed: u64) -> Vec<u64> {
        let mut rng = SplitMix64::new(seed);
        (0..len)
            .map(|_| mix64(self.sample(&mut rng) as u64))
            .collect()
    }
}
