//! The service's own view: `surgeguard_shed_inflight` from its `/metrics`
//! (Prometheus text), sampled while the test runs, to cross-check Little's
//! law at the knee. Only the URL the user names is read.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::{interval, timeout, Instant, MissedTickBehavior};

/// The gauge read.
pub const INFLIGHT_GAUGE: &str = "surgeguard_shed_inflight";

/// The most of a `/metrics` answer read; a longer one is skipped. Far
/// more than a service's own exposition, so only a runaway is refused.
const MAX_METRICS_BYTES: usize = 8 << 20;

/// The sum of `surgeguard_shed_inflight` over every shedder in a
/// Prometheus text exposition; `None` if it has none. A value that cannot
/// be a count of requests (NaN, infinite, negative) is skipped: it would
/// make the sum meaningless.
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
            after_labels(labelled)
        } else if rest.starts_with([' ', '\t']) {
            Some(rest)
        } else {
            None
        };
        let value = value
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0);
        if let Some(value) = value {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// What follows the closing brace of a label set (`text` starts just after
/// the opening one); a brace inside a quoted label value does not close it.
fn after_labels(text: &str) -> Option<&str> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(&text[at + 1..]),
            _ => {}
        }
    }
    None
}

/// One reading of the gauge at `url`: `None` if the service does not
/// answer 2xx, answers more than [`MAX_METRICS_BYTES`], or has no gauge.
async fn read_gauge(client: &Client<HttpConnector, Empty<Bytes>>, url: &Uri) -> Option<f64> {
    let response = client.get(url.clone()).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = Limited::new(response.into_body(), MAX_METRICS_BYTES)
        .collect()
        .await
        .ok()?
        .to_bytes();
    inflight_from_metrics(std::str::from_utf8(&body).ok()?)
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
        if let Ok(Some(value)) = timeout(every, read_gauge(&client, &url)).await {
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now().into_std(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one connection on 127.0.0.1: the gauge on its first line,
    /// then `padding` bytes of comments.
    async fn metrics_server(padding: usize) -> Uri {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = socket.read(&mut head).await;
            let gauge = b"surgeguard_shed_inflight 3\n";
            let length = gauge.len() + padding;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(gauge).await;
            let comment = [b'#'; 64 * 1024];
            let mut left = padding;
            while left > 0 {
                let n = left.min(comment.len());
                if socket.write_all(&comment[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        });
        format!("http://{address}/metrics").parse().unwrap()
    }

    #[tokio::test]
    async fn a_metrics_answer_over_the_cap_is_skipped_not_buffered() {
        // No timeout here: whatever the machine's speed, the reading either
        // stops at the cap or takes in the whole answer.
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let small = metrics_server(10).await;
        assert_eq!(read_gauge(&client, &small).await, Some(3.0));
        let huge = metrics_server(4 * MAX_METRICS_BYTES).await;
        assert_eq!(read_gauge(&client, &huge).await, None);
    }
}
