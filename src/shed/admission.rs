//! Admission: who gets a slot, a newcomer or a queued waiter, whenever
//! room appears.
//!
//! The rule: whenever room appears (a permit released, the limit raised by
//! the algorithm, which always ends in a release), as many queued waiters
//! as now fit are admitted, in the queue's order, before any newcomer; a
//! newcomer never takes a slot while a waiter of its priority or a higher
//! one that fits is queued. A waiting future never retries admission
//! itself: it is granted a slot by whoever made the room.
//!
//! **One word for the count and the queue's state.** [`Slots`] holds the
//! in-flight count and a `WAITERS` bit, set while anyone is queued (and
//! changed only under the queue's lock). A newcomer's compare-and-swap and
//! a release's subtraction act on that word, so each sees the bit as of the
//! moment it takes or frees its slot:
//!
//! * a newcomer that finds the bit set does not take the slot on its own; it
//!   takes the queue's lock, serves the waiters that fit, and only then
//!   claims what is left for itself (a newcomer of a higher priority than
//!   every waiter may still enter: the waiters do not fit, it may);
//! * a release that finds the bit set hands its slot straight to the next
//!   waiter that fits, so the count never dips, and then admits as many
//!   more as fit; one that frees a slot just as a waiter queues sees the bit
//!   in the value it subtracted from, and serves the queue too.
//!
//! With the queue's length in an atomic of its own, a release could read
//! "empty", a waiter queue and find the count full, and the release then
//! free the slot: the waiter stranded beside a free slot until its deadline.
//! With one word, the subtraction either comes first (the waiter's check,
//! under the lock after it set the bit, sees the free slot) or sees the bit.
//! The uncontended path is what it was: one load and one compare-and-swap
//! to admit, one subtraction to release, and the bit is tested in the value
//! loaded anyway.
//!
//! The loom model below checks the lost wake-up, a raised limit admitting
//! every waiter that fits with a newcomer racing it, and a waiter
//! cancelled as it is granted. Run it with
//! `RUSTFLAGS="--cfg surgeguard_loom" cargo test --lib loom_model`.

// Without the `tokio` feature nothing waits (only `Shedder::acquire` does),
// so the queueing half goes unused.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::queue::{LockedQueue, WaitQueue, WaitState, Waiter};
use super::shedder::{Inner, Permit, RejectReason, Rejected};
use super::sync::AtomicU64;
use super::Priority;

/// Set while the wait queue holds anyone.
const WAITERS: u64 = 1 << 63;

/// The in-flight count and the [`WAITERS`] bit, in one word.
#[derive(Debug)]
pub(super) struct Slots(AtomicU64);

/// Why [`Slots::claim_unless_waiting`] took no slot.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Busy {
    /// The cap is reached.
    Full,
    /// There is room, but waiters are queued: serve them first.
    Waiters,
}

impl Slots {
    pub(super) fn new() -> Self {
        Slots(AtomicU64::new(0))
    }

    /// Requests holding a slot.
    pub(super) fn in_flight(&self) -> u64 {
        self.0.load(Ordering::Acquire) & !WAITERS
    }

    /// A newcomer: takes a slot if fewer than `cap` are in flight and
    /// nobody is queued; answers the count, itself included.
    pub(super) fn claim_unless_waiting(&self, cap: u64) -> Result<u64, Busy> {
        let mut word = self.0.load(Ordering::Relaxed);
        loop {
            if word & !WAITERS >= cap {
                return Err(Busy::Full);
            }
            if word & WAITERS != 0 {
                return Err(Busy::Waiters);
            }
            match self
                .0
                .compare_exchange_weak(word, word + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(word + 1),
                Err(current) => word = current,
            }
        }
    }

    /// Takes a slot if fewer than `cap` are in flight, waiters or not (the
    /// caller holds the queue's lock and has served them).
    fn claim(&self, cap: u64) -> Option<u64> {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            let in_flight = word & !WAITERS;
            if in_flight >= cap {
                return None;
            }
            match self
                .0
                .compare_exchange_weak(word, word + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(in_flight + 1),
                Err(current) => word = current,
            }
        }
    }

    /// Takes a slot whatever the cap (shadow mode); answers the count.
    pub(super) fn claim_unchecked(&self) -> u64 {
        (self.0.fetch_add(1, Ordering::AcqRel) & !WAITERS) + 1
    }

    /// Frees a slot; answers whether waiters were queued as it did.
    fn free(&self) -> bool {
        self.0.fetch_sub(1, Ordering::AcqRel) & WAITERS != 0
    }

    fn waiters(&self) -> bool {
        self.0.load(Ordering::Acquire) & WAITERS != 0
    }

    /// Sets or clears the bit (under the queue's lock, so nobody else
    /// changes it between the look and the write).
    fn mark_waiters(&self, queued: bool) {
        if self.waiters() == queued {
            return;
        }
        if queued {
            self.0.fetch_or(WAITERS, Ordering::AcqRel);
        } else {
            self.0.fetch_and(!WAITERS, Ordering::AcqRel);
        }
    }
}

