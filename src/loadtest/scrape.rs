//! The service's own view: `surgeguard_shed_inflight` from its `/metrics`
//! (Prometheus text), sampled while the test runs, to cross-check Little's
//! law at the knee. Only the URL the user names is read.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::{interval, timeout, Instant, MissedTickBehavior};

/// The gauge read.
pub const INFLIGHT_GAUGE: &str = "surgeguard_shed_inflight";

/// The sum of `surgeguard_shed_inflight` over every shedder in a
/// Prometheus text exposition; `None` if it has none.
///
/// ```
/// use surgeguard::loadtest::inflight_from_metrics;
///
/// let text = "# TYPE surgeguard_shed_inflight gauge\n\
///             surgeguard_shed_inflight{shedder=\"db\"} 7\n\
///             surgeguard_shed_inflight_other 99\n\
///             surgeguard_shed_inflight{shedder=\"search\"} 2.5\n";
/// assert_eq!(inflight_from_metrics(text), Some(9.5));
/// assert_eq!(inflight_from_metrics("up 1\n"), None);
/// ```
pub fn inflight_from_metrics(text: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(INFLIGHT_GAUGE) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(value) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// Reads the gauge from `url` every `every` until dropped, pushing
/// `(when, value)`; a sample that fails or takes over `every` is skipped.
pub(crate) async fn sample(
    url: Uri,
    every: Duration,
    into: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, f64)>>>,
) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut ticks = interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let read = async {
            let response = client.get(url.clone()).await.ok()?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            inflight_from_metrics(std::str::from_utf8(&body).ok()?)
        };
        if let Ok(Some(value)) = timeout(every, read).await {
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now().into_std(), value));
        }
    }
}
