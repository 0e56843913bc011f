//! Attacks on the shedder's documented claims (feature `tokio`): the
//! admission order when room appears, the caps at small and huge limits, the
//! full queue's displacement, adaptive LIFO per line, the deadline and its
//! timer, cancellation, and permits never leaked. Sequences are driven by
//! hand on a `ManualClock` (or a clock that follows Tokio's paused time), a
//! proptest compares the queue with a simple model, and a many-thread test
//! asserts only invariants.
#![cfg(feature = "tokio")]

mod shed_support;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use shed_support::{acquiring, dialled, poll_once, Acquiring};
use surgeguard::clock::{Clock, Instant, ManualClock};
use surgeguard::shed::{LimitAlgorithm, Outcome, Permit, Priority, RejectReason, Sample, Shedder};

const PRIORITIES: [Priority; 3] = [Priority::Critical, Priority::Normal, Priority::Sheddable];

/// A new waiter of `priority`, which must be left waiting.
fn queued(shedder: &Shedder, priority: Priority) -> Acquiring {
    let mut waiter = acquiring(shedder, priority);
    assert!(poll_once(&mut waiter).is_pending(), "it should wait");
    waiter
}

fn granted(waiter: &mut Acquiring) -> Permit {
    match poll_once(waiter) {
        Poll::Ready(Ok(permit)) => permit,
        other => panic!("the waiter should hold a slot, not {other:?}"),
    }
}

fn refused(waiter: &mut Acquiring) -> RejectReason {
    match poll_once(waiter) {
        Poll::Ready(Err(rejected)) => rejected.reason(),
        other => panic!("the waiter should be refused, not {other:?}"),
    }
}

/// Turns the dial to `limit` and records `permit`: the limit moves, then
/// the permit's slot is released.
fn move_limit(dial: &AtomicU32, limit: u32, permit: Permit) {
    dial.store(limit, Ordering::SeqCst);
    permit.record(Outcome::Success);
}

/// The shedder's clock follows Tokio's (paused) clock, so that the wait's
/// timer and the shedder's deadline agree, as they do with the system clock.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.0.elapsed().as_nanos()).unwrap())
    }
}

/// The caps as the shed module's documentation states them, written out
/// independently of the library.
fn documented_cap(limit: u32, priority: Priority, reserve_share: f64, margin_share: f64) -> u32 {
    let limit = limit.max(1);
    let floor_of = |share: f64| (f64::from(limit) * share) as u32;
    let reserve = if reserve_share > 0.0 {
        floor_of(reserve_share).max(1).min(limit - 1)
    } else {
        0
    };
    let normal = limit - reserve;
    match priority {
        Priority::Critical => limit,
        Priority::Normal => normal,
        Priority::Sheddable if margin_share > 0.0 => {
            let margin = floor_of(reserve_share + margin_share)
                .saturating_sub(reserve)
                .max(1)
                .min(normal - 1);
            normal - margin
        }
        Priority::Sheddable => normal,
    }
}

// ---------------------------------------------------------------------------
// Findings: the timer is set once, to the deadline of the first poll.
// ---------------------------------------------------------------------------

/// A waiter alone in its line, nothing released, nobody arriving: once its
/// line has been non-empty for 100 ms it stands, and a standing line's
/// waiters get 5 ms, so it must answer `Deadline` then. Its timer was once
/// armed at the first poll for the full 800 ms, and nothing else woke the
/// waiter, so it waited until 800 ms; it now wakes when its line would
/// start standing.
#[tokio::test(start_paused = true)]
async fn a_waiter_whose_line_starts_standing_gives_up_then_not_at_its_old_full_wait() {
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(8, Duration::from_millis(800))
        .clock(TokioClock(tokio::time::Instant::now()))
        .build()
        .unwrap();
    let _held = shedder.try_acquire(Priority::Critical).unwrap();
    let waiting = tokio::spawn({
        let shedder = shedder.clone();
        async move { shedder.acquire(Priority::Critical).await.map(drop) }
    });
    // Paused time: the runtime jumps to the earliest timer, the waiter's
    // (800 ms) or this one (150 ms): no scheduling can change the answer.
    let outcome = tokio::time::timeout(Duration::from_millis(150), waiting).await;
    let Ok(Ok(Err(rejected))) = outcome else {
        panic!(
            "at 150 ms the line has stood for 50 ms and the waiter's 5 ms are long past, \
             yet it still waits: {outcome:?}"
        );
    };
    assert_eq!(rejected.reason(), RejectReason::Deadline);
}

