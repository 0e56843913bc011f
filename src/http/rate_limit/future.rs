//! The response future of the rate-limit service: the inner service's
//! future, which gets the `RateLimit` fields on its way out, or the answer
//! the layer gave itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response};

use crate::http::body::GuardedBody;
use crate::http::headers;

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
    pub(super) fn allowed(inner: F, fields: Option<[HeaderValue; 2]>) -> Self {
        RateLimitFuture {
            inner: Some(inner),
            fields,
            answered: None,
        }
    }

    pub(super) fn answered(response: Response<GuardedBody<B>>) -> Self {
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
