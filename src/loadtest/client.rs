//! The open-loop client: sends each request when it is due, whatever
//! happened to the ones before, and times it from that moment.
//!
//! A closed-loop client (a fixed number of connections, each sending its
//! next request when the last is answered) waits for a slow server and so
//! sends less and measures only the requests it got round to: a server
//! that stalls for a second shows up as one slow request per connection.
//! Here the request is due on the schedule; time spent waiting for a free
//! connection, behind a stalled server, or for the client's own tasks to
//! run counts in its latency, so queueing anywhere is measured rather than
//! hidden. A request not finished `timeout` after it was due is abandoned
//! and counts as timed out.
//!
//! The outage example's crowd plays its traffic plan through this same
//! function.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::schedule::Due;

/// The most requests the client holds open at once, whatever it is told.
pub const MAX_OPEN: usize = 65_536;

/// Why client settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A timeout of zero or over a minute.
    #[error("the request timeout is {0:?}: give 1 ms to 60 s")]
    Timeout(Duration),
    /// A connection cap of zero or over [`MAX_OPEN`].
    #[error("the connection cap is {0}: give 1 to {MAX_OPEN}")]
    Connections(usize),
}

/// How the client sends: the connection cap and the per-request timeout.
///
/// ```
/// use std::time::Duration;
/// use surgeguard::loadtest::{ClientError, ClientSettings};
///
/// let settings = ClientSettings::new(256, Duration::from_secs(5))?;
/// assert_eq!(settings.connections(), 256);
/// assert!(ClientSettings::new(0, Duration::from_secs(5)).is_err());
/// # Ok::<(), ClientError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    connections: usize,
    timeout: Duration,
}

impl ClientSettings {
    /// At most `connections` requests open at once (HTTP/1.1: as many
    /// connections), each abandoned `timeout` after it was due.
    pub fn new(connections: usize, timeout: Duration) -> Result<ClientSettings, ClientError> {
        if !(1..=MAX_OPEN).contains(&connections) {
            return Err(ClientError::Connections(connections));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&timeout) {
            return Err(ClientError::Timeout(timeout));
        }
        Ok(ClientSettings {
            connections,
            timeout,
        })
    }

    /// The connection cap.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// The per-request timeout, counted from when the request was due.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server answered, and its whole body arrived.
    Answered {
        /// The status.
        status: StatusCode,
        /// Whether the answer carried `Retry-After`.
        retry_after: bool,
    },
    /// No whole answer within the timeout.
    TimedOut,
    /// No connection could be made (refused, unreachable, name unknown).
    ConnectFailed,
    /// The connection broke, or the answer was not HTTP.
    ConnectionFailed,
}

impl Ending {
    /// A 2xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Ending::Answered { status, .. } if status.is_success())
    }

    /// What went wrong, for the report's errors by kind (`None` for 2xx).
    pub fn error_kind(&self) -> Option<String> {
        match self {
            Ending::Answered { status, .. } if status.is_success() => None,
            Ending::Answered { status, .. } => Some(format!("HTTP {}", status.as_u16())),
            Ending::TimedOut => Some("timed out".to_owned()),
            Ending::ConnectFailed => Some("connect failed".to_owned()),
            Ending::ConnectionFailed => Some("connection failed".to_owned()),
        }
    }
}

/// One request's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Its place in the schedule.
    pub due: Due,
    /// How late the client handed it to the network, after it was due: the
    /// client's own lag (its tasks running late, or every connection of its
    /// cap busy), large when the client cannot keep up. A request that timed
    /// out before it got a connection has the whole of its latency as lag.
    pub send_lag: Duration,
    /// From when it was due to its last body byte (or to the timeout).
    pub latency: Duration,
    /// How it ended.
    pub ending: Ending,
}

impl Outcome {
    /// When it finished, from the start of the run.
    pub fn finished_at(&self) -> Duration {
        self.due.at + self.latency
    }
}

/// The running totals, handed to the progress callback.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Time into the run.
    pub elapsed: Duration,
    /// Requests sent so far.
    pub sent: u64,
    /// Answered with 2xx.
    pub succeeded: u64,
    /// Answered 503 or 429.
    pub refused: u64,
    /// Answered with another status.
    pub other_status: u64,
    /// Given up on.
    pub timed_out: u64,
    /// Failed to connect, or the connection broke.
    pub failed: u64,
    /// Sent and not yet finished.
    pub open: u64,
    /// Median latency of the requests finished since the previous call.
    pub recent_p50: Option<Duration>,
    /// 99th percentile of the same.
    pub recent_p99: Option<Duration>,
}

/// What a run of the client saw.
#[derive(Debug)]
pub struct Played {
    /// When the run started: request `d` was due at `started + d.at`.
    pub started: std::time::Instant,
    /// One per request, in no particular order.
    pub outcomes: Vec<Outcome>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    succeeded: AtomicU64,
    refused: AtomicU64,
    other_status: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
}

