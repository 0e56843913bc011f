//! Load-test your own service: find its knee, get the settings that
//! protect it.
//!
//! ```text
//! cargo run --release --example loadtest -- \
//!     --url http://127.0.0.1:8080/search?q=1 --rate 100..2000 --steps 20 --step-duration 10s
//! cargo run --release --example loadtest -- --help      # every flag
//! ```
//!
//! An open-loop client (`surgeguard::loadtest`) sends each request when it
//! is due and times it from then, on a rising ramp; the knee is the highest
//! rate answered with no errors and a p99 within a bound, and the report
//! ends with the shedder and limiter settings that follow, as Rust code.
//! Progress goes to stderr, the summary to stdout (or, with `--json`, one
//! JSON object), the charts to an HTML report. It sends only to the URLs
//! given, and stops by itself when the schedule ends.

mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use surgeguard::loadtest::{
    client_capacity, find_knee, warnings, ClientSettings, Knee, LatencyBound, LoadTest, NoKnee,
    Progress, Recommendation, Requests, Run, Schedule, Warning,
};

/// Finds the knee of an HTTP service on a rising ramp of open-loop traffic
/// and prints the surgeguard settings that follow.
#[derive(Parser, Debug)]
#[command(name = "loadtest", version)]
struct Args {
    /// A URL to send to (http:// only); repeat for several, and give a
    /// weight with a trailing @N (http://127.0.0.1:8080/search@3).
    #[arg(long = "url", required = true, value_name = "URL[@WEIGHT]")]
    urls: Vec<String>,
    /// Requests per second: a fixed rate (500) or a ramp (100..5000).
    #[arg(long, value_name = "RPS|FROM..TO")]
    rate: String,
    /// How many steps a ramp has (evenly spaced, both ends included).
    #[arg(long, default_value_t = 10)]
    steps: u32,
    /// How long each step lasts (a fixed rate: the whole run): 10s, 500ms, 2m.
    #[arg(long, alias = "duration", default_value = "10s", value_parser = duration)]
    step_duration: Duration,
    /// The most requests open at once (so, with HTTP/1.1, connections).
    #[arg(long, default_value_t = 1_024)]
    connections: usize,
    /// A request not finished this long after it was due counts as timed out.
    #[arg(long, default_value = "5s", value_parser = duration)]
    timeout: Duration,
    /// The request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// A header for every request, "Name: value"; repeat for several.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A file whose bytes are every request's body.
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,
    /// The p99 a healthy step stays within; default twice the first step's.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    p99_bound: Option<Duration>,
    /// The service's Prometheus /metrics, read for surgeguard_shed_inflight
    /// to cross-check the knee's concurrency.
    #[arg(long, value_name = "URL")]
    metrics_url: Option<String>,
    /// Sent at the first step's rate before the schedule, and not measured
    /// (connections opened, caches filled); 0s for none.
    #[arg(long, default_value = "1s", value_parser = duration)]
    warmup: Duration,
    /// How long to measure the client's own capacity before the run (at
    /// most 60s; 0s to skip).
    #[arg(long, default_value = "2s", value_parser = duration)]
    calibrate: Duration,
    /// Print one JSON object with every figure on stdout.
    #[arg(long)]
    json: bool,
    /// Where to write the HTML report.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/loadtest-report.html"
    )]
    report: PathBuf,
}

