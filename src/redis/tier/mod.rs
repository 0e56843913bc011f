//! Redis as the shared tier of a [`TieredCache`](crate::cache::TieredCache):
//! values, leases and the invalidation backplane (the layout is on
//! [`RedisTier`]).

mod backplane;
mod scripts;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::Value;

use super::breaker::{Admit, Breaker, Transition};
use super::builder::{check_failure_policy, Nodes};
use super::connection::{Connection, Failure};
use super::BuildError;
use crate::cache::tier::{
    Fetch, FetchRequest, InvalidationListener, LeaseToken, RemoteTier, TierError, TierFuture,
};
use crate::clock::{Clock, SystemClock};

/// The shared tier of a [`TieredCache`](crate::cache::TieredCache) in
/// Redis: values, leases and the invalidation backplane.
///
/// ```text
///   fetch / fill / release / store / remove ─► breaker (closed?) ─► EVALSHA, one round trip
///                                                 └─ open / failed ─► TierError::Unavailable
///   subscribe ─► one pub/sub connection on `prefix` + "invalidations"
/// ```
///
/// * **Keys**: a key's value is `prefix{=KEY}v` (a hash: the bytes and the
///   time Redis wrote them), its lease `prefix{=KEY}l` (a string holding
///   the holder's token, with an expiry). The shared hash tag puts both in
///   one slot of a Redis Cluster whatever bytes the key holds, so no
///   script ever answers `CROSSSLOT`.
/// * **Failure policy** as in the limiters: a per-call timeout (connecting
///   included), a circuit breaker so a dead Redis costs nothing per
///   request once it has opened, recovery by one probe per cool-down.
/// * **The backplane** is Redis pub/sub, which delivers at most once: each
///   time the subscription is made (the first time included), the cache
///   drops its local tier, as it may have missed news.
/// * **One tier per cache**, usually. Several caches built on one tier
///   (through an `Arc`) share its keys and each keeps its own
///   subscription; as their writes carry the same instance id, each then
///   hears every write made through the tier, its own included. The tier
///   holds each cache's listener weakly: a dropped cache is freed, and its
///   subscription ends at the next message.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use surgeguard::redis::RedisTier;
///
/// let tier = RedisTier::builder("redis://127.0.0.1:6379")
///     .prefix("shop:pages:")
///     .timeout(Duration::from_millis(20))
///     .build()
///     .await?;
/// # let _ = tier;
/// # Ok(()) }
/// ```
pub struct RedisTier {
    connection: Connection,
    breaker: Breaker,
    prefix: String,
    channel: String,
    instance: u64,
    leases: AtomicU64,
    /// One listener per cache this tier serves.
    backplane: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// How many caches this tier serves: with more than one, each must hear
    /// the others' writes, which carry the same instance id as its own.
    listeners: Arc<AtomicUsize>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    breaker_opened: AtomicU64,
    breaker_closed: AtomicU64,
    subscriptions: Arc<AtomicU64>,
}

/// A snapshot of a [`RedisTier`]'s calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisTierStats {
    /// Calls that reached Redis and got an answer.
    pub calls: u64,
    /// Calls that failed or were not made (breaker open, timeout,
    /// unreachable, refused).
    pub failures: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Times a probe closed the breaker again.
    pub breaker_closed: u64,
    /// Times the backplane subscription was made (1 once it is up; more
    /// after reconnects). Each one dropped the local tier first.
    pub backplane_subscriptions: u64,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .field("breaker_open", &self.breaker.is_open())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        for listening in self.backplane.lock().drain(..) {
            listening.abort();
        }
    }
}

impl RedisTier {
    /// A builder for a tier on the Redis at `url`.
    ///
    /// ```
    /// let builder = surgeguard::redis::RedisTier::builder("redis://127.0.0.1/");
    /// # let _ = builder;
    /// ```
    pub fn builder(url: &str) -> RedisTierBuilder {
        RedisTierBuilder::new(Nodes::Server(url.to_owned()))
    }

