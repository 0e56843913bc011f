//! What each fuzz target checks, as plain functions of the fuzzer's bytes.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line wrappers
//! around these functions, and `tests/fuzz_regressions.rs` runs them on every
//! input kept under `tests/fuzz_inputs/<target>/` (crashes the fuzzer found,
//! plus seeds). So the checks compile and run in every `cargo test`, on
//! stable, without libFuzzer; only the search for new inputs needs
//! `cargo fuzz` (see `fuzz/README.md`).
//!
//! A check fails by panicking, which is how libFuzzer recognises a crash.
//! Inputs are decoded with [`input::Input`], which reads zeros once the bytes
//! run out, so every byte string is a valid (if short) scenario.

pub mod builders;
pub mod cache_ops;
pub mod gcra_ops;
pub mod http_headers;
pub mod input;

/// Every target by name, as `fuzz/fuzz_targets/` and
/// `tests/fuzz_inputs/` name them.
/// A target's check: panics on a violated property.
pub type Check = fn(&[u8]);

pub const TARGETS: &[(&str, Check)] = &[
    ("builders", builders::run),
    ("cache_ops", cache_ops::run),
    ("gcra_ops", gcra_ops::run),
    ("http_headers", http_headers::run),
];
