//! Load shedding in one screen: a "server" with 4 workers (each request
//! needs 5 ms of one) receives 4x its capacity from 32 client threads for
//! two seconds, first behind a generous fixed limit, then behind the
//! adaptive Gradient limit. Admitted requests stay fast only in the second.
//!
//! Run: `cargo run --release --example load_shedding`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use surgeguard::shed::{AdaptiveLimit, Outcome, Priority, Shedder};

const WORKERS: usize = 4;
const WORK: Duration = Duration::from_millis(5);
const CLIENTS: usize = 32;
const RUN: Duration = Duration::from_secs(2);

/// A server whose 4 workers are a counting semaphore: a request waits for a
/// worker (that wait is the queueing the shedder must keep short), then
/// works for 5 ms.
struct Server {
    idle_workers: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Server {
    fn handle(&self) {
        let mut idle = self.idle_workers.lock().expect("server lock");
        while *idle == 0 {
            idle = self.freed.wait(idle).expect("server lock");
        }
        *idle -= 1;
        drop(idle);
        thread::sleep(WORK);
        *self.idle_workers.lock().expect("server lock") += 1;
        self.freed.notify_one();
    }
}

fn run(name: &str, shedder: Shedder) {
    let server = Arc::new(Server {
        idle_workers: Mutex::new(WORKERS),
        freed: std::sync::Condvar::new(),
    });
    let served = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (server, shedder) = (server.clone(), shedder.clone());
            let (served, shed, latencies) = (served.clone(), shed.clone(), latencies.clone());
            thread::spawn(move || {
                while start.elapsed() < RUN {
                    let began = Instant::now();
                    match shedder.try_acquire(Priority::Normal) {
                        Ok(permit) => {
                            server.handle();
                            permit.record(Outcome::Success);
                            served.fetch_add(1, Ordering::Relaxed);
                            latencies.lock().expect("latencies").push(began.elapsed());
                        }
                        Err(rejected) => {
                            shed.fetch_add(1, Ordering::Relaxed);
                            // A client told "503, retry later" backs off a
                            // little (scaled down from Retry-After for the demo).
                            thread::sleep(rejected.retry_after() / 1_000);
                        }
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let mut latencies = latencies.lock().expect("latencies").clone();
    latencies.sort();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "{name:<28} served {:>5}  shed {:>6}  p99 of served {:>7.1} ms  final limit {}",
        served.load(Ordering::Relaxed),
        shed.load(Ordering::Relaxed),
        p99.as_secs_f64() * 1e3,
        shedder.limit()
    );
}

fn main() -> Result<(), surgeguard::shed::BuildError> {
    println!(
        "{WORKERS} workers x 5 ms = {} requests/s of capacity; {CLIENTS} clients as fast as they can",
        WORKERS * 200
    );
    run(
        "fixed limit 64",
        Shedder::builder().max_concurrency(64).build()?,
    );
    run(
        "adaptive (Gradient)",
        Shedder::builder()
            .limit(AdaptiveLimit::gradient().min(1).max(64).initial(4))
            .build()?,
    );
    Ok(())
}
