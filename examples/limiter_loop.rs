//! A bare rate-limiter check loop for counting work with `perf stat`, where
//! timings on a shared machine are too noisy to compare (see BENCHMARKS.md,
//! "Rate limiters").
//!
//! ```sh
//! cargo build --release --example limiter_loop
//! for checks in 0 20000000; do
//!   perf stat -e instructions,cycles,L1-dcache-load-misses,cache-misses \
//!     target/release/examples/limiter_loop keyed_1k surgeguard $checks
//! done
//! ```
//!
//! `case` is one of the `limiter` bench's groups (`direct_allowed`,
//! `direct_denied`, `keyed_1k`, `keyed_1m`), built the same way: the same
//! quotas, the same key sequence, keyed tables populated before the loop,
//! surgeguard reading quanta's TSC as governor does. `limiter` is
//! `governor` or `surgeguard`. The loop makes `checks` checks on one thread;
//! a run with 0 checks does all the setup and is the baseline to subtract,
//! so `(count(N) − count(0)) / N` is the work per check.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Instant;

use surgeguard::limit::{Gcra, KeyedGcra, Quota};

#[path = "../benches/support/mod.rs"]
mod support;

use support::rng::{mix64, SplitMix64};
use support::tsc_clock::TscClock;

fn nonzero(n: u32) -> Result<NonZeroU32, String> {
    NonZeroU32::new(n).ok_or_else(|| "a zero count".to_string())
}

/// A limiter as the bench drives it: through a trait object, so that each
/// limiter's check is compiled once, into its own `allow`, whatever this
/// loop looks like (with closures, inlining into the loop differed from one
/// build to the next, and governor's count with it: 56 or 97 instructions).
trait Limiter {
    fn allow(&self, key: u64) -> bool;
}

impl Limiter for governor::DefaultDirectRateLimiter {
    #[inline]
    fn allow(&self, _key: u64) -> bool {
        self.check().is_ok()
    }
}

impl<C: surgeguard::clock::Clock> Limiter for Gcra<C> {
    #[inline]
    fn allow(&self, _key: u64) -> bool {
        self.check().is_allowed()
    }
}

impl Limiter for governor::DefaultKeyedRateLimiter<u64> {
    #[inline]
    fn allow(&self, key: u64) -> bool {
        self.check_key(&key).is_ok()
    }
}

impl Limiter for KeyedGcra<u64> {
    #[inline]
    fn allow(&self, key: u64) -> bool {
        self.check(&key).is_allowed()
    }
}

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
    // The bench's quotas: far above the loop's rate, or two per hour.
    let (count, burst) = if allowed {
        (1_000_000_000, 1_000_000_000)
    } else {
        (2, 2)
    };
    let limiter: Box<dyn Limiter> = match name {
        "governor" => {
            let quota = if allowed {
                governor::Quota::per_second(nonzero(count)?).allow_burst(nonzero(burst)?)
            } else {
                governor::Quota::per_hour(nonzero(count)?)
            };
            Box::new(governor::RateLimiter::direct(quota))
        }
        "surgeguard" => {
            let quota = if allowed {
                Quota::per_second(count).and_then(|quota| quota.burst(burst))
            } else {
                Quota::per_hour(count)
            }
            .map_err(|e| e.to_string())?;
            Box::new(
                Gcra::direct(quota)
                    .clock(TscClock::new())
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
        other => return Err(format!("unknown limiter {other}")),
    };
    // Spends the hourly quota.
    let _ = (limiter.allow(0), limiter.allow(0));
    run(&*limiter, &[0], checks);
    Ok(())
}

fn keyed(name: &str, distinct: u64, max_keys: usize, checks: u64) -> Result<(), String> {
    let mut rng = SplitMix64::new(0x1157_c0de);
    let keys: Vec<u64> = (0..1 << 22)
        .map(|_| mix64(rng.next_u64() % distinct))
        .collect();
    let limiter: Box<dyn Limiter> = match name {
        "governor" => Box::new(governor::RateLimiter::<u64, _, _>::keyed(
            governor::Quota::per_second(nonzero(1_000)?),
        )),
        "surgeguard" => {
            let quota = Quota::per_second(1_000).map_err(|e| e.to_string())?;
            let limiter: KeyedGcra<u64> = Gcra::keyed(quota)
                .max_keys(max_keys)
                .clock(TscClock::new())
                .build()
                .map_err(|e| e.to_string())?;
            Box::new(limiter)
        }
        other => return Err(format!("unknown limiter {other}")),
    };
    for rank in 0..distinct {
        black_box(limiter.allow(mix64(rank)));
    }
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
