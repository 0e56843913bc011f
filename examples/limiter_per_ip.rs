//! A per-client-IP rate limit with a global cap, answering as an HTTP server
//! would: `200` with `RateLimit` headers, or `429` with `Retry-After`.
//!
//! * 5 requests per second per IP, bursts of 10; at most 100,000 addresses
//!   tracked (about 2.5 MB), whatever arrives.
//! * 50 per second for the whole service.
//! * `AllOf` takes from both or from neither, so a client refused by the
//!   global cap keeps its own allowance.
//!
//! The clock is a `ManualClock` so the run is reproducible; a server would
//! leave the default `SystemClock`.
//!
//! Run: `cargo run --example limiter_per_ip`.

use std::error::Error;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use surgeguard::clock::ManualClock;
use surgeguard::limit::{AllOf, Decision, Gcra, Quota, WhenFull};

struct Request {
    client: IpAddr,
}

/// The status line and headers a server would send for `decision`
/// (draft-ietf-httpapi-ratelimit-headers, and RFC 9110's `Retry-After` in
/// whole seconds, rounded up).
fn response(decision: &Decision) -> String {
    let policy = format!(
        "RateLimit-Policy: \"default\";q={};w={}",
        decision.limit(),
        decision.policy_window().as_secs_f64().ceil()
    );
    let state = format!(
        "RateLimit: \"default\";r={};t={}",
        decision.remaining(),
        decision.reset_after().as_secs_f64().ceil()
    );
    match decision.retry_after() {
        None => format!("200 OK | {policy} | {state}"),
        Some(wait) => format!(
            "429 Too Many Requests | Retry-After: {} | {policy} | {state}",
            wait.as_secs_f64().ceil()
        ),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let clock = ManualClock::new();
    let per_ip = Arc::new(
        Gcra::keyed(Quota::per_second(5)?.burst(10)?)
            .max_keys(100_000)
            .when_full(WhenFull::DenyNewKeys)
            .clock(clock.clone())
            .build()?,
    );
    let global = Gcra::direct(Quota::per_second(50)?)
        .clock(clock.clone())
        .build()?;
    let limits = AllOf::new(per_ip.clone(), |request: &Request| request.client)
        .and(global, |_: &Request| ());

    let greedy = Request {
        client: "203.0.113.9".parse()?,
    };
    let polite = Request {
        client: "198.51.100.20".parse()?,
    };

    println!("A greedy client sends 12 requests at once:");
    for n in 1..=12 {
        println!("  #{n:>2} {}", response(&limits.check(&greedy)));
    }
    clock.advance(Duration::from_millis(400));
    println!("400 ms later it has earned two more:");
    for n in 13..=15 {
        println!("  #{n:>2} {}", response(&limits.check(&greedy)));
    }
    println!("A polite client is unaffected:");
    println!("      {}", response(&limits.check(&polite)));
    println!("Addresses tracked: {}", per_ip.tracked_keys());
    Ok(())
}
