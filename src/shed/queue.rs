//! The bounded wait queue: requests that find the limit full may wait a
//! little for a slot instead of being refused at once.
//!
//! A released permit hands its slot straight to a waiter, so the in-flight
//! count never dips and a queued request cannot be overtaken by a newcomer.
//! Each waiter has a deadline (`max_wait`); nobody waits past it.
//!
//! **The most important waiter goes first.** Each priority has its own
//! line; a released slot goes to the first Critical waiter, else the first
//! Normal one, else the first Sheddable one, provided its priority fits
//! under the limit. One line would let a Normal waiter that does not fit
//! (its share of the limit is used up) block a Critical one behind it that
//! would (it may use the whole limit).
//!
//! **Adaptive LIFO** (Maurer, "Fail at Scale", ACM Queue 2015, which applies
//! CoDel's idea to request queues): a queue that has not been empty for the
//! last 100 ms is a standing queue, not a burst. Then the queue serves the
//! newest waiter first (its client is most likely still there) and cuts every
//! waiter's deadline to 5 ms, so stale requests fail fast instead of
//! being served to clients who gave up. When the queue empties, it is FIFO
//! with the full deadline again.

// Without the `tokio` feature nothing waits (only `Shedder::acquire` does),
// so parts of the queue go unused.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;

use super::Priority;

/// A queue not empty for this long is a standing queue (Maurer's N).
pub(crate) const STANDING_AFTER: u64 = 100_000_000;
/// A waiter's deadline in a standing queue (Maurer's M).
pub(crate) const STANDING_MAX_WAIT: u64 = 5_000_000;

/// Where a waiter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitState {
    Waiting,
    /// A released slot was handed to it: it owns one in-flight unit.
    Granted,
    /// Taken out of the queue past its deadline.
    Expired,
}

/// One queued request.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) priority: Priority,
    /// Nanoseconds on the shedder's clock.
    pub(crate) enqueued: u64,
    state: Mutex<(WaitState, Option<Waker>)>,
}

impl Waiter {
    pub(crate) fn state(&self) -> WaitState {
        self.state.lock().0
    }

    /// Leaves `waker` to be woken when the state changes; returns the state.
    pub(crate) fn register(&self, waker: &Waker) -> WaitState {
        let mut state = self.state.lock();
        if state.0 == WaitState::Waiting {
            match &mut state.1 {
                Some(current) if current.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        }
        state.0
    }

    fn settle(&self, to: WaitState) {
        let waker = {
            let mut state = self.state.lock();
            state.0 = to;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The queue of one shedder.
#[derive(Debug)]
pub(crate) struct WaitQueue {
    capacity: usize,
    /// Nanoseconds.
    max_wait: u64,
    /// Waiters queued, readable without the lock (a release checks it).
    len: AtomicUsize,
    inner: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    /// One line per priority, most important first (see [`lane`]); each
    /// line holds its waiters oldest first.
    lines: [VecDeque<Arc<Waiter>>; 3],
    /// When the queue was last empty, nanoseconds.
    last_empty: u64,
}

/// The line of a priority: Critical's is served first.
fn lane(priority: Priority) -> usize {
    match priority {
        Priority::Critical => 0,
        Priority::Normal => 1,
        Priority::Sheddable => 2,
    }
}

impl QueueState {
    fn len(&self) -> usize {
        self.lines.iter().map(VecDeque::len).sum()
    }

    fn is_empty(&self) -> bool {
        self.lines.iter().all(VecDeque::is_empty)
    }
}

impl WaitQueue {
    pub(crate) fn new(capacity: usize, max_wait: u64) -> Self {
        WaitQueue {
            capacity,
            max_wait,
            len: AtomicUsize::new(0),
            inner: Mutex::new(QueueState {
                lines: Default::default(),
                last_empty: 0,
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Queues a request of `priority` at `now`; `None` if the queue is full.
    pub(crate) fn push(&self, priority: Priority, now: u64) -> Option<Arc<Waiter>> {
        let mut queue = self.inner.lock();
        if queue.len() >= self.capacity {
            return None;
        }
        if queue.is_empty() {
            queue.last_empty = now;
        }
        let waiter = Arc::new(Waiter {
            priority,
            enqueued: now,
            state: Mutex::new((WaitState::Waiting, None)),
        });
        queue.lines[lane(priority)].push_back(Arc::clone(&waiter));
        self.len.store(queue.len(), Ordering::Release);
        Some(waiter)
    }

    /// When `waiter` must give up, given the queue's state at `now`.
    pub(crate) fn deadline(&self, waiter: &Waiter, now: u64) -> u64 {
        let standing = self.is_standing(&self.inner.lock(), now);
        self.deadline_in(waiter, standing)
    }

    fn deadline_in(&self, waiter: &Waiter, standing: bool) -> u64 {
        let wait = if standing {
            self.max_wait.min(STANDING_MAX_WAIT)
        } else {
            self.max_wait
        };
        waiter.enqueued.saturating_add(wait)
    }

    fn is_standing(&self, queue: &QueueState, now: u64) -> bool {
        !queue.is_empty() && now.saturating_sub(queue.last_empty) > STANDING_AFTER
    }

    /// Takes `waiter` out of the queue if it is still waiting (it gave up or
    /// was cancelled). Returns its final state: `Granted` means it owns a
    /// slot the caller must use or release.
    pub(crate) fn leave(&self, waiter: &Arc<Waiter>, now: u64) -> WaitState {
        let mut queue = self.inner.lock();
        // Under the queue lock no release can grant it meanwhile.
        let state = waiter.state();
        if state == WaitState::Waiting {
            let line = &mut queue.lines[lane(waiter.priority)];
            if let Some(index) = line.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                line.remove(index);
            }
            self.note_len(&mut queue, now);
            waiter.settle(WaitState::Expired);
            return WaitState::Expired;
        }
        state
    }

    /// A permit is being released at `now`: hands its slot to the most
    /// important waiter, if its priority `fits`; overdue waiters leave on
    /// the way. Returns whether the slot was handed over (the in-flight
    /// count stays).
    pub(crate) fn hand_over(&self, now: u64, fits: impl Fn(Priority) -> bool) -> bool {
        let mut queue = self.inner.lock();
        let standing = self.is_standing(&queue, now);
        let mut handed = false;
        // Set once a line's first waiter does not fit: no lesser one can.
        let mut full = false;
        for line in &mut queue.lines {
            // Overdue waiters leave (the oldest are at the front).
            while let Some(oldest) = line.front() {
                if self.deadline_in(oldest, standing) > now {
                    break;
                }
                if let Some(expired) = line.pop_front() {
                    expired.settle(WaitState::Expired);
                }
            }
            if handed || full {
                continue;
            }
            // The first live waiter of the most important line decides:
            // if its priority does not fit, no lesser one does (the caps
            // shrink with priority).
            let next = if standing { line.back() } else { line.front() };
            let Some(waiter) = next else { continue };
            if fits(waiter.priority) {
                let waiter = if standing {
                    line.pop_back()
                } else {
                    line.pop_front()
                };
                if let Some(waiter) = waiter {
                    waiter.settle(WaitState::Granted);
                }
                handed = true;
            } else {
                // It stays first in line; the lesser lines only expire.
                full = true;
            }
        }
        self.note_len(&mut queue, now);
        handed
    }

    fn note_len(&self, queue: &mut QueueState, now: u64) {
        if queue.is_empty() {
            queue.last_empty = now;
        }
        self.len.store(queue.len(), Ordering::Release);
    }
}
