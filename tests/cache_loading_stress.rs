//! Many threads mixing loads (some failing, some panicking), reads, inserts,
//! removes, clears and clock moves on a handful of keys, with refresh and
//! both stale windows on. Nobody may hang, no value may be served under the
//! wrong key, and the cache must stay usable afterwards.
//!
//! Why it cannot flake: it asserts only what holds in every interleaving
//! (values under their own keys, failures accounted, the bound). How many
//! loads fail, coalesce or refresh depends on the scheduling, so no count of
//! them is required; and before the last checks the test waits (for the
//! event, with a hang guard) until every background reload has ended, so
//! that none of them can answer a check of the test's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use surgeguard::cache::{Cache, LoadError};
use surgeguard::clock::ManualClock;

#[allow(dead_code)]
mod loading_support;
use loading_support::wait_until;

const THREADS: u64 = 8;
const STEPS: u64 = 4_000;
const KEYS: u64 = 6;

/// Values carry their key, so a value served under another key shows.
fn value_for(key: u64, serial: u64) -> u64 {
    key * 1_000_000 + serial % 1_000_000
}

/// The loaders' deliberate panics would flood the test output.
fn silence_loader_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"loader bug") {
            default_hook(info);
        }
    }));
}

#[test]
fn mixed_loads_and_writes_never_hang_or_cross_keys() {
    silence_loader_panics();
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(4)
        .shards(1)
        .time_to_live(Duration::from_millis(50))
        .refresh_after(Duration::from_millis(20))
        .stale_while_revalidate(Duration::from_millis(10))
        .stale_if_error(Duration::from_millis(40))
        .background_reloads(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    let serial = Arc::new(AtomicU64::new(0));
    let failures_seen = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(THREADS as usize));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread_id| {
            let (cache, clock, serial, start, failures_seen) = (
                cache.clone(),
                clock.clone(),
                serial.clone(),
                start.clone(),
                failures_seen.clone(),
            );
            thread::spawn(move || {
                let mut state = 0x9E37_79B9_7F4A_7C15 ^ (thread_id + 1);
                start.wait();
                for _ in 0..STEPS {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key = state % KEYS;
                    let n = serial.fetch_add(1, Ordering::Relaxed);
                    let fate = (state >> 20) % 10;
                    let served = match (state >> 8) % 16 {
                        0..=8 => {
                            let loaded = cache.get_or_try_load(&key, move |key| match fate {
                                0 => Err("origin down"),
                                1 => panic!("loader bug"),
                                _ => Ok(value_for(*key, n)),
                            });
                            match loaded {
                                Ok(value) => Some(value),
                                Err(LoadError::Failed(_) | LoadError::Panicked) => {
                                    failures_seen.fetch_add(1, Ordering::Relaxed);
                                    None
                                }
                                Err(other) => panic!("unexpected {other:?}"),
                            }
                        }
                        9..=11 => cache.get(&key),
                        12 => {
                            cache.insert(key, value_for(key, n));
                            None
                        }
                        13 => cache.remove(&key),
                        14 => {
                            clock.advance(Duration::from_millis(state % 7));
                            None
                        }
                        _ => {
                            if n % 64 == 0 {
                                cache.invalidate_all();
                            }
                            None
                        }
                    };
                    if let Some(value) = served {
                        assert_eq!(value / 1_000_000, key, "value served under the wrong key");
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    // A reload a worker started in the background may still be running (on
    // a busy machine, for a while): wait for it to end, or the check below
    // could join it and get its loader's error. Then no flight is left:
    // each key loads (or hits) without waiting on a stranded one, and the
    // cache still honours its bound.
    wait_until("every background reload ended", || {
        cache.loads_in_flight() == 0
    });
    clock.advance(Duration::from_secs(1));
    for key in 0..KEYS {
        let value = cache.get_or_load(&key, move |key| value_for(*key, 7));
        assert_eq!(value.map(|v| v / 1_000_000), Ok(key));
    }
    assert!(cache.len() <= 4);
    // Every failure a caller saw was a load's, counted as one.
    let stats = cache.stats();
    let failures_seen = failures_seen.load(Ordering::Relaxed);
    assert!(failures_seen == 0 || stats.load_errors > 0, "{stats:?}");
    assert!(stats.load_errors <= stats.loads, "{stats:?}");
    assert!(stats.loads >= KEYS, "the last checks each led a load");
}
