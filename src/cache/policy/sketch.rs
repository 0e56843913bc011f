//! A 4-bit count-min sketch: the frequency filter of TinyLFU.
//!
//! Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient Cache Admission
//! Policy", ACM Transactions on Storage 13(4), 2017: four counters of four bits
//! per key, the estimate is the smallest of them, and every counter is halved
//! once the sketch has counted `10 × width` events ("reset"), which ages old
//! popularity away. Counters saturate at 15.
//!
//! Differences from the paper's (and Caffeine's) layout, measured in the lab on
//! the project's traces:
//! - 12 counters (6 bytes) per sized entry instead of Caffeine's 16 rounded up
//!   to a power of two, with no power-of-two round-up (indices come from
//!   Lemire's multiply-high reduction, "Fast Random Integer Generation in an
//!   Interval", ACM TOMACS 2019), but at least [`MIN_WORDS`] words (4 KiB) per
//!   sketch: below about 700 entries the count-min error, not the policy,
//!   decided OLTP @ 250 and glimpse @ 500 (8 counters per entry lose 0.6 and,
//!   on some hash seeds, 3 points there);
//! - the aging period is 15 × the sized entries rather than 10 ×: with fewer
//!   counters it measured better on every trace (TinyLFU leaves W a tuning
//!   parameter; the paper's §3.3 only requires W large relative to C);
//! - the halving is done incrementally, [`HALVE_CHUNK`] words per counted
//!   event, so no call ever pays for the whole table at once.
//!
//! Also tried at 8 counters per entry and rejected: conservative update
//! (Estan, Varghese, SIGCOMM 2002; cost glimpse @ 500 up to 8 points), two or
//! three counters per key instead of four, and TinyLFU's doorkeeper Bloom
//! filter (§3.4.2; worse on glimpse and OLTP at equal memory).

/// Words halved per counted event while an aging pass is in progress.
pub(super) const HALVE_CHUNK: usize = 16;

/// Aging period, in counted events per sized entry (TinyLFU's sample size W,
/// here 15 × the cache size).
const SAMPLE_FACTOR: u64 = 15;

/// Counters per sized entry, in sixteenths of a word: 12 four-bit counters,
/// i.e. 6 bytes.
const WORDS_PER_ENTRY_16THS: u64 = 12;

/// Smallest table, in words (4 KiB), whatever the entry count.
pub(super) const MIN_WORDS: usize = 512;

const RESET_MASK: u64 = 0x7777_7777_7777_7777;

/// Count-min sketch of 4-bit counters packed 16 to a `u64` word.
#[derive(Debug)]
pub(super) struct Sketch {
    table: Vec<u64>,
    /// Events counted since the last aging pass started.
    additions: u64,
    /// Events after which the next aging pass starts.
    sample: u64,
    /// Next word to halve; `table.len()` when no pass is in progress.
    halve_cursor: usize,
}

#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a 64-bit hash uniformly onto `0..n` (Lemire's multiply-high).
#[inline]
pub(super) fn reduce(h: u64, n: usize) -> usize {
    ((h as u128 * n as u128) >> 64) as usize
}

impl Sketch {
    /// A sketch for `entries` entries: 12 counters each, but at least
    /// [`MIN_WORDS`] words.
    pub(super) fn new(entries: usize) -> Self {
        let entries = entries.max(1) as u64;
        let words = (entries * WORDS_PER_ENTRY_16THS).div_ceil(16) as usize;
        let words = words.max(MIN_WORDS);
        Sketch {
            table: vec![0; words],
            additions: 0,
            sample: SAMPLE_FACTOR * entries,
            halve_cursor: words,
        }
    }

    /// Number of `u64` words in the table.
    #[cfg(test)]
    pub(super) fn words(&self) -> usize {
        self.table.len()
    }

