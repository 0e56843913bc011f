//! Configuration of a [`Shedder`], validated once at build time.

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use super::limit::{AdaptiveLimit, Fixed, LimitAlgorithm};
use super::queue::WaitQueue;
use super::shedder::Shedder;
use crate::clock::{duration_to_nanos, Clock, SystemClock};

/// The longest accepted queue wait: a request waiting longer than an hour
/// has a client that left long ago.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(3_600);

/// Default share of the limit that only [`Priority::Critical`](super::Priority::Critical)
/// requests may use.
const DEFAULT_CRITICAL_RESERVE: f64 = 0.2;
/// Default further share that [`Priority::Sheddable`](super::Priority::Sheddable)
/// requests leave free for Normal ones.
const DEFAULT_SHEDDABLE_MARGIN: f64 = 0.1;

/// Why a [`ShedderBuilder`] refused its settings.
///
/// ```
/// use surgeguard::shed::{BuildError, Shedder};
///
/// let err = Shedder::builder().max_concurrency(0).build().unwrap_err();
/// assert_eq!(err, BuildError::ZeroLimit);
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No limit was set.
    #[error("the shedder has no limit: call max_concurrency(n) or limit(AdaptiveLimit::..)")]
    NoLimit,
    /// A limit (or an adaptive limit's minimum) of zero.
    #[error("the limit is 0: nothing could ever run; allow at least 1")]
    ZeroLimit,
    /// An adaptive limit whose minimum is above its maximum.
    #[error("the adaptive limit's min ({min}) is above its max ({max})")]
    MinAboveMax {
        /// The minimum set.
        min: u32,
        /// The maximum set.
        max: u32,
    },
    /// A zero duration.
    #[error("{setting} is zero: leave it unset to turn it off")]
    ZeroDuration {
        /// The setting's builder method.
        setting: &'static str,
    },
    /// A wait queue of no places.
    #[error("the queue holds 0 requests: leave queue() unset to refuse at once")]
    ZeroQueue,
    /// A queue wait over an hour.
    #[error("the queue's max_wait of {0:?} is over an hour: the client left long ago")]
    QueueWaitTooLong(Duration),
    /// A share outside `0.0..1.0` (or not a number).
    #[error("{setting} is {value}: use a fraction from 0.0 up to (not including) 1.0")]
    InvalidShare {
        /// The setting's builder method.
        setting: &'static str,
        /// The rejected value.
        value: f64,
    },
}

enum LimitChoice {
    Fixed(u32),
    Adaptive(AdaptiveLimit),
    Custom(Box<dyn LimitAlgorithm>),
}

/// Builds a [`Shedder`]; obtained from [`Shedder::builder`].
///
/// ```
/// use surgeguard::shed::{Priority, Shedder};
///
/// let shedder = Shedder::builder().max_concurrency(64).critical_reserve(0.25).build()?;
/// assert_eq!(shedder.limit(), 64);
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct ShedderBuilder {
    limit: Option<LimitChoice>,
    critical_reserve: f64,
    sheddable_margin: f64,
    queue: Option<(usize, Duration)>,
    shadow: bool,
    clock: Arc<dyn Clock>,
}

impl Default for ShedderBuilder {
    fn default() -> Self {
        ShedderBuilder {
            limit: None,
            critical_reserve: DEFAULT_CRITICAL_RESERVE,
            sheddable_margin: DEFAULT_SHEDDABLE_MARGIN,
            queue: None,
            shadow: false,
            clock: Arc::new(SystemClock),
        }
    }
}

