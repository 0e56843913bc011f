//! Helpers shared by the benches (`throughput`, `insert_latency`, `limiter`,
//! `shed`) and the `hit_ratio` / `memory` / `op_loop` / `limiter_loop` examples. The examples include this
//! file with `#[path = "../benches/support/mod.rs"] mod support;`, so there is
//! one copy.
//!
//! - [`rng`]: a tiny deterministic PRNG (splitmix64), so runs are repeatable
//!   without the `rand` crate.
//! - [`zipf`]: the Zipf key sequence the throughput and latency benches replay.
//! - [`adapters`]: one trait over surgeguard, moka and quick_cache, so every
//!   driver loop is written once and monomorphised per cache.
//! - [`trace`]: readers for the recorded traces in `../shared/traces`.
//! - [`lru`]: an exact LRU, the hit-ratio baseline.
//! - [`threads`]: the multi-thread benches' thread counts, overridable with
//!   `SURGEGUARD_BENCH_THREADS`.
//! - [`tsc_clock`]: a surgeguard `Clock` reading the TSC as governor does.
//! - [`limiters`]: governor's and surgeguard's limiters behind one trait,
//!   with the quotas and key sequences of the limiter bench.

// Each including target uses a different subset of these helpers.
#![allow(dead_code)]

pub mod adapters;
pub mod limiters;
pub mod lru;
pub mod rng;
pub mod threads;
pub mod trace;
pub mod tsc_clock;
pub mod zipf;

/// Distinct keys in the synthetic Zipf workload.
pub const DISTINCT_KEYS: usize = 1_000_000;
/// Cache capacity (entries) for the synthetic Zipf workload: 10 % of the keys.
pub const CAPACITY: usize = 100_000;
/// Zipf exponent of the synthetic workload.
pub const ZIPF_EXPONENT: f64 = 1.0;
/// Length of the pre-generated key sequence (4 Mi keys, 32 MiB). Long enough
/// that one measurement sample never replays a trivially short loop.
pub const SEQUENCE_LEN: usize = 1 << 22;
/// Seed of the key sequence; fixed so every run replays the same keys.
pub const SEED: u64 = 0x5eed_cafe_f00d_d00d;

/// The Zipf(1.0) sequence over 1,000,000 keys every synthetic bench replays.
pub fn zipf_sequence() -> Vec<u64> {
    zipf::Zipf::new(DISTINCT_KEYS, ZIPF_EXPONENT).key_sequence(SEQUENCE_LEN, SEED)
}

/// Replays `keys` once as a read-through cache would (get, insert on miss)
/// and returns the hit ratio in percent. Used to pre-warm caches before
/// timing so that the get mixes hit at the workload's natural ratio.
pub fn warm<C: adapters::ConcurrentCache>(cache: &C, keys: &[u64]) -> f64 {
    let mut hits = 0u64;
    for &key in keys {
        if cache.get(key).is_some() {
            hits += 1;
        } else {
            cache.insert(key, key);
        }
    }
    cache.sync();
    100.0 * hits as f64 / keys.len().max(1) as f64
}
