//! Property tests: the cache against the simple reference model in
//! `models/cache.rs`, over random settings and operation sequences.

use proptest::prelude::*;
use surgeguard::clock::ManualClock;

#[path = "models/cache.rs"]
mod model;

use model::{build, run, Op, Setup, KEYS};

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
