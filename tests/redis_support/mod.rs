//! A private `redis-server` per test, on a free loopback port.
//!
//! When `redis-server` is not installed the tests print a clear SKIP line
//! and pass, except under `CI=true`, where a missing server is a failure
//! (`.ci/run` installs it).

#![allow(dead_code)]

pub mod cluster;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// Starts a server, or returns `None` (after a SKIP line) when
/// `redis-server` is missing outside CI.
pub fn start(test: &str) -> Option<RedisServer> {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: redis-server is required under CI=true (apt-get install redis-server)");
        }
        eprintln!("SKIP {test}: redis-server not found; install it (apt-get install redis-server) to run the Redis tests");
        return None;
    }
    let port = free_port();
    let mut server = RedisServer { port, child: None };
    server.restart();
    Some(server)
}

/// A port nothing listens on (for "Redis is down from the start").
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port; waits until it accepts
    /// connections (at most 10 s).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A plain connection for setting up and inspecting state.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
