//! Refresh-ahead, stale-while-revalidate, stale-if-error and negative
//! caching at the exact edges of their windows, on a manual clock. Background
//! reloads run on real threads; the tests wait for their effects (bounded by
//! a hang guard), never for an amount of time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use surgeguard::cache::{Cache, LoadError};
use surgeguard::clock::ManualClock;

mod loading_support;
use loading_support::{wait_until, Gate};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An origin whose value is its version, bumped on every call.
#[derive(Clone, Default)]
struct Origin {
    version: Arc<AtomicU64>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Origin {
    fn loader(&self) -> impl FnOnce(&u64) -> Result<u64, String> + Send + 'static {
        let origin = self.clone();
        move |_| {
            let version = origin.version.fetch_add(1, Ordering::SeqCst);
            if origin.failing.load(Ordering::SeqCst) {
                Err("origin down".to_string())
            } else {
                Ok(version)
            }
        }
    }

    fn calls(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

fn cache_with(
    clock: &ManualClock,
    configure: impl FnOnce(
        surgeguard::cache::CacheBuilder<u64, u64>,
    ) -> surgeguard::cache::CacheBuilder<u64, u64>,
) -> Cache<u64, u64> {
    configure(
        Cache::builder()
            .max_capacity(100)
            .time_to_live(ms(60_000))
            .clock(clock.clone()),
    )
    .build()
    .unwrap()
}

#[test]
fn refresh_starts_exactly_at_refresh_after_and_serves_the_old_value_meanwhile() {
    let clock = ManualClock::new();
    let cache = cache_with(&clock, |b| b.refresh_after(ms(45_000)));
    let origin = Origin::default();
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    clock.advance(ms(44_999));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    assert_eq!((origin.calls(), cache.stats().refreshes), (1, 0), "not due");
    clock.advance(ms(1));
    assert_eq!(
        cache.get_or_try_load(&1, origin.loader()),
        Ok(0),
        "due: the old value, at once"
    );
    wait_until("the reload stored", || cache.get(&1) == Some(1));
    assert_eq!(cache.stats().refreshes, 1);
    // The reloaded entry counts its age from its reload.
    clock.advance(ms(44_999));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(1));
    assert_eq!(cache.stats().refreshes, 1);
    // Plain reads never reload.
    clock.advance(ms(1));
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.stats().refreshes, 1);
}

/// A loader held behind `gate` until the test opens it.
fn gated(
    origin: &Origin,
    gate: &Gate,
) -> impl FnOnce(&u64) -> Result<u64, String> + Send + 'static {
    let (load, gate) = (origin.loader(), gate.clone());
    move |key| {
        gate.pass();
        load(key)
    }
}

#[test]
fn one_refresh_per_key_and_readers_never_wait_for_it() {
    let clock = ManualClock::new();
    let cache = cache_with(&clock, |b| b.refresh_after(ms(1_000)));
    let origin = Origin::default();
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    clock.advance(ms(1_000));
    let door = Gate::default();
    for _ in 0..50 {
        // Every read returns at once although the reload is held.
        assert_eq!(cache.get_or_try_load(&1, gated(&origin, &door)), Ok(0));
    }
    assert_eq!(cache.stats().refreshes, 1, "one reload in flight");
    door.open();
    wait_until("the reload stored", || cache.get(&1) == Some(1));
    assert_eq!(origin.calls(), 2);
}

/// Waits until every background reload has ended (stored or dropped its
/// result): with one background slot, key 2's due reload can only start once
/// the slot is free again.
fn wait_for_background_reloads_to_end(cache: &Cache<u64, u64>, origin: &Origin) {
    let before = cache.stats().refreshes;
    wait_until("the background slot freed", || {
        let _ = cache.get_or_try_load(&2, origin.loader());
        cache.stats().refreshes > before
    });
}

fn refreshing_cache(clock: &ManualClock, origin: &Origin) -> Cache<u64, u64> {
    let cache = cache_with(clock, |b| b.refresh_after(ms(1_000)).background_reloads(1));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    assert_eq!(cache.get_or_try_load(&2, origin.loader()), Ok(1));
    clock.advance(ms(1_000));
    cache
}

#[test]
fn an_insert_during_a_refresh_wins() {
    let (clock, origin) = (ManualClock::new(), Origin::default());
    let cache = refreshing_cache(&clock, &origin);
    let door = Gate::default();
    assert_eq!(cache.get_or_try_load(&1, gated(&origin, &door)), Ok(0));
    cache.insert(1, 500);
    door.open();
    wait_for_background_reloads_to_end(&cache, &origin);
    // The superseded reload has ended; its value was dropped.
    assert_eq!(cache.get(&1), Some(500));
}

