//! The cache's reference model: a `HashMap` of what was last written to
//! each key and when it expires, and a driver that replays a sequence of
//! operations on both and checks the cache against it after each one.
//! Shared by the property tests (`cache_model.rs`) and the cache fuzz target
//! (`fuzz_checks/cache_ops.rs`).
//!
//! The cache may evict whatever its policy chooses, so the model cannot say
//! *which* keys survive; it can say that whatever the cache returns is the
//! last value written for that key and not yet expired, that an evicted key
//! stays gone until written again, that the bounds hold, and that `len` and
//! `weighted_size` agree with the contents. When nothing was evicted or
//! rejected, the cache must agree with the model exactly.
//!
//! Every TTL and clock step an [`Op`] carries must stay under 100 ms: the
//! driver's last step jumps 100 ms to let every entry expire.

use std::collections::HashMap;
use std::time::Duration;

use surgeguard::cache::Cache;
use surgeguard::clock::{Clock, ManualClock};

/// Keys are `0..KEYS`: few enough that sequences revisit them.
pub const KEYS: u8 = 24;

/// One step of a sequence, applied to the cache and the model alike.
#[derive(Clone, Debug)]
pub enum Op {
    Insert { key: u8, weight: u32 },
    InsertWithTtl { key: u8, weight: u32, ttl_ms: u64 },
    Get { key: u8 },
    Remove { key: u8 },
    Advance { ms: u64 },
    Maintain,
    InvalidateAll,
}

/// (value, weight): the value carries its own weight for the weigher.
pub type Value = (u64, u32);

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

/// How the cache under test is built.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub capacity: u64,
    pub weighted: bool,
    pub shards: usize,
    pub default_ttl_ms: Option<u64>,
    pub time_to_idle_ms: Option<u64>,
}

/// Builds the cache under test. The builder refuses more shards than units
/// of capacity, so a setup asking for that gets the most shards that fit.
pub fn build(setup: Setup, clock: &ManualClock) -> Cache<u8, Value> {
    let fitting = 1usize << setup.capacity.max(1).ilog2().min(16);
    let shards = setup.shards.min(fitting);
    let builder = Cache::builder().shards(shards).clock(clock.clone());
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

pub fn run(setup: Setup, ops: Vec<Op>) {
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
