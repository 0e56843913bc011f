//! The circuit breaker: a dead Redis must not add a timeout to every
//! request.
//!
//! ```text
//!   Closed ── `failures_to_open` failures in a row ──► Open
//!   Open ── cool-down passed: the next call probes ──► HalfOpen
//!   HalfOpen ── probe succeeds ──► Closed      probe fails ──► Open
//! ```
//!
//! While open (and while a probe is out), calls go straight to the
//! fallback. Each transition is reported once to the caller, which logs and
//! counts it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;

/// A breaker's state change, for the caller to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: u64,
    },
    /// One probe is out.
    HalfOpen,
}

/// Whether a call may go to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Redis,
    /// This call is the probe after a cool-down.
    Probe,
    Fallback,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    failures_to_open: u32,
    cool_down: u64,
    clock: Arc<dyn Clock>,
}

impl Breaker {
    pub(crate) fn new(failures_to_open: u32, cool_down: Duration, clock: Arc<dyn Clock>) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_to_open,
            cool_down: u64::try_from(cool_down.as_nanos()).unwrap_or(u64::MAX),
            clock,
        }
    }

    pub(crate) fn admit(&self) -> Admit {
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => Admit::Redis,
            State::HalfOpen => Admit::Fallback,
            State::Open { until } => {
                if self.clock.now().as_nanos() >= until {
                    *state = State::HalfOpen;
                    Admit::Probe
                } else {
                    Admit::Fallback
                }
            }
        }
    }

    pub(crate) fn success(&self) -> Option<Transition> {
        let mut state = self.state.lock();
        let was = *state;
        *state = State::Closed { failures: 0 };
        (was == State::HalfOpen).then_some(Transition::Closed)
    }

    pub(crate) fn failure(&self) -> Option<Transition> {
        let mut state = self.state.lock();
        let open = State::Open {
            until: self.clock.now().as_nanos().saturating_add(self.cool_down),
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.failures_to_open => {
                *state = open;
                Some(Transition::Opened)
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            State::HalfOpen => {
                *state = open;
                Some(Transition::Opened)
            }
            // A call admitted before the breaker opened failed late.
            State::Open { .. } => None,
        }
    }

    /// Whether calls currently skip Redis.
    pub(crate) fn is_open(&self) -> bool {
        !matches!(*self.state.lock(), State::Closed { .. })
    }

    /// Time until the breaker lets a probe through (zero when closed).
    pub(crate) fn retry_in(&self) -> Duration {
        match *self.state.lock() {
            State::Open { until } => {
                Duration::from_nanos(until.saturating_sub(self.clock.now().as_nanos()))
            }
            State::HalfOpen => Duration::from_nanos(self.cool_down),
            State::Closed { .. } => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(clock: &ManualClock) -> Breaker {
        Breaker::new(3, Duration::from_secs(1), Arc::new(clock.clone()))
    }

    #[test]
    fn opens_after_failures_in_a_row_only() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), None);
        assert_eq!(b.success(), None, "a success resets the count");
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), Some(Transition::Opened));
        assert_eq!(b.admit(), Admit::Fallback);
        assert!(b.is_open());
        assert_eq!(b.retry_in(), Duration::from_secs(1));
    }

    #[test]
    fn one_probe_after_the_cool_down_closes_or_reopens() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        for _ in 0..3 {
            b.failure();
        }
        clock.advance(Duration::from_millis(999));
        assert_eq!(b.admit(), Admit::Fallback);
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.admit(), Admit::Fallback, "one probe at a time");
        assert_eq!(b.failure(), Some(Transition::Opened));
        assert_eq!(
            b.admit(),
            Admit::Fallback,
            "a failed probe restarts the cool-down"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.success(), Some(Transition::Closed));
        assert_eq!(b.admit(), Admit::Redis);
        assert!(!b.is_open());
    }
}
