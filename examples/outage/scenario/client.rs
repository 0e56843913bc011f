//! The crowd: plays a traffic plan against the shop, open loop, through
//! the crate's load-test client (`surgeguard::loadtest::play`).
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

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use surgeguard::loadtest::{self, ClientSettings, Due, Ending};

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

/// How often the shop's state (database queue, saturation) is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Sends every request of `plan` to `shop` when it is due, through the
/// crate's open-loop client (`surgeguard::loadtest::play`); returns when
/// all have finished (each is bounded by the client timeout).
pub async fn play(
    settings: &Settings,
    plan: &[Planned],
    shop: &RunningShop,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Played {
    let client = ClientSettings::new(open_request_cap(), settings.client_timeout)
        .expect("the scenario's settings checked the timeout");
    let schedule = plan.iter().enumerate().map(|(index, planned)| Due {
        index: index as u64,
        step: 0,
        at: planned.at,
    });
    let request = |due: &Due| {
        let planned = &plan[due.index as usize];
        let mut request = Request::new(Full::new(Bytes::new()));
        if planned.page.is_post() {
            *request.method_mut() = Method::POST;
        }
        *request.uri_mut() = format!("http://{}{}", shop.address, planned.page.path())
            .parse()
            .expect("a valid path");
        request.headers_mut().insert(
            "x-forwarded-for",
            HeaderValue::from_str(&planned.sender.address().to_string()).expect("an address"),
        );
        request
    };
    let mut samples = Vec::new();
    let mut next_progress = Duration::from_secs(1);
    let last = Cell::new(None);
    let shown = |p: &loadtest::Progress| Progress {
        elapsed: p.elapsed,
        duration: settings.duration,
        sent: p.sent,
        succeeded: p.succeeded,
        refused: p.refused,
        timed_out: p.timed_out,
        open: p.open,
    };
    let played = loadtest::play(schedule, request, &client, SAMPLE_EVERY, |p| {
        samples.push((p.elapsed, shop.sample()));
        if p.elapsed >= next_progress {
            progress(&shown(p));
            next_progress += Duration::from_secs(1);
        }
        last.set(Some(*p));
    })
    .await;
    if let Some(p) = last.get() {
        progress(&shown(&p));
    }
    let outcomes = played
        .outcomes
        .iter()
        .map(|o| {
            let (status, retry_after) = match o.ending {
                Ending::Answered {
                    status,
                    retry_after,
                } => (
                    match status {
                        s if s.is_success() => Status::Succeeded,
                        StatusCode::SERVICE_UNAVAILABLE => Status::Shed,
                        StatusCode::TOO_MANY_REQUESTS => Status::Limited,
                        _ => Status::Failed,
                    },
                    retry_after,
                ),
                Ending::TimedOut => (Status::TimedOut, false),
                Ending::ConnectFailed | Ending::ConnectionFailed => (Status::Failed, false),
            };
            Outcome {
                index: o.due.index as usize,
                status,
                latency: o.latency,
                retry_after,
            }
        })
        .collect();
    Played { outcomes, samples }
}

/// How many requests may be open at once: half the file descriptors this
/// process may have (raised to the hard limit first), less a reserve.
fn open_request_cap() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1_024);
    (limit.saturating_sub(256) / 2).clamp(64, 16_384) as usize
}
