//! Stampede protection in one screen: a burst of requests for a product that
//! is not cached, first with a plain get-then-insert, then through
//! `get_or_try_load`; then an origin outage served from stale entries.
//!
//! Run: `cargo run --release --example stampede`

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use surgeguard::cache::Cache;

const REQUESTS: usize = 200;

/// A slow database that can be switched off.
#[derive(Default)]
struct Database {
    queries: AtomicUsize,
    down: AtomicBool,
}

impl Database {
    fn fetch(&self, id: u64) -> Result<Arc<String>, String> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(50));
        if self.down.load(Ordering::Relaxed) {
            Err("database unavailable".into())
        } else {
            Ok(Arc::new(format!("product {id}")))
        }
    }
}

/// `REQUESTS` threads ask for product 42 at the same moment.
fn burst(handle: impl Fn() + Send + Sync + 'static) {
    let handle = Arc::new(handle);
    let start = Arc::new(Barrier::new(REQUESTS));
    let threads: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (handle, start) = (handle.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                handle();
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("request thread");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Without stampede protection: every miss goes to the database.
    let db = Arc::new(Database::default());
    let cache: Cache<u64, Arc<String>> = Cache::builder().max_capacity(1_000).build()?;
    {
        let (db, cache) = (db.clone(), cache.clone());
        burst(move || {
            if cache.get(&42).is_none() {
                if let Ok(product) = db.fetch(42) {
                    cache.insert(42, product);
                }
            }
        });
    }
    println!(
        "get + insert:     {REQUESTS} concurrent requests -> {} database queries",
        db.queries.load(Ordering::Relaxed)
    );

    // 2. With it: one query, everyone else waits for its result.
    let db = Arc::new(Database::default());
    let cache: Cache<u64, Arc<String>> = Cache::builder()
        .max_capacity(1_000)
        .time_to_live(Duration::from_millis(300))
        .refresh_after(Duration::from_millis(200))
        .stale_if_error(Duration::from_secs(60))
        .build()?;
    {
        let (db, cache) = (db.clone(), cache.clone());
        burst(move || {
            let db = db.clone();
            cache
                .get_or_try_load(&42, move |id| db.fetch(*id))
                .expect("loaded");
        });
    }
    println!(
        "get_or_try_load:  {REQUESTS} concurrent requests -> {} database query",
        db.queries.load(Ordering::Relaxed)
    );

    // 3. The database goes down; the entry expires; pages keep rendering.
    db.down.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(350));
    let load = {
        let db = db.clone();
        move |id: &u64| db.fetch(*id)
    };
    let served = cache
        .get_or_try_load(&42, load)
        .map_err(|error| error.to_string())?;
    let stats = cache.stats();
    println!(
        "database down:    served {served:?} (stale), {} failed load, {} stale served",
        stats.load_errors, stats.stale_served
    );
    Ok(())
}
