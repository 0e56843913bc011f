//! Load-test your own service: find its knee, get the settings that
//! protect it (feature `loadtest`).
//!
//! `docs/operations.md` says to pick limits from a load test; general load
//! tools print percentiles and leave the translation into a
//! `max_concurrency`, Gradient bounds and a rate to the reader. This module
//! does the whole way:
//!
//! ```text
//!   schedule.rs   when each request is due: a fixed rate or a rising ramp
//!   target.rs     what each asks for: weighted URLs, method, headers, body
//!   client.rs     the open-loop client: sends on schedule, times from due
//!   record.rs     figures per step, per second, errors by kind
//!   knee.rs       the highest rate answered within the latency bound
//!   advice.rs     the settings that follow, as Rust to paste, and warnings
//!   calibrate.rs  the client's own ceiling on this machine
//!   scrape.rs     the service's surgeguard_shed_inflight, for a cross-check
//!   run.rs        a whole test: check, send, gather
//! ```
//!
//! The command line is the `loadtest` example:
//!
//! ```text
//! cargo run --release --example loadtest -- \
//!     --url http://127.0.0.1:8080/search?q=1 --rate 100..2000 --step-duration 10s
//! ```
//!
//! The client is open-loop (requests are due on the schedule whatever the
//! server does, and latency counts from when a request was due), so a
//! server's queueing shows in the figures instead of slowing the client
//! down. It sends only to the URLs it is given, for as long as the
//! schedule lasts (an hour at most) plus the request timeout, after a
//! warm-up of at most a minute at the first step's rate.
//!
//! ```no_run
//! use std::time::Duration;
//! use surgeguard::loadtest::{
//!     find_knee, ClientSettings, LatencyBound, LoadTest, Recommendation, Requests, Schedule,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let test = LoadTest::new(
//!     Requests::new(&[("http://127.0.0.1:8080/search?q=1", 1)])?,
//!     Schedule::ramp(100.0, 2_000.0, 20, Duration::from_secs(10))?,
//!     ClientSettings::new(1_024, Duration::from_secs(5))?,
//! );
//! test.check().await?;
//! let run = test.run(|_| {}).await;
//! let knee = find_knee(&run.steps, LatencyBound::default())?;
//! println!("{}", Recommendation::from_knee(&knee).rust_snippet());
//! # Ok(())
//! # }
//! ```

mod advice;
mod calibrate;
mod client;
mod knee;
mod record;
mod run;
mod schedule;
mod scrape;
mod target;

pub use advice::{warnings, Recommendation, Warning};
pub use calibrate::client_capacity;
pub use client::{play, ClientError, ClientSettings, Ending, Outcome, Played, Progress, MAX_OPEN};
pub use knee::{find_knee, Knee, LatencyBound, NoKnee, StepFailure};
pub use record::{errors_by_kind, seconds, steps, SecondStats, StepStats};
pub use run::{LoadTest, LoadTestError, Run};
pub use schedule::{
    Due, Schedule, ScheduleError, Step, MAX_DURATION, MAX_RATE, MAX_REQUESTS, MAX_STEPS,
};
pub use scrape::{inflight_from_metrics, INFLIGHT_GAUGE};
pub use target::{Requests, TargetError, MAX_URLS};
