//! Room appearing in the shedder (feature `tokio`): a raised limit or a
//! release admits as many queued waiters as now fit, in the queue's order
//! and before any newcomer; a lowered limit admits nobody past its cap; a
//! full queue makes way for a more important request. Futures are polled
//! by hand on a `ManualClock`: nothing sleeps.
#![cfg(feature = "tokio")]

mod shed_support;

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use shed_support::{acquiring, dialled, poll_once, Acquiring};
use surgeguard::clock::ManualClock;
use surgeguard::shed::{AdaptiveLimit, Outcome, Permit, Priority, RejectReason, Shedder};

/// Queues `count` waiters of `priority`; each must be left waiting.
fn queue_up(shedder: &Shedder, priority: Priority, count: usize) -> Vec<Acquiring> {
    (0..count)
        .map(|_| {
            let mut waiter = acquiring(shedder, priority);
            assert!(poll_once(&mut waiter).is_pending(), "the limit is full");
            waiter
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_limit_raised_by_one_admits_every_waiter_that_now_fits() {
    // The case: AIMD at 2, two permits held, three waiting; one
    // permit's success raises the limit to 3. No shares, so that every
    // priority may use the whole limit.
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .limit(AdaptiveLimit::aimd().initial(2).min(2).max(10))
        .critical_reserve(0.0)
        .sheddable_margin(0.0)
        .queue(16, Duration::from_millis(800))
        .clock(clock.clone())
        .build()
        .unwrap();
    let first = shedder.try_acquire(Priority::Normal).unwrap();
    let _second = shedder.try_acquire(Priority::Normal).unwrap();
    let mut waiters = queue_up(&shedder, Priority::Normal, 3);

    first.record(Outcome::Success);
    assert_eq!(shedder.limit(), 3);
    // Room for two: the released slot and the new one, both to waiters,
    // at once (the clock has not moved).
    let served: Vec<Permit> = waiters[..2]
        .iter_mut()
        .map(|waiter| match poll_once(waiter) {
            Poll::Ready(Ok(permit)) => permit,
            other => panic!("a waiter that fits should be served, not {other:?}"),
        })
        .collect();
    assert_eq!(shedder.in_flight(), 3);
    assert!(
        poll_once(&mut waiters[2]).is_pending(),
        "no room for the third"
    );
    assert!(
        shedder.try_acquire(Priority::Normal).is_err(),
        "a newcomer finds no room the waiters left"
    );
    assert_eq!(shedder.stats().queued, 1);
    drop(served);
    assert!(matches!(poll_once(&mut waiters[2]), Poll::Ready(Ok(_))));
}

#[tokio::test(start_paused = true)]
async fn a_limit_jump_from_2_to_10_admits_all_five_waiters() {
    // Default shares: at a limit of 2 Normal may hold 1 and Critical the
    // other; at 10 Normal may hold 8.
    let clock = ManualClock::new();
    let (shedder, dial) = dialled(2, 16, &clock);
    let normal = shedder.try_acquire(Priority::Normal).unwrap();
    let _critical = shedder.try_acquire(Priority::Critical).unwrap();
    let mut waiters = queue_up(&shedder, Priority::Normal, 5);

    dial.store(10, Ordering::SeqCst);
    normal.record(Outcome::Success);
    assert_eq!(shedder.limit(), 10);
    // Each permit is kept: one dropped would pass its slot to the next.
    let served: Vec<Permit> = waiters
        .iter_mut()
        .enumerate()
        .map(|(index, waiter)| match poll_once(waiter) {
            Poll::Ready(Ok(permit)) => permit,
            other => panic!("waiter {index} should be served (8 slots were free), not {other:?}"),
        })
        .collect();
    assert_eq!((served.len(), shedder.in_flight()), (5, 6));
    assert_eq!(shedder.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_the_queue_order_critical_line_first() {
    let clock = ManualClock::new();
    let (shedder, dial) = dialled(1, 16, &clock);
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut normal = queue_up(&shedder, Priority::Normal, 2);
    let mut critical = queue_up(&shedder, Priority::Critical, 2);

    // Limit 4: Normal's cap is 3. The released slot and the new ones go to
    // both Critical waiters first, then to the older Normal waiter; the
    // younger one would be a fourth request, past Normal's cap.
    dial.store(4, Ordering::SeqCst);
    held.record(Outcome::Success);
    let mut kept = Vec::new();
    for waiter in critical.iter_mut().chain(&mut normal[..1]) {
        let Poll::Ready(Ok(permit)) = poll_once(waiter) else {
            panic!("served in order");
        };
        kept.push(permit);
    }
    assert!(poll_once(&mut normal[1]).is_pending());
    assert_eq!(shedder.in_flight(), 3);
    // Critical may still take the fourth slot; Normal may not.
    assert!(shedder.try_acquire(Priority::Normal).is_err());
    assert!(shedder.try_acquire(Priority::Critical).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_of_a_higher_priority_may_pass_waiters_that_do_not_fit() {
    let clock = ManualClock::new();
    let (shedder, _dial) = dialled(10, 16, &clock);
    // Normal's cap of 8 is used up; a Normal waiter cannot enter.
    let _held: Vec<Permit> = (0..8)
        .map(|_| shedder.try_acquire(Priority::Normal).unwrap())
        .collect();
    let mut normal = queue_up(&shedder, Priority::Normal, 1);
    // A Critical newcomer fits (the reserve is its own); the waiter still
    // does not, and keeps waiting.
    let critical = shedder.try_acquire(Priority::Critical).unwrap();
    assert!(poll_once(&mut normal[0]).is_pending());
    assert!(shedder.try_acquire(Priority::Sheddable).is_err());
    drop(critical);
    // 8 in flight again: still no room for Normal.
    assert!(poll_once(&mut normal[0]).is_pending());
}

#[tokio::test(start_paused = true)]
async fn a_lowered_limit_admits_no_waiter_past_its_cap() {
    let clock = ManualClock::new();
    let (shedder, dial) = dialled(4, 16, &clock);
    let mut held: Vec<Permit> = (0..4)
        .map(|_| shedder.try_acquire(Priority::Critical).unwrap())
        .collect();
    let mut waiters = queue_up(&shedder, Priority::Critical, 3);

    // The limit falls to 2 as one permit ends: 3 still run, over the new
    // limit; nobody is admitted until fewer than 2 run.
    dial.store(2, Ordering::SeqCst);
    held.pop().unwrap().record(Outcome::Success);
    assert_eq!((shedder.limit(), shedder.in_flight()), (2, 3));
    drop(held.pop());
    assert_eq!(shedder.in_flight(), 2);
    for waiter in &mut waiters {
        assert!(
            poll_once(waiter).is_pending(),
            "no room under the new limit"
        );
    }
    drop(held.pop());
    // One fewer than the limit runs: exactly one waiter gets the slot.
    let Poll::Ready(Ok(_permit)) = poll_once(&mut waiters[0]) else {
        panic!("the first waiter fits now");
    };
    assert!(poll_once(&mut waiters[1]).is_pending());
    assert!(poll_once(&mut waiters[2]).is_pending());
    assert_eq!(shedder.in_flight(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_cancelled_once_granted_passes_its_slot_to_the_next() {
    let clock = ManualClock::new();
    let (shedder, _dial) = dialled(1, 16, &clock);
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut waiters = queue_up(&shedder, Priority::Critical, 2);
    drop(held); // granted to the first waiter...
    let first = waiters.remove(0);
    drop(first); // ...which is cancelled before it looks
    assert_eq!(shedder.in_flight(), 1, "the slot went on, not back");
    assert!(matches!(poll_once(&mut waiters[0]), Poll::Ready(Ok(_))));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_deadline_passes_without_room_still_gets_deadline() {
    let clock = ManualClock::new();
    let (shedder, _dial) = dialled(1, 16, &clock);
    let _held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut waiters = queue_up(&shedder, Priority::Critical, 1);
    clock.advance(Duration::from_millis(800));
    let Poll::Ready(Err(rejected)) = poll_once(&mut waiters[0]) else {
        panic!("past its deadline");
    };
    assert_eq!(rejected.reason(), RejectReason::Deadline);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_turns_away_its_least_important_waiter_for_a_critical_request() {
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(2, Duration::from_millis(800))
        .clock(clock.clone())
        .build()
        .unwrap();
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut sheddable = queue_up(&shedder, Priority::Sheddable, 1);
    let mut normal = queue_up(&shedder, Priority::Normal, 1);

    // Full: a checkout takes the place of the browsing request.
    let mut first_checkout = queue_up(&shedder, Priority::Critical, 1);
    let Poll::Ready(Err(displaced)) = poll_once(&mut sheddable[0]) else {
        panic!("the Sheddable waiter should have been turned away");
    };
    assert_eq!(displaced.reason(), RejectReason::QueueFull);
    // Then of the Normal one.
    let mut second_checkout = queue_up(&shedder, Priority::Critical, 1);
    assert!(matches!(poll_once(&mut normal[0]), Poll::Ready(Err(_))));
    // A queue of checkouts only refuses the next one, and never turns a
    // waiter away for a request of its own priority or a lower one.
    for priority in [Priority::Critical, Priority::Normal, Priority::Sheddable] {
        let refused = shedder.acquire(priority).await.unwrap_err();
        assert_eq!(refused.reason(), RejectReason::QueueFull);
    }
    let stats = shedder.stats();
    assert_eq!(stats.queued, 2);
    assert_eq!(
        stats.rejected(Priority::Sheddable, RejectReason::QueueFull),
        2
    );
    assert_eq!(stats.rejected(Priority::Normal, RejectReason::QueueFull), 2);
    drop(held);
    let Poll::Ready(Ok(_checkout)) = poll_once(&mut first_checkout[0]) else {
        panic!("the first checkout is served");
    };
    assert!(poll_once(&mut second_checkout[0]).is_pending());
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_with_a_queue_still_admits_everyone_at_once() {
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(2, Duration::from_millis(800))
        .shadow(true)
        .clock(clock.clone())
        .build()
        .unwrap();
    let permits: Vec<Permit> = (0..4)
        .map(|_| {
            let mut waiter = acquiring(&shedder, Priority::Normal);
            match poll_once(&mut waiter) {
                Poll::Ready(Ok(permit)) => permit,
                other => panic!("shadow mode never waits: {other:?}"),
            }
        })
        .collect();
    assert_eq!(shedder.in_flight(), 4);
    assert_eq!(shedder.stats().shadow_rejected, 3);
    drop(permits);
    assert_eq!(shedder.in_flight(), 0);
}