/// A cancellation is a client leaving, not the queue turning a waiter
/// away: it does not make the line stand, so the waiter before it keeps
/// its full wait and is served on release. (An earlier rule counted it,
/// and then nothing woke the waiter before its old 800 ms timer.)
#[tokio::test(start_paused = true)]
async fn a_cancelled_neighbour_does_not_make_the_line_stand() {
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(8, Duration::from_millis(800))
        .clock(TokioClock(tokio::time::Instant::now()))
        .build()
        .unwrap();
    let held = shedder.try_acquire(Priority::Normal).unwrap();
    let spawn_waiter = || {
        let shedder = shedder.clone();
        tokio::spawn(async move { shedder.acquire(Priority::Normal).await.map(drop) })
    };
    let mut first = spawn_waiter();
    let second = spawn_waiter();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(shedder.stats().queued, 2);
    second.abort();
    assert!(second.await.unwrap_err().is_cancelled());
    // Paused time: 50 ms pass with no release; the first waiter, 60 ms old
    // in a line that does not stand, still waits.
    let outcome = tokio::time::timeout(Duration::from_millis(50), &mut first).await;
    assert!(outcome.is_err(), "still waiting: {outcome:?}");
    assert_eq!(shedder.stats().queued, 1);
    drop(held);
    assert!(matches!(first.await, Ok(Ok(()))));
}

