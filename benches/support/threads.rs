//! Thread counts for the multi-thread benches, overridable with the
//! `SURGEGUARD_BENCH_THREADS` environment variable: a comma-separated list of
//! positive integers, e.g. `SURGEGUARD_BENCH_THREADS=1,4,8,16`.

use std::env;

/// The environment variable read by [`thread_counts`].
pub const THREAD_COUNTS_VAR: &str = "SURGEGUARD_BENCH_THREADS";

/// The thread counts to bench: those listed in `SURGEGUARD_BENCH_THREADS`
/// (in the order given, repeats dropped), or `default` when it is unset.
///
/// # Panics
///
/// When the variable is set but is not valid Unicode, is empty, or holds an
/// entry that is not a positive integer; the message names the variable and
/// the offending value.
pub fn thread_counts(default: &[usize]) -> Vec<usize> {
    match env::var(THREAD_COUNTS_VAR) {
        Err(env::VarError::NotPresent) => default.to_vec(),
        Err(env::VarError::NotUnicode(raw)) => {
            panic!("{THREAD_COUNTS_VAR}={raw:?} is not valid Unicode; expected e.g. `1,4,8,16`")
        }
        Ok(value) => parse(&value),
    }
}

fn parse(value: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim();
        let count = match entry.parse::<usize>() {
            Ok(count) if count > 0 => count,
            _ => panic!(
                "{THREAD_COUNTS_VAR}={value:?}: {entry:?} is not a positive thread count; \
                 expected a comma-separated list of positive integers, e.g. `1,4,8,16`"
            ),
        };
        if !counts.contains(&count) {
            counts.push(count);
        }
    }
    counts
}
