//! A striped global limit gives back a refund made on another thread than
//! the check: what `LocalThenRemote` does when the remote limit denies and
//! the request's future finished on another worker thread.
//!
//! Why this cannot flake: the only test in its binary, so the threads here
//! are the only ones that take stripe numbers, in the order they are
//! spawned (each joined before the next starts); the ManualClock never
//! moves, so nothing refills.

use std::sync::Arc;
use surgeguard::clock::ManualClock;
use surgeguard::limit::{Gcra, Quota};

#[test]
fn a_refund_from_another_thread_gives_the_unit_back() {
    let limiter = Arc::new(
        Gcra::direct(Quota::per_hour(2).unwrap())
            .stripes(2)
            .clock(ManualClock::new())
            .build()
            .unwrap(),
    );
    // Checked on one thread, given back on the next (another stripe).
    assert!(on_a_new_thread(&limiter, |l| l.check().is_allowed()));
    on_a_new_thread(&limiter, |l| l.refund(1));
    // The budget is whole again: two more units.
    assert!(on_a_new_thread(&limiter, |l| l.check().is_allowed()));
    assert!(on_a_new_thread(&limiter, |l| l.check().is_allowed()));
    assert!(on_a_new_thread(&limiter, |l| l.check().is_denied()));
}

/// Runs `job` on a thread of its own, which takes the next stripe number.
fn on_a_new_thread<T: Send + 'static>(
    limiter: &Arc<Gcra<ManualClock>>,
    job: impl FnOnce(&Gcra<ManualClock>) -> T + Send + 'static,
) -> T {
    let limiter = Arc::clone(limiter);
    std::thread::spawn(move || job(&limiter)).join().unwrap()
}
