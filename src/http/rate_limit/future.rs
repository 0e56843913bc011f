//! The response future of the rate-limit service: the inner service's
//! future, which gets the `RateLimit` fields on its way out, or the answer
//! the layer gave itself, or (for a remote limiter) the wait for the
//! decision before either.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Response};
use tower_service::Service;

use super::service::Answers;
use crate::http::body::GuardedBody;
use crate::http::headers;
use crate::limit::Decision;

pin_project_lite::pin_project! {
    /// The response future of [`RateLimitService`](super::RateLimitService):
    /// the inner service's future with the `RateLimit` fields to add, a
    /// response the layer gave itself, or, behind a limiter that answers
    /// later (Redis), the wait for its decision first. `P`, `S` and `Req`
    /// are that limiter's pending answer, the inner service and the request
    /// it will be called with.
    ///
    /// ```
    /// use surgeguard::http::{GlobalKey, RateLimitLayer};
    /// use surgeguard::limit::{Gcra, Quota};
    /// use tower::{service_fn, Layer, Service};
    ///
    /// fn is_future<F: std::future::Future>(_: &F) {}
    /// let handler = service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    /// });
    /// let mut service = RateLimitLayer::new(Gcra::direct(Quota::per_second(1)?).build()?)
    ///     .key(GlobalKey)
    ///     .layer(handler);
    /// let answer = service.call(http::Request::new(())); // a RateLimitFuture
    /// is_future(&answer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub struct RateLimitFuture<F, B, P, S, Req>
    where
        B: http_body::Body,
    {
        #[pin]
        stage: Stage<F, B, P, S, Req>,
    }
}

pin_project_lite::pin_project! {
    #[project = StageProjection]
    enum Stage<F, B, P, S, Req>
    where
        B: http_body::Body,
    {
        Checking {
            #[pin]
            pending: P,
            inner: Option<S>,
            request: Option<Req>,
            answers: Arc<Answers>,
        },
        Calling {
            #[pin]
            future: F,
            fields: Option<[HeaderValue; 2]>,
        },
        Answered {
            response: Option<Response<GuardedBody<B>>>,
        },
    }
}

impl<F, B: http_body::Body, P, S, Req> RateLimitFuture<F, B, P, S, Req> {
    pub(super) fn allowed(future: F, fields: Option<[HeaderValue; 2]>) -> Self {
        RateLimitFuture {
            stage: Stage::Calling { future, fields },
        }
    }

    pub(super) fn answered(response: Response<GuardedBody<B>>) -> Self {
        RateLimitFuture {
            stage: Stage::Answered {
                response: Some(response),
            },
        }
    }

    pub(super) fn checking(pending: P, inner: S, request: Req, answers: Arc<Answers>) -> Self {
        RateLimitFuture {
            stage: Stage::Checking {
                pending,
                inner: Some(inner),
                request: Some(request),
                answers,
            },
        }
    }
}

impl<F, B: http_body::Body, P, S, Req> std::fmt::Debug for RateLimitFuture<F, B, P, S, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::Checking { .. } => "checking",
            Stage::Calling { .. } => "calling",
            Stage::Answered { .. } => "answered",
        };
        f.debug_struct("RateLimitFuture")
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

impl<F, B, E, P, PE, S, Req> Future for RateLimitFuture<F, B, P, S, Req>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    P: Future<Output = Result<Decision, PE>>,
    PE: std::fmt::Display,
    S: Service<Req, Future = F, Response = Response<B>, Error = E>,
{
    type Output = Result<Response<GuardedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut stage = self.project().stage;
        loop {
            match stage.as_mut().project() {
                StageProjection::Checking {
                    pending,
                    inner,
                    request,
                    answers,
                } => {
                    let outcome = ready!(pending.poll(cx));
                    let (Some(mut inner), Some(request)) = (inner.take(), request.take()) else {
                        panic!("RateLimitFuture polled after it completed");
                    };
                    let next = match outcome {
                        Ok(decision) => answers.decided(decision, &mut inner, request),
                        Err(error) => {
                            // A key the remote limiter will not take (too
                            // long for Redis, say): asked about no key.
                            #[cfg(feature = "tracing")]
                            tracing::debug!(%error, "remote rate limiter refused the key; the missing-key policy answers");
                            #[cfg(not(feature = "tracing"))]
                            let _ = error;
                            answers.without_key(&mut inner, request)
                        }
                    };
                    stage.set(next.stage);
                }
                StageProjection::Calling { future, fields } => {
                    let response = match ready!(future.poll(cx)) {
                        Err(error) => return Poll::Ready(Err(error)),
                        Ok(response) => response,
                    };
                    let mut response = response.map(GuardedBody::inner);
                    if let Some([policy, state]) = fields.take() {
                        let headers = response.headers_mut();
                        headers.insert(headers::RATELIMIT_POLICY.clone(), policy);
                        headers.insert(headers::RATELIMIT.clone(), state);
                    }
                    return Poll::Ready(Ok(response));
                }
                StageProjection::Answered { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => panic!("RateLimitFuture polled after it completed"),
                    };
                }
            }
        }
    }
}
