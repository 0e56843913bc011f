//! A whole load test: check that the service answers, send the schedule,
//! sample the service's gauge, and gather the figures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::client::{play, ClientSettings, Played, Progress};
use super::record::{self, SecondStats, StepStats};
use super::schedule::{Due, Schedule};
use super::target::{parse_url, Requests, TargetError};

/// How often the service's `/metrics` is read during a run.
const GAUGE_EVERY: Duration = Duration::from_millis(250);
/// The default warm-up before the schedule.
const DEFAULT_WARMUP: Duration = Duration::from_secs(1);
/// The longest warm-up accepted.
const MAX_WARMUP: Duration = Duration::from_secs(60);
/// Marks a warm-up request's step: none of the schedule's.
const WARMUP_STEP: usize = usize::MAX;

/// Why a load test could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadTestError {
    /// A warm-up over a minute.
    #[error("the warm-up of {0:?} is over a minute")]
    Warmup(Duration),
    /// A URL did not answer the check made before the run.
    #[error("{url} does not answer: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
}

/// A load test, ready to run.
///
/// ```no_run
/// use std::time::Duration;
/// use surgeguard::loadtest::{ClientSettings, LoadTest, Requests, Schedule};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let test = LoadTest::new(
///     Requests::new(&[("http://127.0.0.1:8080/search?q=1", 1)])?,
///     Schedule::parse("100..2000", 20, Duration::from_secs(10))?,
///     ClientSettings::new(512, Duration::from_secs(5))?,
/// );
/// test.check().await?;
/// let run = test.run(|progress| eprintln!("{} sent", progress.sent)).await;
/// println!("{:?}", surgeguard::loadtest::find_knee(&run.steps, Default::default()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LoadTest {
    requests: Requests,
    schedule: Schedule,
    client: ClientSettings,
    metrics: Option<Uri>,
    warmup: Duration,
}

/// What a load test measured.
#[derive(Debug)]
pub struct Run {
    /// Every request's outcome.
    pub played: Played,
    /// Figures per step of the schedule.
    pub steps: Vec<StepStats>,
    /// Figures per second, by when requests were due.
    pub seconds: Vec<SecondStats>,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// `surgeguard_shed_inflight` samples, `(time into the run, value)`,
    /// when a metrics URL was given and answered.
    pub gauge: Vec<(Duration, f64)>,
}

impl Run {
    /// The gauge's mean during step `step`; `None` without samples there.
    pub fn gauge_mean(&self, step: usize) -> Option<f64> {
        let step = self.steps.get(step)?;
        let inside: Vec<f64> = self
            .gauge
            .iter()
            .filter(|(at, _)| *at >= step.start && *at < step.start + step.duration)
            .map(|(_, v)| *v)
            .collect();
        (!inside.is_empty()).then(|| inside.iter().sum::<f64>() / inside.len() as f64)
    }
}

impl LoadTest {
    /// `requests` sent on `schedule` by a client with `client`'s settings.
    pub fn new(requests: Requests, schedule: Schedule, client: ClientSettings) -> LoadTest {
        LoadTest {
            requests,
            schedule,
            client,
            metrics: None,
            warmup: DEFAULT_WARMUP,
        }
    }

    /// Sends at the first step's rate for `warmup` before the schedule
    /// starts (default 1 s; zero for none), and measures none of it: the
    /// connections are opened and the service's caches filled, so the
    /// first step's p99, which the latency bound is set from, is the
    /// service's and not the cost of starting up.
    pub fn warmup(mut self, warmup: Duration) -> Result<LoadTest, LoadTestError> {
        if warmup > MAX_WARMUP {
            return Err(LoadTestError::Warmup(warmup));
        }
        self.warmup = warmup;
        Ok(self)
    }

