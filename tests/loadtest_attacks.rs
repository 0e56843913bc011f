//! The load tester attacked: servers that misbehave on purpose, input
//! meant to break it, and figures chosen to trip the knee finder and the
//! settings it prints.
//!
//! Every server here is started by the test on 127.0.0.1 with an ephemeral
//! port. No assertion depends on how fast the machine is: a latency is only
//! bounded from below (a slow machine only makes it longer), a count is one
//! the client guarantees whatever the interleaving (every request sent has
//! exactly one outcome), and an ending is one the server's behaviour forces.
//! The knee finder is fed outcomes built by hand, so those tests involve no
//! time at all.

#![cfg(feature = "loadtest")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use surgeguard::limit::{Gcra, Quota};
use surgeguard::loadtest::{
    find_knee, inflight_from_metrics, play, steps, ClientSettings, Due, Ending, Knee, LatencyBound,
    LoadTest, NoKnee, Outcome, Recommendation, Requests, Schedule, StepFailure, TargetError,
};
use surgeguard::shed::{AdaptiveLimit, Shedder};

// ---------------------------------------------------------------------------
// Memory: bytes allocated and not yet freed, counted per thread.
// ---------------------------------------------------------------------------

/// Counts, per thread, the bytes that thread has allocated less those it
/// has freed, and the highest that figure reached. A test on a
/// current-thread runtime runs the whole client on its own thread, so its
/// figure is the client's and no other test's: other tests allocate on
/// other threads, and a free of their memory here could only lower it.
struct PerThread;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: a thread being torn down has no counters any more.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThread = PerThread;

/// The most this thread held at once while `f` ran, above what it held
/// before.
async fn peak_while<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let out = f.await;
    let peak = PEAK.with(Cell::get);
    (out, (peak - before).max(0) as usize)
}

// ---------------------------------------------------------------------------
// Servers that misbehave, each on a plain thread with blocking sockets.
// ---------------------------------------------------------------------------

/// Accepts connections on 127.0.0.1 and hands each to `serve` on its own
/// thread; counts the connections accepted.
fn misbehaving(serve: fn(TcpStream)) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || serve(socket));
        }
    });
    (address, accepted)
}

/// Reads until the end of a request head (these tests send no bodies).
fn read_head(socket: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => return false,
        }
    }
    true
}

async fn play_against(address: SocketAddr, schedule: &Schedule, timeout: Duration) -> Vec<Outcome> {
    let requests = Requests::new(&[(&format!("http://{address}/"), 1)]).unwrap();
    play(
        schedule.due_times(),
        |due: &Due| requests.request(due.index),
        &ClientSettings::new(4, timeout).unwrap(),
        Duration::from_secs(1),
        |_| {},
    )
    .await
    .outcomes
}

/// 64 MiB of body, written from one 64 KiB buffer: the server itself
/// holds little, and the body is far larger than any read buffer.
const HUGE: usize = 64 << 20;

