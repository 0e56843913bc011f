//! A scripted, counting origin behind the layer, in process.

#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use surgeguard::clock::ManualClock;
use surgeguard::http::{ResponseCacheBuilder, ResponseCacheLayer, ResponseCacheService};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

/// What the origin was asked.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

type Script = dyn Fn(&Seen, usize) -> Response<Full<Bytes>> + Send + Sync;

/// Answers each request by `script(request, call number from 1)`.
pub struct Origin {
    calls: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    script: Box<Script>,
}

impl Origin {
    pub fn new(
        script: impl Fn(&Seen, usize) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Arc<Origin> {
        Arc::new(Origin {
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            script: Box::new(script),
        })
    }

    /// Always the same answer, its body naming the call (`call 1`, ...).
    pub fn fixed(status: u16, headers: &'static [(&'static str, &'static str)]) -> Arc<Origin> {
        Origin::new(move |_, call| answer(status, headers, &format!("call {call}")))
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The `n`th request the origin was asked (from 1).
    pub fn request(&self, n: usize) -> Seen {
        self.seen.lock()[n - 1].clone()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().last().cloned().unwrap()
    }
}

/// A response with `status`, `headers` and `body`.
pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

pub type Inner = BoxCloneSyncService<Request<()>, Response<Full<Bytes>>, Infallible>;
pub type Cached = ResponseCacheService<Inner>;

/// The origin as a service.
pub fn inner(origin: &Arc<Origin>) -> Inner {
    let origin = Arc::clone(origin);
    BoxCloneSyncService::new(tower::service_fn(move |request: Request<()>| {
        let origin = Arc::clone(&origin);
        async move {
            let seen = Seen {
                method: request.method().clone(),
                uri: request.uri().to_string(),
                headers: request.headers().clone(),
            };
            let call = origin.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let response = (origin.script)(&seen, call);
            origin.seen.lock().push(seen);
            Ok::<_, Infallible>(response)
        }
    }))
}

/// A layer on `clock` with the defaults, shaped by `configure`.
pub fn layer_with(
    clock: &ManualClock,
    configure: impl FnOnce(ResponseCacheBuilder) -> ResponseCacheBuilder,
) -> ResponseCacheLayer {
    configure(ResponseCacheLayer::builder().clock(clock.clone()))
        .build()
        .unwrap()
}

/// The origin behind a default layer on `clock`.
pub fn cached(origin: &Arc<Origin>, clock: &ManualClock) -> Cached {
    layer_with(clock, |b| b).layer(inner(origin))
}

/// What a client got.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

pub async fn send(service: &Cached, method: &str, uri: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .header("host", "example.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = service
        .clone()
        .oneshot(request.body(()).unwrap())
        .await
        .unwrap();
    let (head, body) = response.into_parts();
    Got {
        status: head.status,
        headers: head.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(service: &Cached, uri: &str) -> Got {
    send(service, "GET", uri, &[]).await
}

pub fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `at` as an IMF-fixdate.
pub fn imf_fixdate(at: SystemTime) -> String {
    http_date(at, 0)
}

/// `at` in the obsolete RFC 850 format.
pub fn rfc850_date(at: SystemTime) -> String {
    http_date(at, 1)
}

/// `at` in C's asctime format.
pub fn asctime_date(at: SystemTime) -> String {
    http_date(at, 2)
}

/// `at` as an HTTP-date: 0 IMF-fixdate, 1 RFC 850, 2 asctime.
pub fn http_date(at: SystemTime, format: u8) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let long_day = DAYS[days.rem_euclid(7) as usize];
    let short_day = &long_day[..3];
    let month = MONTHS[(month - 1) as usize];
    let time = format!(
        "{:02}:{:02}:{:02}",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    );
    match format {
        0 => format!("{short_day}, {day:02} {month} {year:04} {time} GMT"),
        1 => format!("{long_day}, {day:02}-{month}-{:02} {time} GMT", year % 100),
        _ => format!("{short_day} {month} {day:>2} {time} {year:04}"),
    }
}

/// The system time `offset` seconds from now (negative: in the past), as
/// an IMF-fixdate.
pub fn date_from_now(offset: i64) -> String {
    let now = SystemTime::now();
    let at = if offset >= 0 {
        now + Duration::from_secs(offset as u64)
    } else {
        now - Duration::from_secs(offset.unsigned_abs())
    };
    imf_fixdate(at)
}

/// Year, month, day of days since 1970 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[test]
fn dates_format_as_imf_fixdate() {
    assert_eq!(
        imf_fixdate(UNIX_EPOCH + Duration::from_secs(784_111_777)),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(imf_fixdate(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    let nov_6 = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(rfc850_date(nov_6), "Sunday, 06-Nov-94 08:49:37 GMT");
    assert_eq!(asctime_date(nov_6), "Sun Nov  6 08:49:37 1994");
}
