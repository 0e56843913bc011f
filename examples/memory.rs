//! Memory per entry at 1,000,000 `u64 -> u64` entries (capacity 1,000,000,
//! 1,000,000 distinct keys inserted), for surgeguard, moka and quick_cache.
//!
//! Measured as growth of the process's resident set (`VmRSS` in
//! `/proc/self/status`) from just before the cache is built to just after the
//! last insert, so it counts everything the cache allocated and touched,
//! including allocator overhead and spare table capacity. Peak RSS growth
//! (`VmHWM`) is shown too: it includes transient copies during table growth.
//!
//! Each cache is measured in a fresh child process (this example re-executes
//! itself with `--child NAME`), so one cache's freed-but-retained heap cannot
//! flatter or penalise the next.
//!
//! Run: `cargo run --release --example memory` (Linux only: reads /proc).

use std::hint::black_box;
use std::process::{Command, ExitCode};

#[path = "../benches/support/mod.rs"]
mod support;

use support::adapters::{self, ConcurrentCache, Kind};
use support::rng::mix64;

const ENTRIES: usize = 1_000_000;

/// What a child reports, one line on stdout.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    rss_growth_bytes: u64,
    peak_growth_bytes: u64,
    resident_entries: usize,
}

impl Measurement {
    fn to_line(self) -> String {
        format!(
            "MEASUREMENT {} {} {}",
            self.rss_growth_bytes, self.peak_growth_bytes, self.resident_entries
        )
    }

    fn from_output(stdout: &str) -> Option<Measurement> {
        let line = stdout.lines().find(|l| l.starts_with("MEASUREMENT "))?;
        let mut fields = line.split_ascii_whitespace().skip(1).map(str::parse::<u64>);
        Some(Measurement {
            rss_growth_bytes: fields.next()?.ok()?,
            peak_growth_bytes: fields.next()?.ok()?,
            resident_entries: fields.next()?.ok()? as usize,
        })
    }
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn proc_status_bytes(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("no {field} in /proc/self/status"))
}

fn fill<C: ConcurrentCache>(build: impl FnOnce() -> C) -> Result<Measurement, String> {
    let rss_before = proc_status_bytes("VmRSS")?;
    let peak_before = proc_status_bytes("VmHWM")?;
    let cache = build();
    for i in 0..ENTRIES as u64 {
        cache.insert(mix64(i), i);
    }
    cache.sync();
    let rss_after = proc_status_bytes("VmRSS")?;
    // The kernel updates VmHWM lazily, so it can trail the VmRSS just read.
    let peak_after = proc_status_bytes("VmHWM")?.max(rss_after);
    let measurement = Measurement {
        rss_growth_bytes: rss_after.saturating_sub(rss_before),
        peak_growth_bytes: peak_after.saturating_sub(peak_before),
        resident_entries: cache.len(),
    };
    black_box(&cache);
    Ok(measurement)
}

fn child(name: &str) -> ExitCode {
    let Some(kind) = Kind::from_name(name) else {
        eprintln!("memory: unknown cache {name:?}");
        return ExitCode::from(2);
    };
    let result = match kind {
        Kind::Surgeguard => fill(|| adapters::surgeguard(ENTRIES)),
        Kind::Moka => fill(|| adapters::moka(ENTRIES)),
        Kind::QuickCache => fill(|| adapters::quick_cache(ENTRIES)),
    };
    match result {
        Ok(measurement) => {
            println!("{}", measurement.to_line());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("memory: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_child(kind: Kind) -> Result<Measurement, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let output = Command::new(exe)
        .args(["--child", kind.name()])
        .output()
        .map_err(|e| format!("cannot start child for {}: {e}", kind.name()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "child for {} failed ({}): {}",
            kind.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Measurement::from_output(&stdout)
        .ok_or_else(|| format!("child for {} printed no measurement", kind.name()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, name] = args.as_slice() {
        if flag == "--child" {
            return child(name);
        }
    }
    if !args.is_empty() {
        eprintln!("usage: memory   (runs one child process per cache)");
        return ExitCode::from(2);
    }

    let mut results = Vec::new();
    for kind in Kind::ALL {
        match run_child(kind) {
            Ok(measurement) => results.push((kind, measurement)),
            Err(message) => {
                eprintln!("memory: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let per_entry = |m: &Measurement| m.rss_growth_bytes as f64 / m.resident_entries.max(1) as f64;
    let baseline = results
        .iter()
        .find(|(kind, _)| *kind == Kind::QuickCache)
        .map(|(_, m)| per_entry(m))
        .unwrap_or(f64::NAN);

    println!(
        "{ENTRIES} distinct u64 -> u64 inserts, capacity {ENTRIES}, one fresh process per cache"
    );
    println!();
    println!("| cache | resident entries | RSS growth MiB | bytes/entry | vs quick_cache | peak RSS growth MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, m) in &results {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2}x | {:.1} |",
            kind.name(),
            m.resident_entries,
            m.rss_growth_bytes as f64 / (1 << 20) as f64,
            per_entry(m),
            per_entry(m) / baseline,
            m.peak_growth_bytes as f64 / (1 << 20) as f64,
        );
    }
    println!();
    println!("bytes/entry = RSS growth / resident entries (16 bytes of it are the key and value).");
    ExitCode::SUCCESS
}
