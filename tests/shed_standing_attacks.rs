//! Attacks on adaptive LIFO as the `shed` docs state it, one priority line
//! at a time: when a line stands (non-empty for over 100 ms, or it turned
//! a waiter away in the last 100 ms), what its waiters' deadlines become,
//! and who is woken when.
//!
//! Why these cannot flake: time is Tokio's paused clock, which the shedder
//! reads too ([`TokioClock`]), so every timer fires at a computed instant
//! and the runtime only moves time when every task is idle; or a
//! [`ManualClock`] and futures polled by hand, where nothing moves at all
//! unless the test moves it. All instants are whole milliseconds (Tokio's
//! timer resolution) unless a test is about the nanosecond boundary, and
//! those use the manual clock.
#![cfg(feature = "tokio")]

mod shed_support;

use std::task::Poll;
use std::time::Duration;

use shed_support::{acquiring, poll_once};
use surgeguard::clock::{Clock, Instant, ManualClock};
use surgeguard::shed::{Permit, Priority, RejectReason, Rejected, Shedder};
use tokio::task::JoinHandle;

/// The shedder's clock, following Tokio's (paused) clock from `self.0`.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.0.elapsed().as_nanos()).unwrap())
    }
}

const MS: Duration = Duration::from_millis(1);

/// A shedder with a limit of 1 (one slot for every priority) and a queue,
/// on Tokio's clock starting at `start`.
fn shedder(start: tokio::time::Instant, capacity: usize, max_wait: Duration) -> Shedder {
    Shedder::builder()
        .max_concurrency(1)
        .queue(capacity, max_wait)
        .clock(TokioClock(start))
        .build()
        .unwrap()
}

type Waiting = JoinHandle<Result<Permit, Rejected>>;

/// Starts `acquire(priority)` and lets it run until it waits (the runtime
/// runs it before this task's next timer).
fn spawn_acquire(shedder: &Shedder, priority: Priority) -> Waiting {
    let shedder = shedder.clone();
    tokio::spawn(async move { shedder.acquire(priority).await })
}

/// Sleeps until `ms` milliseconds after `start`.
async fn at(start: tokio::time::Instant, ms: u64) {
    tokio::time::sleep_until(start + MS * u32::try_from(ms).unwrap()).await;
}

/// The reason a finished waiter was refused.
async fn refused(waiting: Waiting) -> RejectReason {
    match waiting.await.unwrap() {
        Ok(permit) => panic!(
            "granted at {:?}, expected a refusal: {permit:?}",
            tokio::time::Instant::now()
        ),
        Err(rejected) => rejected.reason(),
    }
}

// ---------------------------------------------------------------------------
// A line that starts standing by turning a waiter away (found by review)
// ---------------------------------------------------------------------------

/// A waiter at 0 ms expires at 50 ms: the line has turned a waiter away,
/// so it stands, and the waiter queued at 48 ms now has until 48 + 5 =
/// 53 ms. The docs: "A line that starts standing cuts its waiters'
/// deadlines at once ... nobody waits past the deadline the line's state
/// gives it." At 60 ms it must have been refused.
#[tokio::test(start_paused = true)]
async fn a_line_standing_by_expiry_cuts_a_younger_waiters_timer_to_the_short_wait() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 8, Duration::from_millis(50));
    let _held = shedder.try_acquire(Priority::Normal).unwrap();
    let first = spawn_acquire(&shedder, Priority::Normal);
    at(start, 48).await;
    let younger = spawn_acquire(&shedder, Priority::Normal);
    at(start, 60).await;
    assert!(first.is_finished(), "the first waiter's 50 ms are up");
    assert_eq!(refused(first).await, RejectReason::Deadline);
    assert!(
        younger.is_finished(),
        "the line stands from 50 ms (it turned a waiter away), so the waiter \
         queued at 48 ms had until 53 ms; at 60 ms it still waits (its timer \
         is still set for its full wait, 98 ms)"
    );
    assert_eq!(refused(younger).await, RejectReason::Deadline);
}

