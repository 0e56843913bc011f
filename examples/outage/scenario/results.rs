//! What a run measured: the table's figures, a per-second timeline for the
//! report's charts, and their JSON form.
//!
//! Totals always add up: `sent = succeeded + shed + limited + timed_out +
//! failed`. A request still open when the run is torn down (possible only
//! if the drain itself overran) counts as timed out.

use std::time::Duration;

use serde::{Serialize, Serializer};
use surgeguard::shed::{Priority, RejectReason};

use super::client::{Outcome, Played, Status};
use super::database::DatabaseReport;
use super::shop::ShopStats;
use super::traffic::{phase_at, PageKind, Phase, Planned};
use super::{Mode, Settings};

/// One run: its table, its timeline, and the parts' own figures.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Which shop served it.
    pub mode: Mode,
    /// The table's figures.
    pub summary: Summary,
    /// Second by second, by the second each request was due.
    pub timeline: Vec<Second>,
    /// What surgeguard's parts counted (protected only; `null` otherwise).
    pub protection: Option<Protection>,
}

/// The figures of the side-by-side table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Requests in the plan, all of them sent.
    pub sent: u64,
    /// Answered 2xx.
    pub succeeded: u64,
    /// Answered 503.
    pub shed: u64,
    /// Answered 429.
    pub limited: u64,
    /// Not answered within the client timeout.
    pub timed_out: u64,
    /// Any other answer, or a broken connection.
    pub failed: u64,
    /// 429 and 503 answers without `Retry-After` (should be 0).
    pub refusals_without_retry_after: u64,
    /// Latency of successes over the whole run.
    pub latency_ms: Percentiles,
    /// Latency of every request as its user saw it: refusals included, a
    /// timeout counted as the client timeout. Successes alone flatter an
    /// overloaded shop: only its cheapest pages still succeed.
    pub experienced_latency_ms: Percentiles,
    /// Latency of successes due before the event: what normal looks like.
    pub baseline_latency_ms: Percentiles,
    /// Latency of successes due during the event.
    pub spike_latency_ms: Percentiles,
    /// Checkouts sent.
    pub checkouts: u64,
    /// Checkouts that succeeded.
    pub checkouts_succeeded: u64,
    /// `checkouts_succeeded / checkouts`.
    pub checkout_success_rate: f64,
    /// Database queries finished per second while requests were sent.
    pub db_queries_per_second: f64,
    /// The busiest second's queries.
    pub db_peak_queries_per_second: u32,
    /// The longest a query waited for a database connection.
    pub db_peak_pool_wait_ms: f64,
    /// The most queries waiting for a connection at once.
    pub db_peak_waiting: usize,
    /// The most queries running at once (never above the pool).
    pub db_max_concurrent: usize,
    /// Connections in the pool.
    pub db_pool: usize,
    /// The same counts, page by page.
    pub by_page: ByPage,
    /// When the saturation signal first reached 0.9, seconds into the run.
    pub saturation_onset_s: Option<f64>,
    /// When latency first passed twice the baseline p99, as a dashboard
    /// would see it: the p99 of the requests that finished in a quarter
    /// second (at least 5), timeouts counted at the timeout; seconds into
    /// the run.
    pub latency_onset_s: Option<f64>,
}

/// Counts per kind of page.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ByPage {
    /// `GET /product/{id}`.
    pub product: Counts,
    /// `GET /catalogue`.
    pub catalogue: Counts,
    /// `GET /static/{file}`.
    pub asset: Counts,
    /// `GET /search`.
    pub search: Counts,
    /// `POST /checkout`.
    pub checkout: Counts,
}

/// How the requests of one kind ended.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    /// Planned and sent.
    pub sent: u64,
    /// Answered 2xx.
    pub succeeded: u64,
    /// Answered 503.
    pub shed: u64,
    /// Answered 429.
    pub limited: u64,
    /// Timed out, failed, or never finished.
    pub unanswered: u64,
    /// Latency of the successes sent during the event, ms.
    pub spike_latency_ms: Percentiles,
}

