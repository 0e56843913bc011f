//! Attacks on RateLimitLayer with a limiter that answers later: the tower
//! `poll_ready` contract when the ready service waits in the future, and
//! `LocalThenRemote`'s refunds when many requests race and the remote
//! limit denies some.
//!
//! Why these cannot flake: the stand-in remote decides from the request's
//! own key (no scheduling enters the answer), the local limiter runs on a
//! ManualClock that never moves (no unit refills), and every assertion is
//! an invariant of every interleaving.
#![cfg(all(feature = "tower", feature = "axum"))]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use surgeguard::clock::ManualClock;
use surgeguard::http::RateLimitLayer;
use surgeguard::limit::{AllOf, AsyncRateLimiter, Checked, Decision, Gcra, LocalThenRemote, Quota};
use tower::{Layer, Service, ServiceExt};

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

/// Allows odd keys, denies even ones, always after a yield (so the answer
/// is a real `Later` that another request can overtake).
struct ParityRemote;

impl AsyncRateLimiter<u64> for ParityRemote {
    type Error = Never;
    type Pending = Pin<Box<dyn Future<Output = Result<Decision, Never>> + Send>>;

    fn begin(_: &Arc<Self>, key: &u64) -> Checked<Self::Pending> {
        let allow = key % 2 == 1;
        Checked::Later(Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(if allow {
                Decision::Allowed {
                    limit: 1000,
                    remaining: 999,
                    reset_after: Duration::from_secs(1),
                    policy_window: Duration::from_secs(60),
                }
            } else {
                Decision::Denied {
                    limit: 1000,
                    remaining: 0,
                    retry_after: Duration::from_secs(1),
                    reset_after: Duration::from_secs(60),
                    policy_window: Duration::from_secs(60),
                }
            })
        }))
    }
}

/// A handler that holds tower's contract to the letter: `call` without a
/// `poll_ready` that returned `Ready` first panics, and a clone starts
/// not ready (like a `Buffer` or `ConcurrencyLimit` clone without its
/// slot).
struct Strict {
    ready: bool,
    calls: Arc<AtomicU64>,
}

impl Clone for Strict {
    fn clone(&self) -> Self {
        Strict {
            ready: false,
            calls: Arc::clone(&self.calls),
        }
    }
}

impl Service<Request<()>> for Strict {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        assert!(self.ready, "called without poll_ready");
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

fn keyed_request(key: u64) -> Request<()> {
    Request::builder()
        .header("x-key", key.to_string())
        .body(())
        .unwrap()
}

/// A `u64` drawn from the `x-key` header.
#[derive(Debug, Clone)]
struct NumberKey;

impl surgeguard::http::KeyExtractor for NumberKey {
    type Key = u64;
    fn extract(&self, head: &surgeguard::http::RequestHead<'_>) -> Option<u64> {
        head.headers().get("x-key")?.to_str().ok()?.parse().ok()
    }
}

#[tokio::test]
async fn the_service_that_waits_for_the_remote_answer_is_the_one_polled_ready() {
    let calls = Arc::new(AtomicU64::new(0));
    let strict = Strict {
        ready: false,
        calls: Arc::clone(&calls),
    };
    let mut service = RateLimitLayer::new(ParityRemote)
        .key(NumberKey)
        .layer(strict);
    // Several requests in flight at once, each called right after its own
    // poll_ready: every one the remote allows must reach a ready handler.
    let mut pending = Vec::new();
    for key in 1..=6u64 {
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .unwrap();
        pending.push(service.call(keyed_request(key)));
    }
    let mut statuses = Vec::new();
    for answer in pending {
        statuses.push(answer.await.unwrap().status());
    }
    assert_eq!(
        statuses,
        [1, 2, 3, 4, 5, 6].map(|key| if key % 2 == 1 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_units_spent_equal_the_requests_the_remote_limit_allowed() {
    const REQUESTS: u64 = 400;
    const LOCAL_BURST: u32 = 10_000;
    let clock = ManualClock::new();
    // One global local limit (every request the same local key) so that
    // every refund races with every check.
    let local = Gcra::direct(Quota::per_hour(LOCAL_BURST).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let local = Arc::new(local);
    let local_for_all_of = Arc::clone(&local);
    let both = LocalThenRemote::new(
        AllOf::new(local_for_all_of, |_: &u64| ()),
        Arc::new(ParityRemote),
        |key: &u64| *key,
    );
    let calls = Arc::new(AtomicU64::new(0));
    let handler_calls = Arc::clone(&calls);
    let handler = tower::service_fn(move |_: Request<()>| {
        handler_calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let service = RateLimitLayer::new(both).key(NumberKey).layer(handler);
    let mut tasks = tokio::task::JoinSet::new();
    for key in 0..REQUESTS {
        let service = service.clone();
        tasks.spawn(async move { service.oneshot(keyed_request(key)).await.unwrap().status() });
    }
    let mut ok = 0;
    while let Some(status) = tasks.join_next().await {
        if status.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    // Odd keys allowed by the remote, even ones denied: exactly half.
    assert_eq!(ok, REQUESTS / 2);
    assert_eq!(calls.load(Ordering::SeqCst), REQUESTS / 2);
    // The local limit lost exactly the allowed requests' units: the
    // denied ones were all given back. (The probe itself takes one.)
    let left = surgeguard::limit::RateLimiter::check(&*local, &()).remaining();
    assert_eq!(u64::from(left), u64::from(LOCAL_BURST) - REQUESTS / 2 - 1);
}

#[derive(Debug, thiserror::Error)]
#[error("the remote limiter refused the key")]
struct Refused;

/// A remote limiter that fails every check (as Redis does for a key longer
/// than its `max_key_len`, which a client can send on purpose).
struct FailingRemote;

impl AsyncRateLimiter<u64> for FailingRemote {
    type Error = Refused;
    type Pending = Pin<Box<dyn Future<Output = Result<Decision, Refused>> + Send>>;

    fn begin(_: &Arc<Self>, _: &u64) -> Checked<Self::Pending> {
        Checked::Later(Box::pin(async { Err(Refused) }))
    }
}

/// With `MissingKey::Allow`, a request whose remote check fails passes: it
/// must still have been counted by the local limit, or a client who can make
/// the remote check fail would meet no limit at all.
#[tokio::test]
async fn a_failing_remote_check_still_counts_against_the_local_limit() {
    let clock = ManualClock::new();
    let per_client = Gcra::keyed::<u64>(Quota::per_hour(3).unwrap())
        .max_keys(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    let both = LocalThenRemote::new(
        AllOf::new(per_client, |key: &u64| *key),
        Arc::new(FailingRemote),
        |key: &u64| *key,
    );
    let handler = tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let service = RateLimitLayer::new(both)
        .key(NumberKey)
        .missing_key(surgeguard::http::MissingKey::Allow)
        .layer(handler);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            service
                .clone()
                .oneshot(keyed_request(7))
                .await
                .unwrap()
                .status(),
        );
    }
    let passed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(passed, 3, "the local limit of 3 still holds: {statuses:?}");
}
