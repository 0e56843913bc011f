//! The rate-limit layer: check a limiter before the inner service is
//! called, answer `429` when it denies.
//!
//! * The layer holds its limiter, key extractor and settings behind one
//!   `Arc`: every service the layer makes, every clone axum or hyper takes
//!   per connection or request, counts against the same limiter.
//! * A denial is a response: `429 Too Many Requests` with `Retry-After`
//!   (delta-seconds, rounded up), `RateLimit-Policy` and `RateLimit`, and
//!   optionally an `application/problem+json` body (`quota-exceeded`).
//!   The inner service is not called; its readiness is not consumed.
//! * An allowed response carries `RateLimit-Policy` and `RateLimit` too,
//!   unless turned off; everything else about it, and any error of the
//!   inner service, passes through unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::body::GuardedBody;
use super::client_ip::ClientIp;
use super::error::ConfigError;
use super::headers;
use super::key::{KeyExtractor, MissingKey, RequestHead};
use super::problem;
use crate::limit::{Decision, RateLimiter};

/// The settings of a layer, fixed once it makes a service.
#[derive(Debug, Clone)]
struct Settings {
    missing_key: MissingKey,
    headers_on_allowed: bool,
    problem_body: bool,
    policy_name: Arc<str>,
}

/// What every clone of one service shares: one `Arc` to bump per clone.
struct Shared<L, X> {
    limiter: Arc<L>,
    key: Arc<X>,
    settings: Settings,
    /// `RateLimit-Policy` as last formatted, with the limit and window it
    /// says: a limiter's policy rarely changes, so most responses reuse it.
    policy: std::sync::OnceLock<(u32, std::time::Duration, HeaderValue)>,
}

/// Limits the requests that reach the inner service.
///
/// * The layer holds its limiter, key extractor and settings behind one
///   `Arc`: every service the layer makes, every clone axum or hyper takes
///   per connection or request, counts against the same limiter.
/// * A denial is a response: `429 Too Many Requests` with `Retry-After`
///   (delta-seconds, rounded up), `RateLimit-Policy` and `RateLimit`, and
///   optionally an `application/problem+json` body (`quota-exceeded`).
///   The inner service is not called; its readiness is not consumed.
/// * An allowed response carries `RateLimit-Policy` and `RateLimit` too,
///   unless turned off; everything else about it, and any error of the
///   inner service, passes through unchanged.
///
/// ```
/// use surgeguard::http::{ClientIp, RateLimitLayer, TrustedProxies};
/// use surgeguard::limit::{Gcra, Quota};
///
/// let per_ip = Gcra::keyed::<std::net::IpAddr>(Quota::per_second(10)?.burst(20)?).max_keys(100_000).build()?;
/// let trusted = TrustedProxies::new(["10.0.0.0/8"])?;
/// let layer = RateLimitLayer::new(per_ip)
///     .key(ClientIp::from_peer_or_forwarded(trusted))
///     .policy_name("per-ip")?
///     .problem_body(true);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RateLimitLayer<L, X = ClientIp> {
    limiter: Arc<L>,
    key: Arc<X>,
    settings: Settings,
}

impl<L> RateLimitLayer<L, ClientIp> {
    /// Limits requests with `limiter`, keyed by the peer's IP address
    /// ([`ClientIp::peer`]) until [`key`](Self::key) says otherwise. Every
    /// service this layer makes, and every clone of them, shares `limiter`.
    ///
    /// ```
    /// # use surgeguard::http::RateLimitLayer;
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let layer = RateLimitLayer::new(Gcra::keyed::<std::net::IpAddr>(Quota::per_minute(60)?).max_keys(1_000).build()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(limiter: L) -> Self {
        RateLimitLayer {
            limiter: Arc::new(limiter),
            key: Arc::new(ClientIp::peer()),
            settings: Settings {
                missing_key: MissingKey::default(),
                headers_on_allowed: true,
                problem_body: false,
                policy_name: "default".into(),
            },
        }
    }
}

impl<L, X> RateLimitLayer<L, X> {
    /// Draws the key from requests with `key` instead.
    ///
    /// ```
    /// # use surgeguard::http::{HeaderKey, RateLimitLayer};
    /// # use surgeguard::limit::{Gcra, Quota};
    /// let per_api_key = Gcra::keyed::<http::HeaderValue>(Quota::per_second(5)?).max_keys(10_000).build()?;
    /// let layer = RateLimitLayer::new(per_api_key)
    ///     .key(HeaderKey::new(http::HeaderName::from_static("x-api-key")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key<Y>(self, key: Y) -> RateLimitLayer<L, Y> {
        RateLimitLayer {
            limiter: self.limiter,
            key: Arc::new(key),
            settings: self.settings,
        }
    }

