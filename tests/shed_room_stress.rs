//! Many threads moving the shedder's limit up and down while they acquire,
//! wait in the queue, release and cancel (feature `tokio`), checking:
//!
//! * no waiter is left queued beside a slot it could use whenever a
//!   deadline can pass (so none expires while such a slot is free);
//! * every admission, of a newcomer or a waiter, is within its priority's
//!   cap under the limit in force;
//! * no permit leaks: at every pause the in-flight count is the permits the
//!   threads hold, and 0 at the end.
//!
//! Why it cannot flake: the threads run in rounds separated by barriers.
//! The clock (a `ManualClock`, so deadlines pass only when the test moves
//! it) moves only between rounds, when every thread is parked at a barrier
//! and has polled every future it holds; the checks that involve more than
//! one thread are made there, on a shedder nobody touches. The only check
//! made during a round reads what the shedder reports for one admission.
//! Scheduling decides which operations meet, never whether a check holds.
#![cfg(feature = "tokio")]

mod shed_support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use shed_support::{default_cap, Dial};
use surgeguard::clock::ManualClock;
use surgeguard::shed::{Outcome, Permit, Priority, Rejected, Shedder};

const THREADS: usize = 4;
const ROUNDS: usize = 150;
const OPERATIONS_PER_ROUND: usize = 60;
const MAX_LIMIT: u32 = 12;
/// Each round moves the clock this much; waits last 10 ms, so waiters
/// expire a few rounds after they queue unless served.
const ROUND_MS: u64 = 3;

const PRIORITIES: [Priority; 3] = [Priority::Critical, Priority::Normal, Priority::Sheddable];

type Acquiring = Pin<Box<dyn Future<Output = Result<Permit, Rejected>> + Send>>;

struct Shared {
    shedder: Shedder,
    dial: Arc<AtomicU32>,
    /// The highest limit set since the last pause: a limit an admission
    /// read was at most this.
    highest: AtomicU32,
    /// At a pause: futures still waiting, by priority, and permits held.
    waiting: [AtomicUsize; 3],
    held: AtomicUsize,
    /// Admissions past their cap, reported at the next pause (a panic in a
    /// worker would leave the others waiting at the barrier).
    violations: Mutex<Vec<String>>,
    rounds: Barrier,
}

struct Worker {
    shared: Arc<Shared>,
    held: Vec<Permit>,
    waiting: Vec<(Priority, Acquiring)>,
    random: u64,
}

impl Worker {
    fn next(&mut self, below: u64) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random % below
    }

    /// Keeps a permit after checking it was admitted within its cap.
    fn admitted(&mut self, priority: Priority, permit: Permit) {
        let highest = self.shared.highest.load(Ordering::SeqCst);
        if permit.in_flight_at_start() > default_cap(highest, priority) {
            self.shared.violations.lock().unwrap().push(format!(
                "{priority:?} admitted as request {} under a limit of at most {highest}",
                permit.in_flight_at_start()
            ));
        }
        self.held.push(permit);
    }

    /// Polls the waiting future at `index`; keeps it if it still waits.
    fn poll(&mut self, index: usize) {
        let (priority, mut future) = self.waiting.swap_remove(index);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Ok(permit)) => self.admitted(priority, permit),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => self.waiting.push((priority, future)),
        }
    }

    fn operate(&mut self) {
        let priority = PRIORITIES[self.next(3) as usize];
        match self.next(100) {
            0..25 => {
                if let Ok(permit) = self.shared.shedder.try_acquire(priority) {
                    self.admitted(priority, permit);
                }
            }
            25..50 => {
                let shedder = self.shared.shedder.clone();
                let future: Acquiring = Box::pin(async move { shedder.acquire(priority).await });
                self.waiting.push((priority, future));
                self.poll(self.waiting.len() - 1);
            }
            50..65 if !self.held.is_empty() => {
                let index = self.next(self.held.len() as u64) as usize;
                drop(self.held.swap_remove(index));
            }
            65..80 if !self.held.is_empty() => {
                // Move the limit, up or down, as the permit is recorded.
                let limit = 1 + self.next(u64::from(MAX_LIMIT)) as u32;
                self.shared.highest.fetch_max(limit, Ordering::SeqCst);
                self.shared.dial.store(limit, Ordering::SeqCst);
                let index = self.next(self.held.len() as u64) as usize;
                self.held.swap_remove(index).record(Outcome::Success);
            }
            80..92 if !self.waiting.is_empty() => {
                let index = self.next(self.waiting.len() as u64) as usize;
                self.poll(index);
            }
            92..100 if !self.waiting.is_empty() => {
                // A cancelled request (perhaps granted a slot meanwhile).
                let index = self.next(self.waiting.len() as u64) as usize;
                drop(self.waiting.swap_remove(index));
            }
            _ => {}
        }
    }

    fn run(mut self) {
        for _ in 0..ROUNDS {
            self.shared.rounds.wait(); // the round starts
            for _ in 0..OPERATIONS_PER_ROUND {
                self.operate();
            }
            self.shared.rounds.wait(); // every thread is done operating
            for index in (0..self.waiting.len()).rev() {
                self.poll(index);
            }
            for (priority, _) in &self.waiting {
                self.shared.waiting[*priority as usize].fetch_add(1, Ordering::SeqCst);
            }
            self.shared
                .held
                .fetch_add(self.held.len(), Ordering::SeqCst);
            self.shared.rounds.wait(); // the pause: checked, then the clock moves
        }
        // Once the last pause is checked: releases first, so slots go to
        // waiters that are then cancelled.
        self.shared.rounds.wait();
        self.held.clear();
        self.waiting.clear();
    }
}

