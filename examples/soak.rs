//! Soak test: the protected shop of the outage example under sustained
//! overload for minutes, while its database fails now and then and the
//! Redis behind its fleet-wide checkout limit is killed and restarted.
//!
//! ```sh
//! cargo run --release --features redis --example soak              # 10 minutes
//! cargo run --release --features redis --example soak -- --minutes 2
//! ```
//!
//! One shop runs for the whole soak; the crowd comes in cycles of 30 s (the
//! outage example's traffic: a 10x spike over the middle 60 % of each cycle,
//! abusive scrapers, checkouts), each followed by a 3 s pause. What each
//! cycle does to the shop:
//!
//! * every third cycle, the database is down for 5 s in the middle of the
//!   spike (queries fail after a 20 ms connect timeout): the product cache
//!   serves stale rows, the response cache stale pages, the rest get 503;
//! * half-way through the soak, `redis-server` is killed mid-cycle and
//!   restarted 5 s later: checkouts fall back to the local limit and come
//!   back to Redis when it does.
//!
//! After each cycle's pause it checks what must hold for a service to run for
//! weeks: every request was answered (no client timeout, no dropped
//! connection), no shedder permit and no cache load is left behind, and
//! resident memory does not grow: over the last third of the cycles it may
//! rise by at most 5 % or 4 MB (a leak grows every cycle), and it must end
//! within twice the second cycle's. A one-off rise is not a leak: the crowd
//! runs in this process, so a latency blip on the shared machine (more
//! requests open at once, each connection with its buffers) lifts the
//! allocator's high-water mark, which it returns only in part. It prints one
//! line per cycle and exits with status 1 if any check failed. `redis-server` must be installed (`apt-get install
//! redis-server`); it runs on a free loopback port and is removed at exit.

// The outage scenario is shared with `examples/outage`; this run uses
// only part of it.
#[allow(dead_code)]
#[path = "outage/scenario/mod.rs"]
mod scenario;

#[path = "../tests/redis_support/mod.rs"]
mod redis_support;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use scenario::database::{Database, DatabaseSettings};
use scenario::shop::{self, CheckoutGate};
use scenario::{client, traffic, Mode, Run, Settings};
use surgeguard::limit::Quota;
use surgeguard::redis::{Fallback, RedisGcra, RedisLimiter};

/// A cycle of traffic, and the pause after it.
const CYCLE: Duration = Duration::from_secs(30);
const PAUSE: Duration = Duration::from_secs(3);
/// The database's outage within a failing cycle (from 40 % of it), and
/// Redis's (from 30 % of the middle cycle).
const DATABASE_DOWN: Duration = Duration::from_secs(5);
const REDIS_DOWN: Duration = Duration::from_secs(5);
/// Memory may grow this much across the last third of the cycles
/// (fraction, or bytes, whichever is larger): allocator noise, not a leak.
const RSS_SLACK: f64 = 0.05;
const RSS_SLACK_BYTES: u64 = 4 << 20;
/// And it must end within this multiple of the second cycle's.
const RSS_CEILING: u64 = 2;

#[derive(Parser, Debug)]
#[command(
    about = "Soak the protected shop: sustained overload, database failures, a Redis restart"
)]
struct Flags {
    /// How long to soak, in minutes (1 to 60).
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Requests per second outside the spikes.
    #[arg(long, default_value_t = 300.0)]
    baseline_rps: f64,
    /// The spike's rate, as a multiple of the baseline.
    #[arg(long, default_value_t = 10.0)]
    spike: f64,
}

/// What one cycle showed.
struct Cycle {
    run: Run,
    database_failed: bool,
    redis_restarted: bool,
    refused_by_database: u64,
    /// Product rows served stale since the shop started.
    stale_served: u64,
    permits_in_use: u32,
    loads_in_flight: usize,
    rss: u64,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if !(1..=60).contains(&flags.minutes) {
        eprintln!("--minutes must be 1 to 60, got {}", flags.minutes);
        return ExitCode::from(2);
    }
    let settings = match Settings::new(CYCLE, flags.baseline_rps, flags.spike) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let Some(redis) = redis_support::start("soak") else {
        return ExitCode::from(2);
    };
    let cycles = (flags.minutes * 60 / (CYCLE + PAUSE).as_secs()).max(3) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let redis = Arc::new(Mutex::new(redis));
    let outcome = runtime.block_on(soak(&settings, cycles, redis));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak could not run: {error}");
            ExitCode::from(2)
        }
    }
}

