//! Fuzz target `gcra_ops`: the check lives in `tests/fuzz_checks/gcra_ops.rs`, so
//! `cargo test` replays every kept input through the same code.
#![no_main]
#![allow(dead_code)] // each target uses one check of the shared modules

#[path = "../../tests/fuzz_checks/mod.rs"]
mod fuzz_checks;
#[path = "../../tests/models/mod.rs"]
mod models;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::gcra_ops::run(data));
