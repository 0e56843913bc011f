//! The load tester from the outside, against servers these tests start on
//! 127.0.0.1.
//!
//! Real sockets and real time, so every assertion is an invariant that
//! holds however slow the machine is: a lower bound on a latency that only
//! grows when the machine is slow, a count the client guarantees (every
//! request sent has one outcome), or an error that does not depend on
//! timing. The knee finder itself is tested on a simulated server in
//! `src/loadtest/knee.rs`, where its capacity is exact.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use surgeguard::loadtest::{
    client_capacity, ClientSettings, Ending, LoadTest, LoadTestError, Requests, Schedule,
    ScheduleError, TargetError,
};
use tokio::time::Instant;

/// Serves `router` on 127.0.0.1 with an ephemeral port.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_due_while_the_server_stalls_count_their_wait_from_when_they_were_due() {
    // The server holds every request until one second after the first one
    // arrived, then answers at once. The first request is due when the run
    // starts and cannot arrive before, so every request due in the run's
    // first second is due before the release and waits for it. Two
    // connections only: a closed-loop client would send two requests in
    // that second and time only those.
    let stall = Duration::from_secs(1);
    let first_arrival = Arc::new(OnceLock::new());
    let arrival = Arc::clone(&first_arrival);
    let address = serve(Router::new().route(
        "/",
        get(move || {
            let arrival = Arc::clone(&arrival);
            async move {
                let release = *arrival.get_or_init(Instant::now) + stall;
                tokio::time::sleep_until(release).await;
                "ok"
            }
        }),
    ))
    .await;
    let schedule = Schedule::fixed(50.0, Duration::from_secs(2)).unwrap();
    let test = LoadTest::new(
        Requests::new(&[(&format!("http://{address}/"), 1)]).unwrap(),
        schedule.clone(),
        ClientSettings::new(2, Duration::from_secs(30)).unwrap(),
    )
    .warmup(Duration::ZERO)
    .unwrap();
    let run = test.run(|_| {}).await;

    // Open loop: every request of the schedule went out and has an outcome.
    let outcomes = &run.played.outcomes;
    assert_eq!(outcomes.len() as u64, schedule.requests());
    let in_first_second: Vec<_> = outcomes.iter().filter(|o| o.due.at < stall).collect();
    assert_eq!(in_first_second.len(), 50);
    for outcome in in_first_second {
        // Released no earlier than a second after the run started: the
        // wait counts from when the request was due (a slow machine only
        // makes it longer).
        assert!(
            outcome.latency >= stall - outcome.due.at,
            "due {:?} into the run, latency {:?}: its wait for the stalled server is missing",
            outcome.due.at,
            outcome.latency,
        );
    }
    // The step's figures are those outcomes.
    assert!(run.steps[0].max >= stall);
    assert_eq!(run.steps[0].sent, schedule.requests());
}

#[tokio::test]
async fn an_unreachable_host_is_a_clear_error_before_any_traffic() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{address}/");
    let test = LoadTest::new(
        Requests::new(&[(&url, 1)]).unwrap(),
        Schedule::fixed(10.0, Duration::from_secs(1)).unwrap(),
        ClientSettings::new(4, Duration::from_secs(5)).unwrap(),
    );
    let error = test.check().await.unwrap_err();
    assert!(
        matches!(error, LoadTestError::Unreachable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("onnect"), "{message}");
}

#[tokio::test]
async fn a_server_that_never_answers_fails_the_check_after_the_timeout_not_a_hang() {
    // Accepts connections and never writes a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let test = LoadTest::new(
        Requests::new(&[(&format!("http://{address}/"), 1)]).unwrap(),
        Schedule::fixed(10.0, Duration::from_secs(1)).unwrap(),
        ClientSettings::new(4, Duration::from_millis(100)).unwrap(),
    );
    let error = test.check().await.unwrap_err();
    assert!(error.to_string().contains("no answer within"), "{error}");
}

#[tokio::test]
async fn every_request_to_a_server_that_never_answers_times_out_and_is_counted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let schedule = Schedule::fixed(20.0, Duration::from_millis(500)).unwrap();
    let test = LoadTest::new(
        Requests::new(&[(&format!("http://{address}/"), 1)]).unwrap(),
        schedule.clone(),
        ClientSettings::new(4, Duration::from_millis(200)).unwrap(),
    )
    .warmup(Duration::ZERO)
    .unwrap();
    let run = test.run(|_| {}).await;
    assert_eq!(run.played.outcomes.len() as u64, schedule.requests());
    for outcome in &run.played.outcomes {
        assert_eq!(outcome.ending, Ending::TimedOut);
        assert!(outcome.latency >= Duration::from_millis(200));
    }
    assert_eq!(run.errors.get("timed out"), Some(&schedule.requests()));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let ten = Duration::from_secs(10);
    for url in [
        "http//nope",
        "not a url",
        "ftp://host/",
        "https://host/",
        "",
    ] {
        let error = Requests::new(&[(url, 1)]).unwrap_err();
        assert!(!error.to_string().is_empty());
    }
    assert!(matches!(
        Requests::new(&[("https://example.com/", 1)]),
        Err(TargetError::Https(_))
    ));
    assert_eq!(
        Schedule::parse("0", 10, ten).unwrap_err(),
        ScheduleError::Rate(0.0)
    );
    assert!(matches!(
        Schedule::parse("5000..100", 10, ten),
        Err(ScheduleError::RampGoesDown { .. })
    ));
    assert!(ClientSettings::new(0, ten).is_err());
    assert!(ClientSettings::new(8, Duration::ZERO).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_measures_a_capacity_against_itself() {
    // Every probe request is answered at once and the timeout is a
    // minute, so some are answered whatever the machine's load.
    let capacity = client_capacity(16, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(capacity > 0.0 && capacity.is_finite(), "{capacity}");
}