async fn soak(
    settings: &Settings,
    cycles: usize,
    redis: Arc<Mutex<redis_support::RedisServer>>,
) -> Result<bool, Box<dyn std::error::Error>> {
    let url = redis.lock().unwrap().url();
    // A fleet-wide limit on orders: 200/s with bursts of 100, kept in Redis.
    // This process is one of four servers, so while Redis is away it
    // enforces a quarter alone.
    let orders = Arc::new(
        RedisGcra::builder(&url, Quota::per_second(200)?.burst(100)?)
            .prefix("soak:orders:")
            .on_unavailable(Fallback::Local { share: 0.25 })
            .timeout(Duration::from_millis(50))
            .build()
            .await?,
    );
    let database = Database::new(DatabaseSettings::default());
    let shop = shop::start_with(
        Mode::Protected,
        database.clone(),
        Some(checkout_gate(orders.clone())),
        1.0,
    )
    .await?;
    println!(
        "soak: {cycles} cycles of {} s (+{} s pause), {} req/s baseline, {}x spikes; shop at {}",
        CYCLE.as_secs(),
        PAUSE.as_secs(),
        settings.baseline_rps,
        settings.spike,
        shop.address
    );
    println!(
        "{:>5} {:>7} {:>6} {:>6} {:>6} {:>6} {:>8} {:>7} {:>7} {:>9} {:>7} {:>7}  events",
        "cycle",
        "sent",
        "ok%",
        "shed",
        "429",
        "lost",
        "p99 ms",
        "stale",
        "db err",
        "fallback",
        "leaks",
        "rss MB"
    );
    let mut seen = Vec::with_capacity(cycles);
    for index in 0..cycles {
        let database_failed = index % 3 == 2;
        let redis_restarted = index == cycles / 2;
        let mut cycle_settings = settings.clone();
        cycle_settings.seed = settings.seed.wrapping_add(index as u64);
        let plan = traffic::plan(&cycle_settings);
        let refused_before = database.refused();
        let disturbance = tokio::spawn(disturb(
            database.clone(),
            redis.clone(),
            database_failed,
            redis_restarted,
        ));
        let played = client::play(&cycle_settings, &plan, &shop, &|_| {}).await;
        disturbance.await?;
        let run = Run::new(
            Mode::Protected,
            &cycle_settings,
            &plan,
            &played,
            database.report(),
            shop.stats(),
        );
        drop((plan, played));
        tokio::time::sleep(PAUSE).await;
        let cycle = Cycle {
            database_failed,
            redis_restarted,
            refused_by_database: database.refused() - refused_before,
            stale_served: run_stale(&run),
            permits_in_use: shop.permits_in_use(),
            loads_in_flight: shop.loads_in_flight(),
            rss: resident_bytes(),
            run,
        };
        let stale_before = seen
            .last()
            .map_or(0, |previous: &Cycle| previous.stale_served);
        print_cycle(index, &cycle, stale_before, &orders);
        seen.push(cycle);
    }
    Ok(verdict(&seen))
}

/// The checkout gate: one Redis decision per order (or a local one while
/// Redis is away).
fn checkout_gate(orders: Arc<RedisLimiter>) -> CheckoutGate {
    Arc::new(move || {
        let orders = orders.clone();
        Box::pin(async move {
            match orders.check("fleet").await {
                Ok(decision) if decision.is_denied() => decision.retry_after(),
                Ok(_) => None,
                // The fallback answers when Redis cannot; an error here is
                // a configuration problem, so let the order through.
                Err(_) => None,
            }
        })
    })
}

/// Takes the database down and/or restarts Redis during the cycle.
async fn disturb(
    database: Database,
    redis: Arc<Mutex<redis_support::RedisServer>>,
    database_fails: bool,
    redis_restarts: bool,
) {
    let started = Instant::now();
    if redis_restarts {
        tokio::time::sleep(CYCLE.mul_f64(0.3)).await;
        redis.lock().unwrap().kill();
        tokio::time::sleep(REDIS_DOWN).await;
        let redis = redis.clone();
        tokio::task::spawn_blocking(move || redis.lock().unwrap().restart())
            .await
            .expect("redis-server restarts");
    }
    if database_fails {
        let at = CYCLE.mul_f64(0.4);
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        database.set_down(true);
        tokio::time::sleep(DATABASE_DOWN).await;
        database.set_down(false);
    }
}