/// The same through displacement: a full queue of Sheddable waiters (0,
/// 18 and 19 ms) turns away its newest for a Critical request at 20 ms;
/// the Sheddable line now stands, so the oldest (past 5 ms) is expired at
/// once (that holds), and the one from 18 ms has until 23 ms. At 30 ms it
/// still waits.
#[tokio::test(start_paused = true)]
async fn a_line_standing_by_displacement_cuts_a_younger_waiters_timer_to_the_short_wait() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 3, Duration::from_millis(50));
    let _held = shedder.try_acquire(Priority::Critical).unwrap();
    let oldest = spawn_acquire(&shedder, Priority::Sheddable);
    at(start, 18).await;
    let middle = spawn_acquire(&shedder, Priority::Sheddable);
    at(start, 19).await;
    let newest = spawn_acquire(&shedder, Priority::Sheddable);
    at(start, 20).await;
    let _critical = spawn_acquire(&shedder, Priority::Critical);
    at(start, 21).await;
    assert!(newest.is_finished() && oldest.is_finished());
    assert_eq!(refused(newest).await, RejectReason::QueueFull);
    assert_eq!(refused(oldest).await, RejectReason::Deadline);
    at(start, 30).await;
    assert!(
        middle.is_finished(),
        "the Sheddable line stands from 20 ms (it displaced a waiter), so the \
         waiter queued at 18 ms had until 23 ms; at 30 ms it still waits"
    );
    assert_eq!(refused(middle).await, RejectReason::Deadline);
}

// ---------------------------------------------------------------------------
// What held
// ---------------------------------------------------------------------------

/// Waiters at 0, 98 and 99 ms on a manual clock; the slot is released at
/// exactly 100 ms (not standing yet: FIFO, the oldest is served) or at 100
/// ms + 1 ns (standing: the oldest is past its 5 ms and refused, the newest
/// is served first).
#[tokio::test(start_paused = true)]
async fn the_line_stands_only_after_more_than_100_ms() {
    for (release_at, oldest_served) in [(100_000_000, true), (100_000_001, false)] {
        let clock = ManualClock::new();
        let shedder = Shedder::builder()
            .max_concurrency(1)
            .queue(8, Duration::from_millis(800))
            .clock(clock.clone())
            .build()
            .unwrap();
        let held = shedder.try_acquire(Priority::Normal).unwrap();
        let mut oldest = acquiring(&shedder, Priority::Normal);
        assert!(poll_once(&mut oldest).is_pending());
        clock.set(Instant::from_nanos(98_000_000));
        let mut middle = acquiring(&shedder, Priority::Normal);
        assert!(poll_once(&mut middle).is_pending());
        clock.set(Instant::from_nanos(99_000_000));
        let mut newest = acquiring(&shedder, Priority::Normal);
        assert!(poll_once(&mut newest).is_pending());
        clock.set(Instant::from_nanos(release_at));
        drop(held);
        if oldest_served {
            let Poll::Ready(Ok(_served)) = poll_once(&mut oldest) else {
                panic!("at exactly 100 ms the line is FIFO: the oldest is served");
            };
            assert!(poll_once(&mut middle).is_pending());
            assert!(poll_once(&mut newest).is_pending());
        } else {
            let Poll::Ready(Err(rejected)) = poll_once(&mut oldest) else {
                panic!("at 100 ms + 1 ns the oldest is 5 ms overdue in a standing line");
            };
            assert_eq!(rejected.reason(), RejectReason::Deadline);
            let Poll::Ready(Ok(_served)) = poll_once(&mut newest) else {
                panic!("standing: the newest is served first");
            };
            assert!(poll_once(&mut middle).is_pending());
        }
    }
}

/// A waiter expires at 50 ms: the line stands until 150 ms even though it
/// is empty. A burst in that window is LIFO with 5 ms waits.
#[tokio::test(start_paused = true)]
async fn a_line_that_shed_stands_while_empty() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 8, Duration::from_millis(50));
    let held = shedder.try_acquire(Priority::Normal).unwrap();
    let first = spawn_acquire(&shedder, Priority::Normal);
    at(start, 100).await;
    assert_eq!(refused(first).await, RejectReason::Deadline);
    let older = spawn_acquire(&shedder, Priority::Normal);
    at(start, 101).await;
    let newer = spawn_acquire(&shedder, Priority::Normal);
    at(start, 103).await;
    drop(held);
    let _newer = newer
        .await
        .unwrap()
        .expect("standing: the newest goes first");
    // Nobody releases again: the older one has 5 ms, until 105 ms.
    at(start, 106).await;
    assert!(older.is_finished());
    assert_eq!(refused(older).await, RejectReason::Deadline);
}

