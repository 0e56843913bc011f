//! A private Redis Cluster per test: six `redis-server`s on free loopback
//! ports (three masters, three replicas), joined with
//! `redis-cli --cluster create`, in a temporary directory of their own.
//!
//! Without `redis-server` or `redis-cli` the tests print a SKIP line and
//! pass, except under `CI=true`, where that is a failure (`.ci/run`
//! installs both).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A running cluster; every node is killed and the directory removed when
/// dropped.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    dir: PathBuf,
}

fn installed(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Starts a cluster, or returns `None` (after a SKIP line) when the
/// binaries are missing outside CI.
pub fn start(test: &str) -> Option<RedisCluster> {
    if !installed("redis-server") || !installed("redis-cli") {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: redis-server and redis-cli are required under CI=true (apt-get install redis-server redis-tools)");
        }
        eprintln!("SKIP {test}: redis-server or redis-cli not found; install them (apt-get install redis-server redis-tools) to run the Redis Cluster tests");
        return None;
    }
    // A free port can be taken by another test's server between being
    // found and being bound: start over on fresh ports, a few times.
    let mut failures = Vec::new();
    for _ in 0..3 {
        match try_start() {
            Ok(cluster) => return Some(cluster),
            Err(why) => failures.push(why),
        }
    }
    panic!("{test}: no cluster after three attempts: {failures:#?}");
}

fn try_start() -> Result<RedisCluster, String> {
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let dir = std::env::temp_dir().join(format!(
        "surgeguard-cluster-{}-{}",
        std::process::id(),
        ports[0]
    ));
    std::fs::create_dir_all(&dir).expect("a directory for the cluster");
    let mut cluster = RedisCluster {
        nodes: Vec::new(),
        ports: ports.clone(),
        dir,
    };
    for &port in &ports {
        // The cluster bus listens on its own free port (the default,
        // port + 10,000, may be taken or past 65,535).
        let bus = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-port", &bus.to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            // A master that stops answering for 1 s is failed over.
            .args(["--cluster-node-timeout", "1000"])
            // Replicas sync at once (the default waits 5 s for more of
            // them), so a test's writes reach them before any failover.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&cluster.dir)
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        cluster.nodes.push(Some(child));
    }
    for &port in &ports {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("node {port} did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for port in &ports {
        create.arg(format!("127.0.0.1:{port}"));
    }
    let out = create
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .expect("redis-cli runs");
    if !out.status.success() {
        return Err(format!(
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    cluster.wait_until_ok();
    Ok(cluster)
}

/// Polls `ready` every 20 ms for at most 60 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

impl RedisCluster {
    /// Seed URLs: every node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect()
    }

    fn alive(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, node)| node.is_some())
            .map(|(port, _)| *port)
    }

    /// Waits until every live node reports `cluster_state:ok` and three
    /// live masters hold all slots.
    pub fn wait_until_ok(&self) {
        wait_for("the cluster to be ok", || {
            self.alive()
                .all(|port| cli(port, &["cluster", "info"]).contains("cluster_state:ok"))
                && self.masters().len() == 3
        });
    }

    /// The live nodes that are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.alive()
            .filter(|port| cli(*port, &["role"]).lines().next() == Some("master"))
            .collect()
    }

    /// Keys held by the node on `port`.
    pub fn keys_on(&self, port: u16) -> u64 {
        cli(port, &["dbsize"]).trim().parse().unwrap_or(0)
    }

    /// The master serving `key`'s slot now.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.ports[0], &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number");
        for port in self.masters() {
            // A master's own line in `CLUSTER NODES` (marked `myself`)
            // lists its slot ranges from the ninth field on.
            let nodes = cli(port, &["cluster", "nodes"]);
            let own = nodes.lines().find(|line| line.contains("myself"));
            if let Some(own) = own {
                for range in own.split_whitespace().skip(8) {
                    let (start, end) = match range.split_once('-') {
                        Some((a, b)) => (a.parse().ok(), b.parse().ok()),
                        None => (range.parse().ok(), range.parse().ok()),
                    };
                    if let (Some(start), Some(end)) = (start, end) {
                        if (start..=end).contains(&slot) {
                            return port;
                        }
                    }
                }
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Waits until every master's replicas have acknowledged all of its
    /// writes. (`WAIT` from a new connection would not do: it waits for
    /// that connection's own writes, and it made none.)
    pub fn replicate(&self) {
        wait_for("the replicas to catch up", || {
            self.masters().into_iter().all(|port| {
                let info = cli(port, &["info", "replication"]);
                let field = |name: &str| {
                    info.lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(|value| value.trim().to_owned())
                };
                let Some(offset) = field("master_repl_offset:") else {
                    return false;
                };
                let replicas: Vec<&str> = info
                    .lines()
                    .filter(|line| line.starts_with("slave") && line.contains("offset="))
                    .collect();
                !replicas.is_empty()
                    && replicas.iter().all(|line| {
                        line.contains("state=online") && line.contains(&format!("offset={offset},"))
                    })
            })
        });
    }

    /// Kills the node on `port`, as a crash would (only processes this
    /// cluster started).
    pub fn kill(&mut self, port: u16) {
        let index = self
            .ports
            .iter()
            .position(|p| *p == port)
            .expect("a node of this cluster");
        if let Some(mut child) = self.nodes[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            let mut node = node;
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