#[test]
fn no_waiter_expires_beside_a_free_slot_while_the_limit_moves() {
    // Tokio's timer (each wait's deadline) needs a runtime to register
    // with; its paused clock never moves, so only the ManualClock decides.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let dial = Arc::new(AtomicU32::new(4));
    let shedder = Shedder::builder()
        .custom_limit(Dial(Arc::clone(&dial)))
        .queue(32, Duration::from_millis(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let shared = Arc::new(Shared {
        shedder: shedder.clone(),
        dial,
        highest: AtomicU32::new(4),
        waiting: Default::default(),
        held: AtomicUsize::new(0),
        violations: Mutex::new(Vec::new()),
        rounds: Barrier::new(THREADS + 1),
    });
    let workers: Vec<_> = (0..THREADS)
        .map(|id| {
            let worker = Worker {
                shared: Arc::clone(&shared),
                held: Vec::new(),
                waiting: Vec::new(),
                random: 0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            };
            let handle = runtime.handle().clone();
            thread::spawn(move || {
                let _runtime = handle.enter();
                worker.run();
            })
        })
        .collect();

    for round in 0..ROUNDS {
        shared.rounds.wait();
        shared.rounds.wait();
        shared.rounds.wait();
        // Nobody touches the shedder now.
        let limit = shedder.limit();
        let stats = shedder.stats();
        let waiting: Vec<usize> = shared
            .waiting
            .iter()
            .map(|count| count.swap(0, Ordering::SeqCst))
            .collect();
        let held = shared.held.swap(0, Ordering::SeqCst);
        assert_eq!(
            stats.in_flight as usize, held,
            "round {round}: in flight is what the threads hold"
        );
        assert_eq!(
            stats.queued,
            waiting.iter().sum::<usize>(),
            "round {round}: the queue holds what still waits"
        );
        let violations = std::mem::take(&mut *shared.violations.lock().unwrap());
        assert!(violations.is_empty(), "round {round}: {violations:?}");
        for priority in PRIORITIES {
            let count = waiting[priority as usize];
            assert!(
                count == 0 || stats.in_flight >= default_cap(limit, priority),
                "round {round}: {count} {priority:?} waiters queued with {} in flight \
                 under a limit of {limit} (cap {})",
                stats.in_flight,
                default_cap(limit, priority),
            );
        }
        shared.highest.store(limit, Ordering::SeqCst);
        // Deadlines pass only here, where no waiter could have been served.
        clock.advance(Duration::from_millis(ROUND_MS));
    }
    shared.rounds.wait();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(shedder.in_flight(), 0, "every slot came back");
    assert_eq!(shedder.stats().queued, 0, "nobody left in the queue");
}
