//! The bounded wait queue: requests that find the limit full may wait a
//! little for a slot instead of being refused at once.
//!
//! Whenever room appears, the shedder ([`serve`](LockedQueue::serve))
//! admits as many waiters as now fit, in the queue's order, before any
//! newcomer (`admission.rs` says how a newcomer knows to wait its turn).
//! Each waiter has a deadline (`max_wait`); nobody waits past it.
//!
//! **The most important waiter goes first.** Each priority has its own
//! line; room goes to the Critical line first, then the Normal one, then
//! the Sheddable one, each line in its own order, while the next waiter's
//! priority fits under the limit. One line would let a Normal waiter that
//! does not fit (its share of the limit is used up) block a Critical one
//! behind it that would (it may use the whole limit). Once the next waiter
//! of a line does not fit, nobody after it does (the caps shrink with
//! priority), so serving stops there.
//!
//! **A full queue makes way for a more important request**: it turns away
//! its least important waiter (the one that would be served last) rather
//! than a request that outranks it, so a queue full of browsing cannot
//! refuse a checkout.
//!
//! **Adaptive LIFO** (Maurer, "Fail at Scale", ACM Queue 2015, which applies
//! CoDel's idea to request queues): a line that has not been empty for the
//! last 100 ms is a standing queue, not a burst. Then the line serves its
//! newest waiter first (its client is most likely still there) and cuts its
//! waiters' deadline to 5 ms, so stale requests fail fast instead of
//! being served to clients who gave up. When the line empties, it is FIFO
//! with the full deadline again.
//!
//! **A line that sheds keeps standing**: one that turned a waiter away
//! (past its deadline, or displaced; a request cancelled within its wait
//! is its client leaving, which does not count, while one dropped past its
//! deadline was due to be turned away and does) in the last 100 ms stands even if it
//! just emptied, as CoDel (Nichols and Jacobson, ACM Queue 2012; RFC
//! 8289) stays in its dropping state until delay is back under target.
//! Emptied by its own refusals, a line has not caught up with its
//! arrivals; judged by emptiness alone, it would flip back to FIFO with the
//! full wait at once, and the next waiters would sit through long waits
//! until it had stood for 100 ms again. A line that starts standing cuts
//! its waiters' deadlines at once: those already past the short wait are
//! turned away then, the others are woken to set their timers by it, and
//! a waiter whose line may start standing by staying
//! non-empty sets its timer for that moment, so nobody waits past the
//! deadline the line's state gives it.
//!
//! **Each line stands or not on its own**, as fq_codel (RFC 8290) runs
//! CoDel per flow queue rather than on the link: a standing line of
//! browsing says nothing about a checkout that arrives behind it. The
//! Critical line is served first, so it empties at every release unless
//! Critical work alone overruns the limit; judged with the whole queue, a
//! checkout queued during a surge of browsing would get 5 ms instead of
//! the full wait, and be refused while slots free up every few
//! milliseconds.

// Without the `tokio` feature nothing waits (only `Shedder::acquire` does),
// so parts of the queue go unused.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use super::sync::{Mutex, MutexGuard};
use super::Priority;

/// A queue not empty for this long is a standing queue (Maurer's N).
pub(crate) const STANDING_AFTER: u64 = 100_000_000;
/// A waiter's deadline in a standing queue (Maurer's M).
pub(crate) const STANDING_MAX_WAIT: u64 = 5_000_000;

/// Where a waiter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitState {
    Waiting,
    /// Room was made for it: it owns one in-flight unit.
    Granted,
    /// Taken out of the queue past its deadline.
    Expired,
    /// Turned away from a full queue to make room for a more important
    /// request.
    Displaced,
}

/// One queued request.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) priority: Priority,
    /// Nanoseconds on the shedder's clock.
    pub(crate) enqueued: u64,
    cell: Mutex<WaitCell>,
}

#[derive(Debug)]
struct WaitCell {
    state: WaitState,
    waker: Option<Waker>,
    /// Requests in flight when it was granted, itself included.
    in_flight: u32,
}

impl Waiter {
    pub(crate) fn state(&self) -> WaitState {
        self.cell.lock().state
    }

    /// Requests in flight when it was granted, itself included.
    pub(crate) fn granted_in_flight(&self) -> u32 {
        self.cell.lock().in_flight
    }

