//! Slowest single operation: times each of 1,000,000 inserts individually on
//! the Zipf(1.0) 100 %-insert mix (1,000,000 keys, capacity 100,000) and
//! prints max and tail percentiles per cache. Mean throughput hides the
//! stalls this looks for: a table rehash, a housekeeping pass run inline by
//! the unlucky caller, a batch eviction.
//!
//! Two phases per cache:
//! - `cold`: a fresh cache takes the first 1,000,000 keys of the sequence, so
//!   it fills up and its tables grow (rehash spikes show here).
//! - `warm`: a cache pre-warmed on the whole sequence takes 1,000,000 keys
//!   from elsewhere in it (steady-state eviction).
//!
//! Each phase runs `ROUNDS` times (a fresh cache per cold round, a further
//! stretch of the sequence per warm round). On a shared 2-core machine a
//! single max can be an OS preemption, so the report gives the best and the
//! worst round's max; a stall the cache causes itself shows in both.
//!
//! Run: `cargo bench --bench insert_latency` (plain binary, harness = false;
//! about 30 s). Single-threaded.

use std::hint::black_box;
use std::time::Instant;

mod support;

use support::adapters::{self, ConcurrentCache, Kind};

const TIMED_INSERTS: usize = 1_000_000;
const ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Tail {
    mean_ns: f64,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    p9999_ns: u64,
    max_ns: u64,
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Times each insert of `keys` on its own.
fn time_each_insert<C: ConcurrentCache>(cache: &C, keys: &[u64], latencies: &mut Vec<u64>) -> Tail {
    latencies.clear();
    for &key in keys {
        let start = Instant::now();
        cache.insert(key, key);
        latencies.push(start.elapsed().as_nanos() as u64);
    }
    black_box(cache.get(keys[0]));
    let mean_ns = latencies.iter().sum::<u64>() as f64 / latencies.len() as f64;
    latencies.sort_unstable();
    Tail {
        mean_ns,
        p50_ns: percentile(latencies, 0.50),
        p99_ns: percentile(latencies, 0.99),
        p999_ns: percentile(latencies, 0.999),
        p9999_ns: percentile(latencies, 0.9999),
        max_ns: *latencies.last().expect("at least one insert"),
    }
}

fn measure<C: ConcurrentCache>(build: impl Fn() -> C, keys: &[u64]) -> [Vec<Tail>; 2] {
    let mut latencies = Vec::with_capacity(TIMED_INSERTS);
    let cold: Vec<Tail> = (0..ROUNDS)
        .map(|_| {
            let cache = build();
            time_each_insert(&cache, &keys[..TIMED_INSERTS], &mut latencies)
        })
        .collect();
    let cache = build();
    support::warm(&cache, keys);
    let warm: Vec<Tail> = (0..ROUNDS)
        .map(|round| {
            let start = (round * TIMED_INSERTS + keys.len() / 4) % (keys.len() - TIMED_INSERTS);
            time_each_insert(&cache, &keys[start..start + TIMED_INSERTS], &mut latencies)
        })
        .collect();
    [cold, warm]
}

/// Median cost of an empty timed interval: what every figure below includes
/// on top of the insert itself.
fn timer_overhead_ns() -> u64 {
    let mut samples: Vec<u64> = (0..100_000)
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn main() {
    let keys = support::zipf_sequence();
    let capacity = support::CAPACITY;
    println!(
        "Per-insert latency, Zipf({}) over {} keys, capacity {}, {} timed inserts per round, {} rounds, 1 thread",
        support::ZIPF_EXPONENT,
        support::DISTINCT_KEYS,
        capacity,
        TIMED_INSERTS,
        ROUNDS
    );
    println!();
    println!("| cache | phase | mean ns | p50 ns | p99 ns | p99.9 µs | p99.99 µs (best/worst round) | max µs (best/worst round) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for kind in Kind::ALL {
        let phases = match kind {
            Kind::Surgeguard => measure(|| adapters::surgeguard(capacity), &keys),
            Kind::Moka => measure(|| adapters::moka(capacity), &keys),
            Kind::QuickCache => measure(|| adapters::quick_cache(capacity), &keys),
        };
        for (phase, rounds) in ["cold", "warm"].into_iter().zip(phases) {
            let median_by = |f: fn(&Tail) -> f64| {
                let mut v: Vec<f64> = rounds.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let best = |f: fn(&Tail) -> u64| rounds.iter().map(f).min().unwrap_or(0);
            let worst = |f: fn(&Tail) -> u64| rounds.iter().map(f).max().unwrap_or(0);
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {} / {} | {} / {} |",
                kind.name(),
                phase,
                median_by(|t| t.mean_ns),
                median_by(|t| t.p50_ns as f64),
                median_by(|t| t.p99_ns as f64),
                median_by(|t| t.p999_ns as f64) / 1000.0,
                micros(best(|t| t.p9999_ns)),
                micros(worst(|t| t.p9999_ns)),
                micros(best(|t| t.max_ns)),
                micros(worst(|t| t.max_ns)),
            );
        }
    }
    println!();
    println!(
        "mean/p50/p99/p99.9 are medians over rounds. Every figure includes the timer's own cost: \
         an empty timed interval takes {} ns (median) on this machine.",
        timer_overhead_ns()
    );
}
