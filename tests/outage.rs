//! The outage example's scenario, short and at a lower rate: what the
//! README claims, checked as counts (never times).
//!
//! The scenario code is the example's own (`examples/outage/scenario/`),
//! included by path, so the test and the demo cannot drift apart.
//!
//! Unlike the rest of the suite these runs use real time (the database's
//! queries are timers, the shedder learns from measured latency, the client
//! gives up after a real timeout), since what they check is the demo's
//! claim about real latency. At the demo's speed a test build needs a good
//! part of a core during the spike, so on a busy machine the scheduler's
//! delays would add to every latency the shedder measures, and it would
//! shed checkouts. So the runs here are slowed down four times
//! (`Settings::with_slowdown`): a quarter of the requests, queries four
//! times as long, the same number in flight. A starved process's delays
//! are then small beside the queries' times, and each asserted count
//! either has a wide margin or moves the way that keeps it true when the
//! machine is slow (the unprotected shop's queue, and the abusers' limited
//! searches, only grow when the open-loop client falls behind and sends in
//! bunches). The runs take turns, so that one run's load is not another's
//! noise.

use std::sync::Mutex;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../examples/outage/scenario/mod.rs"]
mod scenario;

use scenario::{Mode, Settings, SettingsError};

/// The runs take the machine's cores (a crowd and a shop in one process);
/// one at a time, so one run's load is not the other's noise.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(settings: &Settings, mode: Mode) -> scenario::Run {
    let _turn = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    scenario::run(settings, mode, &|_| {}).unwrap()
}

/// 5 s of traffic: 100 requests/s, then `spike` times that for 3 s, then
/// 100 again. All four times slower (see the module docs): 25 requests/s,
/// queries four times as long.
fn slowed_run(spike: f64) -> Settings {
    Settings::new(Duration::from_secs(5), 100.0, spike)
        .and_then(|s| s.with_client_timeout(Duration::from_secs(3)))
        .and_then(|s| s.with_slowdown(4.0))
        .unwrap()
}

/// [`slowed_run`] at 8x: above what the database serves (about 700
/// requests/s before the slowdown).
fn short_run() -> Settings {
    slowed_run(8.0)
}

/// What a protected run owes every request, whatever the spike: an answer
/// before the client's timeout, a `Retry-After` on every refusal, and a
/// database kept within its pool.
fn assert_everyone_answered(s: &scenario::results::Summary) {
    assert_eq!(s.accounted(), s.sent);
    assert_eq!(
        s.timed_out, 0,
        "no request of the protected shop times out: {s:?}"
    );
    assert_eq!(s.failed, 0, "{s:?}");
    assert!(s.db_max_concurrent <= s.db_pool, "{s:?}");
    assert_eq!(
        s.refusals_without_retry_after, 0,
        "every 429/503 says when to retry"
    );
}

#[test]
fn the_protected_shop_answers_everyone_and_keeps_the_database_within_its_pool() {
    let settings = short_run();
    let run = run(&settings, Mode::Protected);
    let s = &run.summary;
    assert!(
        s.sent > 500,
        "the plan should be substantial, got {}",
        s.sent
    );
    assert_everyone_answered(s);
    assert!(s.checkouts > 0);
    assert!(
        s.checkout_success_rate >= 0.99,
        "checkouts are Critical: {} of {} succeeded",
        s.checkouts_succeeded,
        s.checkouts
    );
    // The abusers' searches meet the per-client limit.
    assert!(s.by_page.search.limited > 0, "{:?}", s.by_page);
    assert_eq!(
        s.by_page.checkout.limited, 0,
        "shoppers stay under their quota"
    );
    let protection = run
        .protection
        .as_ref()
        .expect("the protected run reports its parts");
    assert!(protection.product_cache_hit_ratio > 0.0);
}

#[test]
fn at_a_20x_spike_the_protected_shop_answers_everyone_and_checkouts_get_through() {
    let settings = slowed_run(20.0);
    let run = run(&settings, Mode::Protected);
    let s = &run.summary;
    assert_everyone_answered(s);
    // Far past capacity: the shop must refuse work, and it refuses the
    // least important first.
    assert!(s.shed > 0, "{s:?}");
    assert!(
        s.by_page.search.shed > s.by_page.product.shed,
        "{:?}",
        s.by_page
    );
    assert!(s.checkouts > 0);
    assert!(
        s.checkout_success_rate >= 0.99,
        "checkouts are Critical: {} of {} succeeded",
        s.checkouts_succeeded,
        s.checkouts
    );
    let protection = run.protection.as_ref().expect("protected run");
    // A full queue makes way for a Critical request: whatever the timing,
    // no checkout is refused because browsing filled the queue.
    let [_, queue_full, _] = protection.critical_refused;
    assert_eq!(queue_full, 0, "{protection:?}");
}

