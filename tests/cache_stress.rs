//! Many threads on overlapping keys, then the invariants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use surgeguard::cache::Cache;
use surgeguard::clock::ManualClock;

const THREADS: u64 = 8;
const OPS: u64 = 40_000;
const KEYS: u64 = 512;

/// Values encode their key, so a read can check it got a value written for
/// the key it asked for.
fn value_for(key: u64, writer: u64, seq: u64) -> (u64, u64, u64) {
    (key, writer, seq)
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn cache_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cache<u64, u64>>();
    assert_send_sync::<Cache<String, Arc<Vec<u8>>>>();
    assert_send_sync::<surgeguard::cache::CacheBuilder<u64, u64>>();
}

/// `clock` must be the cache's clock: the workers move it forward as they go.
fn hammer(cache: Cache<u64, (u64, u64, u64)>, clock: ManualClock) {
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let gets = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|writer| {
            let (cache, barrier, gets, clock) =
                (cache.clone(), barrier.clone(), gets.clone(), clock.clone());
            thread::spawn(move || {
                let mut rng = 0x2545_F491_4F6C_DD1D ^ (writer + 1);
                barrier.wait();
                for seq in 0..OPS {
                    let roll = xorshift(&mut rng);
                    let key = (roll >> 8) % KEYS;
                    match roll % 10 {
                        0..=5 => {
                            gets.fetch_add(1, Ordering::Relaxed);
                            if let Some(value) = cache.get(&key) {
                                assert_eq!(value.0, key, "value written for another key");
                            }
                        }
                        6..=7 => cache.insert(key, value_for(key, writer, seq)),
                        8 => {
                            if let Some(value) = cache.remove(&key) {
                                assert_eq!(value.0, key);
                            }
                        }
                        _ => {
                            if seq % 64 == 0 {
                                clock.advance(Duration::from_millis(1));
                            }
                            cache.insert_with_ttl(
                                key,
                                value_for(key, writer, seq),
                                Duration::from_millis(1 + roll % 20),
                            );
                        }
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("worker panicked");
    }
    let stats = cache.stats();
    assert_eq!(stats.hits + stats.misses, gets.load(Ordering::Relaxed));
    assert!(cache.weighted_size() <= cache.capacity());
    // len agrees with what lookups can see once expired entries are
    // reclaimed (until then len also counts expired entries).
    clock.advance(Duration::from_secs(1));
    for _ in 0..1_000 {
        cache.run_maintenance();
    }
    let visible = (0..KEYS).filter(|key| cache.contains_key(key)).count();
    assert_eq!(cache.len(), visible);
    for key in 0..KEYS {
        if let Some(value) = cache.get(&key) {
            assert_eq!(value.0, key);
        }
    }
}

#[test]
fn many_threads_count_bounded() {
    for shards in [1, 8] {
        let clock = ManualClock::new();
        let cache = Cache::builder()
            .max_capacity(200)
            .shards(shards)
            .clock(clock.clone())
            .build()
            .unwrap();
        hammer(cache, clock);
    }
}

#[test]
fn many_threads_weighted_with_expiry_on_a_manual_clock() {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .max_weight(3_000)
        .weigher(|key: &u64, _: &(u64, u64, u64)| 1 + (*key % 13) as u32)
        .time_to_live(Duration::from_millis(50))
        .time_to_idle(Duration::from_millis(10))
        .shards(4)
        .clock(clock.clone())
        .build()
        .unwrap();
    hammer(cache, clock);
}
