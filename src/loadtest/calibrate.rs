//! The client measured against itself: how many requests a second it can
//! send on this machine, so the report can say when a target rate is
//! beyond it rather than pass the client's own queueing off as the
//! server's latency.
//!
//! The measurement plays the same open-loop client against a server in
//! this process that answers every request at once from a fixed buffer,
//! on loopback, at doubling rates, each for a slice of the time given,
//! until the answers fall behind what was asked: the best rate answered is
//! the client's ceiling (the server's share of the machine included, as it
//! would be for a service on the same machine). Doubling rather than
//! flooding keeps the requests waiting in the client to one slice's worth,
//! so the probe costs little memory.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::client::{play, ClientSettings};
use super::schedule::Schedule;

/// The first rate probed, requests per second; each slice doubles it.
const FIRST_RATE: f64 = 1_000.0;
/// Slices of the time given: rates from 1,000 to 128,000 a second.
const SLICES: u32 = 8;
/// A slice answered below this share of its rate has found the ceiling.
const KEEPING_UP: f64 = 0.9;
/// The longest probe accepted: the run it precedes is bounded, and so is
/// it (and a slice of more than a minute at the top rate would hold more
/// requests than a schedule may).
const MAX_PROBE: Duration = Duration::from_secs(60);
/// Its answer, whole.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// The highest rate, requests per second, this client answers against a
/// server that answers at once, with `connections` connections, probed
/// for about `duration` (at least 100 ms per rate; the answers of the last
/// slice may take longer to come). A `duration` over a minute is refused
/// (`InvalidInput`).
pub async fn client_capacity(connections: usize, duration: Duration) -> std::io::Result<f64> {
    if duration > MAX_PROBE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a calibration of {duration:?} is over a minute"),
        ));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_at_once(socket));
        }
    });
    let settings =
        ClientSettings::new(connections, Duration::from_secs(60)).map_err(std::io::Error::other)?;
    let uri: http::Uri = format!("http://{address}/")
        .parse()
        .map_err(std::io::Error::other)?;
    let slice = (duration / SLICES).max(Duration::from_millis(100));
    let mut best: f64 = 0.0;
    let mut rate = FIRST_RATE;
    for _ in 0..SLICES {
        let schedule = Schedule::fixed(rate, slice).map_err(std::io::Error::other)?;
        let played = play(
            schedule.due_times(),
            |_| {
                let mut request = Request::new(Full::new(Bytes::new()));
                *request.uri_mut() = uri.clone();
                request
            },
            &settings,
            Duration::from_secs(1),
            |_| {},
        )
        .await;
        let answered = played
            .outcomes
            .iter()
            .filter(|o| o.ending.is_success())
            .count();
        let span = played
            .outcomes
            .iter()
            .map(|o| o.finished_at())
            .max()
            .unwrap_or_default()
            .max(slice);
        let achieved = answered as f64 / span.as_secs_f64();
        best = best.max(achieved);
        if achieved < KEEPING_UP * rate {
            break;
        }
        rate *= 2.0;
    }
    server.abort();
    Ok(best)
}

/// Answers each request on the connection as soon as its head has arrived
/// (the calibration sends no bodies).
async fn answer_at_once(mut socket: tokio::net::TcpStream) {
    let _ = socket.set_nodelay(true);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut pending = Vec::new();
    loop {
        let Ok(read) = socket.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        pending.extend_from_slice(&buffer[..read]);
        let mut answers = 0;
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            answers += 1;
        }
        for _ in 0..answers {
            if socket.write_all(ANSWER).await.is_err() {
                return;
            }
        }
    }
}
