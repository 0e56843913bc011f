//! Ghost history: fingerprints of recently evicted keys, with when and why
//! they left.
//!
//! Like ARC's B1/B2 lists (Megiddo, Modha, "ARC: A Self-Tuning, Low Overhead
//! Replacement Cache", USENIX FAST 2003) it holds no values, only enough to
//! recognise a key that comes back, which of two ways it left, and how long
//! ago. Unlike ARC's lists it is a fixed-size, 16-way set-associative table of
//! `u32` slots in 64-byte buckets aligned to 64 bytes, so each bucket is one
//! cache line: recording and looking up are O(1) with no allocation and touch
//! that one line, a full bucket drops its relatively oldest record, and a
//! false match needs a 15-bit tag collision inside one bucket (about 1 in
//! 2,000 look-ups).
//!
//! The policy only acts on records younger than 12 % (rejected candidates)
//! and 20 % (main victims) of the capacity's worth of departures, so at most
//! about a third of the capacity is live at once; the policy sizes the table
//! at one slot per two entries (2 bytes per entry). Sixteen ways rather than
//! four keep that 64 % load from pushing live records out early (with four
//! ways, halving the table cost OLTP @ 250 0.4 points; with sixteen, nothing).
//!
//! Slot layout: `tag:15 | kind:1 | stamp:16`; an all-zero slot is empty.
//! Stamps are taken from a per-kind clock (total weight that left that way)
//! shifted right so that the largest depth of interest spans about 2^13 ticks;
//! ages beyond 2^16 ticks alias, which can only happen to records that
//! survived far longer than the table's churn normally allows, and costs at
//! most one wrong adjustment step.

use super::sketch::reduce;

const WAYS: usize = 16;
const STAMP_BITS: u32 = 16;
const STAMP_MASK: u32 = (1 << STAMP_BITS) - 1;
const KIND_BIT: u32 = 1 << STAMP_BITS;
const TAG_SHIFT: u32 = STAMP_BITS + 1;

/// One cache line of slots; a key's record can only be in its own bucket.
#[repr(align(64))]
#[derive(Clone, Copy, Debug, Default)]
struct Bucket([u32; WAYS]);

/// The ghost table.
#[derive(Debug)]
pub(super) struct Ghost {
    buckets: Vec<Bucket>,
    /// Clock resolution: stamps are `clock >> shift`.
    shift: u32,
}

#[inline]
fn mix(fp: u32) -> u64 {
    let mut z = (u64::from(fp) ^ 0x2545_f491_4f6c_dd1d).wrapping_mul(0xd6e8_feb8_6659_fd93);
    z ^= z >> 32;
    z = z.wrapping_mul(0xd6e8_feb8_6659_fd93);
    z ^ (z >> 29)
}

impl Ghost {
    /// A table of about `slots` slots (rounded down to whole buckets, at least
    /// one bucket), able to tell ages up to `max_depth` clock units apart.
    pub(super) fn new(slots: usize, max_depth: u64) -> Self {
        let buckets = (slots / WAYS).max(1);
        let bits = 64 - max_depth.leading_zeros();
        Ghost {
            buckets: vec![Bucket::default(); buckets],
            shift: bits.saturating_sub(13),
        }
    }

    /// A fingerprint's bucket index and its (non-zero) 15-bit tag.
    #[inline]
    fn locate(&self, fp: u32) -> (usize, u32) {
        let h = mix(fp);
        let b = reduce(h, self.buckets.len());
        let tag = ((h as u32) & 0x7fff).max(1);
        (b, tag)
    }

    #[inline]
    fn age(&self, slot: u32, clocks: [u64; 2]) -> (usize, u64) {
        let kind = usize::from(slot & KIND_BIT != 0);
        let now = ((clocks[kind] >> self.shift) as u32) & STAMP_MASK;
        let age = now.wrapping_sub(slot & STAMP_MASK) & STAMP_MASK;
        (kind, u64::from(age) << self.shift)
    }

