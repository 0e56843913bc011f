//! What the shedder's tests share: a waiter's future polled by hand, a
//! limit the test turns like a dial, and the documented caps of each
//! priority with the default shares, written out as the docs state them
//! (not taken from the library) so that a test compares the two.

#![allow(dead_code)] // each test binary uses a part

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use surgeguard::clock::ManualClock;
use surgeguard::shed::{LimitAlgorithm, Permit, Priority, Rejected, Sample, Shedder};

/// A request waiting in `Shedder::acquire`, polled by hand.
pub type Acquiring = Pin<Box<dyn Future<Output = Result<Permit, Rejected>> + Send>>;

/// `shedder.acquire(priority)`, not polled yet.
pub fn acquiring(shedder: &Shedder, priority: Priority) -> Acquiring {
    let shedder = shedder.clone();
    Box::pin(async move { shedder.acquire(priority).await })
}

/// Polls `future` once, with a waker that does nothing.
pub fn poll_once(future: &mut Acquiring) -> Poll<Result<Permit, Rejected>> {
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// A limit the test turns like a dial: every recorded permit sets the
/// shedder's limit to the dial's value.
#[derive(Debug)]
pub struct Dial(pub Arc<AtomicU32>);

impl LimitAlgorithm for Dial {
    fn limit(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    fn update(&mut self, _: Sample) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A dialled shedder with the default shares, a queue of `capacity` and
/// waits of 800 ms on `clock`; the dial starts at `initial`.
pub fn dialled(initial: u32, capacity: usize, clock: &ManualClock) -> (Shedder, Arc<AtomicU32>) {
    let dial = Arc::new(AtomicU32::new(initial));
    let shedder = Shedder::builder()
        .custom_limit(Dial(Arc::clone(&dial)))
        .queue(capacity, Duration::from_millis(800))
        .clock(clock.clone())
        .build()
        .unwrap();
    (shedder, dial)
}

/// The documented cap of each priority at `limit`, with the default shares
/// (20 % reserved for Critical, a further 10 % held from Sheddable): Critical
/// the whole limit; Normal all but `max(1, floor(20 %))` slots; Sheddable all
/// but `floor(30 %)`, and at least one fewer than Normal; neither takes a
/// priority's last slot.
pub fn default_cap(limit: u32, priority: Priority) -> u32 {
    let reserve = (limit / 5).max(1).min(limit - 1);
    let normal = limit - reserve;
    match priority {
        Priority::Critical => limit,
        Priority::Normal => normal,
        Priority::Sheddable => {
            normal
                - (limit * 3 / 10)
                    .saturating_sub(reserve)
                    .max(1)
                    .min(normal - 1)
        }
    }
}
