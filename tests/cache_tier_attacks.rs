//! Attacks on the fleet-wide cache tier (issue 23), written as the
//! attacker: each test is named after what it tries to break. The first
//! half runs against the in-memory tier of `tier_support` (on a
//! `ManualClock`), wrapped so a test can hold one call of the shared tier
//! open; the second half against a real `redis-server` (feature `redis`).
//!
//! Why these cannot flake on a busy machine: no assertion is about time.
//! A race is never hoped for: a test forces the interleaving it needs by
//! holding a call of the shared tier at a gate until it has set the scene.
//! Leases on the manual clock never expire unless the test moves it; the
//! real-Redis tests that need a lease to expire wait for the outcome with a
//! bound (a hang guard) far beyond the lease, and assert only the outcome.
#![cfg(feature = "tokio")]

#[cfg(feature = "redis")]
mod redis_support;
mod tier_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use surgeguard::cache::tier::{
    BigEndian, Fetch, FetchRequest, Invalidation, InvalidationListener, LeaseToken, RemoteTier,
    TierBuildError, TierError, TierFuture, TieredCache, Utf8,
};
use surgeguard::cache::{Cache, LoadError, MAX_DURATION};
use surgeguard::clock::ManualClock;
use tier_support::MemoryTier;
use tokio::sync::{watch, Notify};

fn key_bytes(key: u64) -> Vec<u8> {
    key.to_be_bytes().to_vec()
}

/// Waits (real time, bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Holds calls until opened; counts the calls that arrived while closed.
struct Gate {
    arrived: AtomicU64,
    open: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Gate {
            arrived: AtomicU64::new(0),
            open: watch::Sender::new(true),
        })
    }

    fn close(&self) {
        self.open.send_replace(false);
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::SeqCst)
    }

    async fn pass(&self) {
        let mut open = self.open.subscribe();
        if *open.borrow_and_update() {
            return;
        }
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let _ = open.wait_for(|open| *open).await;
    }
}

/// The in-memory tier, with gates on some calls: `fetch_reply` holds a
/// fetch's answer after it was read (the tier moved on meanwhile),
/// `fill` and `remove` hold those calls before they reach the tier.
#[derive(Clone)]
struct Gated {
    inner: MemoryTier,
    fetch_reply: Arc<Gate>,
    fill: Arc<Gate>,
    remove: Arc<Gate>,
    heard: Arc<Mutex<Option<InvalidationListener>>>,
}

impl Gated {
    fn new(inner: MemoryTier) -> Self {
        Gated {
            inner,
            fetch_reply: Gate::new(),
            fill: Gate::new(),
            remove: Gate::new(),
            heard: Arc::default(),
        }
    }

    /// Tells this instance's cache what its backplane would.
    fn tell(&self, invalidation: Invalidation<'_>) {
        let listener = self.heard.lock().clone().expect("the cache subscribed");
        listener(invalidation);
    }
}

impl RemoteTier for Gated {
    fn fetch<'a>(&'a self, key: &'a [u8], want: FetchRequest) -> TierFuture<'a, Fetch> {
        Box::pin(async move {
            let read = self.inner.fetch(key, want).await;
            self.fetch_reply.pass().await;
            read
        })
    }

    fn fill<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        ttl: Duration,
        lease: &'a LeaseToken,
    ) -> TierFuture<'a, bool> {
        Box::pin(async move {
            self.fill.pass().await;
            self.inner.fill(key, value, ttl, lease).await
        })
    }

    fn release<'a>(&'a self, key: &'a [u8], lease: &'a LeaseToken) -> TierFuture<'a, ()> {
        self.inner.release(key, lease)
    }

    fn store<'a>(&'a self, key: &'a [u8], value: &'a [u8], ttl: Duration) -> TierFuture<'a, ()> {
        self.inner.store(key, value, ttl)
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.remove.pass().await;
            self.inner.remove(key).await
        })
    }

    fn subscribe(&self, listener: InvalidationListener) {
        *self.heard.lock() = Some(Arc::clone(&listener));
        self.inner.subscribe(listener);
    }
}