    /// A builder for a tier on the Redis Cluster found from `seeds`. A
    /// key's value and lease share one slot; the backplane subscribes on
    /// the first seed (a cluster delivers a message published on any node
    /// to subscribers on every node).
    ///
    /// ```
    /// let builder = surgeguard::redis::RedisTier::cluster(&["redis://10.0.0.1:7000"]);
    /// # let _ = builder;
    /// ```
    pub fn cluster(seeds: &[&str]) -> RedisTierBuilder {
        RedisTierBuilder::new(Nodes::cluster(seeds))
    }

    /// Counters since the tier was built.
    pub fn stats(&self) -> RedisTierStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisTierStats {
            calls: load(&self.stats.calls),
            failures: load(&self.stats.failures),
            breaker_opened: load(&self.stats.breaker_opened),
            breaker_closed: load(&self.stats.breaker_closed),
            backplane_subscriptions: self.stats.subscriptions.load(Ordering::Acquire),
        }
    }

    fn keys(&self, key: &[u8]) -> [Vec<u8>; 2] {
        redis_keys(&self.prefix, key)
    }

    fn new_token(&self) -> LeaseToken {
        let n = self.leases.fetch_add(1, Ordering::Relaxed);
        LeaseToken::new(format!("{:016x}-{n:x}", self.instance))
    }

    /// Runs `invocation` through the breaker.
    async fn call<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, TierError> {
        if self.breaker.admit() == Admit::Fallback {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            return Err(TierError::Unavailable(format!(
                "circuit breaker open; next probe in {:?}",
                self.breaker.retry_in()
            )));
        }
        match self.connection.invoke(invocation).await {
            Ok(value) => {
                self.note(self.breaker.success());
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Err(Failure::Refused(message)) => {
                // Redis answers; the key or script is wrong.
                self.note(self.breaker.success());
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(TierError::Refused(message))
            }
            Err(Failure::Unavailable(reason)) => {
                self.note(self.breaker.failure());
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(TierError::Unavailable(reason))
            }
        }
    }

    fn note(&self, transition: Option<Transition>) {
        match transition {
            Some(Transition::Opened) => {
                self.stats.breaker_opened.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(prefix = %self.prefix, "Redis unavailable: breaker open, the cache serves from this instance");
            }
            Some(Transition::Closed) => {
                self.stats.breaker_closed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(prefix = %self.prefix, "Redis is back: breaker closed");
            }
            None => {}
        }
    }

    async fn fetch_now(&self, key: &[u8], want: FetchRequest) -> Result<Fetch, TierError> {
        let [value_key, lease_key] = self.keys(key);
        let token = self.new_token();
        let mut invocation = scripts::FETCH.prepare_invoke();
        invocation
            .key(value_key)
            .key(lease_key)
            .arg(token.as_str())
            .arg(millis(want.lease))
            .arg(want.fresh_for.map_or(0, millis));
        let reply: Vec<Value> = self.call(&invocation).await?;
        parse_fetch(reply, token)
    }
}

impl RemoteTier for RedisTier {
    fn fetch<'a>(&'a self, key: &'a [u8], want: FetchRequest) -> TierFuture<'a, Fetch> {
        Box::pin(self.fetch_now(key, want))
    }