    /// Also reads `surgeguard_shed_inflight` from `url` (the service's
    /// Prometheus `/metrics`) four times a second while the test runs.
    pub fn metrics_url(mut self, url: &str) -> Result<LoadTest, TargetError> {
        self.metrics = Some(parse_url(url)?);
        Ok(self)
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Sends one request to each URL (and the metrics URL) and fails if
    /// one cannot be reached within the request timeout. Any HTTP answer
    /// passes: a service that answers 500 is measured and reported.
    pub async fn check(&self) -> Result<(), LoadTestError> {
        let client = Client::builder(TokioExecutor::new()).build_http();
        // The test's own requests to its URLs (method, headers and body as
        // the run sends them), a plain GET to the metrics URL.
        let mut checks: Vec<(Uri, http::Request<http_body_util::Full<bytes::Bytes>>)> = self
            .requests
            .urls()
            .iter()
            .map(|url| {
                let mut request = self.requests.request(0);
                *request.uri_mut() = url.clone();
                (url.clone(), request)
            })
            .collect();
        if let Some(url) = &self.metrics {
            let mut request = http::Request::new(http_body_util::Full::default());
            *request.uri_mut() = url.clone();
            checks.push((url.clone(), request));
        }
        for (url, request) in checks {
            let unreachable = |reason: String| LoadTestError::Unreachable {
                url: url.to_string(),
                reason,
            };
            let answer = tokio::time::timeout(self.client.timeout(), async {
                let response = client.request(request).await?;
                super::client::drain(response.into_body()).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .await;
            match answer {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(unreachable(error_chain(&*error))),
                Err(_) => {
                    return Err(unreachable(format!(
                        "no answer within the request timeout ({:?})",
                        self.client.timeout()
                    )))
                }
            }
        }
        Ok(())
    }

    /// Runs the test; `on_tick` gets the running totals once a second.
    /// Returns when every request has been answered or has timed out.
    pub async fn run(&self, on_tick: impl FnMut(&Progress)) -> Run {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sampler = self.metrics.clone().map(|url| {
            tokio::spawn(super::scrape::sample(
                url,
                GAUGE_EVERY,
                Arc::clone(&samples),
            ))
        });
        let requests = &self.requests;
        // The warm-up goes first through the same client (so its
        // connections stay open for the schedule), then the schedule,
        // shifted by the warm-up's length and shifted back afterwards.
        let warmup = self.warmup;
        let first_rate = self.schedule.steps().first().map_or(1.0, |s| s.rate);
        let warm_count = (first_rate * warmup.as_secs_f64()).round() as u64;
        let warming = (0..warm_count).map(|k| Due {
            index: k,
            step: WARMUP_STEP,
            at: Duration::from_secs_f64(k as f64 / first_rate),
        });
        let measured = self.schedule.due_times().map(|due| Due {
            at: due.at + warmup,
            ..due
        });
        let mut on_tick = on_tick;
        let mut played = play(
            warming.chain(measured),
            |due| requests.request(due.index),
            &self.client,
            Duration::from_secs(1),
            |p: &Progress| {
                if p.elapsed >= warmup {
                    on_tick(&Progress {
                        elapsed: p.elapsed - warmup,
                        ..*p
                    });
                }
            },
        )
        .await;
        played.outcomes.retain(|o| o.due.step != WARMUP_STEP);
        for outcome in &mut played.outcomes {
            outcome.due.at -= warmup;
        }
        played.started += warmup;
        if let Some(sampler) = sampler {
            sampler.abort();
        }
        let gauge = samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            // A reading from the warm-up is of traffic not measured; kept,
            // it would count as taken at the start of the first step.
            .filter_map(|(at, v)| Some((at.checked_duration_since(played.started)?, *v)))
            .collect();
        let seconds = self.schedule.duration().as_secs_f64().ceil() as u32;
        Run {
            steps: record::steps(&self.schedule, &played.outcomes),
            seconds: record::seconds(&played.outcomes, seconds),
            errors: record::errors_by_kind(&played.outcomes),
            gauge,
            played,
        }
    }
}

/// An error and its causes on one line (hyper's own message is often
/// only "client error (Connect)").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
