//! Waiting for a slot (feature `tokio`): the async path through the wait
//! queue, with the deadline enforced by a Tokio timer as well as by
//! releases, so nobody waits past it even if no permit is ever released.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::admission::Admission;
use super::queue::{WaitState, Waiter};
use super::shedder::{Inner, Permit, RejectReason, Rejected, Shedder};
use super::Priority;

impl Shedder {
    /// Admits a request of `priority`, waiting in the queue (if one is
    /// configured with [`ShedderBuilder::queue`](super::ShedderBuilder::queue))
    /// until it is granted a slot or the wait's deadline passes. Whenever
    /// room appears (a permit released, the limit raised), as many waiters
    /// as now fit are granted, in the queue's order, before any newcomer.
    /// Without a queue it is [`try_acquire`](Self::try_acquire). Dropping
    /// the future (a cancelled request) leaves the queue, and gives back a
    /// slot granted to it meanwhile.
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
        let waiter = match Inner::admit_or_queue(inner, queue, priority)? {
            Admission::Now(permit) => return Ok(permit),
            Admission::Queued(waiter) => waiter,
        };
        let mut queued = Queued {
            inner: Arc::clone(inner),
            waiter,
            settled: false,
        };
        // The timer and the moment (on the shedder's clock) it was set for.
        let mut timer: Option<(u64, Pin<Box<tokio::time::Sleep>>)> = None;
        poll_fn(|cx| loop {
            match queued.waiter.register(cx.waker()) {
                WaitState::Waiting => {}
                settled => return Poll::Ready(queued.settle(settled)),
            }
            let now = inner.clock.now().as_nanos();
            let (deadline, wake) = queue.deadline_and_wake(&queued.waiter, now);
            if now >= deadline {
                let settled = queued.leave();
                return Poll::Ready(queued.settle(settled));
            }
            // Sleep until the next moment the wait may end, as the clock
            // sees it now; a clock that moves differently (a manual one) is
            // re-read on waking. A moment that moved (the line started or
            // stopped standing) sets a new timer.
            let sleep = match &mut timer {
                Some((at, sleep)) if *at == wake => sleep,
                slot => {
                    let left = Duration::from_nanos(wake.saturating_sub(now).max(1));
                    &mut slot.insert((wake, Box::pin(tokio::time::sleep(left)))).1
                }
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            timer = None;
        })
        .await
    }
}

/// A request in the queue; leaving it (or being dropped) takes it out, and
/// gives back a slot it was granted but never used.
struct Queued {
    inner: Arc<Inner>,
    waiter: Arc<Waiter>,
    settled: bool,
}

impl Queued {
    /// Takes the waiter out of the queue; returns its final state.
    /// `Granted` means it holds a slot: the caller turns it into a permit
    /// (`settle`), or `drop` releases it.
    fn leave(&mut self) -> WaitState {
        self.inner.leave_queue(&self.waiter)
    }

    /// What the wait came to, once it is out of the queue: the slot granted
    /// to it as a permit, or a refusal.
    fn settle(&mut self, state: WaitState) -> Result<Permit, Rejected> {
        self.settled = true;
        let reason = match state {
            WaitState::Granted => {
                let in_flight = self.waiter.granted_in_flight();
                return Ok(Inner::permit(&self.inner, in_flight));
            }
            WaitState::Displaced => RejectReason::QueueFull,
            WaitState::Expired | WaitState::Waiting => RejectReason::Deadline,
        };
        Err(self.inner.refuse(self.waiter.priority, reason))
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
