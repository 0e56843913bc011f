//! The outage, reproduced on loopback and prevented by surgeguard.
//!
//! An online shop went down for 4.5 hours during a sales event: a traffic
//! spike exhausted its web servers and database, failures cascaded, and most
//! users saw 30-second page loads. This example replays that event twice
//! against an axum shop with a small database pool: once as the shop was,
//! once with surgeguard's limits, caches and shedder, and prints the two
//! side by side.
//!
//! ```text
//! cargo run --release --example outage                 # both runs, ~1 minute
//! cargo run --release --example outage -- --help       # every flag
//! cargo run --release --example outage -- --mode protected --spike 20 --json
//! cargo run --release --example outage -- --mode unprotected --serve 8080   # the shop alone
//! ```
//!
//! `--serve PORT` runs only the shop, on 127.0.0.1:PORT, for a load test
//! (`cargo run --release --example loadtest -- --url http://127.0.0.1:PORT/catalogue ...`);
//! it prints what its database can serve per route, the capacity the load
//! test should find, and stops after `--serve-for` seconds.
//!
//! How it is built: `scenario/` is the experiment (the traffic plan, the
//! open-loop client, the shop, the database model, the figures); this file
//! reads flags and prints; `report.rs` draws the HTML report. Only
//! 127.0.0.1 is ever contacted.

mod report;
// The soak test (`examples/soak.rs`) shares the scenario and uses parts
// of it this run does not (database failures, leak checks, a checkout gate).
#[allow(dead_code)]
mod scenario;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};

use scenario::{Mode, Run, Settings};

