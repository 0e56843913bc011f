//! A bare rate-limiter check loop for counting work with `perf stat`, where
//! timings on a shared machine are too noisy to compare (see BENCHMARKS.md,
//! "Rate limiters").
//!
//! ```sh
//! # one codegen unit, so that governor's check always gets its best code
//! # (with 16, rustc sometimes leaves its CAS loop out of line)
//! cargo build --release --config 'profile.release.package.surgeguard.codegen-units=1' \
//!   --example limiter_loop
//! for checks in 0 20000000; do
//!   perf stat -e instructions,cycles,L1-dcache-load-misses,cache-misses \
//!     target/release/examples/limiter_loop keyed_1k surgeguard $checks
//! done
//! ```
//!
//! `case` is one of the `limiter` bench's groups (`direct_allowed`,
//! `direct_denied`, `keyed_1k`, `keyed_1m`), built from the same parts
//! (`benches/support/limiters.rs`): the same adapters, quotas and key
//! sequence, keyed tables populated before the loop, surgeguard reading
//! quanta's TSC as governor does. `limiter` is
//! `governor` or `surgeguard`. The loop makes `checks` checks on one thread;
//! a run with 0 checks does all the setup and is the baseline to subtract,
//! so `(count(N) − count(0)) / N` is the work per check.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use surgeguard::limit::{Gcra, KeyedGcra};

#[path = "../benches/support/mod.rs"]
mod support;

use support::limiters::{always_allowing, key_sequence, per_key, populate, two_per_hour, Limiter};
use support::tsc_clock::TscClock;

/// `checks` checks of `keys` in turn; prints the time per check.
fn run(limiter: &dyn Limiter, keys: &[u64], checks: u64) {
    let started = Instant::now();
    let mut allowed = 0u64;
    let mut position = 0;
    for _ in 0..checks {
        allowed += u64::from(black_box(limiter.allow(keys[position])));
        position += 1;
        if position == keys.len() {
            position = 0;
        }
    }
    if checks > 0 {
        let nanos = started.elapsed().as_nanos() as f64 / checks as f64;
        eprintln!("{nanos:.1} ns per check, {allowed} of {checks} allowed");
    }
}

fn direct(name: &str, allowed: bool, checks: u64) -> Result<(), String> {
    let (theirs, ours) = if allowed {
        always_allowing()
    } else {
        two_per_hour()
    };
    let limiter: Box<dyn Limiter> = match name {
        "governor" => Box::new(governor::RateLimiter::direct(theirs)),
        "surgeguard" => Box::new(
            Gcra::direct(ours)
                .clock(TscClock::new())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown limiter {other}")),
    };
    // Spends the hourly quota.
    let _ = (limiter.allow(0), limiter.allow(0));
    run(&*limiter, &[0], checks);
    Ok(())
}

fn keyed(name: &str, distinct: u64, max_keys: usize, checks: u64) -> Result<(), String> {
    let keys = key_sequence(distinct);
    let (theirs, ours) = per_key();
    let limiter: Box<dyn Limiter> = match name {
        "governor" => Box::new(governor::RateLimiter::<u64, _, _>::keyed(theirs)),
        "surgeguard" => {
            let limiter: KeyedGcra<u64> = Gcra::keyed(ours)
                .max_keys(max_keys)
                .clock(TscClock::new())
                .build()
                .map_err(|e| e.to_string())?;
            Box::new(limiter)
        }
        other => return Err(format!("unknown limiter {other}")),
    };
    populate(&*limiter, distinct);
    run(&*limiter, &keys, checks);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(case), Some(limiter)) = (args.first(), args.get(1)) else {
        eprintln!("usage: limiter_loop CASE LIMITER [CHECKS]");
        return ExitCode::FAILURE;
    };
    let checks = match args.get(2).map(|n| n.parse::<u64>()) {
        None => 20_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("CHECKS: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match case.as_str() {
        "direct_allowed" => direct(limiter, true, checks),
        "direct_denied" => direct(limiter, false, checks),
        "keyed_1k" => keyed(limiter, 1_000, 1_250, checks),
        "keyed_1m" => keyed(limiter, 1_000_000, 1_250_000, checks),
        other => Err(format!("unknown case {other}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