/// The line sheds at 50 ms, then stays idle past 150 ms: a new burst is
/// FIFO with the full wait again. Released at 160 ms, the burst's first
/// waiter (151 ms) is served: standing, both would be past 5 ms by then.
#[tokio::test(start_paused = true)]
async fn an_idle_line_forgets_its_shedding_after_100_ms() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 8, Duration::from_millis(50));
    let held = shedder.try_acquire(Priority::Normal).unwrap();
    let first = spawn_acquire(&shedder, Priority::Normal);
    at(start, 151).await;
    assert_eq!(refused(first).await, RejectReason::Deadline);
    let older = spawn_acquire(&shedder, Priority::Normal);
    at(start, 152).await;
    let newer = spawn_acquire(&shedder, Priority::Normal);
    at(start, 160).await;
    assert!(!older.is_finished() && !newer.is_finished());
    drop(held);
    let served = older
        .await
        .unwrap()
        .expect("FIFO again: the oldest is served");
    drop(served);
    let _newer = newer
        .await
        .unwrap()
        .expect("full wait: still there at 160 ms");
}

/// A waiter cancelled before its deadline is its client leaving: the line
/// does not stand, so the next waiter keeps its full wait and FIFO order.
#[tokio::test(start_paused = true)]
async fn cancelling_a_waiter_before_its_deadline_does_not_make_the_line_stand() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 8, Duration::from_millis(50));
    let held = shedder.try_acquire(Priority::Normal).unwrap();
    let cancelled = spawn_acquire(&shedder, Priority::Normal);
    at(start, 10).await;
    let second = spawn_acquire(&shedder, Priority::Normal);
    at(start, 20).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    at(start, 30).await;
    let third = spawn_acquire(&shedder, Priority::Normal);
    at(start, 45).await;
    drop(held);
    // Standing, the second (10 ms) and third (30 ms) would both be past
    // their 5 ms, and the third would be served before the second.
    let served = second.await.unwrap().expect("FIFO, full wait");
    drop(served);
    let _third = third.await.unwrap().expect("still within its full wait");
}

/// Normal and Sheddable lines stand (non-empty from 0 ms on) and refuse
/// their waiters after 5 ms; a Critical request queued behind them at
/// 121 ms keeps its full 800 ms wait and is served at 200 ms (its own
/// line would stand from 221 ms on, being non-empty for over 100 ms).
#[tokio::test(start_paused = true)]
async fn standing_lesser_lines_do_not_cut_a_critical_wait() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 16, Duration::from_millis(800));
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let normal = spawn_acquire(&shedder, Priority::Normal);
    let sheddable = spawn_acquire(&shedder, Priority::Sheddable);
    at(start, 120).await;
    assert_eq!(refused(normal).await, RejectReason::Deadline);
    assert_eq!(refused(sheddable).await, RejectReason::Deadline);
    let late_normal = spawn_acquire(&shedder, Priority::Normal);
    let late_sheddable = spawn_acquire(&shedder, Priority::Sheddable);
    at(start, 121).await;
    let critical = spawn_acquire(&shedder, Priority::Critical);
    at(start, 130).await;
    assert!(late_normal.is_finished() && late_sheddable.is_finished());
    assert_eq!(refused(late_normal).await, RejectReason::Deadline);
    assert_eq!(refused(late_sheddable).await, RejectReason::Deadline);
    at(start, 200).await;
    if critical.is_finished() {
        panic!(
            "the Critical line does not stand, yet: {:?}",
            critical.await
        );
    }
    drop(held);
    let _critical = critical.await.unwrap().expect("served on release");
}

/// A max_wait of 2 ms is shorter than the standing wait: a standing line
/// keeps it (min of the two), a FIFO one too.
#[tokio::test(start_paused = true)]
async fn a_max_wait_under_5_ms_is_not_lengthened_by_standing() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 8, Duration::from_millis(2));
    let _held = shedder.try_acquire(Priority::Normal).unwrap();
    let first = spawn_acquire(&shedder, Priority::Normal);
    at(start, 3).await;
    assert!(first.is_finished());
    assert_eq!(refused(first).await, RejectReason::Deadline);
    // The line now stands (it shed at 2 ms): 3 + min(2, 5) = 5 ms.
    let second = spawn_acquire(&shedder, Priority::Normal);
    at(start, 6).await;
    assert!(second.is_finished(), "standing gives min(max_wait, 5 ms)");
    assert_eq!(refused(second).await, RejectReason::Deadline);
}