fn huge_body(mut socket: TcpStream) {
    if !read_head(&mut socket) {
        return;
    }
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {HUGE}\r\n\r\n");
    if socket.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..HUGE / chunk.len() {
        if socket.write_all(&chunk).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_huge_response_body_is_read_through_without_being_held_in_memory() {
    // Current-thread runtime: the client, and hyper's connection task,
    // run on this test's thread, so its allocation figure is theirs. The
    // body is 64 MiB; a client that keeps the body it only times holds
    // all 64 MiB at once at its end, whatever the timing. One that drains
    // it holds a read buffer at a time.
    let (address, _) = misbehaving(huge_body);
    let schedule = Schedule::fixed(1.0, Duration::from_secs(1)).unwrap();
    let (outcomes, peak) =
        peak_while(play_against(address, &schedule, Duration::from_secs(60))).await;
    assert_eq!(outcomes.len(), 1);
    assert!(
        matches!(outcomes[0].ending, Ending::Answered { status, .. } if status == StatusCode::OK),
        "{:?}",
        outcomes[0]
    );
    assert!(
        peak < HUGE / 4,
        "the client held {} MiB at once for a 64 MiB body it only times",
        peak >> 20
    );
}

fn never_send_headers(mut socket: TcpStream) {
    read_head(&mut socket);
    // Hold the connection open, say nothing.
    std::thread::sleep(Duration::from_secs(30));
}

fn close_without_answer(mut socket: TcpStream) {
    read_head(&mut socket);
    drop(socket);
}

fn partial_body(mut socket: TcpStream) {
    if read_head(&mut socket) {
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc");
    }
}

fn garbage(mut socket: TcpStream) {
    if read_head(&mut socket) {
        let _ = socket.write_all(b"SMTP ready, not HTTP at all\r\n\r\n");
    }
}

fn reset(mut socket: TcpStream) {
    // Closing a socket with request bytes still unread makes the kernel
    // answer with a reset rather than an orderly close.
    let mut first = [0u8; 1];
    let _ = socket.read(&mut first);
    drop(socket);
}

fn half_headers(mut socket: TcpStream) {
    if read_head(&mut socket) {
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-len");
        std::thread::sleep(Duration::from_secs(30));
    }
}

fn redirect_elsewhere(mut socket: TcpStream) {
    // The elsewhere is the test's second server, which nothing else names.
    if read_head(&mut socket) {
        let location = ELSEWHERE.get().copied().unwrap();
        let answer = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{location}/\r\ncontent-length: 0\r\n\r\n"
        );
        let _ = socket.write_all(answer.as_bytes());
    }
}

static ELSEWHERE: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();

fn answer_ok(mut socket: TcpStream) {
    while read_head(&mut socket) {
        if socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// A broken server: what it does, how it serves, the ending it forces.
type Case = (&'static str, fn(TcpStream), Ending);

#[tokio::test]
async fn every_kind_of_broken_server_gives_each_request_exactly_one_truthful_ending() {
    // Each server's behaviour forces the ending: a server that never
    // answers can only time out (and not before the timeout, counted from
    // when the request was due); one that breaks the connection or speaks
    // something else can only fail it, and gets a 30 s timeout so that
    // even a machine too busy to run the server's thread for a while
    // cannot turn its failure into a timeout. Ten requests each, so pooled
    // and fresh connections both meet the breakage.
    let schedule = Schedule::fixed(20.0, Duration::from_millis(500)).unwrap();
    let cases: [Case; 6] = [
        ("never sends headers", never_send_headers, Ending::TimedOut),
        (
            "sends half a head, then nothing",
            half_headers,
            Ending::TimedOut,
        ),
        (
            "closes without an answer",
            close_without_answer,
            Ending::ConnectionFailed,
        ),
        (
            "sends part of the body, then closes",
            partial_body,
            Ending::ConnectionFailed,
        ),
        (
            "answers in another protocol",
            garbage,
            Ending::ConnectionFailed,
        ),
        ("resets the connection", reset, Ending::ConnectionFailed),
    ];
    for (what, serve, expected) in cases {
        let timeout = if expected == Ending::TimedOut {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(30)
        };
        let (address, _) = misbehaving(serve);
        let outcomes = play_against(address, &schedule, timeout).await;
        let mut indexes: Vec<u64> = outcomes.iter().map(|o| o.due.index).collect();
        indexes.sort_unstable();
        assert_eq!(
            indexes,
            (0..schedule.requests()).collect::<Vec<_>>(),
            "{what}: not one outcome per request"
        );
        for outcome in &outcomes {
            assert_eq!(outcome.ending, expected, "{what}: {outcome:?}");
            if outcome.ending == Ending::TimedOut {
                assert!(outcome.latency >= timeout, "{what}: {outcome:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed() {
    // "Sends traffic only where the user points it": a 302 to another
    // server must not make the client go there. The second server counts
    // its connections; nothing points the client at it but the redirect.
    let (elsewhere, visits) = misbehaving(answer_ok);
    ELSEWHERE.set(elsewhere).unwrap();
    let (address, _) = misbehaving(redirect_elsewhere);
    let schedule = Schedule::fixed(10.0, Duration::from_millis(500)).unwrap();
    let outcomes = play_against(address, &schedule, Duration::from_secs(30)).await;
    assert_eq!(outcomes.len() as u64, schedule.requests());
    for outcome in &outcomes {
        assert_eq!(
            outcome.ending.error_kind().as_deref(),
            Some("HTTP 302"),
            "{outcome:?}"
        );
    }
    // Every answer has arrived, so any visit the redirect caused would
    // have been made by now.
    assert_eq!(visits.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// The /metrics scrape as untrusted input.
// ---------------------------------------------------------------------------

#[test]
fn a_gauge_that_is_not_a_count_does_not_poison_the_sum() {
    // Prometheus text allows NaN and infinities; a requests-in-flight
    // gauge is never negative. One bad series must not turn the service's
    // figure into NaN (which would then silence the cross-check warning).
    let text = "surgeguard_shed_inflight{shedder=\"a\"} 4\n\
                surgeguard_shed_inflight{shedder=\"b\"} NaN\n\
                surgeguard_shed_inflight{shedder=\"c\"} +Inf\n\
                surgeguard_shed_inflight{shedder=\"d\"} -3\n\
                surgeguard_shed_inflight{shedder=\"e\"} 2 1700000000000\n";
    assert_eq!(inflight_from_metrics(text), Some(6.0));
    assert_eq!(
        inflight_from_metrics("surgeguard_shed_inflight NaN\n"),
        None
    );
}

#[test]
fn malformed_metrics_text_gives_no_figure_and_no_panic() {
    for text in [
        "",
        "\n\n\n",
        "surgeguard_shed_inflight",
        "surgeguard_shed_inflight{",
        "surgeguard_shed_inflight{shedder=\"a\"",
        "surgeguard_shed_inflight{} ",
        "surgeguard_shed_inflight x",
        "surgeguard_shed_inflight_total 5",
        "# surgeguard_shed_inflight 5",
        "surgeguard_shed_inflight\u{0} 5",
        "surgeguard_shed_inflight 1e999999",
    ] {
        assert_eq!(inflight_from_metrics(text), None, "{text:?}");
    }
    // A label value may hold a brace.
    assert_eq!(
        inflight_from_metrics("surgeguard_shed_inflight{shedder=\"a}b\"} 3\n"),
        Some(3.0)
    );
    // A huge exposition is read in one pass without trouble.
    let big = "surgeguard_shed_inflight{shedder=\"x\"} 1\n".repeat(100_000);
    assert_eq!(inflight_from_metrics(&big), Some(100_000.0));
}

// ---------------------------------------------------------------------------
// Bad input.
// ---------------------------------------------------------------------------

#[test]
fn urls_that_are_not_plain_http_with_a_host_are_refused_and_ipv6_is_fine() {
    for url in [
        "http://127.0.0.1:70000/",
        "http://127.0.0.1:0/",
        "http://127.0.0.1:/",
        "http://[::1]:99999/",
        "http://user:pw@127.0.0.1:65536/",
        "http://127.0.0.1:-1/",
        "http://[::1/",
        "http://exa mple.com/",
        "http://\r\nhost/",
        "mailto:someone@example.com",
        "HTTPS://example.com/",
        "//127.0.0.1:8080/",
    ] {
        let error = Requests::new(&[(url, 1)]).unwrap_err();
        assert!(!error.to_string().is_empty(), "{url:?}");
    }
    assert!(matches!(
        Requests::new(&[("HTTPS://example.com/", 1)]),
        Err(TargetError::Https(_))
    ));
    let six = Requests::new(&[("http://[::1]:8080/x?y=1", 1)]).unwrap();
    assert_eq!(six.urls()[0].port_u16(), Some(8080));
    // Upper-case scheme is still http.
    assert!(Requests::new(&[("HTTP://127.0.0.1:8080/", 1)]).is_ok());
}

#[test]
fn headers_cannot_smuggle_a_second_header_or_request() {
    let ok = Requests::new(&[("http://127.0.0.1:8080/", 1)]).unwrap();
    for header in [
        "x-a: 1\r\nx-injected: 2",
        "x-a: 1\nx-injected: 2",
        "x-a: 1\r\n\r\nGET /admin HTTP/1.1",
        "x a: 1",
    ] {
        assert!(
            matches!(ok.clone().header(header), Err(TargetError::Header(_))),
            "{header:?}"
        );
    }
    assert!(matches!(ok.method("GET\r\n"), Err(TargetError::Method(_))));
}

#[test]
fn absurd_schedules_are_refused_not_run_and_never_panic() {
    let second = Duration::from_secs(1);
    for spec in [
        "nan", "NaN..100", "inf", "-inf", "1e309", "-5", "0..0", "0.000001", "100..nan", "1e7",
    ] {
        assert!(Schedule::parse(spec, 10, second).is_err(), "{spec:?}");
    }
    assert!(Schedule::parse("10..20", 0, second).is_err());
    assert!(Schedule::parse("10..20", u32::MAX, second).is_err());
    assert!(Schedule::parse("10", 10, Duration::MAX).is_err());
    assert!(Schedule::parse("10..20", 1_000, Duration::MAX).is_err());
    assert!(Schedule::parse("1000000", 1, Duration::from_nanos(1)).is_err());
    // A flat ramp is allowed: it goes nowhere, but not down.
    assert!(Schedule::parse("10..10", 2, second).is_ok());
    assert!(ClientSettings::new(usize::MAX, second).is_err());
    assert!(ClientSettings::new(1, Duration::MAX).is_err());
    assert!(LoadTest::new(
        Requests::new(&[("http://127.0.0.1:1/", 1)]).unwrap(),
        Schedule::fixed(1.0, second).unwrap(),
        ClientSettings::new(1, second).unwrap(),
    )
    .warmup(Duration::MAX)
    .is_err());
}

// ---------------------------------------------------------------------------
// The knee finder and the settings, on figures built by hand.
// ---------------------------------------------------------------------------

/// Outcomes of a server that answers every request with 200 after
/// `latency`, with room for any rate: it never tires.
fn tireless(schedule: &Schedule, latency: Duration) -> Vec<Outcome> {
    schedule
        .due_times()
        .map(|due| Outcome {
            due,
            send_lag: Duration::ZERO,
            latency,
            ending: Ending::Answered {
                status: StatusCode::OK,
                retry_after: false,
            },
        })
        .collect()
}

#[test]
fn a_healthy_service_slow_against_the_step_length_has_a_knee() {
    // 200 ms per answer, whatever the rate, on one-second steps: nothing
    // queues and every answer comes, so the ramp never fails. The answers
    // of a step's last fifth of a second arrive in the next step, and the
    // first step has no earlier step's answers arriving in it: a throughput
    // counted in the step's own window says the first step fell behind.
    let schedule = Schedule::ramp(100.0, 400.0, 4, Duration::from_secs(1)).unwrap();
    let figures = steps(&schedule, &tireless(&schedule, Duration::from_millis(200)));
    let knee = find_knee(&figures, LatencyBound::default());
    assert!(
        matches!(&knee, Ok(k) if k.beyond_tested),
        "{knee:?}: a service that never tires was called past its knee"
    );
    let knee = knee.unwrap();
    assert!(
        (knee.rate - 400.0).abs() < 1.0,
        "the capacity measured at the top: {knee:?}"
    );
}

#[test]
fn an_overloaded_step_is_still_caught_when_it_falls_behind() {
    // The same service capped at 250 answers a second: from the 300/s step
    // on, answers lag ever more. Built by hand: a first-come queue of
    // one server answering every 4 ms, on top of a 200 ms fixed latency.
    let schedule = Schedule::ramp(100.0, 400.0, 4, Duration::from_secs(1)).unwrap();
    let service = Duration::from_millis(4);
    let mut free = Duration::ZERO;
    let outcomes: Vec<Outcome> = schedule
        .due_times()
        .map(|due| {
            let start = free.max(due.at);
            free = start + service;
            Outcome {
                due,
                send_lag: Duration::ZERO,
                latency: free - due.at + Duration::from_millis(200),
                ending: Ending::Answered {
                    status: StatusCode::OK,
                    retry_after: false,
                },
            }
        })
        .collect();
    let knee = find_knee(&steps(&schedule, &outcomes), LatencyBound::default()).unwrap();
    assert_eq!(knee.step, 1, "{knee:?}");
    assert!(!knee.beyond_tested);
}

#[test]
fn adversarial_figures_give_an_answer_or_a_reason_never_a_panic() {
    let schedule = Schedule::ramp(10.0, 40.0, 4, Duration::from_secs(2)).unwrap();
    // Zero latency everywhere.
    let zero = steps(&schedule, &tireless(&schedule, Duration::ZERO));
    for bound in [
        LatencyBound::default(),
        LatencyBound::TimesBaseline(f64::NAN),
        LatencyBound::TimesBaseline(f64::INFINITY),
        LatencyBound::TimesBaseline(-1.0),
        LatencyBound::TimesBaseline(1e300),
        LatencyBound::Absolute(Duration::ZERO),
        LatencyBound::Absolute(Duration::MAX),
    ] {
        let _ = find_knee(&zero, bound);
        let slow = steps(&schedule, &tireless(&schedule, Duration::from_millis(20)));
        if let Ok(knee) = find_knee(&slow, bound) {
            check_recommendation_builds(&Recommendation::from_knee(&knee));
        }
    }
    // One step only.
    let one = Schedule::fixed(10.0, Duration::from_secs(2)).unwrap();
    let knee = find_knee(
        &steps(&one, &tireless(&one, Duration::from_millis(5))),
        LatencyBound::default(),
    )
    .unwrap();
    assert_eq!(knee.step, 0);
    // Every request an error.
    let mut failing = tireless(&schedule, Duration::from_millis(5));
    for outcome in &mut failing {
        outcome.ending = Ending::ConnectFailed;
    }
    assert!(matches!(
        find_knee(&steps(&schedule, &failing), LatencyBound::default()),
        Err(NoKnee::FromTheStart {
            failure: StepFailure::Errors(20),
            ..
        })
    ));
    // No outcomes at all.
    assert_eq!(
        find_knee(&steps(&schedule, &[]), LatencyBound::default()),
        Err(NoKnee::NoSteps)
    );
}

/// Builds what `rust_snippet` writes from `advice`, with the crate's
/// real builders: each call the snippet makes, with the figures it puts
/// in. The snippet's text is checked to hold the same figures.
fn check_recommendation_builds(advice: &Recommendation) {
    let wait = Duration::from_millis(advice.queue_max_wait.as_millis() as u64);
    let snippet = advice.rust_snippet();
    for figure in [
        format!(".max_concurrency({})", advice.max_concurrency),
        format!(
            ".queue({}, Duration::from_millis({}))",
            advice.queue_capacity,
            wait.as_millis()
        ),
        format!(
            "gradient().min({}).max({})",
            advice.gradient_min, advice.gradient_max
        ),
        format!(
            "Quota::per_second({})?.burst({})?",
            advice.global_rate, advice.global_burst
        ),
    ] {
        assert!(snippet.contains(&figure), "{figure} not in\n{snippet}");
    }
    let capacity = advice.queue_capacity as usize;
    Shedder::builder()
        .max_concurrency(advice.max_concurrency)
        .queue(capacity, wait)
        .build()
        .unwrap_or_else(|e| panic!("the fixed shedder of {advice:?} does not build: {e}"));
    Shedder::builder()
        .limit(
            AdaptiveLimit::gradient()
                .min(advice.gradient_min)
                .max(advice.gradient_max),
        )
        .queue(capacity, wait)
        .build()
        .unwrap_or_else(|e| panic!("the adaptive shedder of {advice:?} does not build: {e}"));
    let quota = Quota::per_second(advice.global_rate)
        .and_then(|q| q.burst(advice.global_burst))
        .unwrap_or_else(|e| panic!("the quota of {advice:?} is refused: {e}"));
    Gcra::direct(quota)
        .build()
        .unwrap_or_else(|e| panic!("the limiter of {advice:?} does not build: {e}"));
}

fn knee(rate: f64, in_flight: f64, mean: Duration, p99: Duration, bound: Duration) -> Knee {
    Knee {
        step: 3,
        target_rate: rate,
        rate,
        p99,
        mean,
        in_flight,
        baseline_p99: p99 / 2,
        baseline_mean: mean / 2,
        bound,
        beyond_tested: false,
        first_failure: None,
    }
}

#[test]
fn every_shape_of_recommendation_builds_with_the_crates_own_builders() {
    let ms = Duration::from_millis;
    for k in [
        // Ordinary.
        knee(380.0, 8.4, ms(22), ms(28), ms(42)),
        // Tiny: under one request in flight, sub-millisecond latency.
        knee(
            0.5,
            0.000_01,
            Duration::from_micros(20),
            Duration::from_micros(30),
            Duration::from_micros(40),
        ),
        // The top of what a schedule allows, at the longest timeout.
        knee(
            1e6,
            6e7,
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(60),
        ),
        // A p99 bound of two hours (`--p99-bound 2h` on the command line).
        knee(100.0, 10.0, ms(100), ms(200), Duration::from_secs(7_200)),
        // A bound the knee itself sits on: no headroom.
        knee(100.0, 10.0, ms(100), ms(200), ms(100)),
        // Figures out of range for a u32, from a hand-built knee.
        knee(1e12, 1e12, Duration::from_secs(1), ms(2), ms(4)),
        // Not numbers at all.
        knee(f64::NAN, f64::NAN, ms(1), ms(2), ms(4)),
    ] {
        check_recommendation_builds(&Recommendation::from_knee(&k));
    }
}

#[tokio::test]
async fn a_run_against_a_server_that_answers_some_requests_accounts_for_all() {
    // Half the connections are answered, half are held silent: whichever
    // a request meets, it ends once, and the total is the schedule's.
    fn flaky(socket: TcpStream) {
        static TURN: AtomicU64 = AtomicU64::new(0);
        if TURN.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            answer_ok(socket)
        } else {
            never_send_headers(socket)
        }
    }
    let (address, accepted) = misbehaving(flaky);
    let schedule = Schedule::fixed(40.0, Duration::from_millis(500)).unwrap();
    let timeout = Duration::from_millis(300);
    let outcomes = play_against(address, &schedule, timeout).await;
    assert_eq!(outcomes.len() as u64, schedule.requests());
    let mut indexes: Vec<u64> = outcomes.iter().map(|o| o.due.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len() as u64, schedule.requests());
    for outcome in &outcomes {
        assert!(
            outcome.ending.is_success() || outcome.ending == Ending::TimedOut,
            "{outcome:?}"
        );
        if outcome.ending == Ending::TimedOut {
            assert!(outcome.latency >= timeout);
        }
    }
    assert!(accepted.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn the_check_before_the_run_does_not_hold_a_huge_body_either() {
    // As for the run: the check only needs to know the URL answers, and a
    // check that keeps the body holds all 64 MiB at its end, whatever the
    // timing.
    let (address, _) = misbehaving(huge_body);
    let test = LoadTest::new(
        Requests::new(&[(&format!("http://{address}/"), 1)]).unwrap(),
        Schedule::fixed(1.0, Duration::from_secs(1)).unwrap(),
        ClientSettings::new(1, Duration::from_secs(60)).unwrap(),
    );
    let (checked, peak) = peak_while(test.check()).await;
    checked.unwrap();
    assert!(
        peak < HUGE / 4,
        "the check held {} MiB at once for a 64 MiB body",
        peak >> 20
    );
}

#[tokio::test]
async fn a_calibration_longer_than_a_minute_is_refused_not_run_for_hours() {
    // Eight slices of the time given: eight hours would probe for hours,
    // and past about ten minutes a fast slice's schedule holds more than
    // a run may, so the probe failed only after the slower slices ran.
    // Refused before any probe, so this returns at once on any machine.
    let error = surgeguard::loadtest::client_capacity(1, Duration::from_secs(8 * 3_600))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("minute"), "{error}");
}

fn answer_slowly(mut socket: TcpStream) {
    while read_head(&mut socket) {
        std::thread::sleep(Duration::from_millis(100));
        if socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

#[tokio::test]
async fn waiting_for_the_clients_own_connection_cap_is_the_clients_lag() {
    // One connection, a server that takes 100 ms per answer, a request due
    // every 20 ms: the requests queue in the client for its one
    // connection. That wait is the client's, not the service's: it must
    // show in the send lag (which the report's "client sent late" warning
    // reads), or a too-small --connections passes for a slow service and
    // the settings printed are the client's cap. Lower bounds only: the
    // k-th request cannot get the connection before the k answers ahead of
    // it, 100 ms each, have come back.
    let (address, _) = misbehaving(answer_slowly);
    let requests = Requests::new(&[(&format!("http://{address}/"), 1)]).unwrap();
    let schedule = Schedule::fixed(50.0, Duration::from_millis(200)).unwrap();
    let outcomes = play(
        schedule.due_times(),
        |due: &Due| requests.request(due.index),
        &ClientSettings::new(1, Duration::from_secs(30)).unwrap(),
        Duration::from_secs(1),
        |_| {},
    )
    .await
    .outcomes;
    assert_eq!(outcomes.len(), 10);
    for outcome in &outcomes {
        let k = outcome.due.index as u32;
        let earliest_connection = Duration::from_millis(100) * k;
        assert!(
            outcome.send_lag + outcome.due.at >= earliest_connection,
            "{outcome:?}: the wait for the client's only connection is not in its send lag"
        );
        assert!(outcome.latency >= outcome.send_lag, "{outcome:?}");
    }
}

fn metrics_first_high_then_low(mut socket: TcpStream) {
    static SCRAPES: AtomicU64 = AtomicU64::new(0);
    while read_head(&mut socket) {
        // The first scrape is the sampler's first, made as the run (and so
        // its warm-up) starts; every later one reads 1.
        let value = if SCRAPES.fetch_add(1, Ordering::SeqCst) == 0 {
            1000
        } else {
            1
        };
        let body = format!("surgeguard_shed_inflight {value}\n");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if socket.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauge_samples_taken_during_the_warm_up_are_not_counted_in_the_first_step() {
    // The sampler reads the gauge as the run starts, inside a three-second
    // warm-up, and keeps a reading only if it came within 250 ms; that
    // first reading (1000) belongs to the warm-up, which is not measured.
    // Kept, it was stamped "0 s into the run" and averaged into the first
    // step. Only a reading that lands after the warm-up could be counted,
    // and the first one cannot (a 250 ms read, 3 s of warm-up).
    let (metrics, _) = misbehaving(metrics_first_high_then_low);
    let (service, _) = misbehaving(answer_ok);
    let test = LoadTest::new(
        Requests::new(&[(&format!("http://{service}/"), 1)]).unwrap(),
        Schedule::fixed(20.0, Duration::from_millis(500)).unwrap(),
        ClientSettings::new(4, Duration::from_secs(30)).unwrap(),
    )
    .warmup(Duration::from_secs(3))
    .unwrap()
    .metrics_url(&format!("http://{metrics}/metrics"))
    .unwrap();
    let run = test.run(|_| {}).await;
    assert!(
        run.gauge.iter().all(|&(_, value)| value == 1.0),
        "a warm-up reading was kept as part of the run: {:?}",
        run.gauge
    );
    if let Some(mean) = run.gauge_mean(0) {
        assert_eq!(mean, 1.0);
    }
}
