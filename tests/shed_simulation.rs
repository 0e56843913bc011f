//! A deterministic simulation, on the manual clock, of a server with a fixed
//! capacity under a 10x overload, in front of which the shedder decides.
//!
//! The server has 8 workers and each request needs 10 ms of one; above 8
//! concurrent requests they share the workers (processor sharing), so latency
//! grows in proportion to concurrency, and the concurrency that maximizes
//! goodput at the lowest latency is 8. Traffic (Poisson arrivals from a fixed
//! seed): 2 s at half capacity, 10 s at ten times capacity, 3 s at half
//! capacity again; 0.5 % Critical (checkout: 5 % of capacity during the
//! spike), 69.5 % Normal, 30 % Sheddable.

use std::time::Duration;

use surgeguard::clock::ManualClock;
use surgeguard::shed::{AdaptiveLimit, Outcome, Permit, Priority, Shedder};

const WORKERS: f64 = 8.0;
const WORK_MS: f64 = 10.0;
const CAPACITY_PER_SEC: f64 = WORKERS * 1_000.0 / WORK_MS;
const TICK_MS: f64 = 0.25;

struct InFlight {
    permit: Permit,
    work_left_ms: f64,
    started_ms: f64,
}

/// What one phase of the run measured.
#[derive(Debug, Default)]
struct PhaseReport {
    offered: u64,
    rejected: u64,
    completed: u64,
    latencies_ms: Vec<f64>,
    critical_offered: u64,
    critical_admitted: u64,
    limit_sum: f64,
    in_flight_sum: f64,
    limit_samples: u64,
}

impl PhaseReport {
    fn goodput_share(&self, seconds: f64) -> f64 {
        self.completed as f64 / (CAPACITY_PER_SEC * seconds)
    }

    fn latency_percentile(&mut self, p: f64) -> f64 {
        self.latencies_ms.sort_by(f64::total_cmp);
        let index =
            ((self.latencies_ms.len() as f64 * p) as usize).min(self.latencies_ms.len() - 1);
        self.latencies_ms[index]
    }

    fn mean_limit(&self) -> f64 {
        self.limit_sum / self.limit_samples.max(1) as f64
    }

    fn mean_in_flight(&self) -> f64 {
        self.in_flight_sum / self.limit_samples.max(1) as f64
    }

