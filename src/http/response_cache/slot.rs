//! A request's slot on the loading path: where its loader takes the
//! request from, and where that loader hands back what became of it.
//!
//! Only the caller's own loader can reach its slot. The cache runs at most
//! one loader per key and drops the others unrun, and it may run a
//! caller's loader as the background reload behind a stale answer, after
//! the caller got its value back. So the slot tells the caller which of
//! these happened: its request is still there (its loader did not run), a
//! loader is running it, or it ended with a [`Handoff`]. A caller that
//! needs its own request's outcome awaits it ([`Slot::outcome`]); a loader
//! that is dropped midway (its task cancelled, its handler panicked)
//! releases that caller instead of leaving it waiting.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use http::{Request, Response};
use http_body::Body;
use parking_lot::Mutex;

use super::stored::StoredResponse;
use crate::http::body::GuardedBody;

/// What became of a request its loader ran.
pub(crate) enum Handoff<ResBody: Body, E> {
    /// The inner service's answer: a response not to be shared, or its
    /// error. `failed` is true for an error or a 500, 502, 503 or 504,
    /// the failures RFC 5861's stale-if-error covers.
    Answer {
        result: Box<Result<Response<GuardedBody<ResBody>>, E>>,
        failed: bool,
    },
    /// Stored: under the key the load ran for, or under another variant
    /// (the response named a `Vary` the layer did not know yet).
    Stored(Arc<StoredResponse>),
    /// Stored without the `Set-Cookie` fields it came with (the layer was
    /// told to store such responses): they go to this caller only.
    StoredWithCookies(Arc<StoredResponse>, Vec<http::HeaderValue>),
}

/// Where a request stands.
// One per request on the loading path, already behind an `Arc`: boxing the
// request would add an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum State<ReqBody, ResBody: Body, E> {
    /// Not taken: no loader of its caller has run.
    Waiting(Request<ReqBody>),
    /// A loader took it and is running it.
    Running,
    /// Its loader ended with this, not yet collected.
    Ended(Handoff<ResBody, E>),
    /// Collected, or its loader was dropped before it ended.
    Closed,
}

/// A request's slot, shared by its caller and its caller's loaders.
pub(crate) struct Slot<ReqBody, ResBody: Body, E> {
    inner: Mutex<(State<ReqBody, ResBody, E>, Option<Waker>)>,
}

impl<ReqBody, ResBody: Body, E> Slot<ReqBody, ResBody, E> {
    pub(crate) fn new(request: Request<ReqBody>) -> Arc<Self> {
        Arc::new(Slot {
            inner: Mutex::new((State::Waiting(request), None)),
        })
    }

    /// For a loader: the request, if no other loader took it first. The
    /// returned guard hands the outcome back, or closes the slot if it is
    /// dropped first.
    pub(crate) fn take(
        self: &Arc<Self>,
    ) -> Option<(Request<ReqBody>, Running<ReqBody, ResBody, E>)> {
        let mut inner = self.inner.lock();
        if !matches!(inner.0, State::Waiting(_)) {
            return None;
        }
        match std::mem::replace(&mut inner.0, State::Running) {
            State::Waiting(request) => Some((
                request,
                Running {
                    slot: Arc::clone(self),
                },
            )),
            _ => None,
        }
    }

    /// For the caller: its request back, if no loader took it.
    pub(crate) fn reclaim(&self) -> Option<Request<ReqBody>> {
        let mut inner = self.inner.lock();
        if !matches!(inner.0, State::Waiting(_)) {
            return None;
        }
        match std::mem::replace(&mut inner.0, State::Closed) {
            State::Waiting(request) => Some(request),
            _ => None,
        }
    }

    /// For the caller: reads the request, if no loader took it.
    pub(crate) fn peek<T>(&self, read: impl FnOnce(&Request<ReqBody>) -> T) -> Option<T> {
        match &self.inner.lock().0 {
            State::Waiting(request) => Some(read(request)),
            _ => None,
        }
    }

    /// Whether a loader took the request (it may have ended since).
    pub(crate) fn is_taken(&self) -> bool {
        !matches!(self.inner.lock().0, State::Waiting(_))
    }

    /// For the caller: the outcome, if the loader has ended.
    pub(crate) fn ended(&self) -> Option<Handoff<ResBody, E>> {
        let mut inner = self.inner.lock();
        if !matches!(inner.0, State::Ended(_)) {
            return None;
        }
        match std::mem::replace(&mut inner.0, State::Closed) {
            State::Ended(handoff) => Some(handoff),
            _ => None,
        }
    }

    /// For the caller: waits for the running loader's outcome; `None` if
    /// no loader runs the request or it was dropped before it ended.
    pub(crate) async fn outcome(&self) -> Option<Handoff<ResBody, E>> {
        poll_fn(|cx| {
            let mut inner = self.inner.lock();
            match std::mem::replace(&mut inner.0, State::Closed) {
                State::Ended(handoff) => Poll::Ready(Some(handoff)),
                State::Running => {
                    inner.0 = State::Running;
                    inner.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
                State::Waiting(request) => {
                    inner.0 = State::Waiting(request);
                    Poll::Ready(None)
                }
                State::Closed => Poll::Ready(None),
            }
        })
        .await
    }

    fn finish(&self, state: State<ReqBody, ResBody, E>) {
        let waker = {
            let mut inner = self.inner.lock();
            if !matches!(inner.0, State::Running) {
                return;
            }
            inner.0 = state;
            inner.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A loader's hold on the request it took.
pub(crate) struct Running<ReqBody, ResBody: Body, E> {
    slot: Arc<Slot<ReqBody, ResBody, E>>,
}

impl<ReqBody, ResBody: Body, E> Running<ReqBody, ResBody, E> {
    /// Hands `handoff` to the caller.
    pub(crate) fn end(self, handoff: Handoff<ResBody, E>) {
        self.slot.finish(State::Ended(handoff));
    }
}

impl<ReqBody, ResBody: Body, E> Drop for Running<ReqBody, ResBody, E> {
    fn drop(&mut self) {
        // After `end` the slot is no longer `Running`, and this does nothing.
        self.slot.finish(State::Closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    type TestSlot = Slot<(), Full<bytes::Bytes>, ()>;

    #[tokio::test]
    async fn a_caller_gets_its_loaders_outcome_or_is_released() {
        let slot: Arc<TestSlot> = Slot::new(Request::new(()));
        assert!(slot.outcome().await.is_none());
        let (_request, running) = slot.take().unwrap();
        assert!(slot.take().is_none() && slot.reclaim().is_none());
        assert!(slot.is_taken());
        let waiting = tokio::spawn({
            let slot = Arc::clone(&slot);
            async move { slot.outcome().await.is_some() }
        });
        tokio::task::yield_now().await;
        let result = Box::new(Ok(Response::new(GuardedBody::empty())));
        running.end(Handoff::Answer {
            result,
            failed: false,
        });
        assert!(waiting.await.unwrap());

        let dropped: Arc<TestSlot> = Slot::new(Request::new(()));
        let (_request, running) = dropped.take().unwrap();
        let waiting = tokio::spawn({
            let slot = Arc::clone(&dropped);
            async move { slot.outcome().await.is_none() }
        });
        tokio::task::yield_now().await;
        drop(running);
        assert!(waiting.await.unwrap());
    }
}