/// Sends the request `make(due)` when each `due` is due (in order), and
/// returns once every request has finished or timed out (so by the last
/// due time plus the timeout); every request sent has one outcome. `on_tick` is
/// called every `tick_every` while the run goes on, and once at the end.
///
/// Must run inside a Tokio runtime with the time and I/O drivers on.
pub async fn play<F, T>(
    schedule: impl IntoIterator<Item = Due>,
    mut make: F,
    settings: &ClientSettings,
    tick_every: Duration,
    mut on_tick: T,
) -> Played
where
    F: FnMut(&Due) -> Request<Full<Bytes>>,
    T: FnMut(&Progress),
{
    let tick_every = tick_every.max(Duration::from_millis(1));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(settings.connections)
        .build::<_, Full<Bytes>>(connector);
    let open_slots = Arc::new(Semaphore::new(settings.connections));
    let counters = Arc::new(Counters::default());
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let recent = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let mut next_tick = start + tick_every;
    let mut tick = |now: Instant| {
        let mut finished = std::mem::take(&mut *recent.lock().unwrap_or_else(|p| p.into_inner()));
        on_tick(&counters.progress(now - start, &mut finished));
    };

    for due in schedule {
        let at = start + due.at;
        while next_tick <= at {
            sleep_until(next_tick).await;
            tick(next_tick);
            next_tick += tick_every;
        }
        sleep_until_precisely(at).await;
        let request = make(&due);
        let deadline = at + settings.timeout;
        let (client, open_slots, counters, outcomes, recent) = (
            client.clone(),
            Arc::clone(&open_slots),
            Arc::clone(&counters),
            Arc::clone(&outcomes),
            Arc::clone(&recent),
        );
        counters.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            // When the request got one of the cap's connections: the wait
            // for it is the client's own (its cap, not the service, held the
            // request back), so it is part of the send lag.
            let mut handed_over = None;
            let answer = timeout_at(deadline, async {
                let Ok(_slot) = open_slots.acquire_owned().await else {
                    return Ending::ConnectionFailed;
                };
                handed_over = Some(Instant::now());
                let response = match client.request(request).await {
                    Ok(response) => response,
                    Err(error) if error.is_connect() => return Ending::ConnectFailed,
                    Err(_) => return Ending::ConnectionFailed,
                };
                let (head, body) = response.into_parts();
                if drain(body).await.is_err() {
                    return Ending::ConnectionFailed;
                }
                Ending::Answered {
                    status: head.status,
                    retry_after: head.headers.contains_key(header::RETRY_AFTER),
                }
            })
            .await;
            let finished = Instant::now();
            let latency = finished.saturating_duration_since(at);
            let send_lag = handed_over
                .unwrap_or(finished)
                .saturating_duration_since(at);
            let ending = answer.unwrap_or(Ending::TimedOut);
            counters.count(&ending);
            recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(latency);
            outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Outcome {
                    due,
                    send_lag,
                    latency,
                    ending,
                });
        });
        while tasks.try_join_next().is_some() {}
    }

    // Drain: every request ends by its own deadline (the timeout wraps
    // all of its work), so waiting for all of them is bounded, and every
    // request sent has its outcome recorded.
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            () = sleep_until(next_tick) => {
                tick(next_tick);
                next_tick += tick_every;
            }
        }
    }
    tick(Instant::now());
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|p| p.into_inner()));
    Played {
        started: start.into_std(),
        outcomes,
    }
}

/// Reads a body through to its last byte, keeping none of it: the body is
/// only timed, and holding it would let a server's huge answers (times
/// every open request) fill the client's memory.
pub(crate) async fn drain<B: http_body::Body + Unpin>(mut body: B) -> Result<(), B::Error> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

impl Counters {
    fn count(&self, ending: &Ending) {
        let counter = match ending {
            Ending::Answered { status, .. } if status.is_success() => &self.succeeded,
            Ending::Answered {
                status: StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS,
                ..
            } => &self.refused,
            Ending::Answered { .. } => &self.other_status,
            Ending::TimedOut => &self.timed_out,
            Ending::ConnectFailed | Ending::ConnectionFailed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn progress(&self, elapsed: Duration, finished: &mut [Duration]) -> Progress {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sent = load(&self.sent);
        let (succeeded, refused, other_status, timed_out, failed) = (
            load(&self.succeeded),
            load(&self.refused),
            load(&self.other_status),
            load(&self.timed_out),
            load(&self.failed),
        );
        finished.sort_unstable();
        Progress {
            elapsed,
            sent,
            succeeded,
            refused,
            other_status,
            timed_out,
            failed,
            open: sent.saturating_sub(succeeded + refused + other_status + timed_out + failed),
            recent_p50: super::record::nearest_rank(finished, 0.50),
            recent_p99: super::record::nearest_rank(finished, 0.99),
        }
    }
}

/// Tokio's timer fires on its next millisecond tick, so a request due
/// between two ticks would leave up to a millisecond late, and that lag
/// would count as the service's latency. So: sleep to a tick before the
/// due time, then yield until it (the worker spins for at most about one
/// millisecond per request gap).
async fn sleep_until_precisely(at: Instant) {
    const TIMER_GRAIN: Duration = Duration::from_millis(1);
    if let Some(early) = at.checked_sub(TIMER_GRAIN) {
        if Instant::now() < early {
            sleep_until(early).await;
        }
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}
