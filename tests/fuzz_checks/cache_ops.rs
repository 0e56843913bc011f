//! Cache operation sequences against the reference model
//! (`models/cache.rs`): the same driver as the property test, fed by the
//! fuzzer instead of proptest's strategies, so coverage guidance can find
//! the sequences random generation misses.

use super::input::Input;
use crate::models::cache::{run as replay, Op, Setup, KEYS};

/// Longest sequence one input plays: long enough to cycle every key through
/// eviction and expiry several times.
const MOST_OPS: usize = 400;

pub fn run(bytes: &[u8]) {
    let mut input = Input::new(bytes);
    let setup = Setup {
        capacity: match input.u8() % 3 {
            0 => 1 + input.below(7),
            1 => 8 + input.below(32),
            _ => 1_000,
        },
        weighted: input.bool(),
        shards: input.pick(&[1, 2, 4]),
        default_ttl_ms: input.bool().then(|| 5 + input.below(55)),
        time_to_idle_ms: input.u8().is_multiple_of(3).then(|| 5 + input.below(35)),
    };
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < MOST_OPS {
        let key = input.u8() % KEYS;
        let op = match input.u8() % 27 {
            0..=7 => Op::Insert {
                key,
                weight: 1 + input.u8() as u32 % 5,
            },
            8..=10 => Op::InsertWithTtl {
                key,
                weight: 1 + input.u8() as u32 % 5,
                ttl_ms: 1 + input.below(49),
            },
            11..=20 => Op::Get { key },
            21..=22 => Op::Remove { key },
            23..=24 => Op::Advance {
                ms: input.below(30),
            },
            25 => Op::Maintain,
            _ => Op::InvalidateAll,
        };
        ops.push(op);
    }
    if !ops.is_empty() {
        replay(setup, ops);
    }
}