#[test]
fn the_unprotected_shop_saturates_its_database() {
    let settings = short_run();
    let run = run(&settings, Mode::Unprotected);
    let s = &run.summary;
    assert_eq!(s.accounted(), s.sent);
    assert_eq!(
        s.shed + s.limited,
        0,
        "nothing refuses work in the unprotected shop"
    );
    assert!(s.db_max_concurrent <= s.db_pool, "{s:?}");
    assert!(
        s.timed_out > 0 || s.db_peak_waiting > s.db_pool,
        "the spike should time requests out or queue more than a pool's worth: {s:?}"
    );
    assert!(run.protection.is_none());
}

#[test]
fn the_json_output_parses_and_its_totals_add_up() {
    let settings = Settings::new(Duration::from_secs(2), 50.0, 2.0).unwrap();
    let runs = vec![run(&settings, Mode::Protected)];
    let text = scenario::results::to_json(&settings, &runs).to_string();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["settings"]["baseline_rps"], 50.0);
    let summary = &json["protected"]["summary"];
    let count = |field: &str| {
        summary[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {summary}"))
    };
    assert_eq!(
        count("sent"),
        count("succeeded")
            + count("shed")
            + count("limited")
            + count("timed_out")
            + count("failed")
    );
    let timeline = json["protected"]["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 2);
    let sent: u64 = timeline.iter().map(|s| s["sent"].as_u64().unwrap()).sum();
    assert_eq!(sent, count("sent"));
    assert!(json.get("unprotected").is_none(), "only the modes that ran");
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    let second = Duration::from_secs(1);
    assert_eq!(
        Settings::new(second, 100.0, 10.0).unwrap_err(),
        SettingsError::Duration(second)
    );
    assert!(matches!(
        Settings::new(Duration::from_secs(10), 0.0, 10.0),
        Err(SettingsError::BaselineRps(_))
    ));
    assert!(matches!(
        Settings::new(Duration::from_secs(10), f64::NAN, 10.0),
        Err(SettingsError::BaselineRps(_))
    ));
    assert!(matches!(
        Settings::new(Duration::from_secs(10), 100.0, 0.5),
        Err(SettingsError::Spike(_))
    ));
    assert!(matches!(
        Settings::new(Duration::from_secs(10), 2_000.0, 20.0),
        Err(SettingsError::PeakRps(_))
    ));
    let settings = Settings::new(Duration::from_secs(10), 100.0, 10.0).unwrap();
    assert!(matches!(
        settings.clone().with_client_timeout(Duration::ZERO),
        Err(SettingsError::ClientTimeout(_))
    ));
    for slowdown in [0.5, 17.0, f64::NAN] {
        assert!(matches!(
            settings.clone().with_slowdown(slowdown),
            Err(SettingsError::Slowdown(_))
        ));
    }
    let message = Settings::new(Duration::from_secs(10), 100.0, 99.0)
        .unwrap_err()
        .to_string();
    assert!(message.contains("spike"), "{message}");
}

#[test]
fn both_modes_replay_the_same_plan() {
    let settings = short_run();
    let first = scenario::traffic::plan(&settings);
    let second = scenario::traffic::plan(&settings);
    assert_eq!(first.len(), second.len());
    assert!(first
        .iter()
        .zip(&second)
        .all(|(a, b)| a.at == b.at && a.page == b.page && a.sender == b.sender));
    // Open loop: the spike's second carries about 8x the baseline's.
    let in_second = |s: u64| first.iter().filter(|p| p.at.as_secs() == s).count() as f64;
    let (baseline, spike) = (in_second(0), in_second(2));
    assert!(
        spike > 5.0 * baseline,
        "baseline {baseline}/s, spike {spike}/s"
    );
}

#[test]
fn the_shop_serves_its_metrics_in_prometheus_text() {
    let _turn = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let database = scenario::database::Database::new(Default::default());
        let shop = scenario::shop::start(Mode::Protected, database)
            .await
            .unwrap();
        // One request through the shedder; the reporter publishes every
        // 250 ms (its first report at once).
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let get = |path: &str| {
            let uri: http::Uri = format!("http://{}{path}", shop.address).parse().unwrap();
            client.get(uri)
        };
        assert!(get("/search?q=1").await.unwrap().status().is_success());
        let response = get("/metrics").await.unwrap();
        assert!(response.status().is_success());
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        for metric in [
            "surgeguard_saturation",
            "surgeguard_shed_limit",
            "surgeguard_cache_requests_total",
        ] {
            assert!(
                text.contains(metric),
                "{metric} missing from /metrics:\n{text}"
            );
        }
        assert!(text.contains("shedder=\"protected-database\""), "{text}");
    });
}
