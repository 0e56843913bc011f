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

/// What one pass over a bucket learns for [`Ghost::record`].
struct Scan {
    /// Bit `i` set: slot `i` is empty or holds the recorded tag.
    free_or_same: u32,
    /// Per kind: 0 if the bucket holds no record of that kind, else
    /// `age << 5 | 16 | (15 - i)` of its oldest record `i` (the first of
    /// them on a tie, since a lower slot gives a higher key).
    oldest: [i32; 2],
}

impl Scan {
    fn age(key: i32) -> u64 {
        (key >> 5) as u64
    }

    fn slot(key: i32) -> usize {
        15 - (key & 15) as usize
    }
}

/// Scans `bucket` for slots free or holding `tag`, and for each kind's
/// oldest record, with stamps read against `now` (per kind): one pass,
/// lane-wise arithmetic only (no branch, no indexing by kind), so that
/// the compiler unrolls it and compares four slots per SSE2 instruction.
/// Keys fit in 21 bits, so signed comparison orders them.
#[inline]
fn scan(bucket: &[u32; WAYS], tag: u32, now: [u32; 2]) -> Scan {
    const _: () = assert!(WAYS <= 16, "slot numbers must fit the key's 4 bits");
    let mut free_or_same = 0u32;
    let (mut oldest0, mut oldest1) = (0i32, 0i32);
    for (i, &s) in bucket.iter().enumerate() {
        free_or_same |= u32::from((s == 0) | (s >> TAG_SHIFT == tag)) << i;
        // All ones for a kind-1 record, else zero.
        let mask1 = ((s >> STAMP_BITS) & 1).wrapping_neg();
        let now_k = now[0] ^ ((now[0] ^ now[1]) & mask1);
        let age = now_k.wrapping_sub(s) & STAMP_MASK;
        let key = ((age << 5) | 16 | (15 - i as u32)) as i32;
        oldest0 = oldest0.max(key & !mask1 as i32);
        oldest1 = oldest1.max(key & mask1 as i32);
    }
    Scan {
        free_or_same,
        oldest: [oldest0, oldest1],
    }
}

impl Scan {
    /// The slot to overwrite in a full bucket: the first with the highest
    /// score `age_k × depth_other + 1` (age relative to its kind's depth,
    /// compared by cross-multiplying). Within a kind the score only grows
    /// with age, so the highest is the oldest record of one of the kinds,
    /// and on a tie between kinds the lower slot.
    #[inline]
    fn relatively_oldest(&self, bucket: &[u32; WAYS], now: [u32; 2], depths: [u64; 2]) -> usize {
        let weight = [depths[1].max(1), depths[0].max(1)];
        let score = |k: usize| {
            if self.oldest[k] == 0 {
                0
            } else {
                Self::age(self.oldest[k])
                    .saturating_mul(weight[k])
                    .saturating_add(1)
            }
        };
        let (score0, score1) = (score(0), score(1));
        if score0.max(score1) == u64::MAX {
            // Saturated: younger records may tie with the oldest (only with
            // depths of 2^48 or more, far beyond any real capacity).
            return score_every_slot(bucket, now, weight);
        }
        let (slot0, slot1) = (Self::slot(self.oldest[0]), Self::slot(self.oldest[1]));
        match score0.cmp(&score1) {
            std::cmp::Ordering::Greater => slot0,
            std::cmp::Ordering::Less => slot1,
            std::cmp::Ordering::Equal => slot0.min(slot1),
        }
    }
}

/// The slot a record with `tag` goes to: the first free or same-tag slot,
/// else the relatively oldest record's.
#[inline]
fn slot_to_record(bucket: &[u32; WAYS], tag: u32, now: [u32; 2], depths: [u64; 2]) -> usize {
    let scan = scan(bucket, tag, now);
    if scan.free_or_same != 0 {
        scan.free_or_same.trailing_zeros() as usize
    } else {
        scan.relatively_oldest(bucket, now, depths)
    }
}

