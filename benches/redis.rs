//! Decisions per second against a local `redis-server`, and round trips
//! per decision: surgeguard's GCRA and sliding-window scripts, GCRA with
//! leases of 100, and the plain fixed-window `INCR` + `PEXPIRE` script most
//! hand-written limiters use, in the same run, at 1 and 64 concurrent
//! callers on one multiplexed connection each.
//!
//! The bench starts its own `redis-server` on a free loopback port (and
//! prints a SKIP line when it is not installed). Keys: 1,000, round-robin;
//! the quota is large enough that every check is allowed, so each one is a
//! script run (the over-limit cache never answers).
//!
//! Run: `cargo bench --bench redis --features redis`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use surgeguard::limit::Quota;
use surgeguard::redis::{RedisGcra, RedisLimiter, RedisWindow};

// The tests' private redis-server (free port, killed on drop, SKIP line
// when it is not installed).
#[path = "../tests/redis_support/mod.rs"]
mod redis_support;

const KEYS: u64 = 1_000;

/// The fixed-window limiter of many tutorials: count in a key per window.
const INCR_EXPIRE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return 0 end
return 1
";

enum Contender {
    Surgeguard(Arc<RedisLimiter>),
    IncrExpire(Arc<redis::Script>, redis::aio::ConnectionManager),
}

impl Contender {
    async fn check(&self, key: u64) {
        match self {
            Contender::Surgeguard(limiter) => {
                let decision = limiter.check(&key).await.expect("checks");
                assert!(decision.is_allowed(), "the bench quota never denies");
            }
            Contender::IncrExpire(script, connection) => {
                let mut connection = connection.clone();
                let allowed: i64 = script
                    .key(format!("incr:{{{key}}}"))
                    .arg(1_000)
                    .arg(u32::MAX)
                    .invoke_async(&mut connection)
                    .await
                    .expect("the INCR script runs");
                assert_eq!(allowed, 1);
            }
        }
    }
}

/// Runs `iters` checks split over `callers` tasks; returns the elapsed time.
fn run(
    runtime: &tokio::runtime::Runtime,
    contender: &Arc<Contender>,
    callers: u64,
    iters: u64,
) -> Duration {
    runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|caller| {
                let contender = Arc::clone(contender);
                let share = iters / callers + u64::from(caller < iters % callers);
                tokio::spawn(async move {
                    for i in 0..share {
                        contender.check((caller * 7_919 + i) % KEYS).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("bench task");
        }
        started.elapsed()
    })
}

fn redis_checks(c: &mut Criterion) {
    let Some(server) = redis_support::start("redis bench") else {
        return;
    };
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let quota = Quota::per_second(1_000_000_000).unwrap();
    let build = |lease: bool, window: bool| {
        runtime.block_on(async {
            let builder = if window {
                RedisWindow::builder(&url, quota)
            } else {
                RedisGcra::builder(&url, quota)
            };
            let builder = builder.timeout(Duration::from_secs(5)).prefix(if lease {
                "leased:"
            } else {
                "plain:"
            });
            let builder = if lease {
                builder.lease(100, Duration::from_secs(10))
            } else {
                builder
            };
            Arc::new(builder.build().await.expect("a limiter"))
        })
    };
    let gcra = build(false, false);
    let leased = build(true, false);
    let window = build(false, true);
    let connection = runtime.block_on(async {
        redis::aio::ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
            .await
            .expect("a connection")
    });
    let contenders = [
        (
            "surgeguard_gcra",
            Arc::new(Contender::Surgeguard(Arc::clone(&gcra))),
        ),
        (
            "surgeguard_gcra_lease100",
            Arc::new(Contender::Surgeguard(Arc::clone(&leased))),
        ),
        (
            "surgeguard_window",
            Arc::new(Contender::Surgeguard(Arc::clone(&window))),
        ),
        (
            "incr_expire_fixed_window",
            Arc::new(Contender::IncrExpire(
                Arc::new(redis::Script::new(INCR_EXPIRE)),
                connection,
            )),
        ),
    ];
    for callers in [1u64, 64] {
        let mut group = c.benchmark_group(format!("redis_check/{callers}callers"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(3));
        for (name, contender) in &contenders {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| run(&runtime, contender, callers, iters))
            });
        }
        group.finish();
    }
    for (name, limiter) in [
        ("gcra", &gcra),
        ("gcra_lease100", &leased),
        ("window", &window),
    ] {
        let s = limiter.stats();
        let checks = s.redis_decisions
            + s.lease_decisions
            + s.over_limit_cache_denials
            + s.fallback_decisions;
        eprintln!(
            "round trips per decision, {name}: {:.3} ({} of {checks} checks went to Redis; fallback {})",
            s.redis_decisions as f64 / checks.max(1) as f64,
            s.redis_decisions,
            s.fallback_decisions
        );
    }
}

criterion_group!(benches, redis_checks);
criterion_main!(benches);