    fn critical_share(&self) -> f64 {
        self.critical_admitted as f64 / self.critical_offered.max(1) as f64
    }
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs the scenario; returns (quiet start, overload after 3 s of settling,
/// recovery after 100 ms of draining) reports.
fn simulate(shedder: Shedder, clock: &ManualClock) -> [PhaseReport; 3] {
    // (until ms, arrivals per second, report index or none while settling)
    let phases: [(f64, f64, Option<usize>); 5] = [
        (2_000.0, CAPACITY_PER_SEC / 2.0, Some(0)),
        (5_000.0, CAPACITY_PER_SEC * 10.0, None),
        (12_000.0, CAPACITY_PER_SEC * 10.0, Some(1)),
        // The overload's last requests drain.
        (12_100.0, CAPACITY_PER_SEC / 2.0, None),
        (15_000.0, CAPACITY_PER_SEC / 2.0, Some(2)),
    ];
    let mut reports: [PhaseReport; 3] = Default::default();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut running: Vec<InFlight> = Vec::new();
    let mut now_ms = 0.0;
    let mut next_arrival_ms = 0.0;
    for (until_ms, rate, report) in phases {
        while now_ms < until_ms {
            let tick_end = now_ms + TICK_MS;
            // Arrivals during this tick.
            while next_arrival_ms < tick_end {
                next_arrival_ms += -(1.0 - rng.unit()).ln() * 1_000.0 / rate;
                let roll = rng.unit();
                let priority = if roll < 0.005 {
                    Priority::Critical
                } else if roll < 0.70 {
                    Priority::Normal
                } else {
                    Priority::Sheddable
                };
                let admitted = shedder.try_acquire(priority);
                if let Some(index) = report {
                    let phase = &mut reports[index];
                    phase.offered += 1;
                    phase.rejected += u64::from(admitted.is_err());
                    if priority == Priority::Critical {
                        phase.critical_offered += 1;
                        phase.critical_admitted += u64::from(admitted.is_ok());
                    }
                }
                if let Ok(permit) = admitted {
                    running.push(InFlight {
                        permit,
                        work_left_ms: WORK_MS,
                        started_ms: now_ms,
                    });
                }
            }
            // The workers share themselves among the running requests.
            let share = (WORKERS / running.len().max(1) as f64).min(1.0);
            clock.advance(Duration::from_secs_f64(TICK_MS / 1_000.0));
            now_ms = tick_end;
            let mut index = 0;
            while index < running.len() {
                running[index].work_left_ms -= TICK_MS * share;
                if running[index].work_left_ms <= 1e-9 {
                    let done = running.swap_remove(index);
                    done.permit.record(Outcome::Success);
                    if let Some(report) = report {
                        reports[report].completed += 1;
                        reports[report].latencies_ms.push(now_ms - done.started_ms);
                    }
                } else {
                    index += 1;
                }
            }
            if let Some(report) = report {
                reports[report].limit_sum += f64::from(shedder.limit());
                reports[report].in_flight_sum += f64::from(shedder.in_flight());
                reports[report].limit_samples += 1;
            }
        }
    }
    reports
}

fn run(limit: AdaptiveLimit) -> [PhaseReport; 3] {
    let clock = ManualClock::new();
    let shedder = Shedder::builder()
        .limit(limit)
        .clock(clock.clone())
        .build()
        .unwrap();
    simulate(shedder, &clock)
}

#[test]
fn gradient_settles_at_the_knee_under_ten_times_overload() {
    let [quiet, mut overload, mut recovery] = run(AdaptiveLimit::gradient().min(1).max(1_000));
    let uncongested_p99 = {
        let mut quiet = quiet;
        quiet.latency_percentile(0.99)
    };
    let (limit, in_flight) = (overload.mean_limit(), overload.mean_in_flight());
    eprintln!(
        "limit {limit:.1}, in flight {in_flight:.1}, p99 {:.1} ms (uncongested {uncongested_p99:.1}), goodput {:.3}, critical {:.4}",
        overload.latency_percentile(0.99),
        overload.goodput_share(7.0),
        overload.critical_share()
    );
    // The concurrency the limit lets through sits at the knee; the limit
    // itself is higher by the share reserved for Critical requests (20 %),
    // which they rarely fill, and by the tolerance for latency noise.
    assert!(
        (6.0..=10.0).contains(&in_flight),
        "{in_flight:.1} in flight, the knee is {WORKERS}"
    );
    assert!(limit <= 1.5 * WORKERS, "limit {limit:.1}");
    let p99 = overload.latency_percentile(0.99);
    assert!(
        p99 < 2.0 * uncongested_p99,
        "admitted p99 {p99:.1} ms against {uncongested_p99:.1} ms uncongested"
    );
    let goodput = overload.goodput_share(7.0);
    assert!(
        goodput >= 0.90,
        "goodput {:.1} % of capacity",
        goodput * 100.0
    );
    let critical = overload.critical_share();
    assert!(
        critical >= 0.99,
        "critical admitted {:.2} %",
        critical * 100.0
    );
    // Load drops: everyone is served again, at uncongested latency.
    // (A burst of Poisson arrivals at half load can still find the limit
    // full now and then: the limit is the server's capacity.)
    let shed = recovery.rejected as f64 / recovery.offered as f64;
    assert!(
        shed <= 0.01,
        "{} of {} shed",
        recovery.rejected,
        recovery.offered
    );
    let recovered_p99 = recovery.latency_percentile(0.99);
    assert!(
        recovered_p99 <= uncongested_p99 * 1.01,
        "{recovered_p99:.1} ms"
    );
}

/// Every algorithm in the same scenario: the table in BENCHMARKS.md
/// (`cargo test --test shed_simulation -- --nocapture algorithms`).
#[test]
fn algorithms_compared_under_the_same_overload() {
    let quiet_p99 = {
        let [mut quiet, _, _] = run(AdaptiveLimit::gradient());
        quiet.latency_percentile(0.99)
    };
    println!(
        "| limit | mean limit | mean in flight | admitted p99 | goodput | critical admitted |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let fixed = {
        let clock = ManualClock::new();
        let shedder = Shedder::builder()
            .max_concurrency(100)
            .clock(clock.clone())
            .build()
            .unwrap();
        simulate(shedder, &clock)
    };
    let threshold = Duration::from_secs_f64(2.0 * quiet_p99 / 1_000.0);
    let runs = [
        ("fixed 100", fixed),
        (
            "AIMD, 2x latency threshold",
            run(AdaptiveLimit::aimd().latency_threshold(threshold)),
        ),
        ("Vegas", run(AdaptiveLimit::vegas())),
        ("Gradient", run(AdaptiveLimit::gradient())),
    ];
    for (name, [_, mut overload, _]) in runs {
        let p99 = overload.latency_percentile(0.99);
        println!(
            "| {name} | {:.1} | {:.1} | {p99:.1} ms ({:.1}x) | {:.1} % | {:.2} % |",
            overload.mean_limit(),
            overload.mean_in_flight(),
            p99 / quiet_p99,
            overload.goodput_share(7.0) * 100.0,
            overload.critical_share() * 100.0
        );
        // Whatever the limit, the server keeps its throughput; only the
        // latency of admitted requests differs.
        assert!(overload.goodput_share(7.0) > 0.85, "{name}");
    }
}