impl ByPage {
    fn all_mut(&mut self) -> [&mut Counts; 5] {
        [
            &mut self.product,
            &mut self.catalogue,
            &mut self.asset,
            &mut self.search,
            &mut self.checkout,
        ]
    }

    fn of(&mut self, kind: PageKind) -> &mut Counts {
        match kind {
            PageKind::Product => &mut self.product,
            PageKind::Catalogue => &mut self.catalogue,
            PageKind::Asset => &mut self.asset,
            PageKind::Search => &mut self.search,
            PageKind::Checkout => &mut self.checkout,
        }
    }
}

/// Latency percentiles in milliseconds (nearest rank; 0 when nothing was
/// measured).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    /// How many latencies these are of.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// One second of a run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Second {
    /// Seconds into the run.
    pub second: u32,
    /// Requests due in this second.
    pub sent: u32,
    /// Of those, answered 2xx.
    pub succeeded: u32,
    /// Answered 503 or 429.
    pub refused: u32,
    /// Timed out or failed.
    pub failed: u32,
    /// Median latency of this second's successes, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of this second's successes, ms.
    pub p99_ms: Option<f64>,
    /// 99th percentile latency of all this second's requests as their users
    /// saw it (a timeout counts as the client timeout), ms.
    pub experienced_p99_ms: Option<f64>,
    /// Database queries finished in this second.
    pub db_queries: u32,
    /// The most queries waiting for a connection at a sample.
    pub db_waiting: u32,
    /// The shedder's concurrency limit at the second's last sample.
    pub shed_limit: Option<u32>,
    /// The highest saturation signal sampled in the second.
    pub saturation: f64,
}

/// What surgeguard's parts counted in the protected run.
#[derive(Clone, Debug, Serialize)]
pub struct Protection {
    /// Product cache hits / requests.
    pub product_cache_hit_ratio: f64,
    /// Product rows loaded from the database (single flight per key).
    pub product_loads: u64,
    /// Requests that joined a load already under way.
    pub product_loads_coalesced: u64,
    /// Rows refreshed ahead of expiry.
    pub product_refreshes: u64,
    /// Rows served stale (while refreshing, or because the load failed).
    pub product_stale_served: u64,
    /// HTTP response cache hits / lookups (catalogue and assets).
    pub response_cache_hit_ratio: f64,
    /// Database queries the shedder refused.
    pub shed_refusals: u64,
    /// The shedder's concurrency limit at the end.
    pub shed_limit_at_end: u32,
    /// Checkout queries (Critical) the shedder refused, by reason: the
    /// limit was reached, the queue was full, the wait passed its deadline.
    pub critical_refused: [u64; 3],
}

