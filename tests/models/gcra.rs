//! A plainly written token bucket that every GCRA limiter must agree with,
//! decision by decision: shared by the property tests (`limit_gcra.rs`) and
//! the limiter fuzz target (`fuzz_checks/gcra_ops.rs`).
//!
//! The model is the textbook token bucket in integer nanoseconds: a bucket
//! holds up to `burst × T` nanoseconds of credit, gains one nanosecond per
//! nanosecond, and a request of cost `n` spends `n × T` if it is there. GCRA
//! is the same machine written as a timestamp, so every decision (allowed or
//! not, remaining, retry after) must match exactly.
//!
//! Quotas keep `burst × T` under 100 years (`QuotaError::BurstTooLong`), so
//! the sums below stay in `u64` as long as callers keep the clock under
//! about 2^62 ns (146 years).

#![allow(dead_code)] // each test crate uses the part it needs

use std::collections::HashMap;
use std::hash::Hash;

use surgeguard::limit::{CheckError, Decision, Quota};

/// A token bucket measured in nanoseconds of credit.
#[derive(Debug, Clone)]
pub struct ModelBucket {
    credit: u64,
    last: u64,
}

/// A quota as the model sees it: nanoseconds per unit, and the burst.
#[derive(Debug, Clone, Copy)]
pub struct ModelQuota {
    pub interval: u64,
    pub burst: u32,
}

/// What a decision says, in the model's terms: (allowed, remaining,
/// retry after in nanoseconds, 0 when allowed).
pub type Outcome = (bool, u32, u64);

impl ModelQuota {
    pub fn of(quota: Quota) -> Self {
        ModelQuota {
            interval: quota.emission_interval().as_nanos() as u64,
            burst: quota.max_burst(),
        }
    }

    fn capacity(&self) -> u64 {
        self.interval * u64::from(self.burst)
    }

    pub fn full_bucket(&self) -> ModelBucket {
        ModelBucket {
            credit: self.capacity(),
            last: 0,
        }
    }

    pub fn is_full(&self, bucket: &ModelBucket, now: u64) -> bool {
        bucket.credit + (now - bucket.last) >= self.capacity()
    }

    pub fn check(&self, bucket: &mut ModelBucket, now: u64, cost: u32) -> Outcome {
        bucket.credit = (bucket.credit + (now - bucket.last)).min(self.capacity());
        bucket.last = now;
        let needed = u64::from(cost) * self.interval;
        if bucket.credit >= needed {
            bucket.credit -= needed;
            (true, (bucket.credit / self.interval) as u32, 0)
        } else {
            (
                false,
                (bucket.credit / self.interval) as u32,
                needed - bucket.credit,
            )
        }
    }
}

impl ModelQuota {
    /// Asserts that `answer`, a direct limiter's to a check of `cost` at
    /// `now`, is the model's, and moves `bucket` on.
    pub fn assert_answer(
        &self,
        bucket: &mut ModelBucket,
        now: u64,
        cost: u32,
        answer: Result<Decision, CheckError>,
    ) {
        match answer {
            Ok(decision) => {
                assert!(
                    cost <= self.burst,
                    "cost {cost} over burst {} passed",
                    self.burst
                );
                assert_eq!(summary(&decision), self.check(bucket, now, cost));
            }
            Err(CheckError::CostExceedsBurst { cost: c, burst: b }) => {
                assert!(
                    cost > self.burst,
                    "cost {cost} within burst {} refused",
                    self.burst
                );
                assert_eq!((c, b), (cost, self.burst));
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// A decision in the model's terms.
pub fn summary(decision: &Decision) -> Outcome {
    (
        decision.is_allowed(),
        decision.remaining(),
        decision.retry_after().map_or(0, |d| d.as_nanos() as u64),
    )
}

/// What a keyed limiter with room for `max_keys` keys must answer.
#[derive(Debug)]
pub enum Expected {
    /// Exactly this outcome.
    Outcome(Outcome),
    /// A new key found the table full of active keys and the policy denies
    /// new keys: denied, nothing remaining (the retry time is the table's).
    DeniedNewKey,
}

/// A keyed limiter with a bounded table: a new key takes the slot of a key
/// whose bucket is full again (forgetting it costs nothing), else it shares
/// the overflow bucket or is denied, by policy. An active key is never
/// forgotten, so its decisions stay exact.
#[derive(Debug)]
pub struct BoundedKeyedModel<K> {
    pub quota: ModelQuota,
    pub max_keys: usize,
    pub share_overflow: bool,
    tracked: HashMap<K, ModelBucket>,
    overflow: ModelBucket,
}

impl<K: Hash + Eq + Clone> BoundedKeyedModel<K> {
    pub fn new(quota: Quota, max_keys: usize, share_overflow: bool) -> Self {
        let quota = ModelQuota::of(quota);
        BoundedKeyedModel {
            quota,
            max_keys,
            share_overflow,
            tracked: HashMap::new(),
            overflow: quota.full_bucket(),
        }
    }

    /// Asserts that `answer`, a keyed limiter's to a check of `cost` for
    /// `key` at `now`, is the model's, and moves the model on.
    pub fn assert_answer(
        &mut self,
        key: &K,
        now: u64,
        cost: u32,
        answer: Result<Decision, CheckError>,
    ) {
        let Ok(decision) = answer else {
            assert!(
                cost > self.quota.burst,
                "cost {cost} within burst {} refused",
                self.quota.burst
            );
            return;
        };
        assert!(
            cost <= self.quota.burst,
            "cost {cost} over burst {} passed",
            self.quota.burst
        );
        match self.check(key, now, cost) {
            Expected::Outcome(expected) => assert_eq!(summary(&decision), expected),
            Expected::DeniedNewKey => {
                assert!(decision.is_denied());
                assert_eq!(decision.remaining(), 0);
            }
        }
    }

    /// The expected answer to a check of `cost` (at most the burst) for
    /// `key` at `now`.
    pub fn check(&mut self, key: &K, now: u64, cost: u32) -> Expected {
        let quota = self.quota;
        if let Some(bucket) = self.tracked.get_mut(key) {
            return Expected::Outcome(quota.check(bucket, now, cost));
        }
        if cost == 0 {
            return Expected::Outcome(quota.check(&mut quota.full_bucket(), now, 0));
        }
        self.tracked.retain(|_, bucket| !quota.is_full(bucket, now));
        if self.tracked.len() < self.max_keys {
            let mut bucket = quota.full_bucket();
            let outcome = quota.check(&mut bucket, now, cost);
            self.tracked.insert(key.clone(), bucket);
            Expected::Outcome(outcome)
        } else if self.share_overflow {
            Expected::Outcome(quota.check(&mut self.overflow, now, cost))
        } else {
            Expected::DeniedNewKey
        }
    }
}