    fn fill<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        ttl: Duration,
        lease: &'a LeaseToken,
    ) -> TierFuture<'a, bool> {
        Box::pin(async move {
            let [value_key, lease_key] = self.keys(key);
            let mut invocation = scripts::FILL.prepare_invoke();
            invocation
                .key(value_key)
                .key(lease_key)
                .arg(value)
                .arg(millis(ttl))
                .arg(lease.as_str());
            let written: i64 = self.call(&invocation).await?;
            Ok(written == 1)
        })
    }

    fn release<'a>(&'a self, key: &'a [u8], lease: &'a LeaseToken) -> TierFuture<'a, ()> {
        Box::pin(async move {
            let [_, lease_key] = self.keys(key);
            let mut invocation = scripts::RELEASE.prepare_invoke();
            invocation.key(lease_key).arg(lease.as_str());
            let _: i64 = self.call(&invocation).await?;
            Ok(())
        })
    }

    fn store<'a>(&'a self, key: &'a [u8], value: &'a [u8], ttl: Duration) -> TierFuture<'a, ()> {
        Box::pin(async move {
            let [value_key, lease_key] = self.keys(key);
            let mut invocation = scripts::STORE.prepare_invoke();
            invocation
                .key(value_key)
                .key(lease_key)
                .arg(value)
                .arg(millis(ttl))
                .arg(self.channel.as_str())
                .arg(backplane::message(self.instance, key));
            let _: i64 = self.call(&invocation).await?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> TierFuture<'a, ()> {
        Box::pin(async move {
            let [value_key, lease_key] = self.keys(key);
            let mut invocation = scripts::REMOVE.prepare_invoke();
            invocation
                .key(value_key)
                .key(lease_key)
                .arg(self.channel.as_str())
                .arg(backplane::message(self.instance, key));
            let _: i64 = self.call(&invocation).await?;
            Ok(())
        })
    }

    fn subscribe(&self, listener: InvalidationListener) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.listeners.fetch_add(1, Ordering::AcqRel);
        let listening = runtime.spawn(backplane::listen(
            self.connection.client().clone(),
            self.channel.clone(),
            backplane::Me {
                instance: self.instance,
                caches: Arc::clone(&self.listeners),
            },
            self.connection.timeout(),
            Arc::downgrade(&listener),
            Arc::clone(&self.stats.subscriptions),
        ));
        // Every cache on this tier keeps listening: a second cache built on
        // it must not silence the first.
        self.backplane.lock().push(listening);
    }
}

/// The value's and the lease's Redis keys for `key`. The `=` after the
/// brace keeps the hash tag from being empty (Redis hashes the whole key
/// for `{}`), so both keys hash to one slot whatever bytes `key` holds.
fn redis_keys(prefix: &str, key: &[u8]) -> [Vec<u8>; 2] {
    let mut value = Vec::with_capacity(prefix.len() + key.len() + 4);
    value.extend_from_slice(prefix.as_bytes());
    value.extend_from_slice(b"{=");
    value.extend_from_slice(key);
    value.push(b'}');
    let mut lease = value.clone();
    value.push(b'v');
    lease.push(b'l');
    [value, lease]
}

/// Reads the fetch script's reply; anything else is [`TierError::Refused`]
/// (a Redis reply is input: it may come from another version of the
/// script, or not from Redis at all).
fn parse_fetch(reply: Vec<Value>, token: LeaseToken) -> Result<Fetch, TierError> {
    let refused = |reply: &[Value]| TierError::Refused(format!("unexpected fetch reply {reply:?}"));
    match reply.as_slice() {
        [Value::Int(1), Value::BulkString(bytes)] => Ok(Fetch::Value(bytes.clone())),
        [Value::Int(2)] => Ok(Fetch::Leased(token)),
        [Value::Int(3), Value::BulkString(bytes)] => Ok(Fetch::Stale(bytes.clone())),
        [Value::Int(4), Value::Int(left)] if *left >= 0 => Ok(Fetch::Busy {
            lease_left: Duration::from_millis(left.unsigned_abs()),
        }),
        other => Err(refused(other)),
    }
}

/// Milliseconds for Redis's `PX`: at least 1 (Redis refuses 0).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Settings of a [`RedisTier`]; [`build`](Self::build) checks them.
#[derive(Debug, Clone)]
pub struct RedisTierBuilder {
    nodes: Nodes,
    prefix: String,
    timeout: Duration,
    failures_to_open: u32,
    cool_down: Duration,
    clock: Arc<dyn Clock>,
}

impl RedisTierBuilder {
    fn new(nodes: Nodes) -> Self {
        RedisTierBuilder {
            nodes,
            prefix: "surgeguard:cache:".to_owned(),
            timeout: Duration::from_millis(50),
            failures_to_open: 3,
            cool_down: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
        }
    }