fn local(clock: &ManualClock) -> Cache<u64, String> {
    Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn tiered(tier: impl RemoteTier, local: Cache<u64, String>) -> TieredCache<u64, String> {
    TieredCache::builder(local, tier)
        .keys(BigEndian)
        .values(Utf8)
        .lease(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The invalidating instance does not hear its own announcement, so a read
/// of its own that fetched the old value while the shared tier still held
/// it must not be kept past the invalidate. (Broke: the local tier was
/// cleared only before the shared tier's removal, and the old value stayed
/// for the local time-to-live.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_an_invalidate_on_the_same_instance_keeps_the_old_value() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let gated = Gated::new(tier.clone());
    let cache = tiered(gated.clone(), local(&clock));
    let first = cache
        .get_or_load(&1, |_| async { "old".to_owned() })
        .await
        .unwrap();
    assert_eq!(first, "old");
    gated.remove.close();
    let invalidating = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.invalidate(&1).await })
    };
    until("the invalidate reaches the shared tier", || {
        gated.remove.arrived() == 1
    })
    .await;
    // Read meanwhile on the same instance: its local tier was cleared, the
    // shared tier still holds "old" (the removal is held at the gate).
    let during = cache
        .get_or_load(&1, |_| async { "reloaded".to_owned() })
        .await
        .unwrap();
    assert_eq!(during, "old", "a read concurrent with the invalidate");
    gated.remove.open();
    invalidating.await.unwrap().unwrap();
    assert_eq!(cache.get(&1), None, "the old value outlived the invalidate");
    let after = cache
        .get_or_load(&1, |_| async { "reloaded".to_owned() })
        .await
        .unwrap();
    assert_eq!(after, "reloaded");
}

/// A load cancelled by its timeout while its value is being written must
/// give the lease back, as a load cancelled earlier does. (Broke: the guard
/// was disarmed before the write, so the lease stayed held until it
/// expired, and the fleet waited that long.) The fill never returns, so the
/// timeout is certain to fire (during it, unless the machine stalls for a
/// whole second before it: then the earlier path is checked, which must
/// give the lease back too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_cancelled_while_its_value_is_written_strands_the_lease() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let gated = Gated::new(tier.clone());
    let impatient = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .load_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let cache = tiered(gated.clone(), impatient);
    gated.fill.close();
    let outcome = cache
        .get_or_load(&2, |_| async { "loaded".to_owned() })
        .await;
    assert_eq!(outcome, Err(LoadError::TimedOut));
    // The manual clock never moves: only a release frees the lease.
    until("the lease is given back", || !tier.leased(&key_bytes(2))).await;
    let other = tiered(tier.join(), local(&clock));
    let value = other
        .get_or_load(&2, |_| async { "other".to_owned() })
        .await
        .unwrap();
    assert_eq!(value, "other");
    assert_eq!(other.stats().fleet_waits, 0, "nobody waited out the lease");
}

/// A loader that panics while another instance waits for it: the lease
/// goes back at once, so the waiter loads without waiting out the lease
/// (the manual clock never moves, so only a release lets it through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_strands_the_waiting_fleet() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let holder = tiered(tier.clone(), local(&clock));
    let waiting = tiered(tier.join(), local(&clock));
    let go = Arc::new(Notify::new());
    let started = Arc::new(AtomicU64::new(0));
    let load = {
        let (holder, go, started) = (holder.clone(), Arc::clone(&go), Arc::clone(&started));
        tokio::spawn(async move {
            holder
                .get_or_load(&3, move |_| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    go.notified().await;
                    panic!("the origin client panicked (test)");
                })
                .await
        })
    };
    until("the holder loads", || started.load(Ordering::SeqCst) == 1).await;
    let waiter = {
        let waiting = waiting.clone();
        tokio::spawn(async move {
            waiting
                .get_or_load(&3, |_| async { "after the panic".to_owned() })
                .await
        })
    };
    until("the other instance waits", || {
        waiting.stats().fleet_waits == 1
    })
    .await;
    go.notify_one();
    assert_eq!(load.await.unwrap(), Err(LoadError::Panicked));
    assert_eq!(waiter.await.unwrap().unwrap(), "after the panic");
    assert_eq!(waiting.stats().lease_takeovers, 1);
}