impl ShedderBuilder {
    /// Shadow mode (a dry run): the shedder decides, learns and counts as
    /// usual but admits every request, so a limit can be rolled out and
    /// watched before it refuses anyone. What it would have refused is
    /// counted in [`ShedStats::shadow_rejected`](super::ShedStats::shadow_rejected);
    /// nothing waits in the queue.
    ///
    /// ```
    /// use surgeguard::shed::{Priority, Shedder};
    ///
    /// let shedder = Shedder::builder().max_concurrency(1).shadow(true).build()?;
    /// let first = shedder.try_acquire(Priority::Normal).unwrap();
    /// let second = shedder.try_acquire(Priority::Normal).unwrap(); // admitted anyway
    /// assert_eq!(shedder.stats().shadow_rejected, 1);
    /// assert_eq!(shedder.stats().rejected_normal, 0);
    /// # drop((first, second));
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self
    }

    /// A fixed limit: at most `limit` requests at once.
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// let shedder = Shedder::builder().max_concurrency(100).build()?;
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn max_concurrency(mut self, limit: u32) -> Self {
        self.limit = Some(LimitChoice::Fixed(limit));
        self
    }

    /// An adaptive limit, learned from completed requests' latency.
    ///
    /// ```
    /// # use surgeguard::shed::{AdaptiveLimit, Shedder};
    /// let shedder = Shedder::builder().limit(AdaptiveLimit::vegas().max(200)).build()?;
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn limit(mut self, limit: AdaptiveLimit) -> Self {
        self.limit = Some(LimitChoice::Adaptive(limit));
        self
    }

    /// Your own limit algorithm.
    ///
    /// ```
    /// use surgeguard::shed::{LimitAlgorithm, Sample, Shedder};
    ///
    /// #[derive(Debug)]
    /// struct AlwaysTen;
    /// impl LimitAlgorithm for AlwaysTen {
    ///     fn limit(&self) -> u32 { 10 }
    ///     fn update(&mut self, _: Sample) -> u32 { 10 }
    /// }
    /// let shedder = Shedder::builder().custom_limit(AlwaysTen).build()?;
    /// assert_eq!(shedder.limit(), 10);
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn custom_limit(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.limit = Some(LimitChoice::Custom(Box::new(algorithm)));
        self
    }

    /// The share of the limit that only Critical requests may use (default
    /// 0.2): Normal and Sheddable requests are refused once in-flight reaches
    /// `limit - floor(limit × share)`, and a share that is not zero keeps at
    /// least one slot from a limit of 2 up (the rule and a table:
    /// [Priorities at small limits](super#priorities-at-small-limits)).
    /// 0.0 reserves nothing.
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// let shedder = Shedder::builder().max_concurrency(10).critical_reserve(0.3).build()?;
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn critical_reserve(mut self, share: f64) -> Self {
        self.critical_reserve = share;
        self
    }

    /// The further share of the limit that Sheddable requests leave to
    /// Normal ones (default 0.1): Sheddable requests are refused once
    /// in-flight reaches `limit - floor(limit × (critical_reserve + share))`,
    /// and at least one below Normal's cap from a limit of 3 up
    /// ([Priorities at small limits](super#priorities-at-small-limits)).
    /// 0.0 leaves nothing more.
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// let shedder = Shedder::builder().max_concurrency(10).sheddable_margin(0.2).build()?;
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn sheddable_margin(mut self, share: f64) -> Self {
        self.sheddable_margin = share;
        self
    }

    /// Lets up to `capacity` requests that find the limit full wait for a
    /// slot, each for at most `max_wait` (default: no queue, refuse at once).
    /// Only `Shedder::acquire` (feature `tokio`) waits; a released permit
    /// hands its slot straight to a waiter. A priority's line that has not
    /// been empty for 100 ms serves its newest waiter first and cuts its
    /// waits to 5 ms (adaptive LIFO); each line is judged on its own.
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// use std::time::Duration;
    /// let shedder = Shedder::builder()
    ///     .max_concurrency(64)
    ///     .queue(128, Duration::from_millis(50))
    ///     .build()?;
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn queue(mut self, capacity: usize, max_wait: Duration) -> Self {
        self.queue = Some((capacity, max_wait));
        self
    }

    /// The clock permits are timed with (default: [`SystemClock`]).
    ///
    /// ```
    /// # use surgeguard::shed::Shedder;
    /// use surgeguard::clock::ManualClock;
    /// let shedder = Shedder::builder().max_concurrency(4).clock(ManualClock::new()).build()?;
    /// # Ok::<(), surgeguard::shed::BuildError>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the settings and builds the shedder.
    ///
    /// ```
    /// # use surgeguard::shed::{BuildError, Shedder};
    /// assert_eq!(Shedder::builder().build().unwrap_err(), BuildError::NoLimit);
    /// ```
    pub fn build(self) -> Result<Shedder, BuildError> {
        let learns = !matches!(self.limit, Some(LimitChoice::Fixed(_)));
        let algorithm: Box<dyn LimitAlgorithm> = match self.limit {
            None => return Err(BuildError::NoLimit),
            Some(LimitChoice::Fixed(0)) => return Err(BuildError::ZeroLimit),
            Some(LimitChoice::Fixed(limit)) => Box::new(Fixed(limit)),
            Some(LimitChoice::Adaptive(adaptive)) => adaptive.build()?,
            Some(LimitChoice::Custom(custom)) if custom.limit() == 0 => {
                return Err(BuildError::ZeroLimit)
            }
            Some(LimitChoice::Custom(custom)) => custom,
        };
        for (setting, value) in [
            ("critical_reserve", self.critical_reserve),
            ("sheddable_margin", self.sheddable_margin),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(BuildError::InvalidShare { setting, value });
            }
        }
        let queue = match self.queue {
            None => None,
            Some((0, _)) => return Err(BuildError::ZeroQueue),
            Some((_, wait)) if wait.is_zero() => {
                return Err(BuildError::ZeroDuration {
                    setting: "queue max_wait",
                })
            }
            Some((_, wait)) if wait > MAX_QUEUE_WAIT => {
                return Err(BuildError::QueueWaitTooLong(wait))
            }
            Some((capacity, wait)) => Some(WaitQueue::new(capacity, duration_to_nanos(wait))),
        };
        Ok(Shedder::from_parts(
            algorithm,
            learns,
            self.critical_reserve,
            self.sheddable_margin,
            queue,
            self.shadow,
            self.clock,
        ))
    }
}

impl fmt::Debug for ShedderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = match &self.limit {
            None => "none".to_string(),
            Some(LimitChoice::Fixed(limit)) => format!("fixed {limit}"),
            Some(LimitChoice::Adaptive(adaptive)) => format!("{adaptive:?}"),
            Some(LimitChoice::Custom(custom)) => format!("custom {custom:?}"),
        };
        f.debug_struct("ShedderBuilder")
            .field("limit", &limit)
            .field("critical_reserve", &self.critical_reserve)
            .field("sheddable_margin", &self.sheddable_margin)
            .field("queue", &self.queue)
            .field("clock", &self.clock)
            .finish()
    }
}
