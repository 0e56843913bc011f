//! The outage scenario: a shop, its database, and an open-loop crowd, run
//! once without protection and once with surgeguard.
//!
//! This module is the whole experiment; `main.rs` only parses flags and
//! prints. The integration test `tests/outage.rs` runs the same code (it
//! includes this directory by path), so what the README shows is what the
//! test checks.
//!
//! ```text
//!   traffic.rs   the plan: Poisson arrivals, a 10x spike, Zipf products,
//!                abusive clients, checkouts; identical for both runs
//!   client.rs    plays the plan open-loop against the shop, records outcomes
//!   shop.rs      the axum shop: unprotected, or protected by surgeguard
//!   database.rs  a pool of connections whose queries slow down when it queues
//!   results.rs   tables, percentiles, the per-second timeline, JSON
//! ```

pub mod client;
pub mod database;
pub mod results;
pub mod shop;
pub mod traffic;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use results::Run;

/// Which shop serves the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every request goes to the handlers and the database, as in the
    /// postmortem.
    Unprotected,
    /// The same handlers behind surgeguard's limits, caches and shedder.
    Protected,
}

impl Mode {
    /// The mode's name, as on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Unprotected => "unprotected",
            Mode::Protected => "protected",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a scenario's settings were refused.
#[derive(Debug, PartialEq)]
pub enum SettingsError {
    /// The run must last between 2 s and 10 minutes.
    Duration(Duration),
    /// The baseline rate must be between 1 and 2,000 requests per second.
    BaselineRps(f64),
    /// The spike multiplies the baseline by 1 to 50.
    Spike(f64),
    /// The spike's rate (baseline × spike) is above 20,000 requests per
    /// second, more than one machine's loopback test can honestly generate.
    PeakRps(f64),
    /// The client timeout must be between 100 ms and 60 s.
    ClientTimeout(Duration),
    /// The slowdown must be between 1 and 16.
    Slowdown(f64),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Duration(d) => {
                write!(f, "duration must be 2 to 600 seconds, got {:?}", d)
            }
            SettingsError::BaselineRps(r) => {
                write!(f, "baseline rate must be 1 to 2000 requests/s, got {r}")
            }
            SettingsError::Spike(s) => write!(f, "spike must be 1 to 50 (x baseline), got {s}"),
            SettingsError::PeakRps(r) => write!(
                f,
                "baseline x spike is {r} requests/s; at most 20000 can be generated honestly on one machine"
            ),
            SettingsError::ClientTimeout(d) => {
                write!(f, "client timeout must be 100 ms to 60 s, got {:?}", d)
            }
            SettingsError::Slowdown(s) => write!(f, "slowdown must be 1 to 16, got {s}"),
        }
    }
}

impl std::error::Error for SettingsError {}

/// What one run of the scenario does. Build it with [`Settings::new`], which
/// checks every figure.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// How long requests are sent (the drain afterwards is not counted).
    #[serde(serialize_with = "results::as_secs")]
    pub duration: Duration,
    /// Requests per second before and after the sales event.
    pub baseline_rps: f64,
    /// The sales event's rate, as a multiple of the baseline.
    pub spike: f64,
    /// A request not answered this long after it was due counts as timed
    /// out (the client gives up, as a user does).
    #[serde(serialize_with = "results::as_secs")]
    pub client_timeout: Duration,
    /// Seeds the traffic plan; both modes replay the same plan.
    pub seed: u64,
    /// The same scenario in a world this many times slower (1: the demo):
    /// the crowd sends this many times fewer requests, every query takes
    /// this many times as long, and the shop's rate limits and waits follow.
    /// As many requests are in flight at once as at 1 (arrival rate times
    /// latency), so the database queues and the shedder decides as it does
    /// at 1, from a fraction of the requests, and so of the CPU. The test
    /// runs slowed down so that on a busy machine the delays of a starved
    /// scheduler stay small beside the queries' times.
    pub slowdown: f64,
}

impl Settings {
    /// Checked settings with a 5 s client timeout and a fixed seed.
    pub fn new(duration: Duration, baseline_rps: f64, spike: f64) -> Result<Self, SettingsError> {
        Settings {
            duration,
            baseline_rps,
            spike,
            client_timeout: Duration::from_secs(5),
            seed: 0x5EED_F0AA_6E00,
            slowdown: 1.0,
        }
        .validated()
    }

    /// The same settings with another client timeout.
    pub fn with_client_timeout(mut self, timeout: Duration) -> Result<Self, SettingsError> {
        self.client_timeout = timeout;
        self.validated()
    }

    /// The same settings in a world `slowdown` times slower (see
    /// [`Settings::slowdown`]).
    pub fn with_slowdown(mut self, slowdown: f64) -> Result<Self, SettingsError> {
        self.slowdown = slowdown;
        self.validated()
    }

    fn validated(self) -> Result<Self, SettingsError> {
        if !(Duration::from_secs(2)..=Duration::from_secs(600)).contains(&self.duration) {
            return Err(SettingsError::Duration(self.duration));
        }
        if !(1.0..=2_000.0).contains(&self.baseline_rps) {
            return Err(SettingsError::BaselineRps(self.baseline_rps));
        }
        if !(1.0..=50.0).contains(&self.spike) {
            return Err(SettingsError::Spike(self.spike));
        }
        let peak = self.baseline_rps * self.spike;
        if peak > 20_000.0 {
            return Err(SettingsError::PeakRps(peak));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.client_timeout) {
            return Err(SettingsError::ClientTimeout(self.client_timeout));
        }
        if !(1.0..=16.0).contains(&self.slowdown) {
            return Err(SettingsError::Slowdown(self.slowdown));
        }
        Ok(self)
    }

    /// The requests-per-second of the sales event.
    pub fn peak_rps(&self) -> f64 {
        self.baseline_rps * self.spike
    }
}

/// Runs the scenario once in `mode` on a runtime of its own, which is shut
/// down afterwards so nothing of one run (a queued query, an open
/// connection) leaks into the next. `progress` is called about once a second
/// while requests are being sent.
pub fn run(
    settings: &Settings,
    mode: Mode,
    progress: &(dyn Fn(&client::Progress) + Sync),
) -> std::io::Result<Run> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("outage-{mode}"))
        .build()?;
    let result = runtime.block_on(async {
        let plan = traffic::plan(settings);
        let database = database::Database::new(database::DatabaseSettings {
            slowdown: settings.slowdown,
            ..Default::default()
        });
        let shop = shop::start_with(mode, database.clone(), None, settings.slowdown).await?;
        let played = client::play(settings, &plan, &shop, progress).await;
        Ok::<_, std::io::Error>(results::Run::new(
            mode,
            settings,
            &plan,
            &played,
            database.report(),
            shop.stats(),
        ))
    });
    // Handlers still waiting on the database (the unprotected shop's
    // backlog) are dropped here, not left to finish.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