/// "Each time it subscribes it drops its whole local tier": a value
/// fetched before the drop-all (whose news was lost) and answered after it
/// must not be kept, or staleness would outlast the time cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_fetched_before_a_drop_all_survives_it() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let gated = Gated::new(tier.clone());
    let cache = tiered(gated.clone(), local(&clock));
    tier.put_raw(&key_bytes(4), b"old");
    gated.fetch_reply.close();
    let reading = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(&4, |_| async { panic!("the tier holds a value") })
                .await
        })
    };
    until("the fetch read the old value", || {
        gated.fetch_reply.arrived() == 1
    })
    .await;
    // Another instance wrote a new value while this one was cut off (no
    // message); the backplane came back and said so.
    tier.put_raw(&key_bytes(4), b"new");
    gated.tell(Invalidation::All);
    gated.fetch_reply.open();
    assert_eq!(reading.await.unwrap().unwrap(), "old", "the read in flight");
    assert_eq!(cache.get(&4), None, "kept a value older than the drop-all");
    let next = cache
        .get_or_load(&4, |_| async { panic!("the tier holds a value") })
        .await
        .unwrap();
    assert_eq!(next, "new");
}

/// Absurd settings: each one refused with its own error, not a panic.
#[tokio::test(flavor = "current_thread")]
async fn absurd_tier_settings_are_refused() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let builder = || {
        TieredCache::builder(local(&clock), tier.clone())
            .keys(BigEndian)
            .values(Utf8)
    };
    let too_long = MAX_DURATION + Duration::from_nanos(1);
    for (setting, built) in [
        ("remote_ttl", builder().remote_ttl(too_long).build()),
        ("remote_ttl", builder().remote_ttl(Duration::MAX).build()),
        ("lease", builder().lease(Duration::ZERO).build()),
        ("lease", builder().lease(Duration::from_nanos(1)).build()),
        ("lease", builder().lease(too_long).build()),
        (
            "remote_refresh_after",
            builder().remote_refresh_after(Duration::ZERO).build(),
        ),
        (
            "remote_refresh_after",
            builder().remote_refresh_after(Duration::MAX).build(),
        ),
    ] {
        assert!(
            matches!(&built, Err(TierBuildError::InvalidDuration { setting: s, .. }) if *s == setting),
            "{setting}: {:?}",
            built.err()
        );
    }
    for bytes in [0, (512 << 20) + 1, usize::MAX] {
        assert!(matches!(
            builder().max_value_bytes(bytes).build(),
            Err(TierBuildError::InvalidMaxValueBytes { .. })
        ));
    }
    let keyless = TieredCache::builder(local(&clock), tier.clone())
        .values(Utf8)
        .build();
    assert_eq!(keyless.err(), Some(TierBuildError::MissingCodec("keys")));
    // The longest and shortest allowed do build and serve.
    let edge = builder()
        .remote_ttl(MAX_DURATION)
        .lease(Duration::from_millis(1))
        .remote_refresh_after(MAX_DURATION)
        .max_value_bytes(512 << 20)
        .build()
        .unwrap();
    let value = edge
        .get_or_load(&5, |_| async { "edge".to_owned() })
        .await
        .unwrap();
    assert_eq!(value, "edge");
    assert_eq!(tier.holds(&key_bytes(5)).as_deref(), Some(&b"edge"[..]));
}

