//! The crowd: plays a traffic plan against the shop, open loop.
//!
//! Each request is sent when the plan says it is due, whatever happened to
//! earlier ones, and its latency counts from that moment, so time spent
//! waiting for a connection or behind a slow server is measured rather than
//! hidden (no coordinated omission). A request not answered
//! `client_timeout` after it was due is abandoned and counts as timed out,
//! as a user closing the tab.
//!
//! Open requests are capped by the process's file-descriptor limit (each
//! needs a socket at both ends); a request that cannot get one in time
//! times out like any other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::shop::{RunningShop, ShopSample};
use super::traffic::Planned;
use super::Settings;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A 2xx answer.
    Succeeded,
    /// 503: shed by the shop.
    Shed,
    /// 429: over a rate limit.
    Limited,
    /// No answer within the client timeout.
    TimedOut,
    /// Anything else: another status, a refused connection.
    Failed,
}

/// One request's fate.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Its index in the plan.
    pub index: usize,
    /// How it ended.
    pub status: Status,
    /// From when it was due to its last body byte (or to the timeout).
    pub latency: Duration,
    /// Whether the answer carried `Retry-After`.
    pub retry_after: bool,
}

/// What the crowd saw, and the shop's state sampled as it went.
pub struct Played {
    /// One per planned request, in no particular order.
    pub outcomes: Vec<Outcome>,
    /// The shop's state every 50 ms, with the time into the run.
    pub samples: Vec<(Duration, ShopSample)>,
}

/// The running totals shown while a run goes on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Time into the run.
    pub elapsed: Duration,
    /// How long requests are sent.
    pub duration: Duration,
    /// Requests sent so far.
    pub sent: u64,
    /// Answered with 2xx.
    pub succeeded: u64,
    /// Answered 503 or 429.
    pub refused: u64,
    /// Given up on.
    pub timed_out: u64,
    /// Sent and not yet finished.
    pub open: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    succeeded: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
}

/// How often the shop's state (database queue, saturation) is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Sends every request of `plan` to `shop` when it is due; returns when all
/// have finished (each is bounded by the client timeout).
pub async fn play(
    settings: &Settings,
    plan: &[Planned],
    shop: &RunningShop,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Played {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let open_slots = Arc::new(Semaphore::new(open_request_cap()));
    let counters = Arc::new(Counters::default());
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(plan.len())));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let mut ticker = Ticker {
        start,
        next_sample: start,
        next_progress: start + Duration::from_secs(1),
        samples: Vec::new(),
    };
    let tick = |ticker: &mut Ticker| ticker.tick(shop, &counters, settings, progress);

    for (index, planned) in plan.iter().enumerate() {
        let due = start + planned.at;
        while ticker.next_sample < due {
            sleep_until(ticker.next_sample).await;
            tick(&mut ticker);
        }
        sleep_until(due).await;
        let request = Request::builder()
            .method(if planned.page.is_post() {
                Method::POST
            } else {
                Method::GET
            })
            .uri(format!("http://{}{}", shop.address, planned.page.path()))
            .header("x-forwarded-for", planned.sender.address().to_string())
            .body(Empty::new())
            .expect("a valid request");
        let (client, open_slots, counters, outcomes) = (
            client.clone(),
            Arc::clone(&open_slots),
            Arc::clone(&counters),
            Arc::clone(&outcomes),
        );
        let deadline = due + settings.client_timeout;
        counters.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let answer = timeout_at(deadline, async {
                let _slot = open_slots.acquire_owned().await.ok()?;
                let response = client.request(request).await.ok()?;
                let (head, body) = response.into_parts();
                body.collect().await.ok()?;
                Some(head)
            })
            .await;
            let latency = Instant::now() - due;
            let (status, retry_after) = match answer {
                Err(_) => (Status::TimedOut, false),
                Ok(None) => (Status::Failed, false),
                Ok(Some(head)) => (
                    match head.status {
                        s if s.is_success() => Status::Succeeded,
                        StatusCode::SERVICE_UNAVAILABLE => Status::Shed,
                        StatusCode::TOO_MANY_REQUESTS => Status::Limited,
                        _ => Status::Failed,
                    },
                    head.headers.contains_key(header::RETRY_AFTER),
                ),
            };
            counters.count(status);
            outcomes.lock().unwrap().push(Outcome {
                index,
                status,
                latency,
                retry_after,
            });
        });
        while tasks.try_join_next().is_some() {}
    }

    // Drain: every request ends by its own deadline; the extra second is
    // for the bookkeeping after it.
    let last_deadline =
        start + settings.duration + settings.client_timeout + Duration::from_secs(1);
    while !tasks.is_empty() && Instant::now() < last_deadline {
        tokio::select! {
            _ = tasks.join_next() => {}
            _ = sleep_until(ticker.next_sample) => tick(&mut ticker),
        }
    }
    tasks.abort_all();
    progress(&counters.progress(Instant::now() - start, settings.duration));
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    Played {
        outcomes,
        samples: ticker.samples,
    }
}

/// Samples the shop every 50 ms and reports progress every second.
struct Ticker {
    start: Instant,
    next_sample: Instant,
    next_progress: Instant,
    samples: Vec<(Duration, ShopSample)>,
}

impl Ticker {
    fn tick(
        &mut self,
        shop: &RunningShop,
        counters: &Counters,
        settings: &Settings,
        progress: &(dyn Fn(&Progress) + Sync),
    ) {
        let now = Instant::now();
        if now >= self.next_sample {
            self.samples.push((now - self.start, shop.sample()));
            self.next_sample += SAMPLE_EVERY;
        }
        if now >= self.next_progress {
            progress(&counters.progress(now - self.start, settings.duration));
            self.next_progress += Duration::from_secs(1);
        }
    }
}

impl Counters {
    fn count(&self, status: Status) {
        let counter = match status {
            Status::Succeeded => &self.succeeded,
            Status::Shed | Status::Limited => &self.refused,
            Status::TimedOut => &self.timed_out,
            Status::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn progress(&self, elapsed: Duration, duration: Duration) -> Progress {
        let sent = self.sent.load(Ordering::Relaxed);
        let succeeded = self.succeeded.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        let timed_out = self.timed_out.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        Progress {
            elapsed,
            duration,
            sent,
            succeeded,
            refused,
            timed_out,
            open: sent.saturating_sub(succeeded + refused + timed_out + failed),
        }
    }
}

/// How many requests may be open at once: half the file descriptors this
/// process may have (raised to the hard limit first), less a reserve.
fn open_request_cap() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1_024);
    (limit.saturating_sub(256) / 2).clamp(64, 16_384) as usize
}
