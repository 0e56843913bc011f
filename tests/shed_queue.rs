//! The shedder's wait queue (feature `tokio`): hand-over on release, the
//! deadline on the cache's clock (and Tokio's paused timer), a full queue,
//! cancellation, and the switch to LIFO with short waits only in a
//! standing line, each priority's line judged on its own.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use surgeguard::clock::ManualClock;
use surgeguard::shed::{Permit, Priority, RejectReason, Rejected, Shedder};

fn shedder(limit: u32, queue: usize, wait_ms: u64, clock: &ManualClock) -> Shedder {
    Shedder::builder()
        .max_concurrency(limit)
        .critical_reserve(0.0)
        .sheddable_margin(0.0)
        .queue(queue, Duration::from_millis(wait_ms))
        .clock(clock.clone())
        .build()
        .unwrap()
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Polls `future` once.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    future.poll(&mut Context::from_waker(&waker))
}

#[tokio::test(start_paused = true)]
async fn a_released_slot_goes_to_the_first_waiter() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 4, 50, &clock);
    let held = shedder.acquire(Priority::Normal).await.unwrap();
    let mut first = pin!(shedder.acquire(Priority::Normal));
    let mut second = pin!(shedder.acquire(Priority::Normal));
    assert!(poll_once(first.as_mut()).is_pending());
    assert!(poll_once(second.as_mut()).is_pending());
    assert_eq!(shedder.stats().queued, 2);
    drop(held);
    // Handed over: the count of in-flight never dipped, and a newcomer
    // cannot overtake the queue.
    assert_eq!(shedder.in_flight(), 1);
    assert!(shedder.try_acquire(Priority::Normal).is_err());
    let Poll::Ready(Ok(permit)) = poll_once(first.as_mut()) else {
        panic!("the first waiter should hold the slot");
    };
    assert!(poll_once(second.as_mut()).is_pending());
    drop(permit);
    assert!(matches!(poll_once(second.as_mut()), Poll::Ready(Ok(_))));
}

