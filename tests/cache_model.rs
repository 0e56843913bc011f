//! Property tests: the cache against a simple reference model.
//!
//! The model is a `HashMap` of what was last written to each key and when it
//! expires. The cache may evict whatever its policy chooses, so the model
//! cannot say *which* keys survive; it can say that whatever the cache returns
//! is the last value written for that key and not yet expired, that an evicted
//! key stays gone until written again, that the bounds hold, and that `len`
//! and `weighted_size` agree with the contents. When nothing was evicted or
//! rejected, the cache must agree with the model exactly.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use surgeguard::cache::Cache;
use surgeguard::clock::{Clock, ManualClock};

const KEYS: u8 = 24;

#[derive(Clone, Debug)]
enum Op {
    Insert { key: u8, weight: u32 },
    InsertWithTtl { key: u8, weight: u32, ttl_ms: u64 },
    Get { key: u8 },
    Remove { key: u8 },
    Advance { ms: u64 },
    Maintain,
    InvalidateAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..KEYS, 1..6u32).prop_map(|(key, weight)| Op::Insert { key, weight }),
        3 => (0..KEYS, 1..6u32, 1..50u64)
            .prop_map(|(key, weight, ttl_ms)| Op::InsertWithTtl { key, weight, ttl_ms }),
        10 => (0..KEYS).prop_map(|key| Op::Get { key }),
        2 => (0..KEYS).prop_map(|key| Op::Remove { key }),
        2 => (0..30u64).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Maintain),
        1 => Just(Op::InvalidateAll),
    ]
}

/// (value, weight): the value carries its own weight for the weigher.
type Value = (u64, u32);

/// What the model knows of a key: its value, write deadline and last access.
type Record = (Value, u64, u64);

struct Model {
    entries: HashMap<u8, Record>,
    now_ms: u64,
    time_to_idle_ms: Option<u64>,
}

impl Model {
    fn live(&self, key: u8) -> Option<Value> {
        self.entries
            .get(&key)
            .filter(|(_, deadline, accessed)| {
                let idle_deadline = self
                    .time_to_idle_ms
                    .map_or(u64::MAX, |idle| accessed + idle);
                (*deadline).min(idle_deadline) > self.now_ms
            })
            .map(|(value, _, _)| *value)
    }

    fn write(&mut self, key: u8, value: Value, deadline: u64) {
        self.entries.insert(key, (value, deadline, self.now_ms));
    }