/// A tier whose every call fails with `Refused` (a script error, a reply
/// of another shape): readers still get values, writers learn of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_refusing_every_call_reaches_a_reader() {
    struct Refusing;
    impl RemoteTier for Refusing {
        fn fetch<'a>(&'a self, _: &'a [u8], _: FetchRequest) -> TierFuture<'a, Fetch> {
            Box::pin(async { Err(TierError::Refused("odd reply (test)".into())) })
        }
        fn fill<'a>(
            &'a self,
            _: &'a [u8],
            _: &'a [u8],
            _: Duration,
            _: &'a LeaseToken,
        ) -> TierFuture<'a, bool> {
            Box::pin(async { Err(TierError::Refused("odd reply (test)".into())) })
        }
        fn release<'a>(&'a self, _: &'a [u8], _: &'a LeaseToken) -> TierFuture<'a, ()> {
            Box::pin(async { Err(TierError::Refused("odd reply (test)".into())) })
        }
        fn store<'a>(&'a self, _: &'a [u8], _: &'a [u8], _: Duration) -> TierFuture<'a, ()> {
            Box::pin(async { Err(TierError::Refused("odd reply (test)".into())) })
        }
        fn remove<'a>(&'a self, _: &'a [u8]) -> TierFuture<'a, ()> {
            Box::pin(async { Err(TierError::Refused("odd reply (test)".into())) })
        }
        fn subscribe(&self, _: InvalidationListener) {}
    }
    let cache = tiered(Refusing, local(&ManualClock::new()));
    let value = cache
        .get_or_load(&6, |_| async { "local".to_owned() })
        .await
        .unwrap();
    assert_eq!(value, "local");
    assert!(matches!(
        cache.insert(6, "x".into()).await,
        Err(TierError::Refused(_))
    ));
    assert!(cache.invalidate(&6).await.is_err());
    assert_eq!(cache.get(&6), None);
    let stats = cache.stats();
    assert_eq!((stats.local_loads, stats.remote_errors), (1, 3));
}

/// The same, for values: eight bytes or a panic.
struct UnwrappingValues;

impl surgeguard::cache::tier::Codec<String> for UnwrappingValues {
    fn encode(
        &self,
        value: &String,
        out: &mut Vec<u8>,
    ) -> Result<(), surgeguard::cache::tier::EncodeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<String, surgeguard::cache::tier::DecodeError> {
        assert_eq!(bytes.len(), 8, "not eight bytes");
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Junk a stray writer left in the shared tier, read with a value codec
/// that panics on it: a miss, counted, loaded and written over, as an
/// error from the codec would be. (Broke: every read of the key failed
/// with `Panicked` until the junk expired from the shared tier.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_codec_that_panics_on_junk_makes_its_key_unreadable() {
    let clock = ManualClock::new();
    let tier = MemoryTier::new(clock.clone());
    let cache = TieredCache::builder(local(&clock), tier.clone())
        .keys(BigEndian)
        .values(UnwrappingValues)
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();
    tier.put_raw(&key_bytes(7), b"junk");
    let read = cache
        .get_or_load(&7, |_| async { "8 bytes!".to_owned() })
        .await;
    assert_eq!(read.as_deref(), Ok("8 bytes!"));
    assert_eq!(cache.stats().decode_errors, 1);
    assert_eq!(tier.holds(&key_bytes(7)).as_deref(), Some(&b"8 bytes!"[..]));
}

#[cfg(feature = "redis")]
mod against_redis {
    //! The same attacks where only a real Redis can answer: its scripts,
    //! its pub/sub, a runtime that dies.

    use super::*;
    use surgeguard::cache::tier::RawBytes;
    use surgeguard::redis::RedisTier;

    /// A key codec of the user's own that unwraps instead of refusing: eight
    /// bytes or a panic.
    struct Unwrapping;

    impl surgeguard::cache::tier::Codec<u64> for Unwrapping {
        fn encode(
            &self,
            value: &u64,
            out: &mut Vec<u8>,
        ) -> Result<(), surgeguard::cache::tier::EncodeError> {
            out.extend_from_slice(&value.to_be_bytes());
            Ok(())
        }

        fn decode(&self, bytes: &[u8]) -> Result<u64, surgeguard::cache::tier::DecodeError> {
            Ok(u64::from_be_bytes(bytes.try_into().unwrap()))
        }
    }

    /// A hang guard for calls to a server that is up; never reached.
    const UP_TIMEOUT: Duration = Duration::from_secs(30);
    /// Longer than any test, unless a test picks a short one.
    const LONG_LEASE: Duration = Duration::from_secs(120);
    /// How long a test waits for something that must happen.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    struct Instance {
        cache: TieredCache<u64, String>,
        tier: Arc<RedisTier>,
    }

