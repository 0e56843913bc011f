//! The shedder: its state, the cap of each priority, RAII permits, and the
//! limit algorithm fed by completed permits. Who gets a slot, a newcomer or
//! a queued waiter, is `admission.rs`'s job.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::admission::Slots;
use super::builder::ShedderBuilder;
use super::limit::{LimitAlgorithm, Sample};
use super::queue::WaitQueue;
use super::sync::AtomicU32;
use super::Priority;
use crate::clock::Clock;

/// The shortest suggested `Retry-After`: HTTP counts it in whole seconds.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest suggested `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Admits requests while fewer than its limit run; see the
/// [module documentation](super). Cheap to clone: clones share the limit.
///
/// ```
/// use surgeguard::shed::{Priority, Shedder};
///
/// let shedder = Shedder::builder().max_concurrency(1).build()?;
/// let permit = shedder.try_acquire(Priority::Critical).unwrap();
/// assert!(shedder.try_acquire(Priority::Critical).is_err());
/// drop(permit);
/// assert!(shedder.try_acquire(Priority::Critical).is_ok());
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Shedder {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// Requests holding a slot, and whether any wait in the queue.
    pub(super) slots: Slots,
    /// The cap of each priority (by `Priority as usize`; Critical's is the
    /// limit itself) under the algorithm's latest answer, worked out when
    /// the limit changes so that an admission reads its cap in one load.
    caps: [AtomicU32; 3],
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    /// Whether the algorithm learns from samples (a fixed limit does not,
    /// so its permits skip reading the clock).
    learns: bool,
    critical_reserve: f64,
    sheddable_margin: f64,
    pub(super) clock: Arc<dyn Clock>,
    /// Smoothed latency of recorded permits, nanoseconds.
    latency: AtomicU64,
    /// Requests that found the limit full may wait here (when configured).
    pub(super) queue: Option<WaitQueue>,
    /// Refusals by priority and reason. Admissions are not counted: a
    /// shared counter bumped by every admission is one more cache line that
    /// all cores write; `in_flight` and these say what an operator needs.
    rejected: [[AtomicU64; 3]; 3],
    /// Shadow mode: refusals are counted here and admitted anyway.
    shadow: bool,
    shadow_rejected: AtomicU64,
    /// Rate limits for the `tracing` events of refusals and limit changes.
    #[cfg(feature = "tracing")]
    shed_events: crate::events::EventGate,
    #[cfg(feature = "tracing")]
    limit_events: crate::events::EventGate,
    /// The limit last reported in an event.
    #[cfg(feature = "tracing")]
    logged_limit: AtomicU32,
}

impl Shedder {
    /// Starts configuring a shedder.
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// let shedder = Shedder::builder().max_concurrency(8).build()?;
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn builder() -> ShedderBuilder {
        ShedderBuilder::default()
    }

    pub(super) fn from_parts(
        algorithm: Box<dyn LimitAlgorithm>,
        learns: bool,
        critical_reserve: f64,
        sheddable_margin: f64,
        queue: Option<WaitQueue>,
        shadow: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let initial = algorithm.limit();
        let inner = Inner {
            slots: Slots::new(),
            caps: Default::default(),
            algorithm: Mutex::new(algorithm),
            learns,
            critical_reserve,
            sheddable_margin,
            clock,
            latency: AtomicU64::new(0),
            queue,
            rejected: Default::default(),
            shadow,
            shadow_rejected: AtomicU64::new(0),
            #[cfg(feature = "tracing")]
            shed_events: crate::events::EventGate::new(),
            #[cfg(feature = "tracing")]
            limit_events: crate::events::EventGate::new(),
            #[cfg(feature = "tracing")]
            logged_limit: AtomicU32::new(0),
        };
        inner.set_limit(initial);
        Shedder {
            inner: Arc::new(inner),
        }
    }