    /// Leaves `waker` to be woken when the state changes; returns the state.
    pub(crate) fn register(&self, waker: &Waker) -> WaitState {
        let mut cell = self.cell.lock();
        if cell.state == WaitState::Waiting {
            match &mut cell.waker {
                Some(current) if current.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        }
        cell.state
    }

    /// Wakes its future without settling it, so that it reads its
    /// deadline again.
    fn nudge(&self) {
        let waker = self.cell.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn settle(&self, to: WaitState, in_flight: u32) {
        let waker = {
            let mut cell = self.cell.lock();
            cell.state = to;
            cell.in_flight = in_flight;
            cell.waker.take()
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
    /// Waiters queued, for statistics without the lock.
    len: AtomicUsize,
    inner: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    /// One line per priority, most important first (see [`lane`]); each
    /// line holds its waiters oldest first.
    lines: [VecDeque<Arc<Waiter>>; 3],
    /// When each line was last empty, nanoseconds (indexed like `lines`).
    last_empty: [u64; 3],
    /// Each line stands at least until this time, nanoseconds: it turned a
    /// waiter away (past its deadline, or displaced) less than
    /// [`STANDING_AFTER`] ago.
    shedding_until: [u64; 3],
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

    /// Whether line `lane` is a standing queue at `now`: not empty for over
    /// [`STANDING_AFTER`], or it turned a waiter away less than that ago.
    fn is_standing(&self, lane: usize, now: u64) -> bool {
        now < self.shedding_until[lane]
            || (!self.lines[lane].is_empty()
                && now.saturating_sub(self.last_empty[lane]) > STANDING_AFTER)
    }

    /// Line `lane` turned a waiter away at `now`.
    fn turned_away(&mut self, lane: usize, now: u64) {
        self.shedding_until[lane] = now.saturating_add(STANDING_AFTER);
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
                last_empty: [0; 3],
                shedding_until: [0; 3],
            }),
        }
    }

    /// Waiters queued (a snapshot, for statistics).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Takes the queue's lock: whoever changes the queue, or decides
    /// anything from what it holds, holds it.
    pub(crate) fn lock(&self) -> LockedQueue<'_> {
        LockedQueue {
            queue: self,
            state: self.inner.lock(),
        }
    }

    /// When `waiter` must give up, given the queue's state at `now`, and
    /// when it must look again: its deadline, or, if its line does not
    /// stand yet, the moment the line would start standing by staying
    /// non-empty, which cuts the deadline without any event to wake the
    /// waiter. (A line that starts standing by turning a waiter away wakes
    /// its waiters itself.)
    pub(crate) fn deadline_and_wake(&self, waiter: &Waiter, now: u64) -> (u64, u64) {
        let state = self.inner.lock();
        let lane = lane(waiter.priority);
        let standing = state.is_standing(lane, now);
        let deadline = self.deadline_in(waiter, standing);
        if standing {
            return (deadline, deadline);
        }
        let onset = state.last_empty[lane].saturating_add(STANDING_AFTER + 1);
        (deadline, deadline.min(onset.max(now)))
    }

    fn deadline_in(&self, waiter: &Waiter, standing: bool) -> u64 {
        let wait = if standing {
            self.max_wait.min(STANDING_MAX_WAIT)
        } else {
            self.max_wait
        };
        waiter.enqueued.saturating_add(wait)
    }
}

/// The queue, locked.
pub(crate) struct LockedQueue<'a> {
    queue: &'a WaitQueue,
    state: MutexGuard<'a, QueueState>,
}