impl Run {
    /// Assembles a run's figures from what each part recorded.
    pub fn new(
        mode: Mode,
        settings: &Settings,
        plan: &[Planned],
        played: &Played,
        database: DatabaseReport,
        shop: ShopStats,
    ) -> Run {
        let outcomes = &played.outcomes;
        let mut summary = Summary {
            sent: plan.len() as u64,
            timed_out: (plan.len() - outcomes.len()) as u64,
            ..Summary::default()
        };
        for planned in plan {
            summary.by_page.of(planned.page.kind()).sent += 1;
        }
        let (mut all, mut baseline, mut spike) = (Vec::new(), Vec::new(), Vec::new());
        let mut spike_by_page: [Vec<f64>; 5] = Default::default();
        let mut experienced = Vec::with_capacity(plan.len());
        // Requests that never finished waited at least the timeout.
        experienced.resize(plan.len() - outcomes.len(), millis(settings.client_timeout));
        for outcome in outcomes {
            experienced.push(experienced_ms(settings, outcome));
            let planned = &plan[outcome.index];
            let counts = summary.by_page.of(planned.page.kind());
            match outcome.status {
                Status::Succeeded => {
                    counts.succeeded += 1;
                    summary.succeeded += 1;
                    let ms = millis(outcome.latency);
                    all.push(ms);
                    match phase_at(settings, planned.at) {
                        Phase::Baseline => baseline.push(ms),
                        Phase::Spike => {
                            spike.push(ms);
                            spike_by_page[planned.page.kind() as usize].push(ms);
                        }
                        Phase::Recovery => {}
                    }
                }
                Status::Shed => {
                    counts.shed += 1;
                    summary.shed += 1;
                }
                Status::Limited => {
                    counts.limited += 1;
                    summary.limited += 1;
                }
                Status::TimedOut => summary.timed_out += 1,
                Status::Failed => summary.failed += 1,
            }
            if matches!(outcome.status, Status::Shed | Status::Limited) && !outcome.retry_after {
                summary.refusals_without_retry_after += 1;
            }
        }
        for (counts, spike) in summary
            .by_page
            .all_mut()
            .into_iter()
            .zip(&mut spike_by_page)
        {
            counts.unanswered = counts.sent - counts.succeeded - counts.shed - counts.limited;
            counts.spike_latency_ms = Percentiles::of(spike);
        }
        // Checkouts that never finished count against the success rate too.
        summary.checkouts = summary.by_page.checkout.sent;
        summary.checkouts_succeeded = summary.by_page.checkout.succeeded;
        summary.checkout_success_rate = if summary.checkouts == 0 {
            1.0
        } else {
            summary.checkouts_succeeded as f64 / summary.checkouts as f64
        };
        summary.latency_ms = Percentiles::of(&mut all);
        summary.experienced_latency_ms = Percentiles::of(&mut experienced);
        summary.baseline_latency_ms = Percentiles::of(&mut baseline);
        summary.spike_latency_ms = Percentiles::of(&mut spike);
        // Over the seconds requests were sent (the drain's queries excluded).
        let seconds = settings.duration.as_secs_f64().ceil() as usize;
        let during_run: u32 = database
            .per_second
            .iter()
            .take(seconds)
            .map(|s| s.queries)
            .sum();
        summary.db_queries_per_second = f64::from(during_run) / settings.duration.as_secs_f64();
        summary.db_peak_queries_per_second = database
            .per_second
            .iter()
            .map(|s| s.queries)
            .max()
            .unwrap_or(0);
        summary.saturation_onset_s = played
            .samples
            .iter()
            .find(|(_, sample)| sample.saturation >= 0.9)
            .map(|(at, _)| at.as_secs_f64());
        summary.latency_onset_s = latency_onset(
            settings,
            plan,
            played,
            2.0 * summary.baseline_latency_ms.p99,
        );
        summary.db_peak_pool_wait_ms = database.peak_pool_wait_ms;
        summary.db_peak_waiting = database.peak_waiting;
        summary.db_max_concurrent = database.max_concurrent;
        summary.db_pool = database.pool;

        Run {
            mode,
            summary,
            timeline: timeline(settings, plan, played, &database),
            protection: Protection::from_stats(&shop),
        }
    }
}

/// The `--json` object: the settings, then each run under its mode's name.
pub fn to_json(settings: &Settings, runs: &[Run]) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert(
        "settings".into(),
        serde_json::to_value(settings).expect("settings serialize"),
    );
    for run in runs {
        object.insert(
            run.mode.name().into(),
            serde_json::to_value(run).expect("runs serialize"),
        );
    }
    serde_json::Value::Object(object)
}

impl Summary {
    /// `succeeded + shed + limited + timed_out + failed`, which equals
    /// `sent`.
    pub fn accounted(&self) -> u64 {
        self.succeeded + self.shed + self.limited + self.timed_out + self.failed
    }
}

impl Percentiles {
    /// The percentiles of `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        Percentiles {
            count: values.len() as u64,
            p50: nearest_rank(values, 0.50),
            p95: nearest_rank(values, 0.95),
            p99: nearest_rank(values, 0.99),
            max: values[values.len() - 1],
        }
    }
}