    /// Admits a request of `priority` if the limit allows it now; never
    /// waits.
    ///
    /// ```
    /// use surgeguard::shed::{Priority, RejectReason, Shedder};
    ///
    /// // Limit 10: Normal may use 8 (20 % stays for Critical), Sheddable 7.
    /// let shedder = Shedder::builder().max_concurrency(10).build()?;
    /// let held: Vec<_> = (0..7).map(|_| shedder.try_acquire(Priority::Sheddable).unwrap()).collect();
    /// let shed = shedder.try_acquire(Priority::Sheddable).unwrap_err();
    /// assert_eq!(shed.reason(), RejectReason::LimitReached);
    /// assert!(shedder.try_acquire(Priority::Normal).is_ok());
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn try_acquire(&self, priority: Priority) -> Result<Permit, Rejected> {
        match Inner::admit(&self.inner, priority) {
            Some(permit) => Ok(permit),
            None if self.inner.shadow => Ok(Inner::admit_in_shadow(&self.inner)),
            None => Err(self.inner.refuse(priority, RejectReason::LimitReached)),
        }
    }

    /// Whether the shedder runs in shadow mode ([`ShedderBuilder::shadow`]).
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// assert!(Shedder::builder().max_concurrency(8).shadow(true).build()?.is_shadow());
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn is_shadow(&self) -> bool {
        self.inner.shadow
    }

    /// Whether requests may wait in a queue ([`ShedderBuilder::queue`]).
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// assert!(!Shedder::builder().max_concurrency(8).build()?.has_queue());
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn has_queue(&self) -> bool {
        self.inner.queue.is_some()
    }

    /// The current limit.
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// assert_eq!(Shedder::builder().max_concurrency(8).build()?.limit(), 8);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn limit(&self) -> u32 {
        self.inner.cap(Priority::Critical)
    }

    /// Requests holding a permit now.
    ///
    /// ```
    /// # use surgeguard::shed::{Priority, Shedder};
    /// let shedder = Shedder::builder().max_concurrency(8).build()?;
    /// let _permit = shedder.try_acquire(Priority::Normal);
    /// assert_eq!(shedder.in_flight(), 1);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn in_flight(&self) -> u32 {
        u32::try_from(self.inner.slots.in_flight()).unwrap_or(u32::MAX)
    }

    /// Counters since the shedder was built, and the current limit and
    /// in-flight count.
    ///
    /// ```
    /// # use surgeguard::shed::{Priority, Shedder};
    /// let shedder = Shedder::builder().max_concurrency(1).build()?;
    /// let _held = shedder.try_acquire(Priority::Critical);
    /// let _ = shedder.try_acquire(Priority::Sheddable);
    /// let stats = shedder.stats();
    /// assert_eq!((stats.in_flight, stats.rejected_sheddable), (1, 1));
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn stats(&self) -> ShedStats {
        let inner = &self.inner;
        let mut by_reason = [[0; 3]; 3];
        for (row, counters) in by_reason.iter_mut().zip(&inner.rejected) {
            for (cell, counter) in row.iter_mut().zip(counters) {
                *cell = counter.load(Ordering::Relaxed);
            }
        }
        let rejected = |priority: Priority| by_reason[priority as usize].iter().sum();
        ShedStats {
            limit: self.limit(),
            in_flight: self.in_flight(),
            queued: inner.queue.as_ref().map_or(0, WaitQueue::len),
            rejected_critical: rejected(Priority::Critical),
            rejected_normal: rejected(Priority::Normal),
            rejected_sheddable: rejected(Priority::Sheddable),
            shadow_rejected: inner.shadow_rejected.load(Ordering::Relaxed),
            by_reason,
        }
    }
}

impl Inner {
    /// Shadow mode: takes a slot whatever the cap says, and counts the
    /// refusal it would have been.
    pub(super) fn admit_in_shadow(this: &Arc<Inner>) -> Permit {
        this.shadow_rejected.fetch_add(1, Ordering::Relaxed);
        let in_flight = this.slots.claim_unchecked();
        Inner::permit(this, u32::try_from(in_flight).unwrap_or(u32::MAX))
    }

