//! Memory under a key flood: 10,000,000 distinct `u64` keys, each checked
//! once, through surgeguard's keyed GCRA (`max_keys` 1,000,000 and 100,000)
//! and governor's keyed limiter (dashmap; it keeps every key until the caller
//! runs `retain_recent()`, which this flood never does); then both again
//! keyed by client address (`IpAddr`, the key a service limits by, here
//! IPv6 addresses: 17 bytes where a `u64` takes 8).
//!
//! Each limiter runs in a fresh child process (this example re-executes
//! itself with `--child NAME`), and reports the growth of its resident set
//! (`/proc/self/statm`) after 1, 2, 5 and 10 million keys, the time per
//! check in each stretch between those points (a bounded table should cost
//! the same at 10M offered keys as at 1M), and the keys it tracks at the
//! end. The clock is real (each crate's default) and the quota 1,000 per
//! second per key, so a key's bucket is full again 1 ms after its check:
//! surgeguard reclaims such idle keys as new ones need room, governor keeps
//! them all. The `_hourly` rows use one per hour instead: every key stays
//! active, so surgeguard's full table refuses new keys (`WhenFull`), and
//! governor still keeps them all.
//!
//! Run: `cargo run --release --example limiter_memory` (Linux only: reads
//! /proc; about a minute).

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::process::{Command, ExitCode};

use surgeguard::limit::{Gcra, Quota};

const FLOOD: u64 = 10_000_000;
const CHECKPOINTS: [u64; 4] = [1_000_000, 2_000_000, 5_000_000, 10_000_000];
const LIMITERS: [&str; 8] = [
    "governor",
    "surgeguard_1m",
    "surgeguard_100k",
    "governor_hourly",
    "surgeguard_1m_hourly",
    "surgeguard_100k_hourly",
    "governor_ip",
    "surgeguard_1m_ip",
];

/// Resident set size in bytes, from `/proc/self/statm` (second field, pages).
fn resident_bytes() -> Result<u64, String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|e| format!("/proc/self/statm: {e}"))?;
    let pages: u64 = statm
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or("no resident field in /proc/self/statm")?;
    // Every Linux target this runs on uses 4 KiB pages.
    Ok(pages * 4096)
}

/// Keys spread over the whole `u64` range (splitmix64's finaliser is a
/// bijection, so they stay distinct).
fn key(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A distinct IPv6 address per key: the key in the low 64 bits of a
/// documentation prefix (`2001:db8::/32`).
fn address(key: u64) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(key)))
}

/// Floods `check` and prints two lines per checkpoint (growth since
/// `before`, read before the limiter was built; nanoseconds per check since
/// the last checkpoint), then the tracked keys.
fn flood(before: u64, check: impl Fn(u64), tracked: impl Fn() -> usize) -> Result<(), String> {
    let mut next = 0;
    for checkpoint in CHECKPOINTS {
        let (from, start) = (next, std::time::Instant::now());
        while next < checkpoint {
            check(key(next));
            next += 1;
        }
        let nanos = start.elapsed().as_nanos() as f64 / (checkpoint - from) as f64;
        println!("NS {checkpoint} {nanos:.0}");
        println!(
            "RSS {checkpoint} {}",
            resident_bytes()?.saturating_sub(before)
        );
    }
    println!("TRACKED {}", tracked());
    Ok(())
}

fn child(name: &str) -> Result<(), String> {
    let before = resident_bytes()?;
    let count = NonZeroU32::new(1_000).ok_or("zero")?;
    let hourly = name.ends_with("_hourly");
    let quota = if hourly {
        Quota::per_hour(1)
    } else {
        Quota::per_second(1_000)
    }
    .map_err(|e| e.to_string())?;
    match name.trim_end_matches("_hourly") {
        "governor" => {
            let theirs = if hourly {
                governor::Quota::per_hour(NonZeroU32::MIN)
            } else {
                governor::Quota::per_second(count)
            };
            let limiter = governor::RateLimiter::keyed(theirs);
            flood(
                before,
                |key| {
                    let _ = black_box(limiter.check_key(&key));
                },
                || limiter.len(),
            )
        }
        "governor_ip" => {
            let limiter = governor::RateLimiter::keyed(governor::Quota::per_second(count));
            flood(
                before,
                |key| {
                    let _ = black_box(limiter.check_key(&address(key)));
                },
                || limiter.len(),
            )
        }
        "surgeguard_1m_ip" => {
            let limiter = Gcra::keyed(quota)
                .max_keys(1_000_000)
                .build()
                .map_err(|e| e.to_string())?;
            flood(
                before,
                |key| {
                    let _ = black_box(limiter.check(&address(key)));
                },
                || limiter.tracked_keys(),
            )
        }
        "surgeguard_1m" | "surgeguard_100k" => {
            let max_keys = if name.starts_with("surgeguard_1m") {
                1_000_000
            } else {
                100_000
            };
            let limiter = Gcra::keyed(quota)
                .max_keys(max_keys)
                .build()
                .map_err(|e| e.to_string())?;
            flood(
                before,
                |key| {
                    let _ = black_box(limiter.check(&key));
                },
                || limiter.tracked_keys(),
            )
        }
        other => Err(format!("unknown limiter {other:?}")),
    }
}

/// What one child reported: RSS growth and ns per check per checkpoint,
/// and the keys tracked at the end.
type ChildReport = (Vec<u64>, Vec<u64>, u64);

/// Runs one child and reads its report.
fn run_child(name: &str) -> Result<ChildReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let output = Command::new(exe)
        .args(["--child", name])
        .output()
        .map_err(|e| format!("cannot start child for {name}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "child for {name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let field = |line: &str, prefix: &str| -> Option<u64> {
        line.strip_prefix(prefix)?
            .split_ascii_whitespace()
            .last()?
            .parse()
            .ok()
    };
    let growth: Vec<u64> = stdout.lines().filter_map(|l| field(l, "RSS ")).collect();
    let nanos: Vec<u64> = stdout.lines().filter_map(|l| field(l, "NS ")).collect();
    let tracked = stdout
        .lines()
        .find_map(|l| field(l, "TRACKED "))
        .ok_or_else(|| format!("child for {name} reported no tracked keys"))?;
    Ok((growth, nanos, tracked))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, name] = args.as_slice() {
        if flag == "--child" {
            return match child(name) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("limiter_memory: {message}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    println!(
        "{FLOOD} distinct keys (u64, or IPv6 addresses for *_ip), one check each, 1,000/s per key (*_hourly: 1/hour); one fresh process per limiter"
    );
    println!();
    println!("| limiter | RSS growth MiB after 1M / 2M / 5M / 10M keys | ns per check in 0-1M / 1-2M / 2-5M / 5-10M | tracked keys | bytes per tracked key |");
    println!("|---|---|---|---:|---:|");
    for name in LIMITERS {
        let (growth, nanos, tracked) = match run_child(name) {
            Ok(result) => result,
            Err(message) => {
                eprintln!("limiter_memory: {message}");
                return ExitCode::FAILURE;
            }
        };
        let mib: Vec<String> = growth
            .iter()
            .map(|bytes| format!("{:.1}", *bytes as f64 / (1 << 20) as f64))
            .collect();
        let last = growth.last().copied().unwrap_or(0);
        let nanos: Vec<String> = nanos.iter().map(u64::to_string).collect();
        println!(
            "| {name} | {} | {} | {tracked} | {:.1} |",
            mib.join(" / "),
            nanos.join(" / "),
            last as f64 / tracked.max(1) as f64
        );
    }
    ExitCode::SUCCESS
}