impl Protection {
    fn from_stats(shop: &ShopStats) -> Option<Protection> {
        let (products, responses, shed) = (shop.products?, shop.responses?, shop.shed?);
        Some(Protection {
            product_cache_hit_ratio: products.hit_ratio(),
            product_loads: products.loads,
            product_loads_coalesced: products.coalesced,
            product_refreshes: products.refreshes,
            product_stale_served: products.stale_served,
            response_cache_hit_ratio: responses.hit_ratio(),
            shed_refusals: shed.rejected_critical + shed.rejected_normal + shed.rejected_sheddable,
            shed_limit_at_end: shed.limit,
            critical_refused: [
                RejectReason::LimitReached,
                RejectReason::QueueFull,
                RejectReason::Deadline,
            ]
            .map(|reason| shed.rejected(Priority::Critical, reason)),
        })
    }
}

fn timeline(
    settings: &Settings,
    plan: &[Planned],
    played: &Played,
    database: &DatabaseReport,
) -> Vec<Second> {
    let seconds = settings.duration.as_secs_f64().ceil() as usize;
    let mut timeline: Vec<Second> = (0..seconds)
        .map(|s| Second {
            second: s as u32,
            ..Second::default()
        })
        .collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    let mut experienced: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    let slot = |at: Duration| (at.as_secs() as usize).min(seconds - 1);
    for planned in plan {
        timeline[slot(planned.at)].sent += 1;
    }
    for outcome in &played.outcomes {
        let at = slot(plan[outcome.index].at);
        experienced[at].push(experienced_ms(settings, outcome));
        let second = &mut timeline[at];
        match outcome.status {
            Status::Succeeded => {
                second.succeeded += 1;
                latencies[at].push(millis(outcome.latency));
            }
            Status::Shed | Status::Limited => second.refused += 1,
            Status::TimedOut | Status::Failed => second.failed += 1,
        }
    }
    for ((second, values), seen) in timeline
        .iter_mut()
        .zip(&mut latencies)
        .zip(&mut experienced)
    {
        if !values.is_empty() {
            let p = Percentiles::of(values);
            second.p50_ms = Some(p.p50);
            second.p99_ms = Some(p.p99);
        }
        // Requests that never finished waited at least the timeout.
        seen.resize(second.sent as usize, millis(settings.client_timeout));
        if second.sent > 0 {
            second.experienced_p99_ms = Some(Percentiles::of(seen).p99);
        }
        // Requests that never finished count as failed in their second.
        second.failed = second.sent - second.succeeded - second.refused;
    }
    for (at, db) in database.per_second.iter().enumerate().take(seconds) {
        timeline[at].db_queries = db.queries;
    }
    for (at, sample) in &played.samples {
        if at.as_secs() as usize >= seconds {
            continue;
        }
        let second = &mut timeline[slot(*at)];
        second.db_waiting = second.db_waiting.max(sample.db_waiting as u32);
        second.saturation = second.saturation.max(sample.saturation);
        if sample.shed_limit.is_some() {
            second.shed_limit = sample.shed_limit;
        }
    }
    timeline
}

/// The end of the first quarter second whose finished requests (at least
/// 5) had a p99 above `threshold_ms`: when a dashboard could first have
/// seen it.
fn latency_onset(
    settings: &Settings,
    plan: &[Planned],
    played: &Played,
    threshold_ms: f64,
) -> Option<f64> {
    if threshold_ms <= 0.0 {
        return None;
    }
    let quarters = (settings.duration.as_secs_f64() * 4.0).ceil() as usize;
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); quarters];
    for outcome in &played.outcomes {
        let seen = experienced_ms(settings, outcome);
        let finished = plan[outcome.index].at.as_secs_f64() + seen / 1e3;
        if let Some(bucket) = buckets.get_mut((finished * 4.0) as usize) {
            bucket.push(seen);
        }
    }
    buckets
        .iter_mut()
        .position(|b| b.len() >= 5 && Percentiles::of(b).p99 > threshold_ms)
        .map(|quarter| (quarter + 1) as f64 / 4.0)
}

fn nearest_rank(sorted: &[f64], quantile: f64) -> f64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A request's latency as its user saw it: a timeout counts as the client
/// timeout (the client stopped waiting there).
fn experienced_ms(settings: &Settings, outcome: &Outcome) -> f64 {
    match outcome.status {
        Status::TimedOut => millis(settings.client_timeout),
        _ => millis(outcome.latency),
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Serializes a duration as seconds (a float).
pub fn as_secs<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64())
}