/// Replays a sales-event traffic spike against an unprotected shop and a
/// shop protected by surgeguard, and compares them.
#[derive(Parser, Debug)]
#[command(name = "outage", version)]
struct Args {
    /// Seconds of traffic per run (the drain afterwards adds up to the
    /// client timeout).
    #[arg(long, default_value_t = 25.0, value_name = "SECONDS")]
    duration: f64,
    /// Requests per second before and after the sales event.
    #[arg(long, default_value_t = 100.0, value_name = "RPS")]
    baseline_rps: f64,
    /// The event's rate as a multiple of the baseline (from 20 % to 80 % of
    /// the run).
    #[arg(long, default_value_t = 10.0, value_name = "FACTOR")]
    spike: f64,
    /// Which shop(s) to run.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    mode: Which,
    /// Print one JSON object with every figure, per mode, on stdout (the
    /// table and progress go to stderr).
    #[arg(long)]
    json: bool,
    /// Where to write the HTML report.
    #[arg(long, value_name = "PATH", default_value = "target/outage-report.html")]
    report: PathBuf,
    /// Seconds after which a client gives up on a request.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    client_timeout: f64,
    /// Run only the shop (`--mode unprotected` or `protected`) on
    /// 127.0.0.1:PORT, for a load test, and send no traffic.
    #[arg(long, value_name = "PORT")]
    serve: Option<u16>,
    /// The database shedder's Gradient limit, MIN..MAX (default 10..64), to
    /// try what `--example loadtest` recommended.
    #[arg(long, value_name = "MIN..MAX")]
    shed_limit: Option<String>,
    /// The shedder queue's capacity (default 256).
    #[arg(long, value_name = "REQUESTS")]
    queue: Option<usize>,
    /// The shedder queue's max_wait in milliseconds (default 250).
    #[arg(long, value_name = "MS")]
    queue_wait_ms: Option<u64>,
    /// With --serve: stop after this many seconds.
    #[arg(long, default_value_t = 3_600, value_name = "SECONDS")]
    serve_for: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Which {
    Unprotected,
    Protected,
    Both,
}

impl Which {
    fn modes(self) -> &'static [Mode] {
        match self {
            Which::Unprotected => &[Mode::Unprotected],
            Which::Protected => &[Mode::Protected],
            Which::Both => &[Mode::Unprotected, Mode::Protected],
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = shedder_limits(&args) {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit()
    }
    if let Some(port) = args.serve {
        return serve(&args, port);
    }
    let settings = match settings(&args) {
        Ok(settings) => settings,
        Err(message) => Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit(),
    };

    // With --json, stdout carries only the JSON.
    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let _ = writeln!(
        out,
        "surgeguard outage: {:.0} s per run, {:.0} req/s baseline, {:.0}x spike ({:.0} req/s) \
         from {:.0} s to {:.0} s, client timeout {:.1} s",
        settings.duration.as_secs_f64(),
        settings.baseline_rps,
        settings.spike,
        settings.peak_rps(),
        0.2 * settings.duration.as_secs_f64(),
        0.8 * settings.duration.as_secs_f64(),
        settings.client_timeout.as_secs_f64(),
    );

    let mut runs = Vec::new();
    for &mode in args.mode.modes() {
        let line = |p: &scenario::client::Progress| progress_line(mode, p);
        match scenario::run(&settings, mode, &line) {
            Ok(run) => {
                debug_assert_eq!(run.summary.accounted(), run.summary.sent);
                runs.push(run)
            }
            Err(error) => {
                eprintln!("\nerror: the {mode} run could not start: {error}");
                return ExitCode::FAILURE;
            }
        }
        eprintln!();
    }

    let _ = writeln!(out, "\n{}", table(&runs));
    match report::write(&args.report, &settings, &runs) {
        Ok(()) => {
            let _ = writeln!(out, "report: {}", args.report.display());
        }
        Err(error) => eprintln!(
            "warning: could not write the report to {}: {error}",
            args.report.display()
        ),
    }
    if args.json {
        println!("{}", scenario::results::to_json(&settings, &runs));
    }
    ExitCode::SUCCESS
}

/// `--shed-limit`, `--queue`, `--queue-wait-ms`: the database shedder's
/// settings for every shop of this run.
fn shedder_limits(args: &Args) -> Result<(), String> {
    let mut limits = scenario::shop::ShedderLimits::default();
    if let Some(range) = &args.shed_limit {
        let bad = || format!("--shed-limit {range:?}: write MIN..MAX, 1 <= MIN <= MAX");
        let (min, max) = range.split_once("..").ok_or_else(bad)?;
        limits.min = min.trim().parse().map_err(|_| bad())?;
        limits.max = max.trim().parse().map_err(|_| bad())?;
        if limits.min == 0 || limits.min > limits.max {
            return Err(bad());
        }
    }
    if let Some(queue) = args.queue {
        if queue == 0 {
            return Err("--queue must be at least 1".to_owned());
        }
        limits.queue = queue;
    }
    if let Some(ms) = args.queue_wait_ms {
        if !(1..=60_000).contains(&ms) {
            return Err("--queue-wait-ms must be 1 to 60000".to_owned());
        }
        limits.max_wait = Duration::from_millis(ms);
    }
    let _ = scenario::shop::SHEDDER_LIMITS.set(limits);
    Ok(())
}

/// `--serve`: the shop alone on loopback until `--serve-for` runs out.
fn serve(args: &Args, port: u16) -> ExitCode {
    let mode = match args.mode {
        Which::Unprotected => Mode::Unprotected,
        Which::Protected => Mode::Protected,
        Which::Both => Args::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                "--serve runs one shop: add --mode unprotected or --mode protected",
            )
            .exit(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let served = runtime.block_on(async {
        let database = scenario::database::Database::new(Default::default());
        let shop = scenario::shop::start_on(mode, database.clone(), None, 1.0, port).await?;
        let address = shop.address;
        println!("the {mode} shop listens on http://{address} (metrics at /metrics)");
        println!("its database's capacity per route (a pool of 8, every connection busy):");
        use scenario::database::Query;
        for (route, query) in [
            ("GET /product/{id}", Query::Product(1)),
            ("GET /catalogue", Query::Catalogue),
            ("GET /search?q=N", Query::Search(1)),
            ("POST /checkout", Query::Checkout),
        ] {
            println!(
                "  {route:<18} {:>6.0} requests/s",
                database.capacity_per_second(query)
            );
        }
        println!("stops after {} s (Ctrl-C stops it sooner)", args.serve_for);
        tokio::time::sleep(Duration::from_secs(args.serve_for)).await;
        let report = database.report();
        let (cost, count) = database.uncontended_cost();
        println!(
            "served: {} queries; the most finished in one second: {}; queries with no contention \
             ({count}) held their connection {:.2} ms on average, a pool capacity of {:.0} queries/s \
             at that cost",
            report.queries,
            report.per_second.iter().map(|s| s.queries).max().unwrap_or(0),
            cost.as_secs_f64() * 1e3,
            report.pool as f64 / cost.as_secs_f64().max(1e-9),
        );
        Ok::<_, std::io::Error>(())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: the shop could not start on port {port}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn settings(args: &Args) -> Result<Settings, String> {
    let seconds = |value: f64, flag: &str| {
        Duration::try_from_secs_f64(value)
            .map_err(|_| format!("--{flag} must be a number of seconds, got {value}"))
    };
    let duration = seconds(args.duration, "duration")?;
    let client_timeout = seconds(args.client_timeout, "client-timeout")?;
    Settings::new(duration, args.baseline_rps, args.spike)
        .and_then(|s| s.with_client_timeout(client_timeout))
        .map_err(|e| e.to_string())
}

/// One line per second on a terminal (rewritten in place), one line per
/// five seconds otherwise.
fn progress_line(mode: Mode, p: &scenario::client::Progress) {
    let terminal = std::io::stderr().is_terminal();
    let whole = p.elapsed.as_secs();
    if !terminal && !whole.is_multiple_of(5) && p.elapsed < p.duration {
        return;
    }
    let line = format!(
        "[{mode:>11}] {:>3}/{} s  sent {:>6}  ok {:>6}  refused {:>5}  timed out {:>6}  open {:>5}",
        whole.min(p.duration.as_secs()),
        p.duration.as_secs(),
        p.sent,
        p.succeeded,
        p.refused,
        p.timed_out,
        p.open,
    );
    if terminal {
        eprint!("\r{line}");
    } else {
        eprintln!("{line}");
    }
}

/// The table's rows: a label and one cell per run.
fn table_rows(runs: &[Run]) -> Vec<(String, Vec<String>)> {
    let row = |label: &str, cell: &dyn Fn(&scenario::results::Summary) -> String| {
        let cells = runs.iter().map(|run| cell(&run.summary)).collect();
        (label.to_owned(), cells)
    };
    let share = |n: u64, of: u64| format!("{n} ({:.1} %)", 100.0 * n as f64 / of.max(1) as f64);
    vec![
        row("requests sent", &|s| s.sent.to_string()),
        row("  succeeded (2xx)", &|s| share(s.succeeded, s.sent)),
        row("  shed (503)", &|s| share(s.shed, s.sent)),
        row("  limited (429)", &|s| share(s.limited, s.sent)),
        row("  timed out", &|s| share(s.timed_out, s.sent)),
        row("  failed otherwise", &|s| share(s.failed, s.sent)),
        row("every request as users saw it, p99", &|s| {
            ms(s.experienced_latency_ms.p99)
        }),
        row("successes, p50", &|s| ms(s.latency_ms.p50)),
        row("successes, p95", &|s| ms(s.latency_ms.p95)),
        row("successes, p99", &|s| ms(s.latency_ms.p99)),
        row("successes, max", &|s| ms(s.latency_ms.max)),
        row("successes before the event, p99", &|s| {
            ms(s.baseline_latency_ms.p99)
        }),
        row("successes during the event, p99", &|s| {
            ms(s.spike_latency_ms.p99)
        }),
        row("checkout success", &|s| {
            format!(
                "{:.1} % of {}",
                100.0 * s.checkout_success_rate,
                s.checkouts
            )
        }),
        row("database queries/s, mean", &|s| {
            format!("{:.0}", s.db_queries_per_second)
        }),
        row("database queries/s, peak", &|s| {
            s.db_peak_queries_per_second.to_string()
        }),
        row("database pool wait, peak", &|s| ms(s.db_peak_pool_wait_ms)),
        row("queries waiting for the pool, peak", &|s| {
            s.db_peak_waiting.to_string()
        }),
        row("saturation >= 0.9 first at", &|s| {
            seconds(s.saturation_onset_s)
        }),
        row("latency > 2x baseline p99 first at", &|s| {
            seconds(s.latency_onset_s)
        }),
    ]
}

fn table(runs: &[Run]) -> String {
    let rows = table_rows(runs);
    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut text = format!("{:label_width$}", "");
    for run in runs {
        text.push_str(&format!("  {:>18}", run.mode.name()));
    }
    for (label, cells) in rows {
        text.push_str(&format!("\n{label:label_width$}"));
        for cell in cells {
            text.push_str(&format!("  {cell:>18}"));
        }
    }
    text
}

/// A moment of the run, or "never".
fn seconds(at: Option<f64>) -> String {
    at.map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"))
}

/// Milliseconds, or seconds from 1 s up.
fn ms(value: f64) -> String {
    if value >= 1_000.0 {
        format!("{:.2} s", value / 1e3)
    } else if value >= 10.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}