    /// The four (word, bit shift) positions of a fingerprint's counters.
    #[inline]
    fn slots(&self, fp: u32) -> [(usize, u32); 4] {
        let n = self.table.len();
        let mut x = mix64(u64::from(fp) ^ 0x5851_f42d_4c95_7f2d);
        let mut out = [(0usize, 0u32); 4];
        for o in out.iter_mut() {
            *o = (reduce(x, n), ((x as u32) & 15) * 4);
            x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23);
        }
        out
    }

    /// Estimated frequency of a fingerprint, 0..=15.
    #[inline]
    pub(super) fn estimate(&self, fp: u32) -> u32 {
        self.slots(fp)
            .iter()
            .map(|&(w, sh)| ((self.table[w] >> sh) & 15) as u32)
            .min()
            .unwrap_or(0)
    }

    /// Counts `times` more occurrences of a fingerprint (each counter
    /// saturates at 15). O(1 + HALVE_CHUNK) work.
    pub(super) fn increment(&mut self, fp: u32, times: u32) {
        if times == 0 {
            return;
        }
        let add = u64::from(times.min(15));
        let mut added = false;
        for (w, sh) in self.slots(fp) {
            let v = (self.table[w] >> sh) & 15;
            let nv = (v + add).min(15);
            if nv != v {
                self.table[w] += (nv - v) << sh;
                added = true;
            }
        }
        if added {
            self.additions += u64::from(times);
        }
        self.age_step();
    }

    /// Advances an aging pass by one chunk, or starts one when due.
    fn age_step(&mut self) {
        let n = self.table.len();
        if self.halve_cursor < n {
            let end = (self.halve_cursor + HALVE_CHUNK).min(n);
            for w in &mut self.table[self.halve_cursor..end] {
                *w = (*w >> 1) & RESET_MASK;
            }
            self.halve_cursor = end;
        } else if self.additions >= self.sample {
            // TinyLFU's reset: every counter is halved; the event count is
            // halved with it (Caffeine also subtracts truncation losses; the
            // difference is immaterial at this granularity).
            self.additions /= 2;
            self.halve_cursor = 0;
        }
    }

    #[cfg(test)]
    fn total(&self) -> u64 {
        self.table
            .iter()
            .map(|w| (0..16).map(|i| (w >> (4 * i)) & 15).sum::<u64>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_saturates() {
        let mut s = Sketch::new(64);
        assert_eq!(s.estimate(7), 0);
        s.increment(7, 1);
        s.increment(7, 2);
        assert!(s.estimate(7) >= 3);
        s.increment(7, 100);
        assert_eq!(s.estimate(7), 15);
        assert_eq!(s.estimate(7 + (1 << 20)).min(15), s.estimate(7 + (1 << 20)));
    }

    #[test]
    fn estimate_never_undercounts_without_aging() {
        let mut s = Sketch::new(1024);
        for fp in 0..200u32 {
            s.increment(fp, fp % 7 + 1);
        }
        for fp in 0..200u32 {
            assert!(s.estimate(fp) > fp % 7);
        }
    }

    #[test]
    fn ages_by_halving_incrementally() {
        let mut s = Sketch::new(32);
        assert_eq!(s.words(), MIN_WORDS);
        s.increment(1, 15);
        assert_eq!(s.estimate(1), 15);
        // Drive enough events through other keys to trigger a full pass.
        let mut k = 2u32;
        while s.halve_cursor == s.words() {
            s.increment(k, 1);
            k += 1;
        }
        // Finish the pass.
        while s.halve_cursor < s.words() {
            s.increment(k, 1);
            k += 1;
        }
        assert!(s.estimate(1) <= 8, "got {}", s.estimate(1));
        assert!(s.total() < 16 * MIN_WORDS as u64 * 15);
    }

    #[test]
    fn sized_at_twelve_counters_per_entry() {
        assert_eq!(Sketch::new(31_250).words(), 23_438);
        assert_eq!(Sketch::new(1_000_000).words(), 750_000);
        assert_eq!(Sketch::new(0).words(), MIN_WORDS);
    }

    #[test]
    fn reduce_stays_in_range() {
        for n in [1usize, 3, 1000, 12_345] {
            for h in [
                0u64,
                1,
                u64::MAX,
                0x8000_0000_0000_0000,
                0x1234_5678_9abc_def0,
            ] {
                assert!(reduce(h, n) < n);
            }
        }
    }
}
