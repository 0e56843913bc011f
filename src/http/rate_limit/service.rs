//! The rate-limit service: draws the key, checks the limiter, and either
//! calls the inner service or answers `429` itself.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use super::future::RateLimitFuture;
use super::Settings;
use crate::http::body::GuardedBody;
use crate::http::client_ip::ClientIp;
use crate::http::headers;
use crate::http::key::{KeyExtractor, MissingKey, RequestHead};
use crate::http::problem;
use crate::limit::{AsyncRateLimiter, Checked, Decision};

/// What every clone of one service shares: one `Arc` to bump per clone.
pub(super) struct Shared<L, X> {
    limiter: Arc<L>,
    key: Arc<X>,
    answers: Arc<Answers>,
}

/// How the layer answers, shared with requests waiting for a remote
/// limiter.
pub(super) struct Answers {
    settings: Settings,
    /// `RateLimit-Policy` as last formatted, with the limit and window it
    /// says: a limiter's policy rarely changes, so most responses reuse it.
    policy: OnceLock<(u32, Duration, HeaderValue)>,
}

/// The service [`RateLimitLayer`](super::RateLimitLayer) makes. Clones share the limiter.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use surgeguard::http::{GlobalKey, RateLimitLayer};
/// use surgeguard::limit::{Gcra, Quota};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let layer = RateLimitLayer::new(Gcra::direct(Quota::per_minute(1)?).build()?).key(GlobalKey);
/// let service = layer.layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
/// }));
/// let first = service.clone().oneshot(http::Request::new(())).await?;
/// assert_eq!(first.headers()["ratelimit"], "\"default\";r=0;t=60");
/// let second = service.oneshot(http::Request::new(())).await?;
/// assert_eq!(second.status(), 429);
/// # Ok(())
/// # }
/// ```
pub struct RateLimitService<S, L, X = ClientIp> {
    inner: S,
    shared: Arc<Shared<L, X>>,
}

impl<S, L, X> RateLimitService<S, L, X> {
    pub(super) fn new(inner: S, shared: Shared<L, X>) -> Self {
        RateLimitService {
            inner,
            shared: Arc::new(shared),
        }
    }
}

impl<S: Clone, L, X> Clone for RateLimitService<S, L, X> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug, L, X: std::fmt::Debug> std::fmt::Debug for RateLimitService<S, L, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("key", &self.shared.key)
            .field("settings", &self.shared.answers.settings)
            .finish_non_exhaustive()
    }
}

impl<S, L, X, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S, L, X>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    L: AsyncRateLimiter<X::Key>,
    X: KeyExtractor,
    ResBody: http_body::Body,
{
    type Response = Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Future, ResBody, L::Pending, S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let Some(key) = shared.key.extract(&RequestHead::of(&request)) else {
            return shared.answers.without_key(&mut self.inner, request);
        };
        match L::begin(&shared.limiter, &key) {
            // Every local limiter: decided now, the inner service called
            // now; nothing is boxed or cloned.
            Checked::Now(decision) => shared.answers.decided(decision, &mut self.inner, request),
            // A remote limiter: the request waits for its answer with the
            // service that was polled ready (a clone takes its place here,
            // to be polled ready for the next request).
            Checked::Later(pending) => {
                let ready = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, ready);
                RateLimitFuture::checking(pending, inner, request, Arc::clone(&shared.answers))
            }
        }
    }
}

impl<L, X> Shared<L, X> {
    pub(super) fn new(limiter: Arc<L>, key: Arc<X>, settings: Settings) -> Self {
        Shared {
            limiter,
            key,
            answers: Arc::new(Answers {
                settings,
                policy: OnceLock::new(),
            }),
        }
    }
}

impl Answers {
    /// What `decision` means for `request`: the inner service's answer
    /// (with the `RateLimit` fields) or a `429`.
    pub(super) fn decided<S, Req, ResBody, P>(
        &self,
        decision: Decision,
        inner: &mut S,
        request: Req,
    ) -> RateLimitFuture<S::Future, ResBody, P, S, Req>
    where
        S: Service<Req, Response = Response<ResBody>>,
        ResBody: http_body::Body,
    {
        match decision {
            Decision::Allowed { .. } => {
                let fields = self
                    .settings
                    .headers_on_allowed
                    .then(|| self.fields(&decision));
                RateLimitFuture::allowed(inner.call(request), fields)
            }
            Decision::Denied { retry_after, .. } => {
                let fields = self.fields(&decision);
                RateLimitFuture::answered(denial(&self.settings, fields, retry_after))
            }
        }
    }

    /// A request the limiter cannot be asked about (no key, or a key the
    /// remote limiter refused): the layer's [`MissingKey`] policy.
    pub(super) fn without_key<S, Req, ResBody, P>(
        &self,
        inner: &mut S,
        request: Req,
    ) -> RateLimitFuture<S::Future, ResBody, P, S, Req>
    where
        S: Service<Req, Response = Response<ResBody>>,
        ResBody: http_body::Body,
    {
        match self.settings.missing_key {
            MissingKey::Allow => RateLimitFuture::allowed(inner.call(request), None),
            MissingKey::Reject(status) => {
                let mut response = Response::new(GuardedBody::empty());
                *response.status_mut() = status;
                RateLimitFuture::answered(response)
            }
        }
    }

    /// `RateLimit-Policy` and `RateLimit` for `decision`.
    fn fields(&self, decision: &Decision) -> [HeaderValue; 2] {
        let name = &*self.settings.policy_name;
        let (limit, window) = (decision.limit(), decision.policy_window());
        let policy = self
            .policy
            .get_or_init(|| (limit, window, headers::policy(name, limit, window)));
        let policy = if (policy.0, policy.1) == (limit, window) {
            policy.2.clone()
        } else {
            headers::policy(name, limit, window)
        };
        let state = headers::state(name, decision.remaining(), decision.reset_after());
        [policy, state]
    }
}

fn denial<B: http_body::Body>(
    settings: &Settings,
    [policy, state]: [HeaderValue; 2],
    retry_after: Duration,
) -> Response<GuardedBody<B>> {
    let body = if settings.problem_body {
        let seconds = headers::delta_seconds(retry_after);
        GuardedBody::full(problem::quota_exceeded(&settings.policy_name, seconds))
    } else {
        GuardedBody::empty()
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, headers::retry_after(retry_after));
    headers.insert(headers::RATELIMIT_POLICY.clone(), policy);
    headers.insert(headers::RATELIMIT.clone(), state);
    if settings.problem_body {
        headers.insert(CONTENT_TYPE, problem::PROBLEM_JSON);
    }
    response
}
