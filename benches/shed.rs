//! The cost of admission: acquire and release a permit, uncontended and from
//! two threads at once (by default), for surgeguard's shedder (fixed limit,
//! and the Gradient limit learning from every permit) against tokio's
//! `Semaphore`, which `tower::limit::ConcurrencyLimit` is built on.
//!
//! Run: `cargo bench --bench shed`
//! Threads: `SURGEGUARD_BENCH_THREADS=1,4,8,16` (comma-separated; default `1,2`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use surgeguard::shed::{AdaptiveLimit, Outcome, Priority, Shedder};
use tokio::sync::Semaphore;

mod support;

use support::threads::thread_counts;

/// Thread counts benched unless `SURGEGUARD_BENCH_THREADS` says otherwise.
const DEFAULT_THREAD_COUNTS: [usize; 2] = [1, 2];

/// Runs `op` `iters` times on each of `threads` threads at once; returns the
/// time per operation per thread.
fn per_thread(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..iters {
                    op();
                }
            });
        }
    });
    start.elapsed()
}

fn acquire_release(c: &mut Criterion) {
    let fixed = Shedder::builder().max_concurrency(1_000).build().unwrap();
    let adaptive = Shedder::builder()
        .limit(AdaptiveLimit::gradient().min(1_000).max(2_000))
        .build()
        .unwrap();
    let semaphore = Arc::new(Semaphore::new(1_000));
    for threads in thread_counts(&DEFAULT_THREAD_COUNTS) {
        let mut group = c.benchmark_group(format!("acquire_release_{threads}t"));
        group.bench_function("surgeguard_fixed", |b| {
            b.iter_custom(|iters| {
                per_thread(threads, iters, || {
                    let permit = fixed.try_acquire(Priority::Normal).expect("room");
                    drop(permit);
                })
            })
        });
        group.bench_function("surgeguard_gradient_record", |b| {
            b.iter_custom(|iters| {
                per_thread(threads, iters, || {
                    let permit = adaptive.try_acquire(Priority::Normal).expect("room");
                    permit.record(Outcome::Success);
                })
            })
        });
        group.bench_function("tokio_semaphore_owned", |b| {
            b.iter_custom(|iters| {
                per_thread(threads, iters, || {
                    let permit = Arc::clone(&semaphore).try_acquire_owned().expect("room");
                    drop(permit);
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, acquire_release);
criterion_main!(benches);
