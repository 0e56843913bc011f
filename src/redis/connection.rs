//! One multiplexed connection per limiter, opened on first use and
//! reopened by the `redis` crate's connection manager after a failure.
//!
//! Concurrent checks share the connection: the manager pipelines them over
//! one socket, so 64 callers cost one connection, not 64. The first
//! connection is made lazily, so a server can start (and decide with its
//! fallback) while Redis is down.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};
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

pub(crate) struct Connection {
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
    timeout: Duration,
}

impl Connection {
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> Self {
        Connection {
            client,
            manager: OnceCell::new(),
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

    /// The client, for connections of another kind (pub/sub).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
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

    async fn connect(&self) -> Result<ConnectionManager, RedisError> {
        let manager = self
            .manager
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await?;
        Ok(manager.clone())
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
