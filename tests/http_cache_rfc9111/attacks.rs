//! The layer as an attacker sees it: clients write every request header,
//! so none of them may poison what other clients get, wipe another
//! origin's entries, panic the layer or make it hang; and an unsafe request
//! that succeeded must not be undone by a load that was already running.
//!
//! None of these sleeps or times anything: the races are forced in order
//! with channels, and the clock is a `ManualClock`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use surgeguard::clock::ManualClock;
use tokio::sync::{mpsc, Semaphore};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use crate::origin::{answer, cached, get, layer_with, seconds, send, Cached, Inner, Origin};

/// An origin holding one versioned resource. A `GET` reads the version
/// when it arrives, says so on `started`, then waits for a permit of
/// `gate` before it answers what it read (so the test decides when an old
/// answer lands); a `POST` bumps the version and answers 204 at once.
/// A `GET` with `If-None-Match` for the version it reads gets a 304.
struct Versioned {
    version: Arc<AtomicUsize>,
    gets: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    started: mpsc::UnboundedReceiver<()>,
    service: Inner,
}

fn versioned(cache_control: &'static str) -> Versioned {
    let version = Arc::new(AtomicUsize::new(1));
    let gets = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (tell, started) = mpsc::unbounded_channel();
    let service = {
        let (version, gets, gate) = (Arc::clone(&version), Arc::clone(&gets), Arc::clone(&gate));
        BoxCloneSyncService::new(tower::service_fn(move |request: Request<()>| {
            let (version, gets, gate, tell) = (
                Arc::clone(&version),
                Arc::clone(&gets),
                Arc::clone(&gate),
                tell.clone(),
            );
            async move {
                if request.method() != Method::GET {
                    version.fetch_add(1, Ordering::SeqCst);
                    return Ok::<_, Infallible>(answer(204, &[], ""));
                }
                gets.fetch_add(1, Ordering::SeqCst);
                let read = version.load(Ordering::SeqCst);
                let etag = format!("\"v{read}\"");
                let _ = tell.send(());
                gate.acquire().await.unwrap().forget();
                let conditional = request
                    .headers()
                    .get("if-none-match")
                    .is_some_and(|value| value.as_bytes() == etag.as_bytes());
                let headers = [("cache-control", cache_control), ("etag", etag.as_str())];
                Ok(if conditional {
                    answer(304, &headers, "")
                } else {
                    answer(200, &headers, &format!("version {read}"))
                })
            }
        }))
    };
    Versioned {
        version,
        gets,
        gate,
        started,
        service,
    }
}

/// The gap the author reported in `invalidate.rs`: a `GET` load that read
/// the resource before a `POST` changed it, and answers after the `POST`
/// invalidated it, must not store its older answer (RFC 9111 §4.4: after
/// a successful unsafe request the stored response is no longer used).
///
/// Cannot flake: the `GET` is held inside the handler (it has read version
/// 1 and said so on `started`) until the `POST` has completed, and only
/// then let go; every step is awaited in that order.
#[tokio::test]
async fn s4_4_a_load_running_during_an_invalidation_does_not_store_its_older_answer() {
    let clock = ManualClock::new();
    let mut origin = versioned("max-age=600");
    let cache: Cached = layer_with(&clock, |b| b).layer(origin.service.clone());
    let first = tokio::spawn({
        let cache = cache.clone();
        async move { get(&cache, "/r").await.text().to_string() }
    });
    origin.started.recv().await.unwrap();
    let posted = send(&cache, "POST", "/r", &[]).await;
    assert_eq!(posted.status, 204);
    assert_eq!(origin.version.load(Ordering::SeqCst), 2);
    origin.gate.add_permits(1);
    // The GET that overlapped the POST may answer with what it read.
    assert_eq!(first.await.unwrap(), "version 1");
    // A GET that starts after the POST must not get the older answer.
    origin.gate.add_permits(1);
    assert_eq!(get(&cache, "/r").await.text(), "version 2");
    assert_eq!(origin.gets.load(Ordering::SeqCst), 2);
}