    fn touch(&mut self, key: u8) {
        if let Some(record) = self.entries.get_mut(&key) {
            record.2 = self.now_ms;
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    capacity: u64,
    weighted: bool,
    shards: usize,
    default_ttl_ms: Option<u64>,
    time_to_idle_ms: Option<u64>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![1..8u64, 8..40u64, Just(1_000u64)],
        any::<bool>(),
        prop_oneof![Just(1usize), Just(2), Just(4)],
        proptest::option::of(5..60u64),
        proptest::option::weighted(0.3, 5..40u64),
    )
        .prop_map(
            |(capacity, weighted, shards, default_ttl_ms, time_to_idle_ms)| Setup {
                capacity,
                weighted,
                shards,
                default_ttl_ms,
                time_to_idle_ms,
            },
        )
}

fn build(setup: Setup, clock: &ManualClock) -> Cache<u8, Value> {
    let builder = Cache::builder().shards(setup.shards).clock(clock.clone());
    let builder = if setup.weighted {
        builder
            .max_weight(setup.capacity)
            .weigher(|_: &u8, value: &Value| value.1)
    } else {
        builder.max_capacity(setup.capacity)
    };
    let builder = match setup.default_ttl_ms {
        Some(ms) => builder.time_to_live(Duration::from_millis(ms)),
        None => builder,
    };
    let builder = match setup.time_to_idle_ms {
        Some(ms) => builder.time_to_idle(Duration::from_millis(ms)),
        None => builder,
    };
    builder.build().expect("valid settings")
}

/// `settled`: every expired entry is at least two wheel ticks past its
/// deadline, so reclamation must have caught up and `len` must be exact;
/// otherwise `len` may still count expired entries awaiting reclamation.
fn check_contents(cache: &Cache<u8, Value>, model: &mut Model, setup: Setup, settled: bool) {
    // Bounds.
    assert!(cache.weighted_size() <= setup.capacity);
    if !setup.weighted {
        assert!(cache.len() as u64 <= setup.capacity);
    }
    // Nothing stale, nothing resurrected; len/weight agree with the contents
    // once expired entries are reclaimed.
    let stats = cache.stats();
    let exact = stats.evictions == 0 && stats.rejected == 0;
    let (mut present, mut weight) = (0usize, 0u64);
    for key in 0..KEYS {
        let expected = model.live(key);
        let contains = cache.contains_key(&key);
        match (contains, expected) {
            (true, None) => panic!("key {key} present but the model has no live value"),
            (false, Some(_)) if exact => panic!("key {key} lost with no eviction"),
            (false, Some(_)) => {
                model.entries.remove(&key);
            }
            (true, Some(value)) => {
                present += 1;
                weight += u64::from(if setup.weighted { value.1 } else { 1 });
            }
            (false, None) => {}
        }
    }
    if !settled {
        assert!(cache.len() >= present);
        assert!(cache.weighted_size() >= weight);
        return;
    }
    // Maintenance is budgeted per call: a few calls finish the job.
    for _ in 0..100 {
        cache.run_maintenance();
    }
    assert_eq!(cache.len(), present, "len vs live entries");
    assert_eq!(
        cache.weighted_size(),
        weight,
        "weighted_size vs live entries"
    );
}

fn run(setup: Setup, ops: Vec<Op>) {
    let clock = ManualClock::new();
    let cache = build(setup, &clock);
    let mut model = Model {
        entries: HashMap::new(),
        now_ms: 0,
        time_to_idle_ms: setup.time_to_idle_ms,
    };
    let mut next_value = 0u64;
    let default_deadline = |now: u64| setup.default_ttl_ms.map_or(u64::MAX, |ttl| now + ttl);
    for op in ops {
        match op {
            Op::Insert { key, weight } => {
                next_value += 1;
                let value = (next_value, weight);
                cache.insert(key, value);
                model.write(key, value, default_deadline(model.now_ms));
            }
            Op::InsertWithTtl {
                key,
                weight,
                ttl_ms,
            } => {
                next_value += 1;
                let value = (next_value, weight);
                cache.insert_with_ttl(key, value, Duration::from_millis(ttl_ms));
                model.write(key, value, model.now_ms + ttl_ms);
            }
            Op::Get { key } => {
                let got = cache.get(&key);
                let expected = model.live(key);
                match got {
                    Some(value) => {
                        assert_eq!(Some(value), expected, "get({key})");
                        model.touch(key);
                    }
                    None => {
                        // Evicted, rejected or expired: gone until rewritten.
                        model.entries.remove(&key);
                    }
                }
            }
            Op::Remove { key } => {
                let removed = cache.remove(&key);
                let expected = model.live(key);
                if removed.is_some() {
                    assert_eq!(removed, expected, "remove({key})");
                }
                model.entries.remove(&key);
            }
            Op::Advance { ms } => {
                clock.advance(Duration::from_millis(ms));
                model.now_ms += ms;
            }
            Op::Maintain => cache.run_maintenance(),
            Op::InvalidateAll => {
                cache.invalidate_all();
                model.entries.clear();
                assert_eq!(cache.len(), 0);
                assert_eq!(cache.weighted_size(), 0);
            }
        }
        assert!(cache.weighted_size() <= setup.capacity);
        check_contents(&cache, &mut model, setup, false);
    }
    // Every TTL in these tests is under 100 ms: step well past all of them so
    // reclamation (which trails the clock by up to one ~1 ms tick) is done.
    clock.advance(Duration::from_millis(100));
    model.now_ms += 100;
    assert_eq!(clock.now().as_nanos(), model.now_ms * 1_000_000);
    check_contents(&cache, &mut model, setup, true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cache_agrees_with_model(setup in setup(), ops in proptest::collection::vec(op(), 1..200)) {
        run(setup, ops);
    }
}

#[test]
fn with_room_for_everything_the_cache_is_exact() {
    let clock = ManualClock::new();
    let setup = Setup {
        capacity: 1_000,
        weighted: false,
        shards: 4,
        default_ttl_ms: None,
        time_to_idle_ms: None,
    };
    let cache = build(setup, &clock);
    for key in 0..KEYS {
        cache.insert(key, (u64::from(key), 1));
    }
    assert_eq!(cache.len(), KEYS as usize);
    for key in 0..KEYS {
        assert_eq!(cache.get(&key), Some((u64::from(key), 1)));
    }
    assert_eq!(cache.stats().evictions, 0);
}