/// A manual clock moved backwards past the waiters' enqueue times: no
/// panic, no overflow, the line is not taken for standing, and a release
/// serves the oldest waiter.
#[tokio::test(start_paused = true)]
async fn a_clock_moved_backwards_neither_panics_nor_stands_the_line() {
    let clock = ManualClock::new();
    clock.set(Instant::from_nanos(10_000_000_000));
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(8, Duration::from_millis(800))
        .clock(clock.clone())
        .build()
        .unwrap();
    let held = shedder.try_acquire(Priority::Normal).unwrap();
    let mut older = acquiring(&shedder, Priority::Normal);
    assert!(poll_once(&mut older).is_pending());
    clock.advance(Duration::from_millis(50));
    let mut newer = acquiring(&shedder, Priority::Normal);
    assert!(poll_once(&mut newer).is_pending());
    clock.set(Instant::ZERO);
    assert!(poll_once(&mut older).is_pending());
    assert!(poll_once(&mut newer).is_pending());
    drop(held);
    let Poll::Ready(Ok(_served)) = poll_once(&mut older) else {
        panic!("FIFO: the oldest is served");
    };
    assert!(poll_once(&mut newer).is_pending());
}

/// A line sheds at 10.06 s on a manual clock, which is then set back to
/// 1 s. The `Clock` docs say a reading behind an earlier one means "no
/// time has passed", so on this clock the refusal is still recent: the
/// line stands (LIFO, short waits) until the clock passes 10.16 s again,
/// and a burst at 1 s is served newest first. (Only a faulty clock moves
/// backwards: the `SystemClock` is monotonic; `ManualClock::set` documents
/// going back "to test robustness against faulty clocks".)
#[tokio::test(start_paused = true)]
async fn a_clock_set_back_counts_as_no_time_passed_since_a_turn_away() {
    let clock = ManualClock::new();
    clock.set(Instant::from_nanos(10_000_000_000));
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(8, Duration::from_millis(50))
        .clock(clock.clone())
        .build()
        .unwrap();
    let held = shedder.try_acquire(Priority::Normal).unwrap();
    let mut shed = acquiring(&shedder, Priority::Normal);
    assert!(poll_once(&mut shed).is_pending());
    clock.set(Instant::from_nanos(10_060_000_000));
    let Poll::Ready(Err(rejected)) = poll_once(&mut shed) else {
        panic!("past its 50 ms");
    };
    assert_eq!(rejected.reason(), RejectReason::Deadline);
    clock.set(Instant::from_nanos(1_000_000_000));
    let mut older = acquiring(&shedder, Priority::Normal);
    assert!(poll_once(&mut older).is_pending());
    clock.set(Instant::from_nanos(1_001_000_000));
    let mut newer = acquiring(&shedder, Priority::Normal);
    assert!(poll_once(&mut newer).is_pending());
    clock.set(Instant::from_nanos(1_002_000_000));
    drop(held);
    let Poll::Ready(Ok(_served)) = poll_once(&mut newer) else {
        panic!(
            "the line still stands (no time has passed since the refusal), so \
             the newest waiter is served; the older one was: {:?}",
            poll_once(&mut older)
        );
    };
    // The older one is 2 ms old, inside the short wait: it waits on.
    assert!(poll_once(&mut older).is_pending());
}

/// Waiters at 0, 50 and 99 ms with 800 ms waits, nobody releasing: the
/// line starts standing at 100 ms + 1 ns by staying non-empty, with no
/// event to say so. The waiters' timers are set for that moment: by 102 ms
/// the two past their 5 ms are refused, and the one from 99 ms, refused
/// at 104 ms, not at 899 ms.
#[tokio::test(start_paused = true)]
async fn waiters_wake_when_their_line_starts_standing_by_staying_non_empty() {
    let start = tokio::time::Instant::now();
    let shedder = shedder(start, 8, Duration::from_millis(800));
    let _held = shedder.try_acquire(Priority::Normal).unwrap();
    let first = spawn_acquire(&shedder, Priority::Normal);
    at(start, 50).await;
    let second = spawn_acquire(&shedder, Priority::Normal);
    at(start, 99).await;
    let third = spawn_acquire(&shedder, Priority::Normal);
    at(start, 102).await;
    assert!(first.is_finished() && second.is_finished());
    assert_eq!(refused(first).await, RejectReason::Deadline);
    assert_eq!(refused(second).await, RejectReason::Deadline);
    assert!(!third.is_finished(), "its 5 ms run until 104 ms");
    at(start, 105).await;
    assert!(third.is_finished());
    assert_eq!(refused(third).await, RejectReason::Deadline);
}