    /// What to do with requests that have no key (default:
    /// [`MissingKey::Reject`] with `400`).
    ///
    /// ```
    /// # use surgeguard::http::{HeaderKey, MissingKey, RateLimitLayer};
    /// # use surgeguard::limit::{Gcra, Quota};
    /// # let limiter = Gcra::keyed::<http::HeaderValue>(Quota::per_second(5)?).max_keys(10).build()?;
    /// let layer = RateLimitLayer::new(limiter)
    ///     .key(HeaderKey::new(http::header::AUTHORIZATION))
    ///     .missing_key(MissingKey::Reject(http::StatusCode::UNAUTHORIZED));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn missing_key(mut self, policy: MissingKey) -> Self {
        self.settings.missing_key = policy;
        self
    }

    /// Whether allowed responses carry `RateLimit-Policy` and `RateLimit`
    /// (default: yes; denials always do).
    ///
    /// ```
    /// # use surgeguard::http::RateLimitLayer;
    /// # use surgeguard::limit::{Gcra, Quota};
    /// # let limiter = Gcra::keyed::<std::net::IpAddr>(Quota::per_second(5)?).max_keys(10).build()?;
    /// let quiet = RateLimitLayer::new(limiter).headers_on_allowed(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn headers_on_allowed(mut self, on: bool) -> Self {
        self.settings.headers_on_allowed = on;
        self
    }

    /// Whether a `429` carries an `application/problem+json` body of type
    /// `quota-exceeded` (default: no, an empty body).
    ///
    /// ```
    /// # use surgeguard::http::RateLimitLayer;
    /// # use surgeguard::limit::{Gcra, Quota};
    /// # let limiter = Gcra::keyed::<std::net::IpAddr>(Quota::per_second(5)?).max_keys(10).build()?;
    /// let layer = RateLimitLayer::new(limiter).problem_body(true);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn problem_body(mut self, on: bool) -> Self {
        self.settings.problem_body = on;
        self
    }

    /// The policy's name in the `RateLimit` fields and problem bodies
    /// (default: `default`): 1 to 64 characters of `A-Z a-z 0-9 - _ .`.
    ///
    /// ```
    /// # use surgeguard::http::{ConfigError, RateLimitLayer};
    /// # use surgeguard::limit::{Gcra, Quota};
    /// # let limiter = Gcra::keyed::<std::net::IpAddr>(Quota::per_second(5)?).max_keys(10).build()?;
    /// let layer = RateLimitLayer::new(limiter).policy_name("per-ip")?;
    /// let err = layer.policy_name("per ip").unwrap_err();
    /// assert!(matches!(err, ConfigError::InvalidPolicyName { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn policy_name(mut self, name: &str) -> Result<Self, ConfigError> {
        if !headers::is_valid_policy_name(name) {
            return Err(ConfigError::InvalidPolicyName {
                name: name.to_owned(),
            });
        }
        self.settings.policy_name = name.into();
        Ok(self)
    }
}

impl<L, X> Clone for RateLimitLayer<L, X> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: Arc::clone(&self.limiter),
            key: Arc::clone(&self.key),
            settings: self.settings.clone(),
        }
    }
}

impl<L, X: std::fmt::Debug> std::fmt::Debug for RateLimitLayer<L, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S, L, X> Layer<S> for RateLimitLayer<L, X> {
    type Service = RateLimitService<S, L, X>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: Arc::new(Shared {
                limiter: Arc::clone(&self.limiter),
                key: Arc::clone(&self.key),
                settings: self.settings.clone(),
                policy: std::sync::OnceLock::new(),
            }),
        }
    }
}

/// The service [`RateLimitLayer`] makes. Clones share the limiter.
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
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl<S, L, X, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S, L, X>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    L: RateLimiter<X::Key>,
    X: KeyExtractor,
    ResBody: http_body::Body,
{
    type Response = Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let settings = &shared.settings;
        let key = shared.key.extract(&RequestHead::of(&request));
        let decision = match key {
            Some(key) => shared.limiter.check(&key),
            None => {
                return match settings.missing_key {
                    MissingKey::Allow => RateLimitFuture::allowed(self.inner.call(request), None),
                    MissingKey::Reject(status) => {
                        let mut response = Response::new(GuardedBody::empty());
                        *response.status_mut() = status;
                        RateLimitFuture::answered(response)
                    }
                };
            }
        };
        match decision {
            Decision::Allowed { .. } => {
                let fields = settings
                    .headers_on_allowed
                    .then(|| shared.fields(&decision));
                RateLimitFuture::allowed(self.inner.call(request), fields)
            }
            Decision::Denied { retry_after, .. } => {
                let fields = shared.fields(&decision);
                RateLimitFuture::answered(denial(settings, fields, retry_after))
            }
        }
    }
}

impl<L, X> Shared<L, X> {
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
    retry_after: std::time::Duration,
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

pin_project_lite::pin_project! {
    /// The response future of [`RateLimitService`]: the inner service's
    /// future with the `RateLimit` fields to add, or a response the layer
    /// gave itself.
    ///
    /// ```
    /// # use surgeguard::http::RateLimitFuture;
    /// fn is_future<F: std::future::Future>(_: &F) {}
    /// # let _ = is_future::<RateLimitFuture<std::future::Ready<Result<http::Response<String>, ()>>, String>>;
    /// ```
    pub struct RateLimitFuture<F, B>
    where
        B: http_body::Body,
    {
        #[pin]
        inner: Option<F>,
        fields: Option<[HeaderValue; 2]>,
        answered: Option<Response<GuardedBody<B>>>,
    }
}

impl<F, B: http_body::Body> RateLimitFuture<F, B> {
    fn allowed(inner: F, fields: Option<[HeaderValue; 2]>) -> Self {
        RateLimitFuture {
            inner: Some(inner),
            fields,
            answered: None,
        }
    }

    fn answered(response: Response<GuardedBody<B>>) -> Self {
        RateLimitFuture {
            inner: None,
            fields: None,
            answered: Some(response),
        }
    }
}

impl<F, B: http_body::Body> std::fmt::Debug for RateLimitFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitFuture")
            .field("answered", &self.answered.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for RateLimitFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<GuardedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return match this.answered.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("RateLimitFuture polled after it completed"),
            };
        };
        let response = match inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(response)) => response,
        };
        let mut response = response.map(GuardedBody::inner);
        if let Some([policy, state]) = this.fields.take() {
            let headers = response.headers_mut();
            headers.insert(headers::RATELIMIT_POLICY.clone(), policy);
            headers.insert(headers::RATELIMIT.clone(), state);
        }
        Poll::Ready(Ok(response))
    }
}