    /// An info event when the limit has moved by a tenth or more since the
    /// last one (at most one a second).
    #[cfg(feature = "tracing")]
    fn log_limit(&self, limit: u32) {
        let logged = self.logged_limit.load(Ordering::Relaxed);
        if logged.abs_diff(limit) < (logged / 10).max(1) {
            return;
        }
        if let Some(held_back) = self.limit_events.pass(self.clock.now().as_nanos()) {
            self.logged_limit.store(limit, Ordering::Relaxed);
            tracing::info!(
                from = logged,
                to = limit,
                held_back,
                "surgeguard: concurrency limit changed"
            );
        }
    }

    /// Whether refusals are only counted (shadow mode).
    #[cfg(feature = "tokio")]
    pub(super) fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// A permit for a slot already counted in `in_flight`.
    pub(super) fn permit(this: &Arc<Inner>, in_flight: u32) -> Permit {
        let started = if this.learns {
            this.clock.now().as_nanos()
        } else {
            0
        };
        Permit {
            shedder: Arc::clone(this),
            started,
            in_flight,
        }
    }

    /// Counts a refusal of `priority` and says what to tell the client.
    pub(super) fn refuse(&self, priority: Priority, reason: RejectReason) -> Rejected {
        self.rejected[priority as usize][reason as usize].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        if let Some(held_back) = self.shed_events.pass(self.clock.now().as_nanos()) {
            tracing::debug!(?priority, %reason, held_back, "surgeguard: request shed");
        }
        Rejected {
            reason,
            retry_after: self.retry_after(),
        }
    }

    /// How many may be in flight for a new request of `priority` to enter
    /// now.
    pub(super) fn cap(&self, priority: Priority) -> u32 {
        self.caps[priority as usize].load(Ordering::Relaxed)
    }

    /// Takes a new limit (at least 1): works out each priority's cap.
    /// Whoever changes the limit then releases a slot (the end of
    /// [`Permit::record`]), which serves the queue by the new caps.
    pub(super) fn set_limit(&self, limit: u32) {
        let limit = limit.max(1);
        if self.cap(Priority::Critical) == limit {
            // The caps stored with it are this limit's: every change goes
            // through here, under the algorithm's lock.
            return;
        }
        for priority in [Priority::Sheddable, Priority::Normal, Priority::Critical] {
            let cap = self.cap_under(limit, priority);
            self.caps[priority as usize].store(cap, Ordering::Relaxed);
        }
    }

    /// How many may be in flight for a new request of `priority` to enter
    /// under `limit` (at least 1): the rule and its table are in the
    /// [module documentation](super#priorities-at-small-limits).
    ///
    /// Shares round down, as at large limits they should (a reserve of
    /// 20 % of 14 is 2 slots, not 3), but a share that is not zero keeps at
    /// least one slot wherever the limit leaves one to keep: rounded down
    /// alone, a 20 % reserve is nothing below a limit of 5, so a limit that
    /// falls under overload would leave Critical no room of its own just
    /// when it needs it. Sheddable's cap leaves the two shares together,
    /// rounded down once: rounding each share down on its own made its cap
    /// fall as the limit rose (15 at a limit of 19, 14 at 20). So every cap
    /// is at least 1 (a limit of 1 serves anyone rather than no one but
    /// Critical), never grows as the priority falls (which the queue's
    /// serving order relies on) and never falls as the limit rises.
    fn cap_under(&self, limit: u32, priority: Priority) -> u32 {
        let limit = limit.max(1);
        // `as` rounds toward zero and saturates: a floor for these values.
        let floor_of = |share: f64| (f64::from(limit) * share) as u32;
        let reserve = if self.critical_reserve > 0.0 {
            floor_of(self.critical_reserve).max(1).min(limit - 1)
        } else {
            0
        };
        let normal = limit - reserve;
        match priority {
            Priority::Critical => limit,
            Priority::Normal => normal,
            Priority::Sheddable if self.sheddable_margin > 0.0 => {
                let both = floor_of(self.critical_reserve + self.sheddable_margin);
                let margin = both.saturating_sub(reserve).max(1).min(normal - 1);
                normal - margin
            }
            Priority::Sheddable => normal,
        }
    }

