//! Waiting for a slot (feature `tokio`): the async path through the wait
//! queue, with the deadline enforced by a Tokio timer as well as by
//! releases, so nobody waits past it even if no permit is ever released.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::queue::{WaitState, Waiter};
use super::shedder::{Inner, Permit, RejectReason, Rejected, Shedder};
use super::Priority;

impl Shedder {
    /// Admits a request of `priority`, waiting in the queue (if one is
    /// configured with [`ShedderBuilder::queue`](super::ShedderBuilder::queue))
    /// until a slot frees up or the wait's deadline passes. Without a queue
    /// it is [`try_acquire`](Self::try_acquire). Dropping the future (a
    /// cancelled request) leaves the queue, and gives back a slot handed to
    /// it meanwhile.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use surgeguard::shed::{Priority, RejectReason, Shedder};
    ///
    /// let shedder = Shedder::builder()
    ///     .max_concurrency(1)
    ///     .queue(8, Duration::from_millis(20))
    ///     .build()?;
    /// let first = shedder.acquire(Priority::Normal).await?;
    /// // The second waits; nobody releases; it gives up at its deadline.
    /// let second = shedder.acquire(Priority::Normal).await.unwrap_err();
    /// assert_eq!(second.reason(), RejectReason::Deadline);
    /// drop(first);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn acquire(&self, priority: Priority) -> Result<Permit, Rejected> {
        let inner = &self.inner;
        // Shadow mode never waits: it admits what it would have queued.
        let Some(queue) = inner.queue.as_ref().filter(|_| !inner.is_shadow()) else {
            return self.try_acquire(priority);
        };
        if let Some(permit) = Inner::admit(inner, priority) {
            return Ok(permit);
        }
        let Some(waiter) = queue.push(priority, inner.clock.now().as_nanos()) else {
            return Err(inner.refuse(priority, RejectReason::QueueFull));
        };
        let mut queued = Queued {
            inner: Arc::clone(inner),
            waiter,
            settled: false,
        };
        // A slot may have freed up between the refusal and the push, with
        // no waiter to hand it to: take it directly.
        if let Some(permit) = Inner::admit(inner, priority) {
            if queued.leave() == WaitState::Granted {
                // Handed a slot meanwhile as well: one is enough.
                inner.release();
            }
            queued.settled = true;
            return Ok(permit);
        }
        let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        poll_fn(|cx| loop {
            match queued.waiter.register(cx.waker()) {
                WaitState::Granted => return Poll::Ready(Ok(queued.take_slot())),
                WaitState::Expired => return Poll::Ready(Err(queued.expire())),
                WaitState::Waiting => {}
            }
            let now = inner.clock.now().as_nanos();
            let deadline = queue.deadline(&queued.waiter, now);
            if now >= deadline {
                return Poll::Ready(match queued.leave() {
                    WaitState::Granted => Ok(queued.take_slot()),
                    _ => Err(queued.expire()),
                });
            }
            // Sleep until the deadline as the clock sees it now; a clock
            // that moves differently (a manual one) is re-read on waking.
            let left = Duration::from_nanos(deadline - now);
            let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(left)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            timer = None;
        })
        .await
    }
}

/// A request in the queue; leaving it (or being dropped) takes it out, and
/// gives back a slot it was handed but never used.
struct Queued {
    inner: Arc<Inner>,
    waiter: Arc<Waiter>,
    settled: bool,
}

impl Queued {
    /// Takes the waiter out of the queue; returns its final state.
    fn leave(&mut self) -> WaitState {
        let Some(queue) = &self.inner.queue else {
            return WaitState::Expired;
        };
        // `Granted` means it holds a slot: the caller turns it into a
        // permit (`take_slot`), or `drop` releases it.
        queue.leave(&self.waiter, self.inner.clock.now().as_nanos())
    }

    /// The slot handed to this waiter, as a permit.
    fn take_slot(&mut self) -> Permit {
        self.settled = true;
        let in_flight = self.inner.in_flight_now();
        Inner::permit(&self.inner, in_flight)
    }

    /// The waiter's deadline passed: a refusal.
    fn expire(&mut self) -> Rejected {
        self.settled = true;
        self.inner
            .refuse(self.waiter.priority, RejectReason::Deadline)
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.leave() == WaitState::Granted {
            self.inner.release();
        }
    }
}