/// The first slot of highest score, scoring each one.
#[cold]
fn score_every_slot(bucket: &[u32; WAYS], now: [u32; 2], weight: [u64; 2]) -> usize {
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
    ///
    /// One pass over the bucket, without early exits, finds both the first
    /// free or same-tag slot and each kind's oldest age. The relatively
    /// oldest record is then one of at most two (each kind's oldest), so only
    /// two scores are multiplied. The choice is exactly the one of scoring
    /// every slot and keeping the first highest (the unit tests compare the
    /// two on random buckets); that loop cost about 520 instructions per
    /// record, a fifth of all the work of an insert-heavy run (callgrind,
    /// `examples/op_loop`), this one about 200.
    pub(super) fn record(&mut self, fp: u32, kind: usize, clocks: [u64; 2], depths: [u64; 2]) {
        let (b, tag) = self.locate(fp);
        let now = clocks.map(|clock| ((clock >> self.shift) as u32) & STAMP_MASK);
        let val = (tag << TAG_SHIFT) | if kind == 1 { KIND_BIT } else { 0 } | now[kind];
        let bucket = &mut self.buckets[b].0;
        bucket[slot_to_record(bucket, tag, now, depths)] = val;
    }

    /// If `fp` is remembered, forgets it and returns (kind, age in clock
    /// units of that kind).
    pub(super) fn take(&mut self, fp: u32, clocks: [u64; 2]) -> Option<(usize, u64)> {
        let (b, tag) = self.locate(fp);
        let bucket = &mut self.buckets[b].0;
        // A bit per slot holding `tag` (never 0, so no empty slot matches),
        // without early exit, so the compiler compares four slots per
        // instruction.
        let mut same = 0u32;
        for (i, &s) in bucket.iter().enumerate() {
            same |= u32::from(s >> TAG_SHIFT == tag) << i;
        }
        if same == 0 {
            return None;
        }
        let s = std::mem::take(&mut bucket[same.trailing_zeros() as usize]);
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

    /// The slot the first version of `record` chose: the first free or
    /// same-tag slot, else the first of highest score, scoring every slot
    /// (which is what `score_every_slot` still does, for saturated scores).
    fn reference_pick(bucket: &[u32; WAYS], tag: u32, now: [u32; 2], depths: [u64; 2]) -> usize {
        bucket
            .iter()
            .position(|&s| s == 0 || s >> TAG_SHIFT == tag)
            .unwrap_or_else(|| score_every_slot(bucket, now, [depths[1].max(1), depths[0].max(1)]))
    }

    proptest::proptest! {
        /// The one-pass choice of slot is the scoring loop's, on buckets
        /// full or not, with few distinct stamps (ties) or many, and depths
        /// from 1 to large enough to saturate the scores.
        #[test]
        fn one_pass_choice_matches_scoring_every_slot(
            slots in proptest::collection::vec((0u32..4, 0u32..2, 0u32..24, proptest::bool::ANY), WAYS),
            tag in 1u32..4,
            now in [0u32..24, 0u32..24],
            wide in proptest::bool::ANY,
            depths in [proptest::prop_oneof![1u64..100, 1u64..=u64::MAX], proptest::prop_oneof![1u64..100, 1u64..=u64::MAX]],
        ) {
            let mut bucket = [0u32; WAYS];
            for (slot, &(t, kind, stamp, empty)) in bucket.iter_mut().zip(&slots) {
                // Narrow stamps make ties; wide ones wrap around the stamp range.
                let stamp = if wide { stamp.wrapping_mul(2_731) & STAMP_MASK } else { stamp };
                if !empty || t > 0 {
                    *slot = (t.max(1) << TAG_SHIFT) | (kind * KIND_BIT) | stamp;
                }
            }
            let now = if wide { now.map(|n| n.wrapping_mul(2_731) & STAMP_MASK) } else { now };
            proptest::prop_assert_eq!(slot_to_record(&bucket, tag, now, depths), reference_pick(&bucket, tag, now, depths));
            let mut full = bucket;
            for slot in &mut full {
                if *slot == 0 || *slot >> TAG_SHIFT == tag {
                    *slot = ((tag % 3 + 1) << TAG_SHIFT) | 5;
                }
            }
            proptest::prop_assert_eq!(slot_to_record(&full, tag, now, depths), reference_pick(&full, tag, now, depths));
        }

        /// `take` finds the first slot with the tag, as a scan with early
        /// exit would.
        #[test]
        fn take_finds_the_first_slot_with_the_tag(
            tags in proptest::collection::vec(0u32..6, WAYS),
            fp in 0u32..1_000,
        ) {
            let mut g = Ghost::new(WAYS, 1000);
            let (_, tag) = g.locate(fp);
            for (slot, &t) in g.buckets[0].0.iter_mut().zip(&tags) {
                // 0: empty; 1: the looked-up tag; others: other tags.
                *slot = match t {
                    0 => 0,
                    1 => (tag << TAG_SHIFT) | KIND_BIT | t,
                    _ => ((tag % 0x7ffe + 1 + t) << TAG_SHIFT) | t,
                };
            }
            let expected = tags.iter().position(|&t| t == 1);
            let before = g.buckets[0].0;
            let taken = g.take(fp, [0, 1]);
            proptest::prop_assert_eq!(taken.is_some(), expected.is_some());
            if let Some(i) = expected {
                proptest::prop_assert_eq!(g.buckets[0].0[i], 0);
                let mut rest = before;
                rest[i] = 0;
                proptest::prop_assert_eq!(g.buckets[0].0, rest);
            }
        }
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
