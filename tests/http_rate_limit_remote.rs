//! RateLimitLayer with limiters that answer later: a stand-in remote
//! limiter driven by the test (when it answers, what it answers), and
//! `RedisLimiter` against a real `redis-server` (feature `redis`), alone,
//! shared by a fleet of layers, and behind local limits
//! (`LocalThenRemote`).
//!
//! Why these cannot flake: the stand-in answers only when the test says
//! so; the Redis quotas are per day, so no unit refills during a test
//! however slow the machine; calls to a server the test started get a
//! timeout far longer than a local call takes.
#![cfg(all(feature = "tower", feature = "axum"))]

#[cfg(feature = "redis")]
mod redis_support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use surgeguard::http::{
    GlobalKey, HeaderKey, KeyExtractor, MissingKey, RateLimitLayer, RequestHead,
};
use surgeguard::limit::{AsyncRateLimiter, Checked, Decision};
use tokio::sync::oneshot;
use tower::{service_fn, Layer, Service, ServiceExt};

/// A remote limiter whose answers the test hands over one by one.
#[derive(Default)]
struct Remote {
    answers: parking_lot::Mutex<Vec<oneshot::Receiver<Result<Decision, RemoteError>>>>,
    asked: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("the remote limiter refused the key")]
struct RemoteError;

impl AsyncRateLimiter<()> for Remote {
    type Error = RemoteError;
    type Pending = Pin<Box<dyn Future<Output = Result<Decision, RemoteError>> + Send>>;

    fn begin(this: &Arc<Self>, _: &()) -> Checked<Self::Pending> {
        this.asked.fetch_add(1, Ordering::SeqCst);
        let answer = this.answers.lock().remove(0);
        Checked::Later(Box::pin(
            async move { answer.await.unwrap_or(Err(RemoteError)) },
        ))
    }
}

fn allowed(remaining: u32) -> Decision {
    Decision::Allowed {
        limit: 10,
        remaining,
        reset_after: Duration::from_secs(3),
        policy_window: Duration::from_secs(60),
    }
}

fn denied() -> Decision {
    Decision::Denied {
        limit: 10,
        remaining: 0,
        retry_after: Duration::from_secs(7),
        reset_after: Duration::from_secs(60),
        policy_window: Duration::from_secs(60),
    }
}

type Handler = tower::util::BoxCloneSyncService<Request<()>, Response<Full<Bytes>>, Infallible>;

fn counting_handler(calls: &Arc<AtomicU64>) -> Handler {
    let calls = Arc::clone(calls);
    tower::util::BoxCloneSyncService::new(service_fn(move |_: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
    }))
}

#[tokio::test]
async fn the_handler_runs_only_after_the_remote_limiter_allows() {
    let remote = Remote::default();
    let (answer, pending) = oneshot::channel();
    remote.answers.lock().push(pending);
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = RateLimitLayer::new(remote)
        .key(GlobalKey)
        .layer(counting_handler(&calls));
    let future = service.ready().await.unwrap().call(Request::new(()));
    let waiting = tokio::spawn(future);
    tokio::task::yield_now().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "not called before the decision"
    );
    answer.send(Ok(allowed(4))).unwrap();
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(response.headers()["ratelimit"], "\"default\";r=4;t=3");
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"default\";q=10;w=60"
    );
}

#[tokio::test]
async fn a_remote_denial_is_the_same_429_as_a_local_one() {
    let remote = Remote::default();
    let (answer, pending) = oneshot::channel();
    remote.answers.lock().push(pending);
    let calls = Arc::new(AtomicU64::new(0));
    let service = RateLimitLayer::new(remote)
        .key(GlobalKey)
        .problem_body(true)
        .layer(counting_handler(&calls));
    answer.send(Ok(denied())).unwrap();
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["ratelimit"], "\"default\";r=0;t=60");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_remote_error_answers_as_a_missing_key_does() {
    for (policy, status, handler_calls) in [
        (
            MissingKey::Reject(StatusCode::BAD_REQUEST),
            StatusCode::BAD_REQUEST,
            0,
        ),
        (MissingKey::Allow, StatusCode::OK, 1),
    ] {
        let remote = Remote::default();
        let (answer, pending) = oneshot::channel();
        remote.answers.lock().push(pending);
        let calls = Arc::new(AtomicU64::new(0));
        let service = RateLimitLayer::new(remote)
            .key(GlobalKey)
            .missing_key(policy)
            .layer(counting_handler(&calls));
        answer.send(Err(RemoteError)).unwrap();
        let response = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(calls.load(Ordering::SeqCst), handler_calls);
    }
}

#[tokio::test]
async fn a_request_dropped_while_waiting_never_reaches_the_handler() {
    let remote = Arc::new(Remote::default());
    let (answer, pending) = oneshot::channel();
    remote.answers.lock().push(pending);
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = RateLimitLayer::new(Arc::clone(&remote))
        .key(GlobalKey)
        .layer(counting_handler(&calls));
    let future = service.ready().await.unwrap().call(Request::new(()));
    drop(future);
    let _ = answer.send(Ok(allowed(1)));
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The service still works for the next request (a clone of the inner
    // service took the waiting one's place).
    let (answer, pending) = oneshot::channel();
    remote.answers.lock().push(pending);
    answer.send(Ok(allowed(0))).unwrap();
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "redis")]
mod with_redis {
    use super::*;
    use surgeguard::limit::{AllOf, Gcra, LocalThenRemote, Quota, RateLimiter};
    use surgeguard::redis::{Fallback, RedisGcra, RedisLimiter};

