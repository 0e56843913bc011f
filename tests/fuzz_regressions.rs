//! The fuzz targets' checks, run by `cargo test`: on every input kept under
//! `tests/fuzz_inputs/<target>/` (each crash the fuzzer found, kept after the
//! fix, plus a few seeds) and on a fixed stream of pseudo-random inputs, so
//! the checks themselves never rot between fuzzing campaigns. Fuzzing proper
//! (coverage-guided, minutes to hours) is `cargo fuzz run <target>`; see
//! `fuzz/README.md`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "fuzz_checks/mod.rs"]
mod fuzz_checks;
#[path = "models/mod.rs"]
mod models;

use fuzz_checks::TARGETS;

fn kept_inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_inputs")
        .join(target);
    // A target with nothing kept yet has no directory (git keeps no empty
    // ones).
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_none_or(|ext| ext != "md"))
        .collect();
    files.sort();
    files
}

/// Runs `check` on `input`; a panic becomes a line naming the input.
fn failure(target: &str, label: &str, check: fn(&[u8]), input: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| check(input)))
        .err()
        .map(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            format!("{target} {label}: {message}")
        })
}

#[test]
fn every_kept_input_passes_its_check() {
    let mut failures = Vec::new();
    let mut total = 0;
    for &(target, check) in TARGETS {
        for path in kept_inputs(target) {
            let input = std::fs::read(&path).expect("readable input");
            total += 1;
            failures.extend(failure(target, &path.display().to_string(), check, &input));
        }
    }
    assert!(total > 0, "no kept inputs found under tests/fuzz_inputs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// xorshift64*: a fixed stream, so a failure here reproduces by its index.
fn pseudo_random_input(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..length)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn checks_pass_on_a_fixed_stream_of_random_inputs() {
    let mut failures = Vec::new();
    for &(target, check) in TARGETS {
        for seed in 0..300u64 {
            let input = pseudo_random_input(seed, 16 + (seed as usize * 7) % 600);
            failures.extend(failure(target, &format!("seed {seed}"), check, &input));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