impl LockedQueue<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Queues a request of `priority` at `now`. A full queue turns away its
    /// least important waiter if that one is of a lower priority; `None`
    /// if it holds none (the request is refused).
    pub(crate) fn push(&mut self, priority: Priority, now: u64) -> Option<Arc<Waiter>> {
        if self.state.len() >= self.queue.capacity && !self.displace_below(priority, now) {
            return None;
        }
        if self.state.lines[lane(priority)].is_empty() {
            self.state.last_empty[lane(priority)] = now;
        }
        let waiter = Arc::new(Waiter {
            priority,
            enqueued: now,
            cell: Mutex::new(WaitCell {
                state: WaitState::Waiting,
                waker: None,
                in_flight: 0,
            }),
        });
        self.state.lines[lane(priority)].push_back(Arc::clone(&waiter));
        self.note_len(now);
        Some(waiter)
    }

    /// Turns away the waiter that would be served last among those of a
    /// priority below `priority`; whether there was one.
    fn displace_below(&mut self, priority: Priority, now: u64) -> bool {
        let Some(lesser) = (lane(priority) + 1..3)
            .rev()
            .find(|&lane| !self.state.lines[lane].is_empty())
        else {
            return false;
        };
        let standing = self.state.is_standing(lesser, now);
        let line = &mut self.state.lines[lesser];
        // Served last: the newest in a FIFO line, the oldest in a LIFO one.
        let displaced = if standing {
            line.pop_front()
        } else {
            line.pop_back()
        };
        if let Some(displaced) = displaced {
            displaced.settle(WaitState::Displaced, 0);
            self.turn_away(lesser, now);
            self.expire_overdue(lesser, now);
        }
        true
    }

    /// Line `lane` turned a waiter away at `now`. If that makes it stand,
    /// its waiters' deadlines have just shrunk to the short wait, which
    /// their timers, set for the full one, do not know: each is woken to
    /// look again (once per change, not per waiter turned away).
    fn turn_away(&mut self, lane: usize, now: u64) {
        let was_standing = self.state.is_standing(lane, now);
        self.state.turned_away(lane, now);
        if !was_standing {
            for waiter in &self.state.lines[lane] {
                waiter.nudge();
            }
        }
    }

    /// Takes out of line `lane` every waiter past its deadline at `now`,
    /// oldest first (a line's deadlines grow with its waiters' age). Each
    /// one turned away may make the line stand, which shortens the
    /// deadlines of those behind it, so standing is judged again each time:
    /// otherwise whether a waiter had to go would depend on the order in
    /// which the waiters' own timers happened to fire.
    fn expire_overdue(&mut self, lane: usize, now: u64) {
        let queue = self.queue;
        loop {
            let standing = self.state.is_standing(lane, now);
            let line = &mut self.state.lines[lane];
            match line.front() {
                Some(oldest) if queue.deadline_in(oldest, standing) <= now => {}
                _ => break,
            }
            if let Some(expired) = line.pop_front() {
                expired.settle(WaitState::Expired, 0);
                self.turn_away(lane, now);
            }
        }
    }

    /// Room has appeared at `now`: grants waiters in the queue's order
    /// while `take` finds room for the next one's priority (it claims the
    /// slot and answers the in-flight count, itself included); overdue
    /// waiters leave on the way.
    pub(crate) fn serve(&mut self, now: u64, mut take: impl FnMut(Priority) -> Option<u32>) {
        // Cleared once a waiter does not fit: no lesser one can (the caps
        // shrink with priority), so the lesser lines only expire.
        let mut room = true;
        for lane in 0..3 {
            self.expire_overdue(lane, now);
            // Whether it stands after its overdue waiters left, since
            // turning them away may have made it stand.
            let standing = self.state.is_standing(lane, now);
            let line = &mut self.state.lines[lane];
            while room {
                let next = if standing { line.back() } else { line.front() };
                let Some(waiter) = next else { break };
                let Some(in_flight) = take(waiter.priority) else {
                    room = false;
                    break;
                };
                let granted = if standing {
                    line.pop_back()
                } else {
                    line.pop_front()
                };
                if let Some(granted) = granted {
                    granted.settle(WaitState::Granted, in_flight);
                }
            }
        }
        self.note_len(now);
    }

    /// Takes `waiter` out of the queue if it is still waiting (it gave up or
    /// was cancelled). Returns its final state: `Granted` means it owns a
    /// slot the caller must use or release.
    pub(crate) fn leave(&mut self, waiter: &Arc<Waiter>, now: u64) -> WaitState {
        // Under the queue lock nobody can grant or displace it meanwhile.
        let state = waiter.state();
        if state == WaitState::Waiting {
            let lane = lane(waiter.priority);
            let standing = self.state.is_standing(lane, now);
            let line = &mut self.state.lines[lane];
            if let Some(index) = line.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                line.remove(index);
            }
            // Past its deadline, the queue turned it away; before it, its
            // client left (a cancelled request), which says nothing about
            // whether the line keeps up.
            if self.queue.deadline_in(waiter, standing) <= now {
                self.turn_away(lane, now);
                self.expire_overdue(lane, now);
            }
            self.note_len(now);
            waiter.settle(WaitState::Expired, 0);
            return WaitState::Expired;
        }
        state
    }

    fn note_len(&mut self, now: u64) {
        let state = &mut *self.state;
        for (line, last_empty) in state.lines.iter().zip(&mut state.last_empty) {
            if line.is_empty() {
                *last_empty = now;
            }
        }
        self.queue.len.store(self.state.len(), Ordering::Relaxed);
    }
}
