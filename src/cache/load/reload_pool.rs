//! Where blocking background reloads run: a small process-wide pool of
//! threads, started on demand.
//!
//! The reader that finds a reload due must not pay for it: handing a job to
//! an idle thread costs a lock and a wake-up (well under a microsecond),
//! where spawning a thread for it cost about 40 µs on the project's machine.
//! A thread is started only when no pooled thread is idle, so the pool grows
//! to the number of reloads that really run at once (each cache bounds its
//! own with `background_reloads`); a thread idle for a minute exits.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// A reload to run.
pub(super) type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long an idle pooled thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(60);

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState::default()),
        work: Condvar::new(),
    })
}

/// Runs `job` on a pooled thread. If no thread is idle and a new one cannot
/// start, the job is dropped unrun (its flight guard then ends the flight as
/// abandoned).
pub(super) fn run(job: Job) {
    let pool = pool();
    let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
    if state.idle > state.jobs.len() {
        state.jobs.push_back(job);
        drop(state);
        pool.work.notify_one();
        return;
    }
    // Counted idle from the start, so that jobs arriving before it first
    // waits do not each start another thread.
    state.idle += 1;
    state.jobs.push_back(job);
    drop(state);
    let started = std::thread::Builder::new()
        .name("surgeguard-reload".into())
        .spawn(move || work(pool));
    if started.is_err() {
        let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.idle -= 1;
        // Drop what nobody will run now that no thread could start for it.
        if state.idle < state.jobs.len() {
            let unrunnable = state.jobs.pop_back();
            drop(state);
            drop(unrunnable);
        }
    }
}

/// A pooled thread: runs jobs until none comes for `IDLE_EXIT`.
fn work(pool: &Pool) {
    let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(job) = state.jobs.pop_front() {
            state.idle -= 1;
            drop(state);
            // A panicking reload is caught inside the job; this is defence
            // in depth so that the thread and its count survive anyway.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.idle += 1;
            continue;
        }
        let (next, waited) = pool
            .work
            .wait_timeout(state, IDLE_EXIT)
            .unwrap_or_else(PoisonError::into_inner);
        state = next;
        if waited.timed_out() && state.jobs.is_empty() {
            state.idle -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn every_job_runs_even_when_they_block_each_other() {
        // Eight jobs that can only finish together: the pool must run them
        // at once, starting threads as needed.
        let together = Arc::new(Barrier::new(8));
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..8 {
            let (together, done) = (together.clone(), done.clone());
            run(Box::new(move || {
                together.wait();
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        let start = std::time::Instant::now();
        while done.load(Ordering::SeqCst) < 8 {
            assert!(start.elapsed() < Duration::from_secs(60), "jobs stuck");
            std::thread::yield_now();
        }
    }
}