    /// A suggested wait before retrying: twice the smoothed latency of
    /// recent requests, in whole seconds, between 1 and 60.
    fn retry_after(&self) -> Duration {
        let twice = Duration::from_nanos(self.latency.load(Ordering::Relaxed).saturating_mul(2));
        let whole_seconds =
            Duration::from_secs(twice.as_secs() + u64::from(twice.subsec_nanos() > 0));
        whole_seconds.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
    }
}

impl fmt::Debug for Shedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shedder")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// How an admitted request ended, for the limit to learn from.
///
/// ```
/// use surgeguard::shed::Outcome;
/// let outcome = if 500 >= 500 { Outcome::Dropped } else { Outcome::Success };
/// assert_eq!(outcome, Outcome::Dropped);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It completed: its latency is a sample.
    Success,
    /// It failed in a way that signals overload (a timeout, a 503 from
    /// upstream): adaptive limits back off.
    Dropped,
    /// It says nothing about capacity (a client error, a cache hit that
    /// never touched the backend): the limit does not learn from it.
    Ignore,
}

/// An admitted request's slot. Dropping it releases the slot (also on a
/// panic or a cancelled future); [`record`](Self::record) also teaches the
/// limit how the request went.
///
/// ```
/// use surgeguard::shed::{Outcome, Priority, Shedder};
///
/// let shedder = Shedder::builder().max_concurrency(2).build()?;
/// let permit = shedder.try_acquire(Priority::Normal).unwrap();
/// assert_eq!(shedder.in_flight(), 1);
/// permit.record(Outcome::Success);
/// assert_eq!(shedder.in_flight(), 0);
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[must_use = "dropping a permit at once releases its slot"]
pub struct Permit {
    shedder: Arc<Inner>,
    /// Nanoseconds on the shedder's clock.
    started: u64,
    /// In flight when it was admitted, itself included.
    in_flight: u32,
}

impl Permit {
    /// Releases the slot and feeds the request's latency and outcome to the
    /// limit algorithm.
    ///
    /// ```
    /// # use surgeguard::shed::{Outcome, Priority, Shedder};
    /// # let shedder = Shedder::builder().max_concurrency(2).build()?;
    /// let permit = shedder.try_acquire(Priority::Normal).unwrap();
    /// permit.record(Outcome::Dropped);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn record(self, outcome: Outcome) {
        if outcome == Outcome::Ignore || !self.shedder.learns {
            return;
        }
        let inner = &self.shedder;
        let latency = inner.clock.now().as_nanos().saturating_sub(self.started);
        // A rough smoothing (1/8 per sample) for Retry-After; races between
        // threads lose a sample now and then, which is harmless here.
        let smoothed = inner.latency.load(Ordering::Relaxed);
        let next = if smoothed == 0 {
            latency
        } else {
            smoothed - smoothed / 8 + latency / 8
        };
        inner.latency.store(next, Ordering::Relaxed);
        let mut algorithm = inner.algorithm.lock();
        let limit = algorithm.update(Sample {
            latency: Duration::from_nanos(latency),
            in_flight: self.in_flight,
            dropped: outcome == Outcome::Dropped,
        });
        // Under the algorithm's lock, so that the caps of the last update
        // are the ones that stay.
        inner.set_limit(limit);
        drop(algorithm);
        #[cfg(feature = "tracing")]
        inner.log_limit(limit.max(1));
        // `self` drops here, releasing the slot; the release serves queued
        // waiters by the limit just stored, so a raised limit admits as
        // many as now fit.
    }

    /// Requests in flight when this one was admitted, itself included.
    ///
    /// ```
    /// # use surgeguard::shed::{Priority, Shedder};
    /// # let shedder = Shedder::builder().max_concurrency(2).build()?;
    /// let permit = shedder.try_acquire(Priority::Normal).unwrap();
    /// assert_eq!(permit.in_flight_at_start(), 1);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn in_flight_at_start(&self) -> u32 {
        self.in_flight
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shedder.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("in_flight_at_start", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// Why a request was not admitted.
///
/// ```
/// use surgeguard::shed::RejectReason;
/// assert_eq!(RejectReason::LimitReached.to_string(), "the concurrency limit is reached");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// As many requests of its priority as the limit allows are running.
    LimitReached,
    /// The limit is full and so is the wait queue; or it waited in the
    /// queue and was turned away to make room for a more important request.
    QueueFull,
    /// It waited in the queue until its deadline.
    Deadline,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::LimitReached => f.write_str("the concurrency limit is reached"),
            RejectReason::QueueFull => {
                f.write_str("the concurrency limit and the wait queue are full")
            }
            RejectReason::Deadline => f.write_str("no slot freed up before the queue deadline"),
        }
    }
}