#[test]
fn a_remove_during_a_refresh_discards_its_result() {
    let (clock, origin) = (ManualClock::new(), Origin::default());
    let cache = refreshing_cache(&clock, &origin);
    let door = Gate::default();
    assert_eq!(cache.get_or_try_load(&1, gated(&origin, &door)), Ok(0));
    assert_eq!(cache.remove(&1), Some(0));
    door.open();
    wait_for_background_reloads_to_end(&cache, &origin);
    // The superseded reload has ended; its value was dropped.
    assert_eq!(cache.get(&1), None);
}

#[test]
fn a_failed_refresh_keeps_the_old_value_and_backs_off_one_second() {
    let clock = ManualClock::new();
    let cache = cache_with(&clock, |b| b.refresh_after(ms(1_000)));
    let origin = Origin::default();
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    origin.fail(true);
    clock.advance(ms(1_000));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    wait_until("the reload failed", || cache.stats().load_errors == 1);
    assert_eq!(cache.get(&1), Some(0), "the old value stays");
    clock.advance(ms(999));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    assert_eq!(cache.stats().refreshes, 1, "backing off");
    clock.advance(ms(1));
    origin.fail(false);
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    wait_until("the retry stored", || cache.get(&1) == Some(2));
    assert_eq!(cache.stats().refreshes, 2);
}

#[test]
fn stale_while_revalidate_serves_stale_until_its_window_closes() {
    let clock = ManualClock::new();
    let cache = cache_with(&clock, |b| {
        b.time_to_live(ms(10_000)).stale_while_revalidate(ms(5_000))
    });
    let origin = Origin::default();
    let (held, open_door) = (Gate::default(), Gate::default());
    open_door.open();
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    clock.advance(ms(10_000));
    assert_eq!(cache.get(&1), None, "get never returns an expired value");
    // Expired, within the window: stale at once, one reload behind (held).
    assert_eq!(cache.get_or_try_load(&1, gated(&origin, &held)), Ok(0));
    clock.advance(ms(4_999));
    assert_eq!(cache.get_or_try_load(&1, gated(&origin, &open_door)), Ok(0));
    let stats = cache.stats();
    assert_eq!((stats.stale_served, stats.refreshes), (2, 1));
    // At the window's end the held reload is still running: wait for it.
    clock.advance(ms(1));
    let waiter = {
        let cache = cache.clone();
        let load = origin.loader();
        thread::spawn(move || cache.get_or_try_load(&1, load))
    };
    wait_until("the reader joined the reload", || {
        cache.stats().coalesced == 1
    });
    held.open();
    assert_eq!(waiter.join().unwrap(), Ok(1), "the reload's value");
    assert_eq!(cache.stats().stale_served, 2);
}

#[test]
fn stale_if_error_falls_back_while_the_origin_fails_and_not_after() {
    let clock = ManualClock::new();
    let cache = cache_with(&clock, |b| {
        b.time_to_live(ms(10_000)).stale_if_error(ms(60_000))
    });
    let origin = Origin::default();
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    origin.fail(true);
    clock.advance(ms(10_000));
    // Expired; the load (in the caller) fails; the stale value is served.
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    assert_eq!(origin.calls(), 2);
    // Within the retry delay: stale at once, the failing origin left alone.
    clock.advance(ms(999));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    assert_eq!(origin.calls(), 2);
    clock.advance(ms(1));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    assert_eq!(origin.calls(), 3);
    let stats = cache.stats();
    assert_eq!((stats.load_errors, stats.stale_served), (2, 3));
    // The window ends 60 s after expiry.
    clock.set(surgeguard::clock::Instant::from_nanos(69_999_000_000));
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(0));
    clock.advance(ms(1));
    assert_eq!(
        cache.get_or_try_load(&1, origin.loader()),
        Err(LoadError::Failed(Arc::new("origin down".to_string())))
    );
    origin.fail(false);
    assert_eq!(cache.get_or_try_load(&1, origin.loader()), Ok(5));
}

#[test]
fn negative_entries_live_for_the_negative_ttl_only() {
    let clock = ManualClock::new();
    let cache: Cache<u64, Option<u64>> = Cache::builder()
        .max_capacity(100)
        .time_to_live(ms(60_000))
        .negative_caching(ms(5_000), Option::is_none)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(cache.get_or_load(&1, |_| None), Ok(None));
    assert_eq!(cache.get_or_load(&2, |_| Some(2)), Ok(Some(2)));
    clock.advance(ms(4_999));
    assert_eq!(cache.get(&1), Some(None), "not found, remembered");
    clock.advance(ms(1));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(Some(2)));
}
