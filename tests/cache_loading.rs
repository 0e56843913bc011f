//! Stampede protection through the blocking loading methods: single flight,
//! shared errors and panics, the load timeout, refresh-ahead and the stale
//! windows at their exact edges. Time is a manual clock; the only real
//! waiting is for background threads to finish, bounded by a hang guard.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use surgeguard::cache::{Cache, CacheStats, LoadError};
use surgeguard::clock::ManualClock;

mod loading_support;
use loading_support::{wait_until, Gate};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Callers that have reached the load: those who lead it plus those waiting.
fn arrived(stats: CacheStats) -> u64 {
    stats.loads + stats.coalesced
}

#[test]
fn concurrent_misses_on_ten_keys_make_ten_loads() {
    const THREADS: usize = 100;
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(1_000).build().unwrap();
    let origin_calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (cache, calls, start) = (cache.clone(), origin_calls.clone(), start.clone());
            thread::spawn(move || {
                let key = (i % 10) as u64;
                start.wait();
                let observer = cache.clone();
                cache.get_or_load(&key, move |key| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Hold the load until every caller has joined a flight,
                    // so that all of them really are concurrent.
                    wait_until("all callers at the load", || {
                        arrived(observer.stats()) == THREADS as u64
                    });
                    key * 100
                })
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), Ok((i % 10) as u64 * 100));
    }
    assert_eq!(origin_calls.load(Ordering::SeqCst), 10);
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.coalesced), (10, THREADS as u64 - 10));
    assert_eq!(cache.get(&3), Some(300), "loaded values are stored");
}

#[test]
fn an_error_is_shared_by_the_waiters_and_not_cached() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build().unwrap();
    let gate = Gate::default();
    let leader = {
        let (cache, gate) = (cache.clone(), gate.clone());
        thread::spawn(move || {
            cache.get_or_try_load(&1, move |_| {
                gate.pass();
                Err::<u64, String>("origin down".into())
            })
        })
    };
    wait_until("leader started", || cache.stats().loads == 1);
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_try_load(&1, |_| Ok::<u64, String>(7)))
    };
    wait_until("waiter joined", || cache.stats().coalesced == 1);
    gate.open();
    let (mine, theirs) = (leader.join().unwrap(), waiter.join().unwrap());
    match (&mine, &theirs) {
        (Err(LoadError::Failed(a)), Err(LoadError::Failed(b))) => {
            assert!(Arc::ptr_eq(a, b), "one error, shared");
            assert_eq!(a.as_str(), "origin down");
        }
        other => panic!("expected a shared failure, got {other:?}"),
    }
    assert_eq!(cache.get(&1), None, "errors are not cached");
    assert_eq!(cache.get_or_try_load(&1, |_| Ok::<u64, String>(7)), Ok(7));
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_errors), (2, 1));
}

#[test]
fn a_panicking_loader_releases_every_waiter_and_frees_the_key() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build().unwrap();
    let gate = Gate::default();
    let leader = {
        let (cache, gate) = (cache.clone(), gate.clone());
        thread::spawn(move || {
            cache.get_or_load(&1, move |_| {
                gate.pass();
                panic!("loader bug");
            })
        })
    };
    wait_until("leader started", || cache.stats().loads == 1);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            thread::spawn(move || cache.get_or_load(&1, |_| 5))
        })
        .collect();
    wait_until("waiters joined", || cache.stats().coalesced == 4);
    assert_eq!(cache.loads_in_flight(), 1, "one load however many wait");
    gate.open();
    assert_eq!(leader.join().unwrap(), Err(LoadError::Panicked));
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), Err(LoadError::Panicked));
    }
    assert_eq!(cache.loads_in_flight(), 0, "the panic ended the flight");
    assert_eq!(cache.get_or_load(&1, |_| 5), Ok(5), "the key is free");
    assert_eq!(cache.stats().load_errors, 1);
}

#[test]
fn a_waiter_gives_up_at_the_load_timeout_on_the_cache_clock() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10)
        .load_timeout(secs(2))
        .clock(clock.clone())
        .build()
        .unwrap();
    let gate = Gate::default();
    let leader = {
        let (cache, gate) = (cache.clone(), gate.clone());
        thread::spawn(move || {
            cache.get_or_load(&1, move |_| {
                gate.pass();
                10
            })
        })
    };
    wait_until("leader started", || cache.stats().loads == 1);
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_load(&1, |_| 99))
    };
    wait_until("waiter joined", || cache.stats().coalesced == 1);
    // The waiter's deadline is two seconds of cache time after it joined.
    clock.advance(secs(2));
    assert_eq!(waiter.join().unwrap(), Err(LoadError::TimedOut));
    gate.open();
    assert_eq!(leader.join().unwrap(), Ok(10), "the load itself went on");
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.stats().load_errors, 0, "the load did not fail");
}

#[test]
fn a_loader_asking_for_its_own_key_gets_an_error_not_a_deadlock() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).build().unwrap();
    let inner = cache.clone();
    let loaded = cache.get_or_load(&1, move |key| {
        let again = inner.get_or_load(key, |_| 0);
        assert_eq!(again, Err(LoadError::Recursive));
        1
    });
    assert_eq!(loaded, Ok(1));
}