/// The in-flight count as permits and samples carry it.
fn narrow(in_flight: u64) -> u32 {
    u32::try_from(in_flight).unwrap_or(u32::MAX)
}

/// What [`Inner::admit_or_queue`] did with a request.
pub(super) enum Admission {
    /// It has a slot.
    Now(Permit),
    /// It waits in the queue (or was granted a slot on the way in: the
    /// waiter's state says).
    Queued(Arc<Waiter>),
}

impl Inner {
    /// A newcomer that does not wait: a permit if its priority's cap
    /// allows one now and no queued waiter that fits comes first.
    pub(super) fn admit(this: &Arc<Inner>, priority: Priority) -> Option<Permit> {
        let cap = this.cap_now(priority);
        match this.slots.claim_unless_waiting(cap) {
            Ok(in_flight) => Some(Inner::permit(this, narrow(in_flight))),
            Err(Busy::Full) => None,
            Err(Busy::Waiters) => Inner::admit_behind_waiters(this, priority),
        }
    }

    /// A newcomer that found waiters queued: serves those that fit, then
    /// claims what they left. Out of line, so the uncontended path stays
    /// small.
    #[cold]
    #[inline(never)]
    fn admit_behind_waiters(this: &Arc<Inner>, priority: Priority) -> Option<Permit> {
        let queue = this.queue.as_ref()?;
        let mut locked = queue.lock();
        this.serve(&mut locked, false, this.clock.now().as_nanos());
        let in_flight = this.slots.claim(this.cap_now(priority))?;
        drop(locked);
        Some(Inner::permit(this, narrow(in_flight)))
    }

    /// A newcomer that may wait: a permit now, or a place in `queue`
    /// (served first if room appears while it queues).
    pub(super) fn admit_or_queue(
        this: &Arc<Inner>,
        queue: &WaitQueue,
        priority: Priority,
    ) -> Result<Admission, Rejected> {
        if let Ok(in_flight) = this.slots.claim_unless_waiting(this.cap_now(priority)) {
            return Ok(Admission::Now(Inner::permit(this, narrow(in_flight))));
        }
        let mut locked = queue.lock();
        // Read under the lock, so each line stays in order of arrival.
        let now = this.clock.now().as_nanos();
        this.serve(&mut locked, false, now);
        if let Some(in_flight) = this.slots.claim(this.cap_now(priority)) {
            drop(locked);
            return Ok(Admission::Now(Inner::permit(this, narrow(in_flight))));
        }
        let Some(waiter) = locked.push(priority, now) else {
            drop(locked);
            return Err(this.refuse(priority, RejectReason::QueueFull));
        };
        // With the bit set, a release racing this one either came first
        // (the serve below sees its free slot) or sees the bit and serves.
        this.slots.mark_waiters(true);
        this.serve(&mut locked, false, now);
        Ok(Admission::Queued(waiter))
    }

    /// Takes `waiter` out of the queue (it gave up or was cancelled);
    /// answers its final state (`Granted`: it owns a slot).
    pub(super) fn leave_queue(&self, waiter: &Arc<Waiter>) -> WaitState {
        let Some(queue) = self.queue.as_ref() else {
            return WaitState::Expired;
        };
        let mut locked = queue.lock();
        let state = locked.leave(waiter, self.clock.now().as_nanos());
        self.slots.mark_waiters(!locked.is_empty());
        state
    }

    /// Gives a slot back: straight to queued waiters that fit, if any,
    /// else to the pool.
    pub(super) fn release(&self) {
        let Some(queue) = self.queue.as_ref() else {
            self.slots.free();
            return;
        };
        if self.slots.waiters() {
            self.release_to_waiters(queue, true);
        } else if self.slots.free() {
            // A waiter queued as the slot was freed.
            self.release_to_waiters(queue, false);
        }
    }

    /// A release that found waiters queued: serves them, `holding` the
    /// slot being released (handed over, or freed if nobody fits) or not
    /// (already freed). Out of line, so the uncontended path stays small.
    #[cold]
    #[inline(never)]
    fn release_to_waiters(&self, queue: &WaitQueue, holding: bool) {
        let mut locked = queue.lock();
        let handed_over = self.serve(&mut locked, holding, self.clock.now().as_nanos());
        if holding && !handed_over {
            // Freed under the lock: whoever queues next sees the slot.
            self.slots.free();
        }
    }

