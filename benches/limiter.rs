//! Rate limiter checks: surgeguard against governor 0.10, in the same run.
//!
//! Groups (one function per limiter, so the report reads side by side; `1t`,
//! `2t` are the default thread counts):
//! - `direct_allowed/{1t,2t}`: one key, every check allowed (a quota of one
//!   per nanosecond, far above what the checks reach), so every check writes
//!   the shared state.
//! - `direct_denied/{1t,2t}`: one key, two per hour, spent before timing:
//!   every check is denied and writes nothing.
//! - `keyed_1k/{1t,2t}`, `keyed_1m/{1t,2t}`: uniformly random `u64` keys out
//!   of 1,000 or 1,000,000, 1,000 per second per key, every key checked once
//!   before timing (so the tables are populated, and 1k keys run mostly
//!   denied, 1M keys mostly allowed).
//! - `keyed_hot8/{1t,2t}`: the same, but every thread checks the same 8 keys
//!   (a few clients, or one tenant's tokens, checked from every core) in a
//!   table sized as for `keyed_1k` (`max_keys` 1,250).
//! - `flood_{allowing,hourly}_{random,sequential}/{1t,2t}`: a key flood,
//!   every check a key never seen before (random: spread over the `u64`
//!   range; sequential: 0, 1, 2, ...; two threads take disjoint keys), after
//!   2,000,000 such keys offered before timing, so that surgeguard's tables
//!   are full (of idle keys under `allowing`, a quota of one per nanosecond;
//!   of active ones under `hourly`, one per hour) and stay full while the
//!   flood goes on past 10M keys. governor keeps every key
//!   (`retain_recent` never runs), surgeguard at most `max_keys`: 100,000
//!   (`surgeguard_100k`) or 1,000,000 (`surgeguard_1m`).
//!
//! Limiters:
//! - `governor`: `RateLimiter::direct` / `RateLimiter::keyed` (dashmap,
//!   std's SipHash hasher), with their default clock (quanta, reading the
//!   TSC).
//! - `surgeguard`: `Gcra::direct` / `Gcra::keyed` with a `Clock` that reads
//!   the same TSC through quanta, so both pay for the same time source.
//! - `surgeguard_system_clock`: the defaults, [`SystemClock`]
//!   (`std::time::Instant`, ~47 ns a read on the project's machine against
//!   ~19 ns for quanta).
//! - `surgeguard_stripes2`: `Gcra::direct(..).stripes(2)`, TSC clock.
//!
//! Each thread makes `iters` checks, so the time per iteration is the time
//! per check *per thread* (two threads at 50 ns each make 40 M checks per
//! second together). Threads start together at a barrier; a sample lasts
//! from the first start to the last finish.
//!
//! Run: `cargo bench --bench limiter` (about 5 minutes with
//! `-- --warm-up-time 1 --measurement-time 3`; the floods alone:
//! `cargo bench --bench limiter -- flood`).
//! Threads: `SURGEGUARD_BENCH_THREADS=1,4,8,16` (comma-separated; default `1,2`).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use surgeguard::clock::{Clock, SystemClock};
use surgeguard::limit::{Gcra, Quota};

mod support;

use support::limiters::{
    always_allowing, key_sequence, one_per_hour, per_key, populate, two_per_hour, Limiter,
};
use support::rng::mix64;
use support::threads::thread_counts;
use support::tsc_clock::TscClock;

/// Thread counts benched unless `SURGEGUARD_BENCH_THREADS` says otherwise.
const DEFAULT_THREAD_COUNTS: [usize; 2] = [1, 2];

/// Runs `work(thread, iters)` on `threads` threads; returns the time from
/// the first start to the last finish.
fn timed(threads: usize, iters: u64, work: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        work(0, iters);
        return start.elapsed();
    }
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(thread, iters);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("bench thread panicked"))
            .collect()
    });
    let first = spans.iter().map(|span| span.0).min().expect("threads ran");
    let last = spans.iter().map(|span| span.1).max().expect("threads ran");
    last - first
}

fn direct_limiters(
    (theirs, ours): (governor::Quota, Quota),
) -> Vec<(&'static str, Box<dyn Limiter>)> {
    fn ours_with(quota: Quota, stripes: usize, clock: impl Clock) -> Box<dyn Limiter> {
        Box::new(
            Gcra::direct(quota)
                .stripes(stripes)
                .clock(clock)
                .build()
                .expect("valid settings"),
        )
    }
    vec![
        ("governor", Box::new(governor::RateLimiter::direct(theirs))),
        ("surgeguard", ours_with(ours, 1, TscClock::new())),
        ("surgeguard_system_clock", ours_with(ours, 1, SystemClock)),
        ("surgeguard_stripes2", ours_with(ours, 2, TscClock::new())),
    ]
}

fn bench_direct(c: &mut Criterion) {
    let cases = [
        ("direct_allowed", always_allowing()),
        ("direct_denied", two_per_hour()),
    ];
    for (name, quotas) in cases {
        for threads in thread_counts(&DEFAULT_THREAD_COUNTS) {
            let mut group = c.benchmark_group(format!("{name}/{threads}t"));
            for (limiter_name, limiter) in direct_limiters(quotas) {
                // Spend the hourly quota before timing.
                let _ = (limiter.allow(0), limiter.allow(0));
                let work = |_thread: usize, iters: u64| {
                    for _ in 0..iters {
                        black_box(limiter.allow(0));
                    }
                };
                group.bench_function(limiter_name, |b| {
                    b.iter_custom(|iters| timed(threads, iters, &work))
                });
            }
            group.finish();
        }
    }
}