    const UP_TIMEOUT: Duration = Duration::from_secs(30);

    /// A quota that refills nothing within a test.
    fn per_day(count: u32) -> Quota {
        Quota::with_period(count, Duration::from_secs(86_400)).unwrap()
    }

    /// The `x-api-key` header as text (Redis keys are text).
    #[derive(Debug)]
    struct ApiKey;

    impl KeyExtractor for ApiKey {
        type Key = String;

        fn extract(&self, head: &RequestHead<'_>) -> Option<String> {
            head.headers()
                .get("x-api-key")?
                .to_str()
                .ok()
                .map(str::to_owned)
        }
    }

    async fn fleet_limiter(url: &str, prefix: &str, quota: Quota) -> RedisLimiter {
        RedisGcra::builder(url, quota)
            .prefix(prefix)
            .timeout(UP_TIMEOUT)
            .build()
            .await
            .unwrap()
    }

    fn request_from(client: &str) -> Request<()> {
        Request::builder()
            .header("x-api-key", client)
            .body(())
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fleet_of_four_layers_admits_exactly_the_shared_quota() {
        let Some(redis) =
            redis_support::start("a_fleet_of_four_layers_admits_exactly_the_shared_quota")
        else {
            return;
        };
        let quota = per_day(10);
        let calls = Arc::new(AtomicU64::new(0));
        let mut fleet = Vec::new();
        for _ in 0..4 {
            let limiter = fleet_limiter(&redis.url(), "layers:", quota).await;
            fleet.push(
                RateLimitLayer::new(limiter)
                    // The header's value is the Redis key (`RedisKey`).
                    .key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
                    .layer(counting_handler(&calls)),
            );
        }
        let mut statuses = Vec::new();
        for request in 0..40 {
            let service = fleet[request % 4].clone();
            statuses.push(
                service
                    .oneshot(request_from("alice"))
                    .await
                    .unwrap()
                    .status(),
            );
        }
        let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(admitted, 10, "{statuses:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        assert!(statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_denial_costs_the_fleet_limit_nothing() {
        let Some(redis) = redis_support::start("a_local_denial_costs_the_fleet_limit_nothing")
        else {
            return;
        };
        let fleet = Arc::new(fleet_limiter(&redis.url(), "both:", per_day(100)).await);
        let per_client = Gcra::keyed::<String>(per_day(3))
            .max_keys(100)
            .build()
            .unwrap();
        let both = LocalThenRemote::new(
            AllOf::new(per_client, |client: &String| client.clone()),
            Arc::clone(&fleet),
            |_: &String| "global",
        );
        let calls = Arc::new(AtomicU64::new(0));
        let service = RateLimitLayer::new(both)
            .key(ApiKey)
            .layer(counting_handler(&calls));
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(
                service
                    .clone()
                    .oneshot(request_from("mallory"))
                    .await
                    .unwrap()
                    .status(),
            );
        }
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
        // Only the three requests the per-client limit allowed reached Redis.
        assert_eq!(fleet.stats().redis_decisions, 3);
        let global = fleet.check("global").await.unwrap();
        assert_eq!(global.remaining(), 100 - 3 - 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fleet_denial_gives_the_local_units_back() {
        let Some(redis) = redis_support::start("a_fleet_denial_gives_the_local_units_back") else {
            return;
        };
        let fleet = Arc::new(fleet_limiter(&redis.url(), "refund:", per_day(2)).await);
        let per_client = Arc::new(
            Gcra::keyed::<String>(per_day(5))
                .max_keys(100)
                .build()
                .unwrap(),
        );
        let both = LocalThenRemote::new(
            AllOf::new(Arc::clone(&per_client), |client: &String| client.clone()),
            Arc::clone(&fleet),
            |_: &String| "global",
        );
        let service = RateLimitLayer::new(both)
            .key(ApiKey)
            .layer(counting_handler(&Arc::new(AtomicU64::new(0))));
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(
                service
                    .clone()
                    .oneshot(request_from("bob"))
                    .await
                    .unwrap()
                    .status(),
            );
        }
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        // Bob spent two units of his five: the two the fleet denied came back.
        let left = RateLimiter::check(&*per_client, &"bob".to_owned());
        assert_eq!(left.remaining(), 5 - 2 - 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_redis_unreachable_the_fallback_decides_through_the_layer() {
        let url = format!("redis://127.0.0.1:{}/", redis_support::free_port());
        let limiter = RedisGcra::builder(&url, per_day(2))
            .timeout(Duration::from_millis(100))
            .on_unavailable(Fallback::Local { share: 1.0 })
            .build()
            .await
            .unwrap();
        let service = RateLimitLayer::new(limiter)
            .key(GlobalKey)
            .layer(counting_handler(&Arc::new(AtomicU64::new(0))));
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(
                service
                    .clone()
                    .oneshot(Request::new(()))
                    .await
                    .unwrap()
                    .status(),
            );
        }
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_too_long_for_redis_is_a_missing_key_not_a_pass() {
        let Some(redis) =
            redis_support::start("a_key_too_long_for_redis_is_a_missing_key_not_a_pass")
        else {
            return;
        };
        let limiter = RedisGcra::builder(&redis.url(), per_day(2))
            .timeout(UP_TIMEOUT)
            .max_key_len(64)
            .build()
            .await
            .unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let service = RateLimitLayer::new(limiter)
            .key(ApiKey)
            .layer(counting_handler(&calls));
        let long = "k".repeat(200);
        for _ in 0..5 {
            let response = service.clone().oneshot(request_from(&long)).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "an attacker's long key is no way around the limit"
        );
    }
}
