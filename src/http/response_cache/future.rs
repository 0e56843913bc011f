//! The response future of the response-cache service, named so that the
//! two common answers cost no allocation: a hit is a response built in
//! `call`, a request the layer steps aside for is the inner service's own
//! future. Only a request that goes through the cache's loading (a miss,
//! a stale entry, a refresh) is boxed: its state is large and the handler
//! call dwarfs one allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;

use super::invalidate::Target;
use crate::http::body::GuardedBody;

/// What the boxed loading path resolves to.
pub(crate) type Loading<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<GuardedBody<B>>, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of
    /// [`ResponseCacheService`](super::ResponseCacheService): a stored
    /// response ready at once, the inner service's future (a request the
    /// layer does not cache), or a load through the cache.
    ///
    /// ```
    /// # use surgeguard::http::ResponseCacheFuture;
    /// fn is_future<F: std::future::Future>(_: &F) {}
    /// # type Inner = std::future::Ready<Result<http::Response<String>, ()>>;
    /// # let _ = is_future::<ResponseCacheFuture<Inner, String, ()>>;
    /// ```
    pub struct ResponseCacheFuture<F, B, E>
    where
        B: Body,
    {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<F, B, E>
    where
        B: Body,
    {
        // Answered from storage, taken on the first poll.
        Ready {
            response: Option<Response<GuardedBody<B>>>,
        },
        // Not cached: the inner service's answer, body untouched.
        Inner {
            #[pin]
            future: F,
        },
        // An unsafe request: the inner service's answer, then the stored
        // responses it changed are invalidated.
        Invalidating {
            #[pin]
            future: F,
            // Boxed: the hit path returns this future by value, and an
            // unsafe request is rare enough to pay for the allocation.
            target: Option<Box<Target>>,
        },
        // Through the cache's loading.
        Loading {
            future: Loading<B, E>,
        },
    }
}

impl<F, B: Body, E> ResponseCacheFuture<F, B, E> {
    pub(crate) fn ready(response: Response<GuardedBody<B>>) -> Self {
        let response = Some(response);
        ResponseCacheFuture {
            state: State::Ready { response },
        }
    }

    pub(crate) fn inner(future: F) -> Self {
        ResponseCacheFuture {
            state: State::Inner { future },
        }
    }

    pub(crate) fn invalidating(future: F, target: Target) -> Self {
        let target = Some(Box::new(target));
        ResponseCacheFuture {
            state: State::Invalidating { future, target },
        }
    }

    pub(crate) fn loading(future: Loading<B, E>) -> Self {
        ResponseCacheFuture {
            state: State::Loading { future },
        }
    }
}

impl<F, B: Body, E> std::fmt::Debug for ResponseCacheFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Ready { .. } => "Ready",
            State::Inner { .. } => "Inner",
            State::Invalidating { .. } => "Invalidating",
            State::Loading { .. } => "Loading",
        };
        f.debug_struct("ResponseCacheFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseCacheFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<GuardedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseCacheFuture polled after it completed"),
            },
            StateProjection::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(GuardedBody::inner))),
            StateProjection::Invalidating { future, target } => {
                let result = std::task::ready!(future.poll(cx));
                if let (Ok(response), Some(target)) = (&result, target.take()) {
                    target.answered(response.status(), response.headers());
                }
                Poll::Ready(result.map(|response| response.map(GuardedBody::inner)))
            }
            StateProjection::Loading { future } => future.as_mut().poll(cx),
        }
    }
}