/// A request the shedder refused, with what to tell the client.
///
/// ```
/// use surgeguard::shed::{Priority, Shedder};
///
/// let shedder = Shedder::builder().max_concurrency(1).build()?;
/// let _held = shedder.try_acquire(Priority::Critical).unwrap();
/// let rejected = shedder.try_acquire(Priority::Critical).unwrap_err();
/// assert!(rejected.retry_after().as_secs() >= 1);
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("request shed: {reason}; retry after {retry_after:?}")]
pub struct Rejected {
    reason: RejectReason,
    retry_after: Duration,
}

impl Rejected {
    /// Why it was refused.
    ///
    /// ```
    /// # use surgeguard::shed::{Priority, RejectReason, Shedder};
    /// # let shedder = Shedder::builder().max_concurrency(1).build()?;
    /// # let _held = shedder.try_acquire(Priority::Critical).unwrap();
    /// let rejected = shedder.try_acquire(Priority::Normal).unwrap_err();
    /// assert_eq!(rejected.reason(), RejectReason::LimitReached);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// A suggested wait before retrying, in whole seconds (for
    /// `Retry-After`): twice the recent latency, between 1 and 60 seconds.
    ///
    /// ```
    /// # use surgeguard::shed::{Priority, Shedder};
    /// # let shedder = Shedder::builder().max_concurrency(1).build()?;
    /// # let _held = shedder.try_acquire(Priority::Critical).unwrap();
    /// let rejected = shedder.try_acquire(Priority::Normal).unwrap_err();
    /// assert_eq!(rejected.retry_after().subsec_nanos(), 0);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// A snapshot of a shedder's state and counters.
///
/// ```
/// # use surgeguard::shed::Shedder;
/// let stats = Shedder::builder().max_concurrency(4).build()?.stats();
/// assert_eq!((stats.limit, stats.in_flight, stats.rejected_normal), (4, 0, 0));
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShedStats {
    /// The current limit.
    pub limit: u32,
    /// Requests holding a permit.
    pub in_flight: u32,
    /// Requests waiting in the queue.
    pub queued: usize,
    /// Critical requests refused.
    pub rejected_critical: u64,
    /// Normal requests refused.
    pub rejected_normal: u64,
    /// Sheddable requests refused.
    pub rejected_sheddable: u64,
    /// Requests shadow mode admitted that would have been refused.
    pub shadow_rejected: u64,
    by_reason: [[u64; 3]; 3],
}

impl ShedStats {
    /// Refusals of `priority` for `reason`.
    ///
    /// ```
    /// use surgeguard::shed::{Priority, RejectReason, Shedder};
    ///
    /// let shedder = Shedder::builder().max_concurrency(1).build()?;
    /// let _held = shedder.try_acquire(Priority::Critical).unwrap();
    /// let _ = shedder.try_acquire(Priority::Normal);
    /// let stats = shedder.stats();
    /// assert_eq!(stats.rejected(Priority::Normal, RejectReason::LimitReached), 1);
    /// assert_eq!(stats.rejected(Priority::Normal, RejectReason::QueueFull), 0);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn rejected(&self, priority: Priority, reason: RejectReason) -> u64 {
        self.by_reason[priority as usize][reason as usize]
    }
}
