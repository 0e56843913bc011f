//! The rate limiters the `limiter` bench and `examples/limiter_loop.rs`
//! drive, behind one trait, with the quotas and key sequences both use, so
//! that the loop counts the work of exactly what the bench times.

use std::num::NonZeroU32;

use surgeguard::clock::Clock;
use surgeguard::limit::{Gcra, KeyedGcra, Quota};

use super::rng::{mix64, SplitMix64};

/// One check of `key` (direct limiters ignore it). Called through a trait
/// object, so each limiter's check is compiled once, into its own `allow`,
/// whatever the driving loop looks like (with closures, inlining into the
/// loop differed from one build to the next, and governor's instruction
/// count with it: 56 or 97).
pub trait Limiter: Sync {
    fn allow(&self, key: u64) -> bool;
}

impl Limiter for governor::DefaultDirectRateLimiter {
    #[inline]
    fn allow(&self, _key: u64) -> bool {
        self.check().is_ok()
    }
}

impl<C: Clock> Limiter for Gcra<C> {
    #[inline]
    fn allow(&self, _key: u64) -> bool {
        self.check().is_allowed()
    }
}

impl Limiter for governor::DefaultKeyedRateLimiter<u64> {
    #[inline]
    fn allow(&self, key: u64) -> bool {
        self.check_key(&key).is_ok()
    }
}

impl Limiter for KeyedGcra<u64> {
    #[inline]
    fn allow(&self, key: u64) -> bool {
        self.check(&key).is_allowed()
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a positive count")
}

/// Both crates' quotas for `count` per second with `burst`.
pub fn quotas(count: u32, burst: u32) -> (governor::Quota, Quota) {
    let theirs = governor::Quota::per_second(nonzero(count)).allow_burst(nonzero(burst));
    let ours = Quota::per_second(count)
        .and_then(|quota| quota.burst(burst))
        .expect("a valid quota");
    (theirs, ours)
}

/// Far above any rate the checks reach: every direct check is allowed.
pub fn always_allowing() -> (governor::Quota, Quota) {
    quotas(1_000_000_000, 1_000_000_000)
}

/// Two per hour (two, so that it splits into two stripes of one): once
/// spent, every check is denied.
pub fn two_per_hour() -> (governor::Quota, Quota) {
    let theirs = governor::Quota::per_hour(nonzero(2));
    let ours = Quota::per_hour(2).expect("a valid quota");
    (theirs, ours)
}

/// One per hour: a key once checked stays active for an hour.
pub fn one_per_hour() -> (governor::Quota, Quota) {
    let theirs = governor::Quota::per_hour(nonzero(1));
    let ours = Quota::per_hour(1).expect("a valid quota");
    (theirs, ours)
}

/// The keyed cases' quota: 1,000 per second per key.
pub fn per_key() -> (governor::Quota, Quota) {
    quotas(1_000, 1_000)
}

/// 4 Mi uniformly random keys out of `distinct`.
pub fn key_sequence(distinct: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(0x1157_c0de);
    (0..1 << 22)
        .map(|_| mix64(rng.next_u64() % distinct))
        .collect()
}

/// Checks every one of the `distinct` keys once, so that keyed tables hold
/// them before timing.
pub fn populate(limiter: &dyn Limiter, distinct: u64) {
    for rank in 0..distinct {
        std::hint::black_box(limiter.allow(mix64(rank)));
    }
}
