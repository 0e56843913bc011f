//! A bare operation loop for counting work with `perf stat`, where timings
//! are too noisy to compare (see BENCHMARKS.md, "Work per operation").
//!
//! ```sh
//! cargo build --release --example op_loop
//! for mode in none get insert; do
//!   perf stat -e instructions,L1-dcache-load-misses,cache-misses \
//!     target/release/examples/op_loop $mode surgeguard
//! done
//! ```
//!
//! Every run builds the bench's Zipf(1.0) key sequence and warms the cache
//! (get, insert on miss); `mode` then replays the sequence three times with
//! gets (`get`), inserts (`insert`) or nothing (`none`, the baseline to
//! subtract). The cache is `surgeguard`, `quick_cache` or `moka`.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

#[path = "../benches/support/mod.rs"]
mod support;

use support::adapters::{self, ConcurrentCache, Kind};

const CAPACITY: usize = 100_000;
const PASSES: usize = 3;

fn replay<C: ConcurrentCache>(cache: &C, keys: &[u64], mode: &str) {
    support::warm(cache, keys);
    let passes = if mode == "none" { 0 } else { PASSES };
    let started = Instant::now();
    let mut hits = 0u64;
    for _ in 0..passes {
        for &key in keys {
            if mode == "get" {
                hits += u64::from(cache.get(key).is_some());
            } else {
                cache.insert(key, key);
            }
        }
    }
    let ops = (passes * keys.len()).max(1);
    println!(
        "{mode}: {} ops, {:.1} ns/op, {} hits",
        passes * keys.len(),
        started.elapsed().as_nanos() as f64 / ops as f64,
        black_box(hits)
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("get", String::as_str);
    let kind = args.get(2).map_or("surgeguard", String::as_str);
    if !matches!(mode, "none" | "get" | "insert") {
        eprintln!("mode must be none, get or insert, not {mode:?}");
        return ExitCode::FAILURE;
    }
    let keys = support::zipf_sequence();
    match Kind::from_name(kind) {
        Some(Kind::Surgeguard) => replay(&adapters::surgeguard(CAPACITY), &keys, mode),
        Some(Kind::QuickCache) => replay(&adapters::quick_cache(CAPACITY), &keys, mode),
        Some(Kind::Moka) => replay(&adapters::moka(CAPACITY), &keys, mode),
        None => {
            eprintln!("cache must be surgeguard, quick_cache or moka, not {kind:?}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
