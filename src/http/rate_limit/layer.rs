//! Building the rate-limit layer: the limiter, the key drawn from each
//! request, and what the answers carry.

use std::sync::Arc;

use tower_layer::Layer;

use super::service::{RateLimitService, Shared};
use super::Settings;
use crate::http::client_ip::ClientIp;
use crate::http::error::ConfigError;
use crate::http::headers;
use crate::http::key::MissingKey;

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
/// use surgeguard::http::{ClientIp, ProxyHeader, RateLimitLayer, TrustedProxies};
/// use surgeguard::limit::{Gcra, Quota};
///
/// let per_ip = Gcra::keyed::<std::net::IpAddr>(Quota::per_second(10)?.burst(20)?).max_keys(100_000).build()?;
/// // Behind proxies on 10.0.0.0/8 that append to X-Forwarded-For:
/// let trusted = TrustedProxies::new(["10.0.0.0/8"])?;
/// let layer = RateLimitLayer::new(per_ip)
///     .key(ClientIp::behind(trusted, ProxyHeader::XForwardedFor))
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
    /// `limiter` is any [`AsyncRateLimiter`](crate::limit::AsyncRateLimiter):
    /// a local limiter is asked inline, as a function call; a
    /// [`RedisLimiter`](crate::redis::RedisLimiter) (a limit for the whole
    /// fleet) makes the request wait for its answer before the inner
    /// service is called, with the same `429`, `Retry-After` and
    /// `RateLimit` fields; [`LocalThenRemote`](crate::limit::LocalThenRemote)
    /// asks the fleet's limit only when the local ones allow. A key the
    /// remote limiter refuses (too long for Redis) is answered by the
    /// [`missing_key`](Self::missing_key) policy.
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
        let shared = Shared::new(
            Arc::clone(&self.limiter),
            Arc::clone(&self.key),
            self.settings.clone(),
        );
        RateLimitService::new(inner, shared)
    }
}