#[tokio::test(start_paused = true)]
async fn nobody_waits_past_the_deadline() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 4, 50, &clock);
    let _held = shedder.acquire(Priority::Normal).await.unwrap();
    let mut waiting = pin!(shedder.acquire(Priority::Normal));
    assert!(poll_once(waiting.as_mut()).is_pending());
    clock.advance(Duration::from_millis(49));
    assert!(poll_once(waiting.as_mut()).is_pending(), "not before");
    clock.advance(Duration::from_millis(1));
    let Poll::Ready(Err(rejected)) = poll_once(waiting.as_mut()) else {
        panic!("the deadline passed");
    };
    assert_eq!(rejected.reason(), RejectReason::Deadline);
    assert_eq!(shedder.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn the_timer_ends_a_wait_even_if_nothing_is_released() {
    // System time and Tokio's paused clock: the wait ends by the timer alone.
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(4, Duration::from_millis(30))
        .build()
        .unwrap();
    let _held = shedder.acquire(Priority::Critical).await.unwrap();
    let rejected: Rejected = shedder.acquire(Priority::Critical).await.unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::Deadline);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 1, 50, &clock);
    let _held = shedder.acquire(Priority::Normal).await.unwrap();
    let mut queued = pin!(shedder.acquire(Priority::Normal));
    assert!(poll_once(queued.as_mut()).is_pending());
    let refused = shedder.acquire(Priority::Normal).await.unwrap_err();
    assert_eq!(refused.reason(), RejectReason::QueueFull);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_and_returns_a_slot_it_was_handed() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 4, 50, &clock);
    let held = shedder.acquire(Priority::Normal).await.unwrap();
    {
        let mut waiting = Box::pin(shedder.acquire(Priority::Normal));
        assert!(poll_once(waiting.as_mut()).is_pending());
        drop(held); // the slot is handed to the waiter...
        assert_eq!(shedder.in_flight(), 1);
    } // ...which is cancelled before it looks.
    assert_eq!(shedder.in_flight(), 0, "the handed slot came back");
    assert_eq!(shedder.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_standing_queue_turns_lifo_with_short_waits() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 8, 1_000, &clock);
    let held: Permit = shedder.acquire(Priority::Normal).await.unwrap();
    let mut old = Box::pin(shedder.acquire(Priority::Normal));
    assert!(poll_once(old.as_mut()).is_pending());
    // A burst: under 100 ms the queue is FIFO with the full wait.
    clock.advance(Duration::from_millis(60));
    let mut newer = Box::pin(shedder.acquire(Priority::Normal));
    assert!(poll_once(newer.as_mut()).is_pending());
    assert!(poll_once(old.as_mut()).is_pending(), "60 ms < 1 s wait");
    // Not empty for over 100 ms: a standing queue. The oldest waiter is past
    // the short 5 ms wait and fails; the newest is served first.
    clock.advance(Duration::from_millis(50));
    let mut newest = Box::pin(shedder.acquire(Priority::Normal));
    assert!(poll_once(newest.as_mut()).is_pending());
    drop(held);
    assert!(
        matches!(poll_once(newest.as_mut()), Poll::Ready(Ok(_))),
        "LIFO"
    );
    // Both older waiters are far past the short wait: they fail fast.
    for stale in [old.as_mut(), newer.as_mut()] {
        let Poll::Ready(Err(rejected)) = poll_once(stale) else {
            panic!("a stale waiter should have failed fast");
        };
        assert_eq!(rejected.reason(), RejectReason::Deadline);
    }
    assert_eq!(shedder.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_standing_line_of_lesser_work_does_not_cut_a_critical_waiters_wait() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 8, 250, &clock);
    let held: Permit = shedder.acquire(Priority::Normal).await.unwrap();
    // Browsing has stood in the queue for over 100 ms: its line is standing.
    let mut browsing = Box::pin(shedder.acquire(Priority::Sheddable));
    assert!(poll_once(browsing.as_mut()).is_pending());
    clock.advance(Duration::from_millis(150));
    let mut checkout = Box::pin(shedder.acquire(Priority::Critical));
    assert!(poll_once(checkout.as_mut()).is_pending());
    // 20 ms: far past the 5 ms of a standing line, well within the 250 ms
    // a Critical line that just formed gives its waiters.
    clock.advance(Duration::from_millis(20));
    assert!(
        poll_once(checkout.as_mut()).is_pending(),
        "the Critical line is judged on its own: it is not standing"
    );
    drop(held);
    assert!(matches!(poll_once(checkout.as_mut()), Poll::Ready(Ok(_))));
    // The standing line's waiter is past its short wait: it failed fast.
    let Poll::Ready(Err(rejected)) = poll_once(browsing.as_mut()) else {
        panic!("the stale Sheddable waiter should have failed fast");
    };
    assert_eq!(rejected.reason(), RejectReason::Deadline);
    assert_eq!(shedder.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_line_that_turned_a_waiter_away_keeps_standing_for_100_ms_though_it_emptied() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 8, 1_000, &clock);
    let held: Permit = shedder.acquire(Priority::Normal).await.unwrap();
    // The line stands (non-empty for over 100 ms); its old waiter fails
    // fast, which empties the line.
    let mut stale = Box::pin(shedder.acquire(Priority::Normal));
    assert!(poll_once(stale.as_mut()).is_pending());
    clock.advance(Duration::from_millis(110));
    let Poll::Ready(Err(rejected)) = poll_once(stale.as_mut()) else {
        panic!("a waiter 110 ms old in a standing line fails fast");
    };
    assert_eq!(rejected.reason(), RejectReason::Deadline);
    assert_eq!(shedder.stats().queued, 0);
    // 50 ms later the line is empty but has not caught up: a new waiter
    // still gets the standing line's 5 ms, not the full second.
    clock.advance(Duration::from_millis(50));
    let mut next = Box::pin(shedder.acquire(Priority::Normal));
    assert!(poll_once(next.as_mut()).is_pending());
    clock.advance(Duration::from_millis(6));
    let Poll::Ready(Err(rejected)) = poll_once(next.as_mut()) else {
        panic!("the line still stands: 6 ms is past its wait");
    };
    assert_eq!(rejected.reason(), RejectReason::Deadline);
    // Over 100 ms without turning anyone away: a new waiter starts a
    // fresh burst, FIFO with the full wait, and is served on release.
    clock.advance(Duration::from_millis(101));
    let mut fresh = Box::pin(shedder.acquire(Priority::Normal));
    assert!(poll_once(fresh.as_mut()).is_pending());
    clock.advance(Duration::from_millis(50));
    assert!(poll_once(fresh.as_mut()).is_pending(), "50 ms < 1 s wait");
    drop(held);
    assert!(matches!(poll_once(fresh.as_mut()), Poll::Ready(Ok(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_some_cancelled_leak_nothing() {
    let shedder = Shedder::builder()
        .max_concurrency(3)
        .queue(64, Duration::from_millis(200))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..400u32)
        .map(|i| {
            let shedder = shedder.clone();
            tokio::spawn(async move {
                let priority =
                    [Priority::Critical, Priority::Normal, Priority::Sheddable][i as usize % 3];
                if let Ok(permit) = shedder.acquire(priority).await {
                    for _ in 0..(i % 5) {
                        tokio::task::yield_now().await;
                    }
                    drop(permit);
                }
            })
        })
        .collect();
    for (i, task) in tasks.iter().enumerate() {
        if i % 7 == 0 {
            task.abort();
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    assert_eq!(shedder.in_flight(), 0, "every slot came back");
    assert_eq!(shedder.stats().queued, 0, "nobody left in the queue");
}

#[tokio::test(start_paused = true)]
async fn a_critical_waiter_is_served_before_earlier_normal_ones() {
    // Limit 10, 20 % reserved for Critical: Normal may hold 8 slots.
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .max_concurrency(10)
        .critical_reserve(0.2)
        .sheddable_margin(0.0)
        .queue(8, Duration::from_millis(50))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut held: Vec<Permit> = Vec::new();
    for _ in 0..8 {
        held.push(shedder.try_acquire(Priority::Normal).unwrap());
    }
    for _ in 0..2 {
        held.push(shedder.try_acquire(Priority::Critical).unwrap());
    }
    let mut normal = pin!(shedder.acquire(Priority::Normal));
    let mut critical = pin!(shedder.acquire(Priority::Critical));
    assert!(poll_once(normal.as_mut()).is_pending());
    assert!(poll_once(critical.as_mut()).is_pending());

    // A Critical permit ends: 9 remain, so a Normal waiter still does not
    // fit (its cap is 8) but the Critical one, queued later, does.
    drop(held.pop());
    let Poll::Ready(Ok(_permit)) = poll_once(critical.as_mut()) else {
        panic!("the Critical waiter should not wait behind a Normal one that does not fit");
    };
    assert!(poll_once(normal.as_mut()).is_pending());
    assert_eq!(shedder.in_flight(), 10);

    // Normal fits again once fewer than 8 others are in flight: the third
    // release of three hands its slot over.
    drop(held.drain(..2).collect::<Vec<_>>());
    assert!(poll_once(normal.as_mut()).is_pending());
    assert_eq!(shedder.in_flight(), 8);
    drop(held.pop());
    assert!(matches!(poll_once(normal.as_mut()), Poll::Ready(Ok(_))));
}

#[tokio::test(start_paused = true)]
async fn among_waiters_critical_ones_go_first() {
    let clock = ManualClock::new();
    let shedder = shedder(1, 8, 50, &clock);
    let held = shedder.acquire(Priority::Normal).await.unwrap();
    let mut sheddable = pin!(shedder.acquire(Priority::Sheddable));
    let mut normal = pin!(shedder.acquire(Priority::Normal));
    let mut critical = pin!(shedder.acquire(Priority::Critical));
    assert!(poll_once(sheddable.as_mut()).is_pending());
    assert!(poll_once(normal.as_mut()).is_pending());
    assert!(poll_once(critical.as_mut()).is_pending());

    drop(held);
    let Poll::Ready(Ok(first)) = poll_once(critical.as_mut()) else {
        panic!("Critical first");
    };
    assert!(poll_once(normal.as_mut()).is_pending());
    assert!(poll_once(sheddable.as_mut()).is_pending());
    drop(first);
    let Poll::Ready(Ok(second)) = poll_once(normal.as_mut()) else {
        panic!("then Normal");
    };
    assert!(poll_once(sheddable.as_mut()).is_pending());
    drop(second);
    assert!(matches!(poll_once(sheddable.as_mut()), Poll::Ready(Ok(_))));
}
