//! Hit ratios on the recorded traces in `../shared/traces`, as a regression
//! test: the eviction policy must keep meeting the targets that
//! BENCHMARKS.md records (best of moka, quick_cache and LRU minus one point;
//! on OLTP, the adaptive W-TinyLFU figure), on the traces small enough to
//! replay in a debug build. The full table, peers included, is
//! `cargo run --release --example hit_ratio`.
//!
//! The key hasher is seeded with fixed values, so each run replays exactly
//! the same decisions. Without the traces the test says where it looked and
//! passes, except under `CI=true`, where missing traces are a failure.

use std::path::Path;

use surgeguard::cache::Cache;

#[path = "../benches/support/mod.rs"]
mod support;

/// (trace file, capacity, lowest acceptable hit ratio in percent).
const POINTS: [(&str, u64, f64); 7] = [
    ("OLTP.lis.zst", 1_000, 40.0),
    ("gli.trace.gz", 500, 31.0),
    ("gli.trace.gz", 1_000, 47.8),
    ("sprite.trace.gz", 512, 77.9),
    ("sprite.trace.gz", 1_000, 89.6),
    ("web12.trace.zst", 250, 47.7),
    ("web12.trace.zst", 1_000, 66.7),
];

fn replay(keys: &[u64], capacity: u64) -> f64 {
    let cache: Cache<u64, (), ahash::RandomState> = Cache::builder()
        .max_capacity(capacity)
        .hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
        .build()
        .expect("valid capacity");
    let mut hits = 0u64;
    for &key in keys {
        if cache.get(&key).is_some() {
            hits += 1;
        } else {
            cache.insert(key, ());
        }
    }
    100.0 * hits as f64 / keys.len() as f64
}

#[test]
fn policy_meets_the_recorded_hit_ratio_targets() {
    let dir = support::trace::traces_dir();
    if !dir.join(POINTS[0].0).exists() {
        let message = format!(
            "hit-ratio regression: no traces at {} (expected ../shared/traces next to the checkout)",
            dir.display()
        );
        if std::env::var_os("CI").is_some_and(|ci| ci == "true") {
            panic!("{message}");
        }
        eprintln!("SKIPPED {message}");
        return;
    }
    let mut failures = Vec::new();
    let mut loaded: Option<(&str, Vec<u64>)> = None;
    for (file, capacity, target) in POINTS {
        if loaded.as_ref().is_none_or(|(name, _)| *name != file) {
            let keys = support::trace::load(&dir.join(Path::new(file)))
                .unwrap_or_else(|err| panic!("cannot read {file}: {err}"));
            loaded = Some((file, keys));
        }
        let keys = &loaded.as_ref().expect("just loaded").1;
        let ratio = replay(keys, capacity);
        eprintln!("{file} @ {capacity}: {ratio:.2} % (target {target})");
        if ratio < target {
            failures.push(format!("{file} @ {capacity}: {ratio:.2} % < {target}"));
        }
    }
    assert!(failures.is_empty(), "below target: {failures:?}");
}