    /// Grants queued waiters in order while the next one fits under the
    /// limit. With `holding`, the caller holds a slot it is releasing: the
    /// first waiter granted takes it over (the count stays), and the
    /// answer says whether one did. Leaves the [`WAITERS`] bit saying
    /// whether anyone still waits.
    fn serve(&self, locked: &mut LockedQueue<'_>, holding: bool, now: u64) -> bool {
        let mut holding = holding;
        let mut handed_over = false;
        locked.serve(now, |priority| {
            let cap = self.cap_now(priority);
            if holding {
                // Only one chance: if the releasing slot does not fit the
                // next waiter, the caller frees it and nobody else fits.
                holding = false;
                let in_flight = self.slots.in_flight();
                if in_flight.saturating_sub(1) < cap {
                    handed_over = true;
                    return Some(narrow(in_flight));
                }
                return None;
            }
            self.slots.claim(cap).map(narrow)
        });
        self.slots.mark_waiters(!locked.is_empty());
        handed_over
    }

    fn cap_now(&self, priority: Priority) -> u64 {
        u64::from(self.cap(priority))
    }
}

/// A loom model of the hand-over: the functions above, on loom's atomics
/// and locks (see `sync.rs`). Run with
/// `RUSTFLAGS="--cfg surgeguard_loom" cargo test --lib loom_model`.
#[cfg(all(test, surgeguard_loom))]
mod loom_model {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::shed::Shedder;

    /// Every priority may use the whole `limit`.
    fn shedder(limit: u32) -> Shedder {
        Shedder::builder()
            .max_concurrency(limit)
            .critical_reserve(0.0)
            .sheddable_margin(0.0)
            .queue(4, Duration::from_secs(1))
            .clock(ManualClock::new())
            .build()
            .unwrap()
    }

    fn queue_up(inner: &Arc<Inner>) -> Arc<Waiter> {
        let queue = inner.queue.as_ref().unwrap();
        match Inner::admit_or_queue(inner, queue, Priority::Critical) {
            Ok(Admission::Queued(waiter)) => waiter,
            _ => panic!("the limit is full and the queue is not"),
        }
    }

    /// A slot freed as a request queues: it is not stranded beside it.
    #[test]
    fn loom_model_a_release_racing_a_waiter_queueing() {
        loom::model(|| {
            let shedder = shedder(1);
            let inner = &shedder.inner;
            let held = shedder.try_acquire(Priority::Critical).unwrap();
            let releaser = loom::thread::spawn(move || drop(held));
            let queue = inner.queue.as_ref().unwrap();
            let admitted = Inner::admit_or_queue(inner, queue, Priority::Critical);
            releaser.join().unwrap();
            assert_eq!(inner.slots.in_flight(), 1);
            match admitted {
                Ok(Admission::Now(permit)) => drop(permit),
                Ok(Admission::Queued(waiter)) => {
                    assert_eq!(waiter.state(), WaitState::Granted, "stranded");
                    inner.release();
                }
                Err(_) => panic!("the queue has room"),
            }
            assert_eq!(inner.slots.in_flight(), 0);
            assert!(!inner.slots.waiters());
        });
    }

    /// The limit rises from 1 to 3 as the held permit ends, with two
    /// waiters queued and a newcomer arriving: both waiters are served,
    /// and the newcomer only gets what they leave.
    #[test]
    fn loom_model_a_raised_limit_serves_every_waiter_before_a_newcomer() {
        loom::model(|| {
            let shedder = shedder(1);
            let inner = &shedder.inner;
            let held = shedder.try_acquire(Priority::Critical).unwrap();
            let waiters = [queue_up(inner), queue_up(inner)];
            let raiser = {
                let inner = Arc::clone(inner);
                loom::thread::spawn(move || {
                    // What `Permit::record` does: set the limit, release.
                    inner.set_limit(3);
                    drop(held);
                })
            };
            let newcomer = Inner::admit(inner, Priority::Critical);
            raiser.join().unwrap();
            for waiter in &waiters {
                assert_eq!(waiter.state(), WaitState::Granted);
            }
            let expected = 2 + u64::from(newcomer.is_some());
            assert_eq!(inner.slots.in_flight(), expected);
            if let Some(permit) = &newcomer {
                assert!(permit.in_flight_at_start() <= 3);
            }
            drop(newcomer);
            inner.release();
            inner.release();
            assert_eq!(inner.slots.in_flight(), 0);
        });
    }

    /// A waiter cancelled as its slot is granted passes the slot on.
    #[test]
    fn loom_model_a_waiter_cancelled_as_it_is_granted() {
        loom::model(|| {
            let shedder = shedder(1);
            let inner = &shedder.inner;
            let held = shedder.try_acquire(Priority::Critical).unwrap();
            let (cancelled, next) = (queue_up(inner), queue_up(inner));
            let releaser = loom::thread::spawn(move || drop(held));
            if inner.leave_queue(&cancelled) == WaitState::Granted {
                inner.release();
            }
            releaser.join().unwrap();
            assert_eq!(next.state(), WaitState::Granted);
            assert_eq!(inner.slots.in_flight(), 1);
            inner.release();
            assert_eq!(inner.slots.in_flight(), 0);
            assert!(!inner.slots.waiters());
        });
    }
}
