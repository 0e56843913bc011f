//! surgeguard's `Clock` over quanta's TSC reading, the time source governor's
//! default clock uses, so that limiter comparisons pay for the same clock.

use surgeguard::clock::{self, Clock};

/// Nanoseconds since construction, read from the TSC through quanta.
#[derive(Debug)]
pub struct TscClock {
    clock: quanta::Clock,
    origin: u64,
}

impl TscClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        TscClock { clock, origin }
    }
}

impl Clock for TscClock {
    #[inline]
    fn now(&self) -> clock::Instant {
        clock::Instant::from_nanos(self.clock.delta_as_nanos(self.origin, self.clock.raw()))
    }
}