/// The same for a revalidation: a conditional request answered `304` for
/// the representation the `POST` then replaced must not put the stale
/// stored response back, freshened.
///
/// Cannot flake: as above, the conditional `GET` is held in the handler
/// until the `POST` has completed.
#[tokio::test]
async fn s4_4_a_revalidation_running_during_an_invalidation_does_not_restore_the_entry() {
    let clock = ManualClock::new();
    let mut origin = versioned("max-age=10");
    let cache: Cached = layer_with(&clock, |b| b).layer(origin.service.clone());
    origin.gate.add_permits(1);
    assert_eq!(get(&cache, "/r").await.text(), "version 1");
    origin.started.recv().await.unwrap();
    clock.advance(seconds(11));
    let revalidating = tokio::spawn({
        let cache = cache.clone();
        async move { get(&cache, "/r").await.text().to_string() }
    });
    origin.started.recv().await.unwrap();
    assert_eq!(send(&cache, "POST", "/r", &[]).await.status, 204);
    origin.gate.add_permits(1);
    assert_eq!(revalidating.await.unwrap(), "version 1");
    origin.gate.add_permits(1);
    assert_eq!(get(&cache, "/r").await.text(), "version 2");
}

/// A request with exactly the `Host` given (the shared helper always adds
/// `example.test`), answered as text.
async fn as_host(cache: &Cached, method: &str, uri: &str, host: &str) -> (u16, String) {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .header("host", host)
        .body(())
        .unwrap();
    let response = cache.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The `Host` a client sends is part of the key: an answer for one host is
/// never served for another, whatever its spelling.
#[tokio::test]
async fn host_variations_never_share_an_answer() {
    let clock = ManualClock::new();
    let origin = Origin::new(|seen, _| {
        let host = seen.header("host").unwrap_or("none").to_string();
        answer(200, &[("cache-control", "max-age=60")], &host)
    });
    let cache = cached(&origin, &clock);
    let hosts = [
        "example.test",
        "evil.test",
        "EXAMPLE.test",
        "example.test:80",
    ];
    for _ in 0..2 {
        for host in hosts {
            assert_eq!(as_host(&cache, "GET", "/r", host).await.1, host);
        }
    }
    assert_eq!(origin.calls(), hosts.len());
    // A request in absolute form for the victim, sent with the attacker's
    // Host, does not reach the victim's entry either way round.
    let absolute = as_host(&cache, "GET", "http://example.test/r", "evil.test").await;
    assert_eq!(absolute.1, "evil.test");
    assert_eq!(
        as_host(&cache, "GET", "/r", "example.test").await.1,
        "example.test"
    );
}

/// §4.4: a `POST` on the attacker's own host whose answer names the
/// victim's URI in `Location` and `Content-Location`, in any spelling,
/// does not invalidate the victim's entry.
#[tokio::test]
async fn cross_origin_locations_never_invalidate() {
    for location in [
        "http://example.test/r",
        "https://example.test/r",
        "//example.test/r",
        "http://evil.test@example.test/r",
        "HTTP://EXAMPLE.TEST/r",
        "http://example.test:80/r",
    ] {
        let clock = ManualClock::new();
        let origin = Origin::new(move |seen, call| {
            if seen.method == Method::GET {
                answer(
                    200,
                    &[("cache-control", "max-age=60")],
                    &format!("call {call}"),
                )
            } else {
                answer(
                    201,
                    &[("location", location), ("content-location", location)],
                    "",
                )
            }
        });
        let cache = cached(&origin, &clock);
        as_host(&cache, "GET", "/r", "example.test").await;
        assert_eq!(as_host(&cache, "POST", "/x", "evil.test").await.0, 201);
        let again = as_host(&cache, "GET", "/r", "example.test").await;
        assert_eq!(again.1, "call 1", "{location}");
    }
}

/// A flood of successful `POST`s to other URIs, each naming a fresh
/// `Location`, invalidates none of the entries it does not name, answers
/// every request, and leaves nothing behind in storage.
#[tokio::test]
async fn a_post_flood_to_other_uris_leaves_a_stored_entry_alone() {
    let clock = ManualClock::new();
    let origin = Origin::new(|seen, call| {
        if seen.method == Method::GET {
            answer(
                200,
                &[("cache-control", "max-age=600")],
                &format!("call {call}"),
            )
        } else {
            let location = format!("/made/{call}");
            answer(201, &[("location", location.as_str())], "")
        }
    });
    let layer = layer_with(&clock, |b| b);
    let cache = layer.layer(crate::origin::inner(&origin));
    assert_eq!(get(&cache, "/keep").await.text(), "call 1");
    for n in 0..2_000 {
        let uri = format!("/post/{n}");
        assert_eq!(send(&cache, "POST", &uri, &[]).await.status, 201);
    }
    assert_eq!(get(&cache, "/keep").await.text(), "call 1");
    assert_eq!(origin.calls(), 2_001);
}

/// Huge and malformed values in every field the layer reads, on requests
/// and on responses: each is answered, none panics or hangs, and none is
/// served from storage in a way it did not ask for.
#[tokio::test]
async fn huge_and_malformed_header_values_are_answered_without_panic() {
    let huge_list = "\"x\", ".repeat(20_000);
    let huge_cc = format!("{}max-age=60", "a=\"b,c\", ".repeat(10_000));
    let huge_vary = (0..2_000)
        .map(|n| format!("x-v{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let response_fields: Vec<Vec<(String, Vec<u8>)>> = vec![
        vec![("cache-control".into(), huge_cc.clone().into_bytes())],
        vec![("cache-control".into(), b"max-age=60\xff\xfe".to_vec())],
        vec![
            ("cache-control".into(), b"max-age=60".to_vec()),
            ("age".into(), b"99999999999999999999999999".to_vec()),
        ],
        vec![
            ("cache-control".into(), b"max-age=60".to_vec()),
            ("date".into(), b"\xff\xff Nov 1994".to_vec()),
            ("expires".into(), b"\x80".to_vec()),
            (
                "last-modified".into(),
                b"Sun, 06 Nov 1994 08:49:37 \xff".to_vec(),
            ),
        ],
        vec![
            ("cache-control".into(), b"max-age=60".to_vec()),
            ("vary".into(), huge_vary.clone().into_bytes()),
        ],
        vec![
            ("cache-control".into(), b"max-age=60".to_vec()),
            ("vary".into(), b"\xff".to_vec()),
        ],
        vec![
            ("cache-control".into(), b"max-age=60".to_vec()),
            ("connection".into(), huge_list.clone().into_bytes()),
        ],
        vec![
            ("cache-control".into(), b"max-age=60, no-cache=\"".to_vec()),
            ("etag".into(), b"\"unterminated".to_vec()),
        ],
        vec![(
            "cache-control".into(),
            b"max-age=60, private=\"a,,,,b,\xc3\xa9\"".to_vec(),
        )],
    ];
    let requests: Vec<Vec<(&str, Vec<u8>)>> = vec![
        vec![],
        vec![("if-none-match", huge_list.clone().into_bytes())],
        vec![("if-none-match", b"\xff\"a\"".to_vec())],
        vec![(
            "if-modified-since",
            b"Sun, 06 Nov 1994 08:49:37 GMT\xff".to_vec(),
        )],
        vec![("range", b"bytes=0-18446744073709551615".to_vec())],
        vec![("range", b"bytes=18446744073709551616-".to_vec())],
        vec![("range", b"bytes=--1".to_vec())],
        vec![("range", b"bytes=-99999999999999999999".to_vec())],
        vec![(
            "range",
            format!("bytes={}", "0-1,".repeat(5_000)).into_bytes(),
        )],
        vec![
            ("range", b"bytes=0-1".to_vec()),
            ("if-range", b"\xff".to_vec()),
        ],
        vec![("cache-control", huge_cc.clone().into_bytes())],
        vec![(
            "cache-control",
            b"max-stale=-1, min-fresh=99999999999999999999999".to_vec(),
        )],
        vec![("cache-control", b"\xff".to_vec())],
        vec![("x-v7", vec![b'a'; 60_000])],
    ];
    for fields in response_fields {
        let clock = ManualClock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let inner: Inner = {
            let calls = Arc::clone(&calls);
            BoxCloneSyncService::new(tower::service_fn(move |_: Request<()>| {
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let mut response = Response::new(Full::new(Bytes::from(format!("call {call}"))));
                for (name, value) in &fields {
                    response.headers_mut().append(
                        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        HeaderValue::from_bytes(value).unwrap(),
                    );
                }
                async move { Ok::<_, Infallible>(response) }
            }))
        };
        let cache: Cached = layer_with(&clock, |b| b).layer(inner);
        for headers in &requests {
            let mut request = Request::get("/r").header("host", "example.test");
            for (name, value) in headers {
                request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
            }
            let response = cache
                .clone()
                .oneshot(request.body(()).unwrap())
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                matches!(status, 200 | 206 | 304 | 416),
                "{status} for {headers:?}"
            );
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(body.len() <= "call 9999".len());
        }
    }
}

/// A request line can carry a URI far longer than any header; keying and
/// invalidating it stay bounded and answer.
#[tokio::test]
async fn huge_uris_are_keyed_and_invalidated() {
    let clock = ManualClock::new();
    let origin = Origin::new(|seen, call| {
        if seen.method == Method::GET {
            answer(
                200,
                &[("cache-control", "max-age=60")],
                &format!("call {call}"),
            )
        } else {
            let relative = "../".repeat(10_000);
            answer(204, &[("content-location", relative.as_str())], "")
        }
    });
    let cache = cached(&origin, &clock);
    let uri = format!("/{}?{}", "a/".repeat(20_000), "q=1&".repeat(5_000));
    assert_eq!(get(&cache, &uri).await.text(), "call 1");
    assert_eq!(get(&cache, &uri).await.text(), "call 1");
    assert_eq!(send(&cache, "POST", &uri, &[]).await.status, 204);
    assert_eq!(get(&cache, &uri).await.text(), "call 3");
}

/// A storm of conditional and range requests on a stale entry still makes
/// one conditional request upstream, and every client gets an answer to
/// its own conditions, not the leader's.
///
/// Cannot flake: every request is started before the one upstream call is
/// let go (each joins the revalidation or, started after it, finds the
/// freshened entry); the assertions hold in either case.
#[tokio::test]
async fn a_storm_of_mixed_conditions_gets_each_its_own_answer() {
    let clock = ManualClock::new();
    let mut origin = versioned("max-age=10");
    let cache: Cached = layer_with(&clock, |b| b).layer(origin.service.clone());
    origin.gate.add_permits(1);
    get(&cache, "/r").await;
    origin.started.recv().await.unwrap();
    clock.advance(seconds(11));
    let asks: Vec<Vec<(&'static str, &'static str)>> = vec![
        vec![("if-none-match", "\"v1\"")],
        vec![("range", "bytes=0-2")],
        vec![],
        vec![("if-none-match", "\"other\"")],
        vec![("range", "bytes=-3")],
    ];
    let seen: Arc<Mutex<Vec<(usize, u16, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (n, headers) in asks.iter().cloned().enumerate() {
        let (cache, seen) = (cache.clone(), Arc::clone(&seen));
        tasks.push(tokio::spawn(async move {
            let got = send(&cache, "GET", "/r", &headers).await;
            seen.lock()
                .push((n, got.status.as_u16(), got.text().to_string()));
        }));
    }
    origin.started.recv().await.unwrap();
    origin.gate.add_permits(100);
    for task in tasks {
        task.await.unwrap();
    }
    let mut seen = seen.lock().clone();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (0, 304, String::new()),
            (1, 206, "ver".to_string()),
            (2, 200, "version 1".to_string()),
            (3, 200, "version 1".to_string()),
            (4, 206, "n 1".to_string()),
        ]
    );
}
