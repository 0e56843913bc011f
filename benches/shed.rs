//! The cost of admission, uncontended and from two threads at once (by
//! default), at two levels:
//!
//! * **Acquire and release a permit**: surgeguard's shedder (fixed limit;
//!   fixed limit with an empty wait queue, where a newcomer and a release
//!   also look at the queue; and the Gradient limit learning from every
//!   permit) against tokio's `Semaphore`, which
//!   `tower::limit::ConcurrencyLimit` is built on.
//! * **One call through a service** (`service_*`): `ConcurrencyLimit` itself
//!   against surgeguard's `LoadShedLayer`, each in front of the same trivial
//!   HTTP service and called with `ready()` then `call()`; `service_bare` is
//!   that service alone, so each layer's cost is its difference from it.
//!
//! Why `LoadShedLayer` and not a bench-made wrapper around `Shedder`: the
//! layer is what a user puts where `ConcurrencyLimit` would go, so the pair
//! compares what each costs per request as shipped. They do the same job
//! here (the limits, 1,000, are never full, and both hold the permit until
//! the response is ready) in different ways: `ConcurrencyLimit` takes its
//! permit in `poll_ready` (and would wait there, unbounded, when full) and
//! returns an unboxed future; `LoadShedLayer` admits in `call` (and would
//! answer 503 at once), asks its classifier for the request's priority,
//! boxes its future (it may wait in the shedder's queue) and wraps the
//! response body. The permit-level rows say how much of the difference is
//! admission itself. Both services are HTTP because `LoadShedLayer` is.
//!
//! Run: `cargo bench --bench shed`
//! Threads: `SURGEGUARD_BENCH_THREADS=1,4,8,16` (comma-separated; default `1,2`).

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::http::{Request, Response};
use criterion::{criterion_group, criterion_main, Criterion};
use surgeguard::http::LoadShedLayer;
use surgeguard::shed::{AdaptiveLimit, Outcome, Priority, Shedder};
use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimit;
use tower::util::ServiceFn;
use tower::{service_fn, Layer, Service, ServiceExt};

mod support;

use support::threads::thread_counts;

/// Thread counts benched unless `SURGEGUARD_BENCH_THREADS` says otherwise.
const DEFAULT_THREAD_COUNTS: [usize; 2] = [1, 2];

/// Runs `op` `iters` times on each of the threads at once, one thread per
/// state (made before the clock starts); returns the time per operation per
/// thread.
fn per_thread<T: Send>(states: Vec<T>, iters: u64, op: impl Fn(&mut T) + Sync) -> Duration {
    let op = &op;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for mut state in states {
            scope.spawn(move || {
                for _ in 0..iters {
                    op(&mut state);
                }
            });
        }
    });
    start.elapsed()
}

/// A service that answers every request with an empty `200` at once.
type Trivial = ServiceFn<fn(Request<()>) -> Ready<Result<Response<String>, Infallible>>>;

fn trivial() -> Trivial {
    fn answer(_: Request<()>) -> Ready<Result<Response<String>, Infallible>> {
        std::future::ready(Ok(Response::new(String::new())))
    }
    service_fn(answer as fn(_) -> _)
}

/// Polls a future that is ready at once, as every one measured here is
/// (no limit is ever full).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a limit of 1,000 was full"),
    }
}

/// One request through `service`: wait until it is ready, call it, and
/// take its response.
fn call<S>(service: &mut S)
where
    S: Service<Request<()>>,
    S::Error: Debug,
{
    let ready = now(ServiceExt::<Request<()>>::ready(service)).expect("ready");
    let response = now(ready.call(Request::new(()))).expect("answered");
    black_box(response);
}

fn acquire_release(c: &mut Criterion) {
    let fixed = Shedder::builder().max_concurrency(1_000).build().unwrap();
    let queued = Shedder::builder()
        .max_concurrency(1_000)
        .queue(1_000, Duration::from_millis(50))
        .build()
        .unwrap();
    let gradient = || AdaptiveLimit::gradient().min(1_000).max(2_000);
    let adaptive = Shedder::builder().limit(gradient()).build().unwrap();
    let semaphore = Arc::new(Semaphore::new(1_000));
    let tower_limited = ConcurrencyLimit::new(trivial(), 1_000);
    let shed_fixed = LoadShedLayer::new(Shedder::builder().max_concurrency(1_000).build().unwrap())
        .layer(trivial());
    let shed_gradient =
        LoadShedLayer::new(Shedder::builder().limit(gradient()).build().unwrap()).layer(trivial());
    for threads in thread_counts(&DEFAULT_THREAD_COUNTS) {
        let mut group = c.benchmark_group(format!("acquire_release_{threads}t"));
        group.bench_function("surgeguard_fixed", |b| {
            b.iter_custom(|iters| {
                per_thread(vec![&fixed; threads], iters, |shedder| {
                    let permit = shedder.try_acquire(Priority::Normal).expect("room");
                    drop(permit);
                })
            })
        });
        group.bench_function("surgeguard_fixed_queue", |b| {
            b.iter_custom(|iters| {
                per_thread(vec![&queued; threads], iters, |shedder| {
                    let permit = shedder.try_acquire(Priority::Normal).expect("room");
                    drop(permit);
                })
            })
        });
        group.bench_function("surgeguard_gradient_record", |b| {
            b.iter_custom(|iters| {
                per_thread(vec![&adaptive; threads], iters, |shedder| {
                    let permit = shedder.try_acquire(Priority::Normal).expect("room");
                    permit.record(Outcome::Success);
                })
            })
        });
        group.bench_function("tokio_semaphore_owned", |b| {
            b.iter_custom(|iters| {
                per_thread(vec![&semaphore; threads], iters, |semaphore| {
                    let permit = Arc::clone(semaphore).try_acquire_owned().expect("room");
                    drop(permit);
                })
            })
        });
        // Each thread calls its own clone, as each connection of a server
        // does; clones share their limit.
        group.bench_function("service_bare", |b| {
            b.iter_custom(|iters| per_thread(vec![trivial(); threads], iters, call))
        });
        group.bench_function("service_tower_concurrency_limit", |b| {
            b.iter_custom(|iters| per_thread(vec![tower_limited.clone(); threads], iters, call))
        });
        group.bench_function("service_surgeguard_load_shed_fixed", |b| {
            b.iter_custom(|iters| per_thread(vec![shed_fixed.clone(); threads], iters, call))
        });
        group.bench_function("service_surgeguard_load_shed_gradient", |b| {
            b.iter_custom(|iters| per_thread(vec![shed_gradient.clone(); threads], iters, call))
        });
        group.finish();
    }
}

criterion_group!(benches, acquire_release);
criterion_main!(benches);
