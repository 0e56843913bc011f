//! `LoadShedLayer`: the shedder in front of a service. A request the
//! shedder refuses gets `503 Service Unavailable` with `Retry-After` at
//! once; an admitted one holds its permit until its response is ready, and
//! the response's latency and status teach an adaptive limit.
//!
//! * Priority comes from a classifier over the request head (checkout
//!   `Critical`, browsing `Normal`, recommendations `Sheddable`...).
//! * Outcome: a `503` or `504` from the inner service, or an inner error (a
//!   tower `Timeout`, say), counts as a drop, the overload signal adaptive
//!   limits back off on; any other response is a success.
//! * A response future dropped before it completes (the client went away)
//!   releases its permit without teaching the limit.
//! * With a wait queue on the shedder ([`ShedderBuilder::queue`](crate::shed::ShedderBuilder::queue)),
//!   a request that finds the limit full waits in it before the inner
//!   service is called; without one it is refused at once. Unlike tower's
//!   `ConcurrencyLimit`, nothing ever waits unboundedly (tower issue #793).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::body::GuardedBody;
use super::key::RequestHead;
use super::{headers, problem};
use crate::shed::{Outcome, Priority, Rejected, Shedder};

type Classifier = Arc<dyn Fn(&RequestHead<'_>) -> Priority + Send + Sync>;

/// Sheds load in front of a service: a request the shedder refuses gets
/// `503 Service Unavailable` with `Retry-After` at once; an admitted one
/// holds its permit until its response is ready.
///
/// * Priority comes from [`priority`](Self::priority), a classifier over
///   the request head.
/// * A `503` or `504` from the inner service, or an inner error (a tower
///   `Timeout`, say), counts as a drop, the overload signal adaptive limits
///   back off on; any other response is a success.
/// * A response future dropped before it completes releases its permit
///   without teaching the limit.
/// * With a wait queue on the shedder
///   ([`ShedderBuilder::queue`](crate::shed::ShedderBuilder::queue)), a
///   request that finds the limit full waits in it (at most its deadline)
///   before the inner service is called; without one it is refused at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use http::{Method, Request, Response};
/// use http_body_util::Full;
/// use surgeguard::http::LoadShedLayer;
/// use surgeguard::shed::{Priority, Shedder};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let shedder = Shedder::builder().max_concurrency(100).build()?;
/// let layer = LoadShedLayer::new(shedder).priority(|head| {
///     if head.method() == Method::POST && head.uri().path() == "/checkout" {
///         Priority::Critical
///     } else {
///         Priority::Normal
///     }
/// });
/// let service = layer.layer(service_fn(|_: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
/// }));
/// let response = service.oneshot(Request::new(())).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LoadShedLayer {
    shedder: Shedder,
    classify: Classifier,
    problem_body: bool,
}

impl LoadShedLayer {
    /// Sheds with `shedder`; every request `Normal` until
    /// [`priority`](Self::priority) says otherwise.
    ///
    /// ```
    /// # use surgeguard::http::LoadShedLayer;
    /// # use surgeguard::shed::Shedder;
    /// let layer = LoadShedLayer::new(Shedder::builder().max_concurrency(64).build()?);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn new(shedder: Shedder) -> Self {
        LoadShedLayer {
            shedder,
            classify: Arc::new(|_: &RequestHead<'_>| Priority::Normal),
            problem_body: false,
        }
    }

    /// How much each request matters.
    ///
    /// ```
    /// # use surgeguard::http::LoadShedLayer;
    /// # use surgeguard::shed::{Priority, Shedder};
    /// let layer = LoadShedLayer::new(Shedder::builder().max_concurrency(64).build()?)
    ///     .priority(|head| if head.uri().path().starts_with("/checkout") {
    ///         Priority::Critical
    ///     } else {
    ///         Priority::Sheddable
    ///     });
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn priority(
        mut self,
        classify: impl Fn(&RequestHead<'_>) -> Priority + Send + Sync + 'static,
    ) -> Self {
        self.classify = Arc::new(classify);
        self
    }

    /// Whether a `503` carries an `application/problem+json` body of type
    /// `temporary-reduced-capacity` (default: off, an empty body).
    ///
    /// ```
    /// # use surgeguard::http::LoadShedLayer;
    /// # use surgeguard::shed::Shedder;
    /// let layer = LoadShedLayer::new(Shedder::builder().max_concurrency(64).build()?)
    ///     .problem_body(true);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn problem_body(mut self, on: bool) -> Self {
        self.problem_body = on;
        self
    }
}

impl fmt::Debug for LoadShedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedLayer")
            .field("shedder", &self.shedder)
            .field("problem_body", &self.problem_body)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShedService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`LoadShedLayer`] makes. Clones share the shedder.
///
/// ```
/// # use surgeguard::http::{LoadShedLayer, LoadShedService};
/// # use surgeguard::shed::Shedder;
/// use tower::Layer;
/// let layer = LoadShedLayer::new(Shedder::builder().max_concurrency(8).build()?);
/// let service: LoadShedService<()> = layer.layer(());
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[derive(Clone)]
pub struct LoadShedService<S> {
    inner: S,
    layer: LoadShedLayer,
}

impl<S: fmt::Debug> fmt::Debug for LoadShedService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The response future of [`LoadShedService`].
pub type LoadShedFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<GuardedBody<B>>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LoadShedService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Send,
{
    type Response = Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = LoadShedFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let priority = (self.layer.classify)(&RequestHead::of(&request));
        let problem_body = self.layer.problem_body;
        let shedder = &self.layer.shedder;
        if !shedder.has_queue() {
            return match shedder.try_acquire(priority) {
                Ok(permit) => {
                    let response = self.inner.call(request);
                    Box::pin(async move { finish(permit, response.await) })
                }
                Err(rejected) => {
                    let response = unavailable(&rejected, problem_body);
                    Box::pin(async move { Ok(response) })
                }
            };
        }
        // Admit or wait in the shedder's queue, then call the service that
        // was made ready (a clone takes its place here).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shedder = shedder.clone();
        Box::pin(async move {
            match shedder.acquire(priority).await {
                Ok(permit) => finish(permit, inner.call(request).await),
                Err(rejected) => Ok(unavailable(&rejected, problem_body)),
            }
        })
    }
}

/// Records how an admitted request went and passes its result on.
fn finish<B: http_body::Body, E>(
    permit: crate::shed::Permit,
    result: Result<Response<B>, E>,
) -> Result<Response<GuardedBody<B>>, E> {
    let outcome = match &result {
        Ok(response)
            if matches!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
            ) =>
        {
            Outcome::Dropped
        }
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Dropped,
    };
    permit.record(outcome);
    result.map(|response| response.map(GuardedBody::inner))
}

/// `503` with `Retry-After` (and the problem body, if on).
fn unavailable<B: http_body::Body>(
    rejected: &Rejected,
    problem_body: bool,
) -> Response<GuardedBody<B>> {
    let seconds = headers::delta_seconds(rejected.retry_after());
    let body = if problem_body {
        GuardedBody::full(problem::temporary_reduced_capacity(seconds))
    } else {
        GuardedBody::empty()
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(RETRY_AFTER, headers::retry_after(rejected.retry_after()));
    if problem_body {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, problem::PROBLEM_JSON);
    }
    response
}
