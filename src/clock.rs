//! Time, injected.
//!
//! Everything in surgeguard that depends on time (cache expiry, and later the
//! rate limiters and the load shedder) reads it through the [`Clock`] trait,
//! never from [`std::time::Instant::now`] directly. Production code uses
//! [`SystemClock`]; tests drive a [`ManualClock`] forward by hand, so no test
//! ever sleeps and every time-based behaviour is reproducible.
//!
//! Time is a plain count of nanoseconds since the clock's origin
//! ([`Instant`]): eight bytes, cheap to store per cache entry, and trivially
//! comparable.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A monotonic source of time.
///
/// Implementations must never go backwards for a given clock value shared by
/// a cache; if they do (a buggy clock), surgeguard treats earlier readings as
/// "no time has passed" rather than panicking.
///
/// ```
/// use surgeguard::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now().saturating_duration_since(start), Duration::from_secs(5));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// A point in time: nanoseconds since an arbitrary, clock-specific origin.
///
/// Arithmetic saturates instead of overflowing, so an absurd duration yields
/// [`Instant::FAR_FUTURE`] rather than a panic.
///
/// ```
/// use surgeguard::clock::Instant;
/// use std::time::Duration;
///
/// let t = Instant::from_nanos(1_000);
/// assert_eq!((t + Duration::from_nanos(500)).as_nanos(), 1_500);
/// assert_eq!(t + Duration::MAX, Instant::FAR_FUTURE);
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    ///
    /// ```
    /// # use surgeguard::clock::Instant;
    /// assert_eq!(Instant::ZERO.as_nanos(), 0);
    /// ```
    pub const ZERO: Instant = Instant(0);
    /// A time that is never reached; used for "never expires".
    ///
    /// ```
    /// # use surgeguard::clock::Instant;
    /// assert!(Instant::from_nanos(u64::MAX - 1) < Instant::FAR_FUTURE);
    /// ```
    pub const FAR_FUTURE: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    ///
    /// ```
    /// # use surgeguard::clock::Instant;
    /// assert_eq!(Instant::from_nanos(7).as_nanos(), 7);
    /// ```
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    ///
    /// ```
    /// # use surgeguard::clock::Instant;
    /// assert_eq!(Instant::ZERO.as_nanos(), 0);
    /// ```
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    ///
    /// ```
    /// # use surgeguard::clock::Instant;
    /// # use std::time::Duration;
    /// let (a, b) = (Instant::from_nanos(10), Instant::from_nanos(30));
    /// assert_eq!(b.saturating_duration_since(a), Duration::from_nanos(20));
    /// assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    /// ```
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, saturating at [`Instant::FAR_FUTURE`].
    ///
    /// ```
    /// # use surgeguard::clock::Instant;
    /// # use std::time::Duration;
    /// assert_eq!(Instant::ZERO.saturating_add(Duration::from_nanos(3)).as_nanos(), 3);
    /// ```
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_to_nanos(duration)))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The machine's monotonic clock, read through the CPU's invariant time-stamp
/// counter where there is one.
///
/// Reading the time is on the hit path of every cache with expiry and of
/// every rate-limit check, so it must be cheap: on the project's 2-vCPU KVM
/// machine `std::time::Instant::now` costs about 54 ns a call, the TSC read
/// by [`quanta`] about 18 ns. quanta calibrates the counter against the OS
/// clock once per process (between half a millisecond and 200 ms, on the
/// first reading) and falls back to the OS monotonic clock on machines
/// without an invariant TSC.
///
/// All `SystemClock`s in a process share one origin, so their readings are
/// comparable.
///
/// ```
/// use surgeguard::clock::{Clock, SystemClock};
/// let clock = SystemClock;
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        static SOURCE: OnceLock<(quanta::Clock, u64)> = OnceLock::new();
        let (clock, origin) = SOURCE.get_or_init(|| {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            (clock, origin)
        });
        // A reading before the origin (counters that disagree across cores)
        // comes out as zero elapsed, never as a huge wrapped value.
        Instant(clock.delta_as_nanos(*origin, clock.raw()))
    }
}

/// A clock that moves only when told to: for tests and simulations.
///
/// Clones share the same time, so a test keeps one handle and gives a clone
/// to the structure under test.
///
/// ```
/// use surgeguard::clock::{Clock, Instant, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let handle = clock.clone();
/// handle.advance(Duration::from_millis(250));
/// assert_eq!(clock.now(), Instant::from_nanos(250_000_000));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at [`Instant::ZERO`].
    ///
    /// ```
    /// # use surgeguard::clock::{Clock, Instant, ManualClock};
    /// assert_eq!(ManualClock::new().now(), Instant::ZERO);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `duration` (saturating).
    ///
    /// ```
    /// # use surgeguard::clock::{Clock, ManualClock};
    /// # use std::time::Duration;
    /// let clock = ManualClock::new();
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(clock.now().as_nanos(), 1_000_000_000);
    /// ```
    pub fn advance(&self, duration: Duration) {
        let step = duration_to_nanos(duration);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(step))
            });
    }

    /// Sets the clock to `instant`, forwards or (to test robustness against
    /// faulty clocks) backwards.
    ///
    /// ```
    /// # use surgeguard::clock::{Clock, Instant, ManualClock};
    /// let clock = ManualClock::new();
    /// clock.set(Instant::from_nanos(42));
    /// assert_eq!(clock.now(), Instant::from_nanos(42));
    /// ```
    pub fn set(&self, instant: Instant) {
        self.nanos.store(instant.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let clock = ManualClock::new();
        let other = clock.clone();
        other.advance(Duration::from_nanos(10));
        assert_eq!(clock.now().as_nanos(), 10);
    }

    #[test]
    fn absurd_durations_saturate() {
        let clock = ManualClock::new();
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Instant::FAR_FUTURE);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), Instant::FAR_FUTURE);
        assert_eq!(
            Instant::FAR_FUTURE + Duration::from_secs(1),
            Instant::FAR_FUTURE
        );
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock;
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn clock_through_arc_dyn() {
        let manual = ManualClock::new();
        let shared: Arc<dyn Clock> = Arc::new(manual.clone());
        manual.advance(Duration::from_nanos(3));
        assert_eq!(shared.now().as_nanos(), 3);
    }
}