fn bench_keyed(c: &mut Criterion) {
    let cases = [
        ("keyed_1k", 1_000u64, 1_250),
        ("keyed_1m", 1_000_000, 1_250_000),
        ("keyed_hot8", 8, 1_250),
    ];
    // Headroom over the key count: large shards hold an equal share of
    // `max_keys`, and random keys do not spread perfectly evenly.
    for (name, distinct, max_keys) in cases {
        let keys = key_sequence(distinct);
        let (theirs, ours) = per_key();
        let limiters: Vec<(&str, Box<dyn Limiter>)> = vec![
            ("governor", Box::new(governor::RateLimiter::keyed(theirs))),
            (
                "surgeguard",
                Box::new(
                    Gcra::keyed(ours)
                        .max_keys(max_keys)
                        .clock(TscClock::new())
                        .build()
                        .expect("valid settings"),
                ),
            ),
            (
                "surgeguard_system_clock",
                Box::new(
                    Gcra::keyed(ours)
                        .max_keys(max_keys)
                        .build()
                        .expect("valid settings"),
                ),
            ),
        ];
        for (_, limiter) in &limiters {
            populate(&**limiter, distinct);
        }
        for threads in thread_counts(&DEFAULT_THREAD_COUNTS) {
            let mut group = c.benchmark_group(format!("{name}/{threads}t"));
            for (limiter_name, limiter) in &limiters {
                let cursors: Vec<std::sync::atomic::AtomicUsize> = (0..threads)
                    .map(|thread| {
                        std::sync::atomic::AtomicUsize::new(thread * keys.len() / threads)
                    })
                    .collect();
                let work = |thread: usize, iters: u64| {
                    let cursor = &cursors[thread];
                    let mut position = cursor.load(std::sync::atomic::Ordering::Relaxed);
                    for _ in 0..iters {
                        black_box(limiter.allow(keys[position]));
                        position += 1;
                        if position == keys.len() {
                            position = 0;
                        }
                    }
                    cursor.store(position, std::sync::atomic::Ordering::Relaxed);
                };
                group.bench_function(*limiter_name, |b| {
                    b.iter_custom(|iters| timed(threads, iters, &work))
                });
            }
            group.finish();
        }
    }
}

/// The `n`-th key of a flood.
type KeyOrder = fn(u64) -> u64;

/// Keys offered to a flooded limiter before timing: twice the larger
/// `max_keys`, so that its table is full when timing starts.
const FLOOD_PREFILL: u64 = 2_000_000;

fn bench_flood(c: &mut Criterion) {
    let quotas = [("allowing", always_allowing()), ("hourly", one_per_hour())];
    let orders: [(&str, KeyOrder); 2] = [("random", mix64), ("sequential", |n| n)];
    for (quota_name, (theirs, ours)) in quotas {
        for (order_name, key_of) in orders {
            for threads in thread_counts(&DEFAULT_THREAD_COUNTS) {
                let surgeguard = |max_keys: usize| -> Box<dyn Limiter> {
                    Box::new(
                        Gcra::keyed(ours)
                            .max_keys(max_keys)
                            .clock(TscClock::new())
                            .build()
                            .expect("valid settings"),
                    )
                };
                let limiters: Vec<(&str, Box<dyn Limiter>)> = vec![
                    ("governor", Box::new(governor::RateLimiter::keyed(theirs))),
                    ("surgeguard_100k", surgeguard(100_000)),
                    ("surgeguard_1m", surgeguard(1_000_000)),
                ];
                let mut group =
                    c.benchmark_group(format!("flood_{quota_name}_{order_name}/{threads}t"));
                for (limiter_name, limiter) in &limiters {
                    // Thread `t` offers keys t, t + threads, t + 2·threads, …
                    // (through `key_of`): never one seen before.
                    let next: Vec<std::sync::atomic::AtomicU64> = (0..threads as u64)
                        .map(std::sync::atomic::AtomicU64::new)
                        .collect();
                    let work = |thread: usize, iters: u64| {
                        let cursor = &next[thread];
                        let mut n = cursor.load(std::sync::atomic::Ordering::Relaxed);
                        for _ in 0..iters {
                            black_box(limiter.allow(key_of(n)));
                            n += threads as u64;
                        }
                        cursor.store(n, std::sync::atomic::Ordering::Relaxed);
                    };
                    work_all(threads, FLOOD_PREFILL / threads as u64, &work);
                    group.bench_function(*limiter_name, |b| {
                        b.iter_custom(|iters| timed(threads, iters, &work))
                    });
                }
                group.finish();
            }
        }
    }
}

/// Runs `work` on every thread's share, untimed.
fn work_all(threads: usize, iters: u64, work: &(dyn Fn(usize, u64) + Sync)) {
    timed(threads, iters, work);
}

criterion_group!(benches, bench_direct, bench_keyed, bench_flood);
criterion_main!(benches);