    /// Remembers that `fp` left by way `kind` (0 or 1) when that way's clock
    /// read `clocks[kind]`. `depths` says how old a record of each kind may
    /// get before it is useless; the bucket's relatively oldest record makes
    /// room.
    pub(super) fn record(&mut self, fp: u32, kind: usize, clocks: [u64; 2], depths: [u64; 2]) {
        let (b, tag) = self.locate(fp);
        let now = clocks.map(|clock| ((clock >> self.shift) as u32) & STAMP_MASK);
        let val = (tag << TAG_SHIFT) | if kind == 1 { KIND_BIT } else { 0 } | now[kind];
        let bucket = &mut self.buckets[b].0;
        let pick = match bucket.iter().position(|&s| s == 0 || s >> TAG_SHIFT == tag) {
            Some(free_or_same) => free_or_same,
            None => {
                // The relatively oldest record makes room: compare
                // age_k / depth_k across kinds as age_k * depth_other, in
                // stamp units (the shared shift does not change the order).
                let weight = [depths[1].max(1), depths[0].max(1)];
                let mut pick = 0;
                let mut worst = 0u64;
                for (i, &s) in bucket.iter().enumerate() {
                    let k = usize::from(s & KIND_BIT != 0);
                    let age = now[k].wrapping_sub(s & STAMP_MASK) & STAMP_MASK;
                    let score = u64::from(age).saturating_mul(weight[k]).saturating_add(1);
                    if score > worst {
                        worst = score;
                        pick = i;
                    }
                }
                pick
            }
        };
        bucket[pick] = val;
    }

    /// If `fp` is remembered, forgets it and returns (kind, age in clock
    /// units of that kind).
    pub(super) fn take(&mut self, fp: u32, clocks: [u64; 2]) -> Option<(usize, u64)> {
        let (b, tag) = self.locate(fp);
        let bucket = &mut self.buckets[b].0;
        let i = bucket
            .iter()
            .position(|&s| s != 0 && s >> TAG_SHIFT == tag)?;
        let s = std::mem::take(&mut bucket[i]);
        Some(self.age(s, clocks))
    }

    /// Number of slots.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.len() * WAYS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_kind_and_age() {
        let mut g = Ghost::new(64, 100);
        g.record(42, 1, [5, 10], [50, 100]);
        g.record(43, 0, [5, 10], [50, 100]);
        assert_eq!(g.take(42, [7, 30]), Some((1, 20)));
        assert_eq!(g.take(42, [7, 30]), None, "a take forgets");
        assert_eq!(g.take(43, [9, 30]), Some((0, 4)));
        assert_eq!(g.take(44, [9, 30]), None);
    }

    #[test]
    fn coarse_stamps_for_deep_histories() {
        let mut g = Ghost::new(64, 1 << 20);
        assert_eq!(g.shift, 8);
        g.record(1, 0, [1 << 20, 0], [1 << 20, 1 << 20]);
        let (k, age) = g.take(1, [(1 << 20) + 5000, 0]).unwrap();
        assert_eq!(k, 0);
        assert!(age.abs_diff(5000) <= 256);
    }

    #[test]
    fn full_bucket_evicts_oldest() {
        let mut g = Ghost::new(WAYS, 1000); // a single bucket
        for fp in 0..WAYS as u32 {
            g.record(fp + 100, 0, [u64::from(fp), 0], [1000, 1000]);
        }
        g.record(999, 0, [20, 0], [1000, 1000]);
        assert_eq!(g.take(100, [20, 0]), None, "oldest record was dropped");
        assert!(g.take(101, [20, 0]).is_some());
        assert!(g.take(999, [20, 0]).is_some());
        assert_eq!(g.len(), WAYS);
    }

    #[test]
    fn buckets_are_cache_lines() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
        let g = Ghost::new(15_625, 1000);
        assert_eq!(g.buckets.as_ptr() as usize % 64, 0);
        assert_eq!(g.len(), 976 * WAYS);
    }
}
