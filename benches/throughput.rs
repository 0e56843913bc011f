//! Throughput of surgeguard against moka and quick_cache on a Zipf(1.0)
//! workload: 1,000,000 distinct `u64` keys, capacity 100,000 entries.
//!
//! Three mixes (100 % get, 90 % get / 10 % insert, 100 % insert) at 1 and 2
//! threads by default. Each criterion group (`zipf_get/1t`,
//! `zipf_get90_insert10/2t`, …) holds one function per cache, so the report
//! reads side by side.
//!
//! Method:
//! - One 4 Mi-key sequence is generated up front (`support::zipf_sequence`).
//! - Each cache is pre-warmed by replaying the whole sequence as a read-through
//!   cache would (get, insert on miss), so gets hit at the workload's natural
//!   ratio (about 84 % for these parameters); warmed hit ratios are printed.
//! - A measured batch of `iters` operations is split evenly over the threads;
//!   each thread walks its own region of the sequence (thread `t` starts at
//!   `t / threads` of the way in) and continues where it stopped in the
//!   previous sample. Threads start together at a barrier; the sample time is
//!   first start to last finish. Throughput is reported in operations.
//! - Caches are used with their defaults; moka's deferred housekeeping runs
//!   as moka schedules it (no explicit `run_pending_tasks`).
//!
//! Run: `cargo bench --bench throughput` (about 3 minutes on 2 cores).
//! Filter: `cargo bench --bench throughput -- zipf_get/1t`.
//! Threads: `SURGEGUARD_BENCH_THREADS=1,4,8,16` (comma-separated; default `1,2`).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

mod support;

use support::adapters::{self, ConcurrentCache};

#[derive(Debug, Clone, Copy)]
enum Mix {
    Get,
    GetMostlyInsertSome,
    Insert,
}

impl Mix {
    const ALL: [Mix; 3] = [Mix::Get, Mix::GetMostlyInsertSome, Mix::Insert];

    fn name(self) -> &'static str {
        match self {
            Mix::Get => "zipf_get",
            Mix::GetMostlyInsertSome => "zipf_get90_insert10",
            Mix::Insert => "zipf_insert",
        }
    }
}

/// Thread counts benched unless `SURGEGUARD_BENCH_THREADS` says otherwise.
const DEFAULT_THREAD_COUNTS: [usize; 2] = [1, 2];

/// Runs `ops` operations of `mix` on `cache`, reading keys from `keys`
/// starting at `position` (wrapping). Returns the position to resume from.
#[inline(never)]
fn run_ops<C: ConcurrentCache>(
    cache: &C,
    keys: &[u64],
    mut position: usize,
    ops: u64,
    mix: Mix,
) -> usize {
    let mut next_key = || {
        let key = keys[position];
        position += 1;
        if position == keys.len() {
            position = 0;
        }
        key
    };
    match mix {
        Mix::Get => {
            for _ in 0..ops {
                black_box(cache.get(next_key()));
            }
        }
        Mix::GetMostlyInsertSome => {
            for op in 0..ops {
                let key = next_key();
                if op % 10 == 9 {
                    cache.insert(key, key);
                } else {
                    black_box(cache.get(key));
                }
            }
        }
        Mix::Insert => {
            for _ in 0..ops {
                let key = next_key();
                cache.insert(key, key);
            }
        }
    }
    position
}

/// One measured sample: `iters` operations split over `cursors.len()` threads.
fn timed_sample<C: ConcurrentCache>(
    cache: &C,
    keys: &[u64],
    mix: Mix,
    cursors: &mut [usize],
    iters: u64,
) -> Duration {
    let threads = cursors.len();
    if threads == 1 {
        let start = Instant::now();
        cursors[0] = run_ops(cache, keys, cursors[0], iters, mix);
        return start.elapsed();
    }
    let barrier = Barrier::new(threads);
    let per_thread = iters / threads as u64;
    let spans: Vec<(Instant, Instant, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cursors
            .iter()
            .enumerate()
            .map(|(thread, &cursor)| {
                let ops = if thread == 0 {
                    iters - per_thread * (threads as u64 - 1)
                } else {
                    per_thread
                };
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let resume = run_ops(cache, keys, cursor, ops, mix);
                    (start, Instant::now(), resume)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let first_start = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last_end = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    for (cursor, span) in cursors.iter_mut().zip(&spans) {
        *cursor = span.2;
    }
    last_end - first_start
}

fn bench_cache<C: ConcurrentCache>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    cache: &C,
    keys: &[u64],
    mix: Mix,
    threads: usize,
) {
    let mut cursors: Vec<usize> = (0..threads).map(|t| t * keys.len() / threads).collect();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| timed_sample(cache, keys, mix, &mut cursors, iters))
    });
}

fn throughput(c: &mut Criterion) {
    // Read first, so a bad value fails before the slow pre-warm.
    let thread_counts = support::threads::thread_counts(&DEFAULT_THREAD_COUNTS);
    let keys = support::zipf_sequence();
    let capacity = support::CAPACITY;

    let surgeguard = adapters::surgeguard(capacity);
    let moka = adapters::moka(capacity);
    let quick_cache = adapters::quick_cache(capacity);
    eprintln!(
        "pre-warm hit ratio over {} Zipf({}) accesses, {} keys, capacity {}: surgeguard {:.2} %, moka {:.2} %, quick_cache {:.2} %",
        keys.len(),
        support::ZIPF_EXPONENT,
        support::DISTINCT_KEYS,
        capacity,
        support::warm(&surgeguard, &keys),
        support::warm(&moka, &keys),
        support::warm(&quick_cache, &keys),
    );

    for mix in Mix::ALL {
        for &threads in &thread_counts {
            let mut group = c.benchmark_group(format!("{}/{}t", mix.name(), threads));
            group
                .throughput(Throughput::Elements(1))
                .sample_size(20)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(3));
            bench_cache(&mut group, "surgeguard", &surgeguard, &keys, mix, threads);
            bench_cache(&mut group, "moka", &moka, &keys, mix, threads);
            bench_cache(&mut group, "quick_cache", &quick_cache, &keys, mix, threads);
            group.finish();
        }
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