    async fn tier(url: &str, prefix: &str) -> Arc<RedisTier> {
        Arc::new(
            RedisTier::builder(url)
                .prefix(prefix)
                .timeout(UP_TIMEOUT)
                .clock(ManualClock::new())
                .build()
                .await
                .unwrap(),
        )
    }

    async fn instance(url: &str, prefix: &str, lease: Duration) -> Instance {
        let tier = tier(url, prefix).await;
        let cache = TieredCache::builder(
            Cache::builder().max_capacity(10_000).build().unwrap(),
            Arc::clone(&tier),
        )
        .keys(BigEndian)
        .values(Utf8)
        .lease(lease)
        .build()
        .unwrap();
        Instance { cache, tier }
    }

    /// Waits until `tier` has made `n` backplane subscriptions (each one
    /// dropped its cache's local tier first).
    async fn subscribed(tier: &RedisTier, n: u64) {
        until("the backplane came up", || {
            tier.stats().backplane_subscriptions >= n
        })
        .await;
    }

    fn redis_key(prefix: &str, key: &[u8], kind: u8) -> Vec<u8> {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend_from_slice(b"{=");
        bytes.extend_from_slice(key);
        bytes.push(b'}');
        bytes.push(kind);
        bytes
    }

    /// A lease key with no expiry is none of the tier's (a stray `SET`, a
    /// key of another type): it must not make every reader of the key wait
    /// for ever. (Broke: the fetch reported it busy with 0 ms left, and a
    /// reader polled it every millisecond, for ever without a load
    /// timeout.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_key_that_never_expires_stalls_the_fleet_for_ever() {
        let Some(redis) =
            redis_support::start("a_lease_key_that_never_expires_stalls_the_fleet_for_ever")
        else {
            return;
        };
        let mut plain = redis.connection().await;
        let _: () = redis::cmd("SET")
            .arg(redis_key("stray:", &key_bytes(1), b'l'))
            .arg("not a lease of ours")
            .query_async(&mut plain)
            .await
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(redis_key("stray:", &key_bytes(2), b'l'))
            .arg("a")
            .arg("hash")
            .query_async(&mut plain)
            .await
            .unwrap();
        // No load timeout: only the lease bounds the wait.
        let reader = instance(&redis.url(), "stray:", Duration::from_millis(300)).await;
        for key in [1, 2] {
            let read = tokio::time::timeout(
                HANG_GUARD,
                reader
                    .cache
                    .get_or_load(&key, |key| async move { format!("value {key}") }),
            )
            .await;
            assert_eq!(
                read.expect("the reader waited for a lease that never ends")
                    .unwrap(),
                format!("value {key}")
            );
        }
        assert_eq!(reader.cache.stats().lease_takeovers, 2);
    }

    /// Two caches built on one tier (it is shared by `Arc`, which the
    /// trait invites): building the second must not silence the first,
    /// and each must hear the other's writes although they carry the same
    /// instance id. (Broke: the second subscription aborted the first.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_cache_on_one_tier_silences_the_first() {
        let Some(redis) = redis_support::start("a_second_cache_on_one_tier_silences_the_first")
        else {
            return;
        };
        let shared = tier(&redis.url(), "twice:").await;
        let build = || {
            TieredCache::builder(
                Cache::<u64, String>::builder()
                    .max_capacity(100)
                    .build()
                    .unwrap(),
                Arc::clone(&shared),
            )
            .keys(BigEndian)
            .values(Utf8)
            .lease(LONG_LEASE)
            .build()
            .unwrap()
        };
        let first = build();
        let second = build();
        subscribed(&shared, 2).await;
        let writer = instance(&redis.url(), "twice:", LONG_LEASE).await;
        subscribed(&writer.tier, 1).await;
        for cache in [&first, &second] {
            for key in [1, 2] {
                let value = cache
                    .get_or_load(&key, |key| async move { format!("value {key}") })
                    .await
                    .unwrap();
                assert_eq!(value, format!("value {key}"));
            }
        }
        assert_eq!(second.stats().remote_hits, 2, "the caches share keys");
        // Another instance writes: both caches drop their copies.
        writer.cache.insert(1, "new".into()).await.unwrap();
        for cache in [&first, &second] {
            until("the first cache hears the fleet", || {
                cache.get(&1).as_deref() != Some("value 1")
            })
            .await;
        }
        // One cache on the tier writes: the other drops its copy too.
        first.insert(2, "first's".into()).await.unwrap();
        until("the second cache hears the first", || {
            second.get(&2).as_deref() != Some("value 2")
        })
        .await;
        let read = second
            .get_or_load(&2, |_| async { panic!("shared") })
            .await
            .unwrap();
        assert_eq!(read, "first's");
    }

    /// A lease holder whose whole runtime shuts down mid-load (the process
    /// going away, as near as one test process gets): another instance
    /// takes over after the lease, and the shutdown panics nowhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_whose_runtime_dies_mid_load_strands_the_key() {
        let Some(redis) =
            redis_support::start("a_holder_whose_runtime_dies_mid_load_strands_the_key")
        else {
            return;
        };
        let url = redis.url();
        let lease = Duration::from_millis(500);
        let holder = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let started = Arc::new(AtomicU64::new(0));
            runtime.block_on(async {
                let doomed = instance(&url, "doomed:", lease).await;
                let signal = Arc::clone(&started);
                let cache = doomed.cache.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_load(&1, move |_| async move {
                            signal.fetch_add(1, Ordering::SeqCst);
                            std::future::pending::<String>().await
                        })
                        .await
                });
                until("the doomed holder loads", || {
                    started.load(Ordering::SeqCst) == 1
                })
                .await;
            });
            drop(runtime);
        });
        holder
            .join()
            .expect("the runtime shut down without a panic");
        let survivor = instance(&redis.url(), "doomed:", lease).await;
        let loads = Arc::new(AtomicU64::new(0));
        let read = tokio::time::timeout(
            HANG_GUARD,
            survivor.cache.get_or_load(&1, {
                let loads = Arc::clone(&loads);
                move |_| async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    "survivor".to_owned()
                }
            }),
        )
        .await
        .expect("the dead holder's lease never ended");
        assert_eq!(read.unwrap(), "survivor");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    /// Junk on the backplane channel (too short, a key the codec cannot
    /// read, a megabyte): skipped or counted, and the listener keeps
    /// listening. Messages on one channel arrive in the order published,
    /// so once the last one is seen, every earlier one was handled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn junk_on_the_backplane_kills_the_listener() {
        let Some(redis) = redis_support::start("junk_on_the_backplane_kills_the_listener") else {
            return;
        };
        let listener = instance(&redis.url(), "junk:", LONG_LEASE).await;
        subscribed(&listener.tier, 1).await;
        for key in [1, 2] {
            listener
                .cache
                .get_or_load(&key, |key| async move { format!("value {key}") })
                .await
                .unwrap();
        }
        let mut plain = redis.connection().await;
        let sender = [7u8; 8];
        let mut junk: Vec<Vec<u8>> = vec![Vec::new(), b"short".to_vec()];
        junk.push([&sender[..], b"abc"].concat());
        junk.push([&sender[..], &vec![0xee; 1 << 20][..]].concat());
        junk.push([&sender[..], &key_bytes(1)[..]].concat());
        for message in junk {
            let _: i64 = redis::cmd("PUBLISH")
                .arg("junk:invalidations")
                .arg(message)
                .query_async(&mut plain)
                .await
                .unwrap();
        }
        until("the foreign invalidation of key 1", || {
            listener.cache.get(&1).is_none()
        })
        .await;
        assert_eq!(listener.cache.stats().decode_errors, 2);
        assert_eq!(listener.cache.get(&2).as_deref(), Some("value 2"));
        // Still listening: a real write from the fleet is heard.
        let writer = instance(&redis.url(), "junk:", LONG_LEASE).await;
        writer.cache.insert(2, "new".into()).await.unwrap();
        until("the listener hears the fleet after the junk", || {
            listener.cache.get(&2).is_none()
        })
        .await;
    }

    /// Keys made of the bytes the Redis layout is built from (braces, the
    /// `v` and `l` suffixes, NUL, 0xff, the empty key): every key keeps its
    /// own value, read back by another instance.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_of_braces_and_binary_bytes_cross_talk() {
        let Some(redis) = redis_support::start("keys_of_braces_and_binary_bytes_cross_talk") else {
            return;
        };
        let build = || async {
            TieredCache::builder(
                Cache::<Vec<u8>, Vec<u8>>::builder()
                    .max_capacity(100)
                    .build()
                    .unwrap(),
                tier(&redis.url(), "raw:").await,
            )
            .keys(RawBytes)
            .values(RawBytes)
            .lease(LONG_LEASE)
            .build()
            .unwrap()
        };
        let (a, b) = (build().await, build().await);
        let keys: Vec<Vec<u8>> = [
            &b""[..],
            b"{",
            b"}",
            b"{}",
            b"a",
            b"a}v",
            b"a}l",
            b"}v",
            b"\x00\xff{=",
            b"=}",
        ]
        .iter()
        .map(|key| key.to_vec())
        .collect();
        let value_of = |key: &[u8]| [&b"value of "[..], key].concat();
        for key in &keys {
            let loaded = a
                .get_or_load(key, move |key| async move { value_of(&key) })
                .await
                .unwrap();
            assert_eq!(loaded, value_of(key));
        }
        for key in &keys {
            let read = b
                .get_or_load(key, |_| async { panic!("every key is shared") })
                .await
                .unwrap();
            assert_eq!(read, value_of(key), "key {key:?}");
        }
        assert_eq!(a.stats().leased_loads, keys.len() as u64);
        assert_eq!(b.stats().remote_hits, keys.len() as u64);
    }

    /// The longest settings the builder allows (100 years) are ones Redis
    /// accepts for its expiries: the value is shared, nothing fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_longest_allowed_settings_make_redis_refuse() {
        let Some(redis) = redis_support::start("the_longest_allowed_settings_make_redis_refuse")
        else {
            return;
        };
        let build = || async {
            let tier = tier(&redis.url(), "long:").await;
            let cache = TieredCache::builder(
                Cache::<u64, String>::builder()
                    .max_capacity(10)
                    .build()
                    .unwrap(),
                Arc::clone(&tier),
            )
            .keys(BigEndian)
            .values(Utf8)
            .remote_ttl(MAX_DURATION)
            .lease(MAX_DURATION)
            .remote_refresh_after(MAX_DURATION)
            .build()
            .unwrap();
            (cache, tier)
        };
        let (a, a_tier) = build().await;
        let (b, _b_tier) = build().await;
        a.get_or_load(&1, |_| async { "long".to_owned() })
            .await
            .unwrap();
        assert_eq!(a.stats().remote_errors, 0, "{:?}", a.stats());
        let read = b
            .get_or_load(&1, |_| async { panic!("shared") })
            .await
            .unwrap();
        assert_eq!(read, "long");
        a.insert(2, "stored".into()).await.unwrap();
        assert_eq!(a_tier.stats().failures, 0);
    }

    /// Redis dies while one instance loads for the fleet and another waits
    /// for it: neither caller sees an error; the waiter loads for itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_dying_under_a_fleet_wait_reaches_a_caller() {
        let Some(mut redis) =
            redis_support::start("redis_dying_under_a_fleet_wait_reaches_a_caller")
        else {
            return;
        };
        let holder = instance(&redis.url(), "dies:", LONG_LEASE).await;
        let waiting = instance(&redis.url(), "dies:", LONG_LEASE).await;
        let go = Arc::new(Notify::new());
        let started = Arc::new(AtomicU64::new(0));
        let load = {
            let (cache, go, started) =
                (holder.cache.clone(), Arc::clone(&go), Arc::clone(&started));
            tokio::spawn(async move {
                cache
                    .get_or_load(&1, move |_| async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        go.notified().await;
                        "holder's".to_owned()
                    })
                    .await
            })
        };
        until("the holder loads", || started.load(Ordering::SeqCst) == 1).await;
        let waiter = {
            let cache = waiting.cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(&1, |_| async { "waiter's own".to_owned() })
                    .await
            })
        };
        until("the other instance waits", || {
            waiting.cache.stats().fleet_waits == 1
        })
        .await;
        redis.kill();
        go.notify_one();
        assert_eq!(load.await.unwrap().unwrap(), "holder's");
        assert_eq!(waiter.await.unwrap().unwrap(), "waiter's own");
        assert_eq!(waiting.cache.stats().local_loads, 1);
    }

    /// A cache dropped while the tier it was built on lives on (kept for
    /// its stats, or shared with a second cache): its local tier must be
    /// freed, not kept alive for ever by the tier's backplane listener.
    /// (Broke once every subscription was kept: the tier held the
    /// listener, which held the local cache.) Dropping frees at once, so
    /// the wait is for nothing but the check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_cache_is_kept_alive_by_its_tier() {
        let Some(redis) = redis_support::start("a_dropped_cache_is_kept_alive_by_its_tier") else {
            return;
        };
        let shared = tier(&redis.url(), "gone:").await;
        let build = || {
            TieredCache::builder(
                Cache::<u64, Arc<str>>::builder()
                    .max_capacity(100)
                    .build()
                    .unwrap(),
                Arc::clone(&shared),
            )
            .keys(BigEndian)
            .values(Utf8)
            .lease(LONG_LEASE)
            .build()
            .unwrap()
        };
        let doomed = build();
        subscribed(&shared, 1).await;
        let value = doomed
            .get_or_load(&1, |_| async { Arc::<str>::from("held locally") })
            .await
            .unwrap();
        let held = Arc::downgrade(&value);
        drop(value);
        assert!(held.upgrade().is_some(), "the local tier holds it");
        drop(doomed);
        until("the dropped cache's local tier is freed", || {
            held.upgrade().is_none()
        })
        .await;
        // The tier still serves a cache built on it afterwards, which
        // hears the fleet.
        let next = build();
        subscribed(&shared, 2).await;
        let read = next
            .get_or_load(&1, |_| async { panic!("shared") })
            .await
            .unwrap();
        assert_eq!(&*read, "held locally");
        let writer = instance(&redis.url(), "gone:", LONG_LEASE).await;
        subscribed(&writer.tier, 1).await;
        let mut plain = redis.connection().await;
        let _: i64 = redis::cmd("PUBLISH")
            .arg("gone:invalidations")
            .arg([&[9u8; 8][..], &key_bytes(1)[..]].concat())
            .query_async(&mut plain)
            .await
            .unwrap();
        until("the new cache hears the fleet", || next.get(&1).is_none()).await;
    }

    /// One junk message on the backplane channel, read with a key codec
    /// that panics on it: counted as a decode error, and the listener
    /// keeps listening. (Broke: the panic ended the listener's task, and
    /// the instance never heard an invalidation again, silently.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_codec_that_panics_on_junk_deafens_the_backplane() {
        let Some(redis) =
            redis_support::start("a_key_codec_that_panics_on_junk_deafens_the_backplane")
        else {
            return;
        };
        let shared = tier(&redis.url(), "panicky:").await;
        let cache = TieredCache::builder(
            Cache::<u64, String>::builder()
                .max_capacity(100)
                .build()
                .unwrap(),
            Arc::clone(&shared),
        )
        .keys(Unwrapping)
        .values(Utf8)
        .lease(LONG_LEASE)
        .build()
        .unwrap();
        subscribed(&shared, 1).await;
        cache
            .get_or_load(&1, |_| async { "value 1".to_owned() })
            .await
            .unwrap();
        let mut plain = redis.connection().await;
        let _: i64 = redis::cmd("PUBLISH")
            .arg("panicky:invalidations")
            .arg([&[7u8; 8][..], b"abc"].concat())
            .query_async(&mut plain)
            .await
            .unwrap();
        let writer = instance(&redis.url(), "panicky:", LONG_LEASE).await;
        writer.cache.insert(1, "new".into()).await.unwrap();
        until("the listener hears the fleet after the junk", || {
            cache.get(&1).is_none()
        })
        .await;
        assert_eq!(cache.stats().decode_errors, 1);
    }
}