// ---------------------------------------------------------------------------
// What held: room appearing, caps, displacement, cancellation, deadlines.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_limit_of_one_serves_the_critical_line_first_then_each_line_in_order() {
    let clock = ManualClock::new();
    let (shedder, _dial) = dialled(1, 8, &clock);
    let held = shedder.try_acquire(Priority::Sheddable).unwrap();
    let mut sheddable = queued(&shedder, Priority::Sheddable);
    let mut normal = [
        queued(&shedder, Priority::Normal),
        queued(&shedder, Priority::Normal),
    ];
    let mut critical = queued(&shedder, Priority::Critical);
    // Nobody overtakes: every priority's newcomer is refused.
    for priority in PRIORITIES {
        assert!(shedder.try_acquire(priority).is_err());
    }
    drop(held);
    let permit = granted(&mut critical);
    assert!(poll_once(&mut normal[0]).is_pending());
    drop(permit);
    let permit = granted(&mut normal[0]);
    drop(permit);
    let permit = granted(&mut normal[1]);
    assert!(poll_once(&mut sheddable).is_pending());
    drop(permit);
    drop(granted(&mut sheddable));
    assert_eq!((shedder.in_flight(), shedder.stats().queued), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_limit_raised_to_u32_max_admits_every_waiter_and_a_drop_to_one_admits_nobody() {
    let clock = ManualClock::new();
    let (shedder, dial) = dialled(2, 16, &clock);
    let first = shedder.try_acquire(Priority::Normal).unwrap();
    let second = shedder.try_acquire(Priority::Critical).unwrap();
    let mut waiters: Vec<Acquiring> = PRIORITIES
        .iter()
        .flat_map(|&priority| (0..3).map(move |_| priority))
        .map(|priority| queued(&shedder, priority))
        .collect();
    move_limit(&dial, u32::MAX, first);
    assert_eq!(shedder.limit(), u32::MAX);
    let mut permits: Vec<Permit> = waiters.iter_mut().map(granted).collect();
    assert_eq!(shedder.in_flight(), 10);
    assert_eq!(permits[8].in_flight_at_start(), 10);
    // Sheddable's cap at u32::MAX is about 70 % of it: no overflow.
    assert!(shedder.try_acquire(Priority::Sheddable).is_ok());

    // Back to 1 with 10 in flight: nobody waiting or new gets in until
    // all have left.
    move_limit(&dial, 1, permits.pop().unwrap());
    assert_eq!((shedder.limit(), shedder.in_flight()), (1, 9));
    let mut late = queued(&shedder, Priority::Critical);
    while permits.len() > 1 {
        drop(permits.pop());
        assert!(poll_once(&mut late).is_pending());
        assert!(shedder.try_acquire(Priority::Critical).is_err());
    }
    drop(second);
    assert_eq!(shedder.in_flight(), 1);
    assert!(poll_once(&mut late).is_pending(), "1 in flight: full");
    drop(permits.pop());
    drop(granted(&mut late));
    assert_eq!(shedder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn limit_jumps_between_polls_never_admit_past_the_cap_of_the_moment() {
    let clock = ManualClock::new();
    let (shedder, dial) = dialled(10, 16, &clock);
    let mut held: Vec<Permit> = (0..10)
        .map(|_| shedder.try_acquire(Priority::Critical).unwrap())
        .collect();
    let mut normal = queued(&shedder, Priority::Normal);
    let mut critical = queued(&shedder, Priority::Critical);
    // 10 → 3 → 20 → 2, each as a permit ends, nobody polled between.
    move_limit(&dial, 3, held.pop().unwrap()); // 9 in flight, cap 3
    move_limit(&dial, 20, held.pop().unwrap()); // 8 in flight: both fit
    let critical_permit = granted(&mut critical);
    let normal_permit = granted(&mut normal);
    assert_eq!(critical_permit.in_flight_at_start(), 9);
    assert_eq!(normal_permit.in_flight_at_start(), 10);
    move_limit(&dial, 2, held.pop().unwrap()); // 9 in flight, cap 2
    let mut waiting = queued(&shedder, Priority::Critical);
    while held.len() > 1 {
        drop(held.pop());
        assert!(poll_once(&mut waiting).is_pending());
    }
    assert_eq!(shedder.in_flight(), 3);
    drop(critical_permit);
    assert!(poll_once(&mut waiting).is_pending(), "2 in flight, cap 2");
    drop(normal_permit);
    let last = granted(&mut waiting);
    assert_eq!(last.in_flight_at_start(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_queue_of_one_makes_way_only_for_a_request_that_outranks_its_waiter() {
    let clock = ManualClock::new();
    let (shedder, _dial) = dialled(1, 1, &clock);
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut sheddable = queued(&shedder, Priority::Sheddable);
    let mut refused_at_once = acquiring(&shedder, Priority::Sheddable);
    assert_eq!(refused(&mut refused_at_once), RejectReason::QueueFull);
    let mut normal = queued(&shedder, Priority::Normal);
    assert_eq!(refused(&mut sheddable), RejectReason::QueueFull);
    let mut critical = queued(&shedder, Priority::Critical);
    assert_eq!(refused(&mut normal), RejectReason::QueueFull);
    // A Critical waiter is never displaced, not even by a Critical request.
    for priority in PRIORITIES {
        let mut newcomer = acquiring(&shedder, priority);
        assert_eq!(refused(&mut newcomer), RejectReason::QueueFull);
    }
    drop(held);
    drop(granted(&mut critical));
    assert_eq!((shedder.in_flight(), shedder.stats().queued), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_of_one_priority_turns_nobody_away_for_its_own() {
    let clock = ManualClock::new();
    let (shedder, _dial) = dialled(1, 3, &clock);
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut waiters: Vec<Acquiring> = (0..3).map(|_| queued(&shedder, Priority::Normal)).collect();
    for priority in [Priority::Normal, Priority::Sheddable] {
        let mut newcomer = acquiring(&shedder, priority);
        assert_eq!(refused(&mut newcomer), RejectReason::QueueFull);
    }
    for waiter in &mut waiters {
        assert!(poll_once(waiter).is_pending(), "nobody was turned away");
    }
    // The newest Normal waiter (the one FIFO serves last) makes way; the
    // Normal line, having turned a waiter away, now stands (LIFO).
    let mut critical = queued(&shedder, Priority::Critical);
    assert_eq!(refused(&mut waiters[2]), RejectReason::QueueFull);
    drop(held);
    drop(granted(&mut critical));
    assert!(poll_once(&mut waiters[0]).is_pending());
    drop(granted(&mut waiters[1]));
    drop(granted(&mut waiters[0]));
}

#[tokio::test(start_paused = true)]
async fn zero_reserve_and_margin_give_every_priority_the_whole_limit() {
    let shedder = Shedder::builder()
        .max_concurrency(3)
        .critical_reserve(0.0)
        .sheddable_margin(0.0)
        .build()
        .unwrap();
    let held: Vec<Permit> = (0..3)
        .map(|_| shedder.try_acquire(Priority::Sheddable).unwrap())
        .collect();
    for priority in PRIORITIES {
        assert_eq!(
            shedder.try_acquire(priority).unwrap_err().reason(),
            RejectReason::LimitReached
        );
    }
    drop(held);
    assert_eq!(shedder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_past_its_deadline_is_not_handed_a_slot_by_a_release_before_its_timer() {
    let clock = ManualClock::new();
    let (shedder, _dial) = dialled(1, 8, &clock);
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut stale = queued(&shedder, Priority::Critical);
    clock.advance(Duration::from_millis(800));
    // Not polled since; a release comes first. The overdue waiter leaves,
    // and the slot goes back rather than to it.
    drop(held);
    assert_eq!((shedder.in_flight(), shedder.stats().queued), (0, 0));
    assert_eq!(refused(&mut stale), RejectReason::Deadline);
    assert_eq!(shedder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_polled_after_its_deadline_but_granted_just_before_keeps_its_slot() {
    // A 50 ms wait, so that the line does not stand (100 ms) meanwhile.
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .max_concurrency(1)
        .queue(8, Duration::from_millis(50))
        .clock(clock.clone())
        .build()
        .unwrap();
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut waiter = queued(&shedder, Priority::Critical);
    clock.advance(Duration::from_millis(49));
    drop(held); // granted at 49 ms
    clock.advance(Duration::from_millis(30)); // polled at 79 ms
    let permit = granted(&mut waiter);
    assert_eq!(shedder.in_flight(), 1);
    drop(permit);
    assert_eq!(shedder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_waiters_granted_by_a_raised_limit_passes_each_slot_down_the_lines() {
    let clock = ManualClock::new();
    let (shedder, dial) = dialled(1, 8, &clock);
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let critical = [
        queued(&shedder, Priority::Critical),
        queued(&shedder, Priority::Critical),
    ];
    let mut normal = queued(&shedder, Priority::Normal);
    let mut sheddable = queued(&shedder, Priority::Sheddable);
    // Limit 3: caps 3 / 2 / 1; the two Critical waiters are granted.
    move_limit(&dial, 3, held);
    assert_eq!(shedder.in_flight(), 2);
    assert!(poll_once(&mut normal).is_pending(), "Normal's cap is 2");
    // Both cancelled before looking: their slots go to Normal, then
    // Sheddable does not fit (1 in flight, its cap is 1).
    drop(critical);
    let normal_permit = granted(&mut normal);
    assert_eq!(shedder.in_flight(), 1);
    assert!(poll_once(&mut sheddable).is_pending());
    drop(normal_permit);
    drop(granted(&mut sheddable));
    assert_eq!((shedder.in_flight(), shedder.stats().queued), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_holding_a_permit_or_while_recording_leaks_nothing() {
    #[derive(Debug)]
    struct Exploding;
    impl LimitAlgorithm for Exploding {
        fn limit(&self) -> u32 {
            1
        }
        fn update(&mut self, _: Sample) -> u32 {
            panic!("the algorithm fails");
        }
    }
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .custom_limit(Exploding)
        .queue(4, Duration::from_millis(800))
        .clock(clock.clone())
        .build()
        .unwrap();
    let held = shedder.try_acquire(Priority::Critical).unwrap();
    let mut waiter = queued(&shedder, Priority::Critical);
    let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        held.record(Outcome::Success);
    }));
    assert!(recorded.is_err());
    let permit = granted(&mut waiter);
    let inside = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _permit = permit;
        panic!("the handler fails");
    }));
    assert!(inside.is_err());
    assert_eq!(shedder.in_flight(), 0);
    // The algorithm's lock is not poisoned: the shedder still works.
    assert!(shedder.try_acquire(Priority::Normal).is_ok());
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_acquire_is_try_acquire_and_shadow_mode_admits_everyone() {
    let shedder = Shedder::builder().max_concurrency(1).build().unwrap();
    let held = shedder.acquire(Priority::Critical).await.unwrap();
    let refused = shedder.acquire(Priority::Critical).await.unwrap_err();
    assert_eq!(refused.reason(), RejectReason::LimitReached);
    drop(held);

    let shadow = Shedder::builder()
        .max_concurrency(1)
        .critical_reserve(0.5)
        .queue(1, Duration::from_millis(10))
        .shadow(true)
        .build()
        .unwrap();
    let mut permits = Vec::new();
    for priority in PRIORITIES.iter().cycle().take(9) {
        permits.push(shadow.acquire(*priority).await.unwrap());
        permits.push(shadow.try_acquire(*priority).unwrap());
    }
    assert_eq!(shadow.in_flight(), 18);
    assert_eq!(shadow.stats().shadow_rejected, 17);
    drop(permits);
    assert_eq!(shadow.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_clock_moving_backwards_neither_panics_nor_strands_a_waiter() {
    let clock = ManualClock::new();
    clock.set(Instant::from_nanos(10_000_000_000));
    let (shedder, _dial) = dialled(1, 8, &clock);
    let held = shedder.try_acquire(Priority::Normal).unwrap();
    let mut old = queued(&shedder, Priority::Normal);
    clock.set(Instant::from_nanos(1_000_000_000));
    let mut young = queued(&shedder, Priority::Normal);
    assert!(poll_once(&mut old).is_pending());
    drop(held);
    // FIFO by arrival, whatever the readings.
    let permit = granted(&mut old);
    drop(permit);
    drop(granted(&mut young));
    assert_eq!((shedder.in_flight(), shedder.stats().queued), (0, 0));
}

/// The docs (shed module) once said "from 3 up Sheddable always gets
/// strictly less than Normal" for any shares. With a reserve of 2/3 or
/// more, a limit of 3 keeps 2 slots for Critical, Normal gets 1 and
/// Sheddable cannot get less than 1. The docs now state the condition
/// (Normal's cap of 2 or more); this pins both sides of it.
#[test]
fn sheddable_gets_less_than_normal_whenever_normal_has_two_slots() {
    let large_reserve = Shedder::builder()
        .max_concurrency(3)
        .critical_reserve(0.7)
        .sheddable_margin(0.1)
        .build()
        .unwrap();
    let normal = admitted(&large_reserve, Priority::Normal);
    let sheddable = admitted(&large_reserve, Priority::Sheddable);
    assert_eq!((normal, sheddable), (1, 1), "every priority keeps one slot");
    for limit in 3..=20 {
        let shedder = Shedder::builder().max_concurrency(limit).build().unwrap();
        let normal = admitted(&shedder, Priority::Normal);
        let sheddable = admitted(&shedder, Priority::Sheddable);
        assert!(
            normal >= 2 && sheddable < normal,
            "limit {limit}: {normal}, {sheddable}"
        );
    }
}

/// How many requests of `priority` the shedder admits from empty.
fn admitted(shedder: &Shedder, priority: Priority) -> u32 {
    let mut held = Vec::new();
    while let Ok(permit) = shedder.try_acquire(priority) {
        held.push(permit);
    }
    let count = shedder.in_flight();
    drop(held);
    count
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Caps at any shares: Critical gets the limit; the caps never grow as
    /// the priority falls nor fall as the limit rises; every cap is at least
    /// 1; with a reserve Critical keeps a slot from a limit of 2, with a
    /// margin Sheddable gets less than Normal from 3; and the shedder admits
    /// exactly what the documented rule says.
    #[test]
    fn caps_follow_the_documented_rule_at_any_shares(
        reserve in prop_oneof![Just(0.0), 0.0f64..1.0, Just(0.2), Just(0.999)],
        margin in prop_oneof![Just(0.0), 0.0f64..1.0, Just(0.1), Just(0.999)],
        start in 1u32..120,
    ) {
        let mut previous = [0u32; 3];
        for limit in start..start + 12 {
            let shedder = Shedder::builder()
                .max_concurrency(limit)
                .critical_reserve(reserve)
                .sheddable_margin(margin)
                .build()
                .unwrap();
            let caps = [Priority::Sheddable, Priority::Normal, Priority::Critical]
                .map(|priority| admitted(&shedder, priority));
            let [sheddable, normal, critical] = caps;
            prop_assert_eq!(critical, limit);
            prop_assert!(sheddable >= 1 && sheddable <= normal && normal <= critical);
            if reserve > 0.0 && limit >= 2 {
                prop_assert!(normal < critical, "no slot kept for Critical at {}", limit);
            }
            // Only where Normal has a slot to spare: see
            // `sheddable_gets_less_than_normal_whenever_normal_has_two_slots`.
            if margin > 0.0 && limit >= 3 && normal >= 2 {
                prop_assert!(sheddable < normal, "Sheddable = Normal at {}", limit);
            }
            for (index, priority) in [Priority::Sheddable, Priority::Normal, Priority::Critical]
                .into_iter()
                .enumerate()
            {
                prop_assert_eq!(caps[index], documented_cap(limit, priority, reserve, margin));
                if limit > start {
                    prop_assert!(caps[index] >= previous[index], "a cap fell at {}", limit);
                }
            }
            previous = caps;
        }
    }
}

// ---------------------------------------------------------------------------
// A model of the queue with the clock standing still: no deadline passes,
// and a line stands only once it has turned a waiter away (displaced; a
// cancellation is the client leaving, not the queue turning it away),
// which at a still clock lasts for the whole run.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    TryAcquire(Priority),
    Acquire(Priority),
    /// Poll the waiter at this index (modulo) of those still unresolved.
    Poll(usize),
    /// Drop that waiter's future.
    Cancel(usize),
    /// Drop the permit at this index (modulo).
    Release(usize),
    /// Record the permit at this index with the limit dialled to this value.
    Record(usize, u32),
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Critical),
        Just(Priority::Normal),
        Just(Priority::Sheddable)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => priority().prop_map(Op::TryAcquire),
        4 => priority().prop_map(Op::Acquire),
        3 => any::<usize>().prop_map(Op::Poll),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (any::<usize>(), prop_oneof![1u32..6, 6u32..40, Just(u32::MAX)])
            .prop_map(|(index, limit)| Op::Record(index, limit)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Waiting,
    /// With the in-flight count it was granted at, itself included.
    Granted(u32),
    Displaced,
}

struct ModelWaiter {
    id: usize,
    priority: Priority,
    fate: Fate,
}

struct Model {
    limit: u32,
    in_flight: u32,
    capacity: usize,
    /// Waiter ids per line, Critical first, oldest first.
    lines: [VecDeque<usize>; 3],
    standing: [bool; 3],
}

fn lane(priority: Priority) -> usize {
    match priority {
        Priority::Critical => 0,
        Priority::Normal => 1,
        Priority::Sheddable => 2,
    }
}

impl Model {
    fn cap(&self, priority: Priority) -> u32 {
        documented_cap(self.limit, priority, 0.2, 0.1)
    }

    fn queued(&self) -> usize {
        self.lines.iter().map(VecDeque::len).sum()
    }

    /// Grants waiters in order while the next fits; the ids granted.
    fn serve(&mut self, waiters: &mut [ModelWaiter]) {
        for lane in 0..3 {
            loop {
                let next = if self.standing[lane] {
                    self.lines[lane].back()
                } else {
                    self.lines[lane].front()
                };
                let Some(&id) = next else { break };
                let waiter = waiters.iter_mut().find(|w| w.id == id).unwrap();
                if self.in_flight >= self.cap(waiter.priority) {
                    return;
                }
                self.in_flight += 1;
                waiter.fate = Fate::Granted(self.in_flight);
                if self.standing[lane] {
                    self.lines[lane].pop_back();
                } else {
                    self.lines[lane].pop_front();
                }
            }
        }
    }

    /// A full queue's displacement for a request of `priority`: whether it
    /// made room.
    fn displace_below(&mut self, priority: Priority, waiters: &mut [ModelWaiter]) -> bool {
        let Some(lesser) = (lane(priority) + 1..3)
            .rev()
            .find(|&lane| !self.lines[lane].is_empty())
        else {
            return false;
        };
        let id = if self.standing[lesser] {
            self.lines[lesser].pop_front()
        } else {
            self.lines[lesser].pop_back()
        }
        .unwrap();
        waiters.iter_mut().find(|w| w.id == id).unwrap().fate = Fate::Displaced;
        self.standing[lesser] = true;
        true
    }

    fn remove(&mut self, id: usize, priority: Priority) {
        let line = &mut self.lines[lane(priority)];
        let index = line.iter().position(|&queued| queued == id).unwrap();
        line.remove(index);
    }
}

fn run_model(capacity: usize, initial: u32, ops: &[Op]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let clock = ManualClock::new();
    let (shedder, dial) = dialled(initial, capacity, &clock);
    let mut model = Model {
        limit: initial,
        in_flight: 0,
        capacity,
        lines: Default::default(),
        standing: [false; 3],
    };
    let mut model_waiters: Vec<ModelWaiter> = Vec::new();
    let mut futures: Vec<(usize, Acquiring)> = Vec::new();
    let mut permits: Vec<Permit> = Vec::new();
    let mut next_id = 0;

    for op in ops {
        match *op {
            Op::TryAcquire(priority) => {
                let expected = model.in_flight < model.cap(priority);
                let got = shedder.try_acquire(priority);
                prop_assert_eq!(got.is_ok(), expected, "try_acquire({:?})", priority);
                if let Ok(permit) = got {
                    model.in_flight += 1;
                    prop_assert_eq!(permit.in_flight_at_start(), model.in_flight);
                    permits.push(permit);
                }
            }
            Op::Acquire(priority) => {
                let mut future = acquiring(&shedder, priority);
                let got = poll_once(&mut future);
                if model.in_flight < model.cap(priority) {
                    let Poll::Ready(Ok(permit)) = got else {
                        return Err(TestCaseError::fail(format!(
                            "acquire({priority:?}) should be admitted at once, got {got:?}"
                        )));
                    };
                    model.in_flight += 1;
                    prop_assert_eq!(permit.in_flight_at_start(), model.in_flight);
                    permits.push(permit);
                } else if model.queued() >= model.capacity
                    && !model.displace_below(priority, &mut model_waiters)
                {
                    let Poll::Ready(Err(rejected)) = got else {
                        return Err(TestCaseError::fail(format!(
                            "acquire({priority:?}) should find the queue full, got {got:?}"
                        )));
                    };
                    prop_assert_eq!(rejected.reason(), RejectReason::QueueFull);
                } else {
                    prop_assert!(got.is_pending(), "acquire({:?}) should wait", priority);
                    model.lines[lane(priority)].push_back(next_id);
                    model_waiters.push(ModelWaiter {
                        id: next_id,
                        priority,
                        fate: Fate::Waiting,
                    });
                    futures.push((next_id, future));
                    next_id += 1;
                }
            }
            Op::Poll(index) | Op::Cancel(index) if !futures.is_empty() => {
                let index = index % futures.len();
                let (id, mut future) = futures.swap_remove(index);
                let at = model_waiters.iter().position(|w| w.id == id).unwrap();
                let ModelWaiter { priority, fate, .. } = model_waiters[at];
                if let Op::Cancel(_) = op {
                    drop(future);
                    model_waiters.swap_remove(at);
                    match fate {
                        Fate::Waiting => model.remove(id, priority),
                        Fate::Granted(_) => {
                            model.in_flight -= 1;
                            model.serve(&mut model_waiters);
                        }
                        Fate::Displaced => {}
                    }
                } else {
                    let got = poll_once(&mut future);
                    match (fate, got) {
                        (Fate::Waiting, Poll::Pending) => futures.push((id, future)),
                        (Fate::Granted(at_grant), Poll::Ready(Ok(permit))) => {
                            prop_assert_eq!(permit.in_flight_at_start(), at_grant);
                            model_waiters.swap_remove(at);
                            permits.push(permit);
                        }
                        (Fate::Displaced, Poll::Ready(Err(rejected))) => {
                            prop_assert_eq!(rejected.reason(), RejectReason::QueueFull);
                            model_waiters.swap_remove(at);
                        }
                        (fate, got) => {
                            return Err(TestCaseError::fail(format!(
                                "waiter {id} ({priority:?}): model says {fate:?}, got {got:?}"
                            )));
                        }
                    }
                }
            }
            Op::Release(index) | Op::Record(index, _) if !permits.is_empty() => {
                let permit = permits.swap_remove(index % permits.len());
                if let Op::Record(_, limit) = *op {
                    move_limit(&dial, limit, permit);
                    model.limit = limit;
                } else {
                    drop(permit);
                }
                model.in_flight -= 1;
                model.serve(&mut model_waiters);
            }
            _ => {}
        }
        prop_assert_eq!(shedder.in_flight(), model.in_flight, "after {:?}", op);
        prop_assert_eq!(shedder.stats().queued, model.queued(), "after {:?}", op);
        prop_assert_eq!(shedder.limit(), model.limit.max(1));
    }

    // Everything ends: every slot comes back, nobody stays queued.
    drop(permits);
    drop(futures);
    prop_assert_eq!(shedder.in_flight(), 0);
    prop_assert_eq!(shedder.stats().queued, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_queue_behaves_like_its_model(
        capacity in 1usize..5,
        initial in 1u32..5,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run_model(capacity, initial, &ops)?;
    }
}

// ---------------------------------------------------------------------------
// Many threads, invariants only.
// ---------------------------------------------------------------------------

/// A tiny deterministic generator, one per thread.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

/// Threads take, release, queue, poll and cancel at a fixed limit, on a
/// clock that never moves (no deadline passes: a waiter only leaves by
/// being granted, displaced or cancelled). Whatever the interleaving:
/// every permit saw at most its priority's cap in flight, and once all
/// permits are gone every waiter left is served, nobody stranded, and the
/// count is back to 0. Bounded by steps, and asserting nothing about which
/// races happened, so a busy machine cannot make it fail.
#[test]
fn many_threads_never_exceed_a_cap_leak_a_slot_or_strand_a_waiter() {
    const LIMIT: u32 = 5;
    const THREADS: u64 = 4;
    const STEPS: usize = 20_000;
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .max_concurrency(LIMIT)
        .queue(6, Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    let cap = |priority| documented_cap(LIMIT, priority, 0.2, 0.1);
    // One runtime for every thread's timers (never driven: the clock never
    // moves, so no timer matters), which outlives the waiters handed back.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|seed| {
            let shedder = shedder.clone();
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                let _entered = handle.enter();
                let mut steps = Steps(0x9E37_79B9_7F4A_7C15 ^ (seed + 1));
                let mut permits: Vec<(Priority, Permit)> = Vec::new();
                let mut waiting: Vec<(Priority, Acquiring)> = Vec::new();
                for _ in 0..STEPS {
                    let priority = PRIORITIES[steps.next(3)];
                    match steps.next(6) {
                        0 => {
                            if let Ok(permit) = shedder.try_acquire(priority) {
                                permits.push((priority, permit));
                            }
                        }
                        1 if waiting.len() < 3 => {
                            let mut future = acquiring(&shedder, priority);
                            match poll_once(&mut future) {
                                Poll::Ready(Ok(permit)) => permits.push((priority, permit)),
                                Poll::Ready(Err(_)) => {}
                                Poll::Pending => waiting.push((priority, future)),
                            }
                        }
                        2 if !waiting.is_empty() => {
                            let index = steps.next(waiting.len());
                            let (priority, mut future) = waiting.swap_remove(index);
                            match poll_once(&mut future) {
                                Poll::Ready(Ok(permit)) => permits.push((priority, permit)),
                                Poll::Ready(Err(rejected)) => {
                                    assert_eq!(rejected.reason(), RejectReason::QueueFull);
                                }
                                Poll::Pending => waiting.push((priority, future)),
                            }
                        }
                        3 if !waiting.is_empty() => {
                            drop(waiting.swap_remove(steps.next(waiting.len())));
                        }
                        _ if !permits.is_empty() => {
                            let (_, permit) = permits.swap_remove(steps.next(permits.len()));
                            if steps.next(2) == 0 {
                                permit.record(Outcome::Success);
                            } else {
                                drop(permit);
                            }
                        }
                        _ => {}
                    }
                    for (priority, permit) in &permits {
                        assert!(
                            permit.in_flight_at_start() <= cap(*priority),
                            "{priority:?} admitted with {} in flight",
                            permit.in_flight_at_start()
                        );
                    }
                    assert!(shedder.in_flight() <= LIMIT);
                }
                drop(permits);
                // The waiters leave the thread with it, still queued.
                waiting
            })
        })
        .collect();
    let mut left: Vec<(Priority, Acquiring)> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    // Every permit is gone: each waiter left is served in turn.
    let _entered = runtime.enter();
    while !left.is_empty() {
        let before = left.len();
        let mut still = Vec::new();
        for (priority, mut future) in left {
            match poll_once(&mut future) {
                Poll::Ready(Ok(permit)) => drop(permit),
                Poll::Ready(Err(rejected)) => {
                    assert_eq!(rejected.reason(), RejectReason::QueueFull);
                }
                Poll::Pending => still.push((priority, future)),
            }
        }
        assert!(
            still.len() < before,
            "{} waiters stranded with {} in flight",
            still.len(),
            shedder.in_flight()
        );
        left = still;
    }
    assert_eq!(shedder.in_flight(), 0);
    assert_eq!(shedder.stats().queued, 0);
    assert_eq!(admitted(&shedder, Priority::Critical), LIMIT);
}