/// Reads `10s`, `500ms`, `2m`, `1.5s`.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (write 10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit is ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Everything the run measured and concluded, for the summary, the HTML
/// and the JSON.
pub struct Outcome {
    /// The test as given.
    pub test: LoadTest,
    /// The client settings.
    pub client: ClientSettings,
    /// The URLs, as given.
    pub urls: Vec<String>,
    /// The client's capacity on this machine, if measured.
    pub client_capacity: Option<f64>,
    /// The run.
    pub run: Run,
    /// The knee, or why there is none.
    pub knee: Result<Knee, NoKnee>,
    /// The settings, when there is a knee.
    pub advice: Option<Recommendation>,
    /// What the measurement cannot support.
    pub warnings: Vec<Warning>,
    /// The service's in-flight gauge at the knee.
    pub gauge_at_knee: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let invalid = |message: String| -> ! {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit()
    };
    let (test, client, urls) = match build(&args) {
        Ok(built) => built,
        Err(message) => invalid(message),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Sockets at both ends of every open request on loopback.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let outcome = runtime.block_on(async {
        test.check().await.map_err(|e| e.to_string())?;
        let client_capacity = if args.calibrate.is_zero() {
            None
        } else {
            eprintln!(
                "measuring this client's own capacity for {:?} ...",
                args.calibrate
            );
            match client_capacity(client.connections(), args.calibrate).await {
                Ok(capacity) => Some(capacity),
                Err(error) => {
                    eprintln!("warning: could not measure the client's capacity: {error}");
                    None
                }
            }
        };
        if let Some(capacity) = client_capacity {
            eprintln!("this client sends at most about {capacity:.0} requests/s here");
        }
        let schedule = test.schedule();
        eprintln!(
            "sending {} requests over {:?} ({} step(s), up to {:.0} requests/s) to {}",
            schedule.requests(),
            schedule.duration(),
            schedule.steps().len(),
            schedule.peak_rate(),
            urls.join(", ")
        );
        let total = schedule.duration();
        let mut line = ProgressLine::new(total);
        let run = test.run(|p| line.show(p)).await;
        eprintln!();
        let bound = args
            .p99_bound
            .map_or(LatencyBound::default(), LatencyBound::Absolute);
        let knee = find_knee(&run.steps, bound);
        let gauge_at_knee = knee.as_ref().ok().and_then(|k| run.gauge_mean(k.step));
        let warnings = warnings(&run.steps, &knee, client_capacity, gauge_at_knee);
        let advice = knee.as_ref().ok().map(Recommendation::from_knee);
        Ok::<_, String>(Outcome {
            test: test.clone(),
            client,
            urls: urls.clone(),
            client_capacity,
            run,
            knee,
            advice,
            warnings,
            gauge_at_knee,
        })
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(1));

    let summary = report::summary(&outcome);
    if args.json {
        eprintln!("{summary}");
        println!("{}", report::json(&outcome));
    } else {
        println!("{summary}");
    }
    match report::write_html(&args.report, &outcome) {
        Ok(()) => eprintln!("report: {}", args.report.display()),
        Err(error) => eprintln!(
            "warning: could not write the report to {}: {error}",
            args.report.display()
        ),
    }
    ExitCode::SUCCESS
}

fn build(args: &Args) -> Result<(LoadTest, ClientSettings, Vec<String>), String> {
    let mut weighted = Vec::new();
    for url in &args.urls {
        match url.rsplit_once('@') {
            Some((base, weight))
                if !weight.is_empty() && weight.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let weight = weight
                    .parse::<u32>()
                    .map_err(|_| format!("{url:?}: the weight after @ is too large"))?;
                weighted.push((base.to_owned(), weight));
            }
            _ => weighted.push((url.clone(), 1)),
        }
    }
    let pairs: Vec<(&str, u32)> = weighted.iter().map(|(u, w)| (u.as_str(), *w)).collect();
    let mut requests = Requests::new(&pairs)
        .and_then(|r| r.method(&args.method))
        .map_err(|e| e.to_string())?;
    for header in &args.headers {
        requests = requests.header(header).map_err(|e| e.to_string())?;
    }
    if let Some(path) = &args.body_file {
        let body = std::fs::read(path)
            .map_err(|e| format!("cannot read the body file {}: {e}", path.display()))?;
        requests = requests.body(body);
    }
    if args.calibrate > Duration::from_secs(60) {
        return Err(format!(
            "--calibrate {:?}: give at most 60s (0s to skip)",
            args.calibrate
        ));
    }
    let schedule = Schedule::parse(&args.rate, args.steps, args.step_duration)
        .map_err(|e| format!("--rate: {e}"))?;
    let client = ClientSettings::new(args.connections, args.timeout).map_err(|e| e.to_string())?;
    let mut test = LoadTest::new(requests, schedule, client)
        .warmup(args.warmup)
        .map_err(|e| format!("--warmup: {e}"))?;
    if let Some(url) = &args.metrics_url {
        test = test
            .metrics_url(url)
            .map_err(|e| format!("--metrics-url: {e}"))?;
    }
    let urls = weighted
        .iter()
        .map(|(u, w)| {
            if *w == 1 {
                u.clone()
            } else {
                format!("{u} (x{w})")
            }
        })
        .collect();
    Ok((test, client, urls))
}

/// The live line: rates over the last second, the last second's p50 and
/// p99, errors and open requests so far. Rewritten in place on a terminal,
/// one line per five seconds otherwise.
struct ProgressLine {
    total: Duration,
    last: Progress,
    terminal: bool,
}

impl ProgressLine {
    fn new(total: Duration) -> Self {
        ProgressLine {
            total,
            last: Progress::default(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, p: &Progress) {
        if p.elapsed <= self.last.elapsed {
            self.last = *p;
            return;
        }
        let seconds = (p.elapsed - self.last.elapsed).as_secs_f64();
        let answered = |p: &Progress| p.succeeded + p.refused + p.other_status;
        let errors = p.refused + p.other_status + p.timed_out + p.failed;
        let line = format!(
            "{:>4}/{} s  sent {:>6.0}/s  answered {:>6.0}/s  p50 {:>8}  p99 {:>8}  errors {:>6}  open {:>5}",
            p.elapsed.as_secs(),
            self.total.as_secs(),
            (p.sent - self.last.sent) as f64 / seconds,
            (answered(p) - answered(&self.last)) as f64 / seconds,
            p.recent_p50.map_or("-".to_owned(), report::ms),
            p.recent_p99.map_or("-".to_owned(), report::ms),
            errors,
            p.open,
        );
        self.last = *p;
        if self.terminal {
            eprint!("\r{line}");
        } else if p.elapsed.as_secs().is_multiple_of(5) {
            eprintln!("{line}");
        }
    }
}