fn print_cycle(index: usize, cycle: &Cycle, stale_before: u64, orders: &RedisLimiter) {
    let summary = &cycle.run.summary;
    let lost = summary.timed_out + summary.failed;
    let ok = 100.0 * summary.succeeded as f64 / summary.sent.max(1) as f64;
    let stale = cycle.stale_served - stale_before;
    let mut events = Vec::new();
    if cycle.database_failed {
        events.push("database down 5 s");
    }
    if cycle.redis_restarted {
        events.push("redis killed, restarted 5 s later");
    }
    println!(
        "{:>5} {:>7} {:>6.1} {:>6} {:>6} {:>6} {:>8.0} {:>7} {:>7} {:>9} {:>7} {:>7.1}  {}",
        index + 1,
        summary.sent,
        ok,
        summary.shed,
        summary.limited,
        lost,
        summary.experienced_latency_ms.p99,
        stale,
        cycle.refused_by_database,
        orders.stats().fallback_decisions,
        u64::from(cycle.permits_in_use) + cycle.loads_in_flight as u64,
        cycle.rss as f64 / 1048576.0,
        events.join(", ")
    );
}

/// Checks every cycle; prints what failed.
fn verdict(cycles: &[Cycle]) -> bool {
    let mut failures = Vec::new();
    for (index, cycle) in cycles.iter().enumerate() {
        let summary = &cycle.run.summary;
        if summary.timed_out + summary.failed > 0 {
            failures.push(format!(
                "cycle {}: {} requests timed out and {} got no answer",
                index + 1,
                summary.timed_out,
                summary.failed
            ));
        }
        if cycle.permits_in_use > 0 || cycle.loads_in_flight > 0 {
            failures.push(format!(
                "cycle {}: after the pause {} shedder permits and {} cache loads were still held",
                index + 1,
                cycle.permits_in_use,
                cycle.loads_in_flight
            ));
        }
        if summary.refusals_without_retry_after > 0 {
            failures.push(format!(
                "cycle {}: {} refusals without Retry-After",
                index + 1,
                summary.refusals_without_retry_after
            ));
        }
    }
    // The first cycle warms caches, tables and the allocator: measure from
    // the second.
    let reference = cycles[1.min(cycles.len() - 1)].rss;
    let last_third = &cycles[cycles.len() - cycles.len().div_ceil(3)..];
    let (third_start, end) = (last_third[0].rss, cycles[cycles.len() - 1].rss);
    let growth_allowed = ((third_start as f64 * RSS_SLACK) as u64).max(RSS_SLACK_BYTES);
    if end > third_start + growth_allowed {
        failures.push(format!(
            "resident memory grew from {:.1} MB to {:.1} MB over the last third (allowed {:.1} MB more)",
            mb(third_start),
            mb(end),
            mb(growth_allowed)
        ));
    }
    if end > reference * RSS_CEILING {
        failures.push(format!(
            "resident memory ended at {:.1} MB, over {RSS_CEILING}x the second cycle's {:.1} MB",
            mb(end),
            mb(reference)
        ));
    }
    let peak = cycles.iter().map(|cycle| cycle.rss).max().unwrap_or(0);
    let answered: u64 = cycles.iter().map(|cycle| cycle.run.summary.sent).sum();
    if failures.is_empty() {
        println!(
            "PASS: {answered} requests, all answered; no permit or load left behind; memory {:.1} MB at cycle 2, {:.1} MB at the start of the last third, {:.1} MB at the end, {:.1} MB at the peak",
            mb(reference),
            mb(third_start),
            mb(end),
            mb(peak)
        );
        true
    } else {
        for failure in &failures {
            println!("FAIL: {failure}");
        }
        false
    }
}

fn run_stale(run: &Run) -> u64 {
    run.protection
        .as_ref()
        .map_or(0, |protection| protection.product_stale_served)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Resident memory of this process (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}
