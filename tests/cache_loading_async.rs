//! The async loading methods (feature `tokio`): single flight across a
//! thousand tasks, cancelled callers, panicking and hanging loaders, and
//! background refresh. Loads wait behind flags the test raises, and the load
//! timeout runs on Tokio's paused clock, so nothing depends on real time.
#![cfg(feature = "tokio")]

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant as WallInstant};

use surgeguard::cache::{Cache, LoadError};
use surgeguard::clock::ManualClock;
use tokio::task::JoinHandle;

/// Yields until `done` holds; fails the test instead of hanging.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = WallInstant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gave up waiting for: {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// A flag a loader waits for.
#[derive(Clone, Default)]
struct Flag(Arc<AtomicBool>);

impl Flag {
    fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    async fn raised(&self) {
        until("the flag", || self.0.load(Ordering::SeqCst)).await;
    }
}

/// Spawns a task that loads key 1 with a loader held until `flag` is raised,
/// which then returns `value()`; returns the task once the load has started.
async fn spawn_held_load(
    cache: &Cache<u64, u64>,
    flag: &Flag,
    value: impl FnOnce() -> u64 + Send + 'static,
) -> JoinHandle<Result<u64, LoadError<Infallible>>> {
    let task = {
        let (cache, flag) = (cache.clone(), flag.clone());
        tokio::spawn(async move {
            cache
                .get_or_load_async(&1, move |_| async move {
                    flag.raised().await;
                    value()
                })
                .await
        })
    };
    until("the load started", || cache.stats().loads == 1).await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_on_ten_keys_make_ten_loads() {
    const TASKS: u64 = 1_000;
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
    let origin_calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (cache, calls) = (cache.clone(), origin_calls.clone());
            tokio::spawn(async move {
                let observer = cache.clone();
                let key = i % 10;
                cache
                    .get_or_load_async(&key, move |key| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        until("every task at the load", || {
                            let stats = observer.stats();
                            stats.loads + stats.coalesced == TASKS
                        })
                        .await;
                        key * 3
                    })
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Ok(i as u64 % 10 * 3));
    }
    assert_eq!(origin_calls.load(Ordering::SeqCst), 10);
    assert_eq!(cache.stats().coalesced, TASKS - 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_caller_leaves_the_load_running_for_the_others() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
    let flag = Flag::default();
    let first = spawn_held_load(&cache, &flag, || 11).await;
    let second = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_load_async(&1, |_| async { 99 }).await })
    };
    until("the second caller joined", || cache.stats().coalesced == 1).await;
    // The caller that started the load goes away (a request timeout, say).
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    flag.raise();
    assert_eq!(second.await.unwrap(), Ok(11), "the load went on");
    assert_eq!(cache.get(&1), Some(11), "and its value was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_sole_caller_still_fills_the_cache() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
    let flag = Flag::default();
    let caller = spawn_held_load(&cache, &flag, || 11).await;
    caller.abort();
    flag.raise();
    until("the value stored", || cache.get(&1) == Some(11)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_async_loader_fails_every_waiter_and_frees_the_key() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
    let flag = Flag::default();
    let leader = spawn_held_load(&cache, &flag, || panic!("loader bug")).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_load_async(&1, |_| async { 5 }).await })
    };
    until("the waiter joined", || cache.stats().coalesced == 1).await;
    flag.raise();
    assert_eq!(leader.await.unwrap(), Err(LoadError::Panicked));
    assert_eq!(waiter.await.unwrap(), Err(LoadError::Panicked));
    assert_eq!(cache.get_or_load_async(&1, |_| async { 5 }).await, Ok(5));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_load_times_out_for_everyone_and_frees_the_key() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .load_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let hanging = |_| std::future::pending::<Result<u64, String>>();
    let (leader, waiter) = tokio::join!(
        cache.get_or_try_load_async(&1, hanging),
        cache.get_or_try_load_async(&1, |_| async { Ok::<u64, String>(9) }),
    );
    assert_eq!(leader, Err(LoadError::TimedOut));
    assert_eq!(waiter, Err(LoadError::TimedOut));
    assert_eq!(cache.stats().load_errors, 1);
    assert_eq!(
        cache
            .get_or_try_load_async(&1, |_| async { Ok::<u64, String>(9) })
            .await,
        Ok(9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_reloads_in_a_task_while_readers_get_the_old_value() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .time_to_live(Duration::from_secs(60))
        .refresh_after(Duration::from_secs(45))
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(cache.get_or_load_async(&1, |_| async { 1 }).await, Ok(1));
    clock.advance(Duration::from_secs(45));
    let flag = Flag::default();
    let held = flag.clone();
    let served = cache
        .get_or_load_async(&1, move |_| async move {
            held.raised().await;
            2
        })
        .await;
    assert_eq!(served, Ok(1), "the old value, at once");
    assert_eq!(cache.get_or_load_async(&1, |_| async { 3 }).await, Ok(1));
    assert_eq!(cache.stats().refreshes, 1, "one reload in flight");
    flag.raise();
    until("the reload stored", || cache.get(&1) == Some(2)).await;
}

#[test]
fn outside_a_runtime_the_async_load_says_so() {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build().unwrap();
    let mut call = Box::pin(cache.get_or_load_async(&1, |_| async { 1 }));
    let waker = Waker::from(Arc::new(Noop));
    let polled = call.as_mut().poll(&mut Context::from_waker(&waker));
    assert_eq!(polled, Poll::Ready(Err(LoadError::NoRuntime)));
    // The key was left free.
    assert_eq!(cache.get_or_load(&1, |_| 2), Ok(2));
}