    /// What every Redis key and the backplane channel start with (default
    /// `surgeguard:cache:`): one per cache and per value format, so two
    /// caches, or two versions of one value type, never read each other's
    /// bytes. Braces are not allowed (they would break the hash tag).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How long one call may take, connecting included (default 50 ms,
    /// 1 ms to 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Open the breaker after this many failures in a row (default 3).
    pub fn failures_to_open(mut self, failures: u32) -> Self {
        self.failures_to_open = failures;
        self
    }

    /// How long the breaker stays open before one probe (default 1 s, 1 ms
    /// to 60 s).
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// The clock of the breaker's cool-down (tests use a
    /// [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and loads the scripts (best effort: the tier
    /// starts while Redis is down, and the cache serves locally until it is
    /// back).
    pub async fn build(self) -> Result<RedisTier, BuildError> {
        check_failure_policy(self.timeout, self.cool_down, self.failures_to_open)?;
        let target = self.nodes.target(self.timeout)?;
        if self.prefix.contains(['{', '}']) {
            return Err(BuildError::InvalidPrefix(self.prefix));
        }
        let connection = Connection::new(target, self.timeout);
        connection.warm_up(&scripts::all()).await;
        Ok(RedisTier {
            connection,
            breaker: Breaker::new(self.failures_to_open, self.cool_down, self.clock),
            channel: format!("{}invalidations", self.prefix),
            prefix: self.prefix,
            instance: instance_id(),
            leases: AtomicU64::new(0),
            backplane: Mutex::new(Vec::new()),
            listeners: Arc::default(),
            stats: Counters::default(),
        })
    }
}

/// An id for this tier, unlikely to be any other instance's: the
/// process-seeded hasher of the standard library over the process id and
/// the time.
fn instance_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_replies_of_another_shape_are_refused() {
        let token = LeaseToken::new("t");
        assert!(matches!(
            parse_fetch(vec![Value::Int(1), Value::BulkString(b"x".to_vec())], token.clone()),
            Ok(Fetch::Value(bytes)) if bytes == b"x"
        ));
        assert_eq!(
            parse_fetch(vec![Value::Int(4), Value::Int(7)], token.clone()),
            Ok(Fetch::Busy {
                lease_left: Duration::from_millis(7)
            })
        );
        for odd in [
            vec![],
            vec![Value::Int(9)],
            vec![Value::Int(1)],
            vec![Value::Int(4), Value::Int(-1)],
            vec![Value::Int(3), Value::Int(0)],
            vec![Value::Nil],
        ] {
            assert!(matches!(
                parse_fetch(odd.clone(), token.clone()),
                Err(TierError::Refused(_))
            ));
        }
    }

    /// The part of `key` Redis Cluster hashes (its key hash tag rule).
    fn hashed_part(key: &[u8]) -> &[u8] {
        if let Some(open) = key.iter().position(|&b| b == b'{') {
            if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[test]
    fn a_key_and_its_lease_hash_to_one_slot_whatever_the_key_holds() {
        let mut keys: Vec<Vec<u8>> = [&b""[..], b"}", b"{}", b"}}", b"a}b{c", b"\xff\x00{"]
            .iter()
            .map(|k| k.to_vec())
            .collect();
        // Every two-byte key over the bytes that matter to the rule.
        let alphabet = [b'{', b'}', b'=', b'a', 0, 0xff];
        for a in alphabet {
            for b in alphabet {
                keys.push(vec![a, b]);
            }
        }
        for key in keys {
            let [value, lease] = redis_keys("shop:", &key);
            assert_ne!(value, lease);
            assert_eq!(hashed_part(&value), hashed_part(&lease), "key {key:?}");
            assert!(hashed_part(&value).starts_with(b"="), "key {key:?}");
        }
        // Different keys never share a Redis key.
        assert_ne!(redis_keys("p:", b"a}v")[0], redis_keys("p:", b"a")[0]);
    }
}
