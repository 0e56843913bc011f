//! One multiplexed connection per limiter, opened on first use and
//! reopened by the `redis` crate after a failure: its connection manager
//! for a single server, its cluster connection (which follows `MOVED` and
//! `ASK` and refreshes the slot map after a failover) for a Redis Cluster.
//!
//! Concurrent checks share the connection: it pipelines them, so 64
//! callers cost one connection (per node), not 64. The first connection is
//! made lazily, so a server can start (and decide with its fallback) while
//! Redis is down.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::OnceCell;

use super::scripts::Reply;

/// Why a call to Redis did not give a reply.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Unreachable, slow, or not serving: the fallback decides.
    Unavailable(String),
    /// Redis answered with an error that retrying will not fix.
    Refused(String),
}

/// Where the connection goes.
#[derive(Clone)]
pub(crate) enum Target {
    Server(redis::Client),
    /// A Redis Cluster, found from its seed nodes; `first` is a plain
    /// client of the first seed (pub/sub: a message published on any node
    /// of a cluster reaches subscribers on every node).
    Cluster {
        cluster: Box<ClusterClient>,
        first: redis::Client,
    },
}

impl Target {
    /// A single server at `url`.
    pub(crate) fn server(url: &str) -> Result<Self, RedisError> {
        Ok(Target::Server(redis::Client::open(url)?))
    }

    /// A cluster found from its `seeds`, each call bounded by `timeout`.
    pub(crate) fn cluster(seeds: &[String], timeout: Duration) -> Result<Self, RedisError> {
        let Some(first) = seeds.first() else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a cluster needs at least one seed URL",
            )));
        };
        let cluster = ClusterClient::builder(seeds.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .build()?;
        Ok(Target::Cluster {
            cluster: Box::new(cluster),
            first: redis::Client::open(first.as_str())?,
        })
    }
}

/// A live connection of either kind.
#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Server(link) => link.req_packed_command(cmd),
            Link::Cluster(link) => link.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Server(link) => link.req_packed_commands(cmd, offset, count),
            Link::Cluster(link) => link.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Server(link) => link.get_db(),
            Link::Cluster(link) => link.get_db(),
        }
    }
}

pub(crate) struct Connection {
    target: Target,
    link: OnceCell<Link>,
    timeout: Duration,
}

impl Connection {
    pub(crate) fn new(target: Target, timeout: Duration) -> Self {
        Connection {
            target,
            link: OnceCell::new(),
            timeout,
        }
    }

    /// Runs `script` on `key` with `args`, within the timeout (connecting
    /// included).
    pub(crate) async fn run(
        &self,
        script: &redis::Script,
        key: &str,
        args: [u64; 4],
    ) -> Result<Reply, Failure> {
        let call = async {
            let mut connection = self.connect().await?;
            let mut invocation = script.prepare_invoke();
            invocation.key(key);
            for arg in args {
                invocation.arg(arg);
            }
            invocation.invoke_async::<Vec<i64>>(&mut connection).await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(Failure::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
            Ok(Err(error)) => Err(classify(&error)),
            Ok(Ok(values)) => Reply::parse(&values)
                .ok_or_else(|| Failure::Refused(format!("unexpected script reply {values:?}"))),
        }
    }

    /// Runs a prepared script invocation within the timeout (connecting
    /// included), for callers whose replies are not a limiter's.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Failure> {
        let call = async {
            let mut connection = self.connect().await?;
            invocation.invoke_async::<T>(&mut connection).await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(Failure::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
            Ok(Err(error)) => Err(classify(&error)),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// A plain client, for connections of another kind (pub/sub).
    pub(crate) fn client(&self) -> &redis::Client {
        match &self.target {
            Target::Server(client) | Target::Cluster { first: client, .. } => client,
        }
    }

    /// The per-call timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Loads the scripts (and so connects), best effort: a limiter starts
    /// even if Redis is down.
    pub(crate) async fn warm_up(&self, scripts: &[&redis::Script]) {
        let load = async {
            let mut connection = self.connect().await?;
            for script in scripts {
                script.prepare_invoke().load_async(&mut connection).await?;
            }
            Ok::<(), RedisError>(())
        };
        let _ = tokio::time::timeout(self.timeout, load).await;
    }

    async fn connect(&self) -> Result<Link, RedisError> {
        let link = self
            .link
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Server(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(self.timeout)
                            .set_response_timeout(self.timeout)
                            .set_number_of_retries(1);
                        let manager =
                            ConnectionManager::new_with_config(client.clone(), config).await?;
                        Ok::<Link, RedisError>(Link::Server(manager))
                    }
                    Target::Cluster { cluster, .. } => {
                        Ok(Link::Cluster(cluster.get_async_connection().await?))
                    }
                }
            })
            .await?;
        Ok(link.clone())
    }
}

/// Errors that mean "Redis is not serving" fall back; errors Redis reports
/// about the script or the key do not (they would fail again).
fn classify(error: &RedisError) -> Failure {
    let refused = matches!(
        error.kind(),
        ErrorKind::ResponseError | ErrorKind::TypeError | ErrorKind::CrossSlot
    ) || error.code() == Some("WRONGTYPE");
    if refused && !error.is_io_error() {
        Failure::Refused(error.to_string())
    } else {
        Failure::Unavailable(error.to_string())
    }
}
