//! Attacks on the bounded keyed store (`src/limit/store/`), written as the
//! attacker: key floods aimed at one home bucket or one probe window, churn
//! that overwrites idle keys in place millions of times, and many threads
//! changing the table under checks. What every test asserts is what a
//! client must be able to rely on: a key that is being limited is never
//! forgotten (no fresh allowance for a client over its limit), the table
//! never tracks more than `max_keys`, and bad settings are errors.
//!
//! Why none of these can flake: time is a `ManualClock` that only the test
//! moves, hashers are seeded with constants (or are the attacker's own weak
//! ones), key sequences come from a fixed-seed generator, so every
//! single-threaded test is deterministic. The threaded test holds the clock
//! still while its workers run (they meet at a barrier, then the main
//! thread moves the clock), and asserts only bounds that hold in every
//! interleaving (GCRA's `burst + elapsed / interval` per key, and
//! `max_keys` after every thread has joined); it never asserts that a race
//! happened. No test sleeps or measures time.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use surgeguard::clock::ManualClock;
use surgeguard::limit::{
    BuildError, ExactWindow, Gcra, Quota, SlidingWindow, WhenFull, MAX_SHARDS,
};

/// A fixed-seed generator for key sequences (SplitMix64).
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A good hasher with a constant seed: the layout a random seed gives, but
/// the same in every run.
#[derive(Clone, Debug)]
struct Seeded(u64);

struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = mix(self.0 ^ u64::from(byte));
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = mix(self.0 ^ value);
    }
    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

/// The attacker's dream, a user's weak hasher: the hash is the key, so a
/// client that knows it can aim keys at any bucket (the tag table takes a
/// key's home bucket and region from the high 32 bits). Keys that share
/// their high 32 bits share one home bucket and one probe window.
#[derive(Clone, Debug, Default)]
struct Identity;

struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for Identity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// High 32 bits every aimed key shares: one home bucket.
const AIMED: u64 = 0x8000_0000 << 32;

fn hour() -> Duration {
    Duration::from_secs(3600)
}

/// With the hash in the attacker's hands, every one of its keys lands in
/// the victim's probe window. It can fill the window (256 slots) with
/// active keys and so refuse new keys of that window (what the CHANGELOG
/// announces), but never evict the victim, which is over its limit, and
/// never refuse a key of another window while the table has room. Once the
/// attacker's keys go idle, its next keys overwrite them in place, and the
/// victim, again over its limit, still stays.
#[test]
fn a_weak_hasher_aims_a_window_but_cannot_evict_an_active_key() {
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(Quota::per_hour(1).unwrap())
        .max_keys(10_000)
        .shards(1)
        .hasher(Identity)
        .clock(clock.clone())
        .build()
        .unwrap();
    let victim = AIMED | 7;
    for wave in 0..3u64 {
        assert!(limiter.check(&victim).is_allowed(), "wave {wave}");
        assert!(limiter.check(&victim).is_denied(), "wave {wave}");
        let mut admitted = 0;
        for n in 0..20_000u64 {
            let attacker = AIMED | (1_000 + wave * 100_000 + n);
            clock.advance(Duration::from_micros(1));
            if limiter.check(&attacker).is_allowed() {
                admitted += 1;
            }
            if n % 997 == 0 {
                assert!(limiter.check(&victim).is_denied(), "wave {wave}, key {n}");
            }
        }
        // The window holds 256 keys, the victim one of them.
        assert_eq!(admitted, 255, "wave {wave}");
        assert!(limiter.check(&victim).is_denied(), "wave {wave}");
        // The window's keys, and one client served elsewhere per wave.
        assert_eq!(limiter.tracked_keys(), 256 + wave as usize);
        // Another window has room: a client there is served.
        let elsewhere = (0x1000_0000 << 32) | wave;
        assert!(limiter.check(&elsewhere).is_allowed(), "wave {wave}");
        clock.advance(hour() * 2);
    }
}

/// One check as the test sees it: the key's admissions and refunds.
#[derive(Default)]
struct Ledger {
    /// Units admitted minus units refunded, per key, since the clock last
    /// moved.
    net: HashMap<u64, i64>,
}

/// Runs `waves` of checks through a `per_hour(1)` keyed GCRA: in a wave
/// the clock stands still, so a key may be admitted once, and again only
/// after a refund. Between waves the clock moves either a little (keys stay
/// active) or past an hour (every key idle, to be overwritten in place or
/// swept). Victims are spent at the start of each wave and checked all
/// along: a present key that a lookup could not find (a stale or
/// underflowed spill count) would be inserted again, with a fresh
/// allowance, and fail the ledger.
fn churn_gcra<S: BuildHasher + Clone + Send + Sync + 'static>(
    hasher: S,
    key_of: impl Fn(u64) -> u64,
    max_keys: usize,
    shards: usize,
    waves: u32,
    checks_per_wave: u32,
) {
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(Quota::per_hour(1).unwrap())
        .max_keys(max_keys)
        .shards(shards)
        .hasher(hasher)
        .clock(clock.clone())
        .build()
        .unwrap();
    let victims: Vec<u64> = (0..8).map(|n| key_of(u64::MAX - n)).collect();
    let mut keys = Keys(42);
    for wave in 0..waves {
        let mut ledger = Ledger::default();
        for &victim in &victims {
            // Still spent from the last short step, or fresh after a long one.
            if limiter.check(&victim).is_allowed() {
                *ledger.net.entry(victim).or_default() += 1;
            }
        }
        for n in 0..checks_per_wave {
            let key = key_of(keys.below(4 * max_keys as u64));
            match keys.below(16) {
                0 => {
                    // Refund a key admitted in this wave (once per
                    // admission): it may be admitted once more.
                    if ledger.net.get(&key) == Some(&1) {
                        limiter.refund(&key, 1);
                        *ledger.net.get_mut(&key).unwrap() -= 1;
                    }
                }
                1 if n % 4_096 == 0 => {
                    limiter.reclaim_idle();
                }
                _ => {
                    if limiter.check(&key).is_allowed() {
                        let net = ledger.net.entry(key).or_default();
                        *net += 1;
                        assert!(*net <= 1, "wave {wave}: key {key:#x} admitted twice");
                    }
                }
            }
            if n % 251 == 0 {
                for &victim in &victims {
                    assert!(
                        limiter.check(&victim).is_denied(),
                        "wave {wave}, check {n}: victim {victim:#x} forgotten"
                    );
                }
            }
        }
        assert!(limiter.tracked_keys() <= max_keys);
        let step = if keys.below(3) == 0 {
            hour() + Duration::from_secs(1)
        } else {
            Duration::from_secs(1)
        };
        clock.advance(step);
    }
}

/// About a million checks, refunds and sweeps through small tables with a
/// well-spread hash: keys are inserted, overwritten in place, swept and
/// refunded, and every tracked key stays findable.
#[test]
fn a_million_churning_checks_never_lose_a_spent_key() {
    for (max_keys, shards) in [(64, 1), (200, 1), (1_000, 4), (3_000, 2)] {
        churn_gcra(
            Seeded(max_keys as u64),
            |key| key,
            max_keys,
            shards,
            50,
            5_000,
        );
    }
}

/// The same churn with every key aimed at one home bucket: every key lives
/// in one probe window, spill counts reach their largest values and fall
/// back, and still no tracked key is lost.
#[test]
fn churn_aimed_at_one_window_never_loses_a_spent_key() {
    // 200 keys fit in the window; 300 do not (the window refuses).
    for max_keys in [200, 300, 2_000] {
        churn_gcra(
            Identity,
            |key| AIMED | (key & 0xffff_ffff),
            max_keys,
            1,
            30,
            5_000,
        );
    }
    // Aimed at the last bucket of a region: the window wraps round it.
    churn_gcra(
        Identity,
        |key| (u64::from(u32::MAX) << 32) | (key & 0xffff_ffff),
        2_000,
        1,
        30,
        5_000,
    );
}

/// Workers check hot keys (checked by all) and churning keys (more than the
/// table holds) on a clock that stands still while they run; between
/// phases the main thread moves it by a varying step, so that keys go idle
/// and are overwritten in place, swept, or refunded while other workers
/// check them. Whatever the interleaving, GCRA bounds each key's net
/// admissions by `burst + elapsed / interval`: a forgotten active key, or a
/// check acting on another key's TAT, would break it (a hot key is kept
/// saturated, so one extra allowance is over the bound).
#[test]
fn no_key_exceeds_its_gcra_bound_while_the_table_churns_under_it() {
    const WORKERS: usize = 4;
    const PHASES: u64 = 150;
    const HOT: u64 = 8;
    const CHURN: u64 = 4_000;
    let quota = Quota::per_second(100).unwrap().burst(5).unwrap();
    let interval = quota.emission_interval().as_nanos() as u64;
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(quota)
        .max_keys(256)
        .shards(2)
        .hasher(Seeded(9))
        .clock(clock.clone())
        .build()
        .unwrap();
    let net: Vec<AtomicU64> = (0..HOT + CHURN).map(|_| AtomicU64::new(0)).collect();
    let refunded: Vec<AtomicU64> = (0..HOT + CHURN).map(|_| AtomicU64::new(0)).collect();
    let phase_start = Barrier::new(WORKERS + 1);
    let phase_end = Barrier::new(WORKERS + 1);
    let mut elapsed = 0;
    thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (limiter, net, refunded) = (&limiter, &net, &refunded);
            let (phase_start, phase_end) = (&phase_start, &phase_end);
            scope.spawn(move || {
                let mut keys = Keys(worker as u64);
                for _ in 0..PHASES {
                    phase_start.wait();
                    for n in 0..400u32 {
                        let key = if n % 2 == 0 {
                            keys.below(HOT)
                        } else {
                            HOT + keys.below(CHURN)
                        };
                        match keys.below(32) {
                            0 => {
                                // A refund counts whether or not it lands: the
                                // bound is on admissions minus refunds.
                                limiter.refund(&key, 1);
                                refunded[key as usize].fetch_add(1, Ordering::Relaxed);
                            }
                            1 if worker == 0 => {
                                limiter.reclaim_idle();
                            }
                            _ => {
                                if limiter.check(&key).is_allowed() {
                                    net[key as usize].fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    phase_end.wait();
                }
            });
        }
        let mut steps = Keys(77);
        for _ in 0..PHASES {
            phase_start.wait();
            phase_end.wait();
            let step = match steps.below(4) {
                0 => 200 * interval,
                1 => interval / 3,
                _ => interval * (1 + steps.below(3)),
            };
            clock.advance(Duration::from_nanos(step));
            elapsed += step;
        }
    });
    for key in 0..(HOT + CHURN) as usize {
        let admitted = net[key].load(Ordering::Relaxed);
        let refunds = refunded[key].load(Ordering::Relaxed);
        let bound = u64::from(quota.max_burst()) + elapsed / interval + refunds;
        assert!(
            admitted <= bound,
            "key {key}: admitted {admitted}, refunds {refunds}, bound {bound}"
        );
    }
    assert!(limiter.tracked_keys() <= 256);
}

/// Window limiters under the same churn, single-threaded: the exact window
/// admits at most `limit` in any `length`-long span ending at a check, the
/// approximate one at most `limit` in any aligned window, whatever idle
/// logs the hand and the sweeps reclaim. A reclaimed active log would hand
/// its key a fresh window.
#[test]
fn windows_never_forget_an_active_log_while_idle_ones_are_reclaimed() {
    for aimed in [false, true] {
        for (max_keys, shards) in [(64, 1), (600, 4)] {
            window_churn(aimed, max_keys, shards, true);
            window_churn(aimed, max_keys, shards, false);
        }
    }
}

fn window_churn(aimed: bool, max_keys: usize, shards: usize, exact: bool) {
    const LIMIT: u32 = 3;
    let length = hour().as_nanos() as u64;
    let clock = ManualClock::new();
    let quota = Quota::per_hour(LIMIT).unwrap();
    let check: Box<dyn Fn(u64) -> bool> = if exact {
        let limiter = ExactWindow::keyed(quota)
            .max_keys(max_keys)
            .shards(shards)
            .hasher(Identity)
            .clock(clock.clone())
            .build()
            .unwrap();
        Box::new(move |key| limiter.check(&key).is_allowed())
    } else {
        let limiter = SlidingWindow::keyed(quota)
            .max_keys(max_keys)
            .shards(shards)
            .hasher(Identity)
            .clock(clock.clone())
            .build()
            .unwrap();
        Box::new(move |key| limiter.check(&key).is_allowed())
    };
    let mut history: HashMap<u64, VecDeque<u64>> = HashMap::new();
    let mut keys = Keys(5);
    let mut now = 0;
    for wave in 0..80 {
        for n in 0..2_000 {
            let drawn = keys.below(3 * max_keys as u64);
            let key = if aimed { AIMED | drawn } else { mix(drawn) };
            if !check(key) {
                continue;
            }
            let admitted = history.entry(key).or_default();
            admitted.push_back(now);
            let in_span = if exact {
                admitted.iter().filter(|&&at| at + length > now).count()
            } else {
                let start = now - now % length;
                admitted.iter().filter(|&&at| at >= start).count()
            };
            assert!(
                in_span <= LIMIT as usize,
                "exact {exact}, aimed {aimed}, wave {wave}, check {n}: key {key:#x} \
                 admitted {in_span} times in one window"
            );
            while admitted.front().is_some_and(|&at| at + 2 * length <= now) {
                admitted.pop_front();
            }
        }
        let step = match keys.below(4) {
            0 => 2 * length + 1,
            1 => length / 2,
            _ => length / 7,
        };
        clock.advance(Duration::from_nanos(step));
        now += step;
    }
}

/// How often a flood of random keys, kept active, makes the table refuse a
/// legitimate new client while it still has room, with a well-spread hash
/// (what the default's random seed gives an attacker who can only choose
/// keys): at three quarters of `max_keys`, never in these tables; close to
/// full, only rarely. Deterministic (constant seeds).
#[test]
fn a_random_flood_rarely_refuses_a_new_client_while_the_table_has_room() {
    for (max_keys, shards) in [(1_000, 8), (100_000, 33), (100_000, 1)] {
        for seed in 0..3 {
            let (at_three_quarters, near_full) = refused_while_room(max_keys, shards, seed);
            assert_eq!(at_three_quarters, 0, "max_keys {max_keys}, seed {seed}");
            // Near full (a client per 1% of headroom): under 1 in 100.
            assert!(
                near_full * 100 <= max_keys / 100,
                "max_keys {max_keys}, seed {seed}: {near_full} refused"
            );
        }
    }
}

/// Fills a table with attacker keys (1 per hour: they stay active) to 75%,
/// then to 99%, of `max_keys`, each time offering as many legitimate new
/// clients as 1% of `max_keys`; returns how many were refused at each.
fn refused_while_room(max_keys: usize, shards: usize, seed: u64) -> (usize, usize) {
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(Quota::per_hour(1).unwrap())
        .max_keys(max_keys)
        .shards(shards)
        .hasher(Seeded(seed))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut keys = Keys(seed);
    let mut attacker = 0u64;
    let mut refused = [0, 0];
    for (phase, fill) in [(0, 75), (1, 99)] {
        let target = max_keys * fill / 100;
        while attacker < 4 * max_keys as u64 {
            let missing = target.saturating_sub(limiter.tracked_keys());
            if missing == 0 {
                break;
            }
            for _ in 0..missing {
                // Attackers refused room are simply not tracked.
                let _ = limiter.check(&(attacker << 1));
                attacker += 1;
            }
        }
        assert_eq!(limiter.tracked_keys(), target);
        for _ in 0..max_keys / 100 {
            let client = (keys.next() << 1) | 1;
            if limiter.check(&client).is_denied() {
                refused[phase] += 1;
            }
        }
    }
    eprintln!(
        "max_keys {max_keys}, shards {shards}, seed {seed}: new clients refused with the \
         table at 75%: {} of {}, at 99%: {} of {}",
        refused[0],
        max_keys / 100,
        refused[1],
        max_keys / 100
    );
    (refused[0], refused[1])
}

/// Absurd sizes are named errors, for each rule, never a panic or an abort.
#[test]
fn absurd_table_settings_are_errors() {
    let quota = Quota::per_second(1).unwrap();
    macro_rules! each_rule {
        ($builder:expr) => {{
            assert_eq!(
                $builder.max_keys(0).build().unwrap_err(),
                BuildError::ZeroMaxKeys
            );
            for max_keys in [usize::MAX, usize::MAX / 2, 1 << 62] {
                assert!(matches!(
                    $builder.max_keys(max_keys).build().unwrap_err(),
                    BuildError::TooManyKeys { .. }
                ));
            }
            for (max_keys, shards) in [(1, 0), (1, 2), (10, 11), (1 << 20, MAX_SHARDS + 1)] {
                assert_eq!(
                    $builder
                        .max_keys(max_keys)
                        .shards(shards)
                        .build()
                        .unwrap_err(),
                    BuildError::InvalidShards { shards, max_keys }
                );
            }
            // One key, one shard; as many shards as keys.
            let one = $builder.max_keys(1).shards(1).build().unwrap();
            assert!(one.check(&1).is_allowed());
            assert!(one.check(&2).is_denied());
            assert_eq!(one.tracked_keys(), 1);
            let many = $builder
                .max_keys(MAX_SHARDS)
                .shards(MAX_SHARDS)
                .build()
                .unwrap();
            for key in 0..2 * MAX_SHARDS as u64 {
                let _ = many.check(&key);
            }
            assert!(many.tracked_keys() <= MAX_SHARDS);
        }};
    }
    each_rule!(Gcra::keyed::<u64>(quota).clock(ManualClock::new()));
    each_rule!(SlidingWindow::<u64>::keyed(quota).clock(ManualClock::new()));
    each_rule!(ExactWindow::<u64>::keyed(quota).clock(ManualClock::new()));
    // Under GCRA, a table whose buckets the 32-bit home index cannot reach.
    assert!(matches!(
        Gcra::keyed::<u64>(quota)
            .max_keys(1 << 36)
            .shards(1)
            .build(),
        Err(BuildError::TooManyKeys { .. })
    ));
}

/// An aimed flood meets either policy at the bound: the attacker gets
/// `max_keys - 1` tracked keys (and, with the overflow bucket, one shared
/// allowance), the victim keeps its limit.
#[test]
fn when_full_policies_keep_the_bound_under_an_aimed_flood() {
    for policy in [WhenFull::DenyNewKeys, WhenFull::ShareOverflowBucket] {
        let clock = ManualClock::new();
        let limiter = Gcra::keyed(Quota::per_hour(1).unwrap())
            .max_keys(100)
            .shards(1)
            .when_full(policy)
            .hasher(Identity)
            .clock(clock.clone())
            .build()
            .unwrap();
        let victim = AIMED;
        assert!(limiter.check(&victim).is_allowed());
        let mut admitted = 0;
        for n in 1..10_000u64 {
            if limiter.check(&(AIMED | n)).is_allowed() {
                admitted += 1;
            }
        }
        // 99 tracked attackers, and with the overflow bucket one more.
        let overflow = usize::from(matches!(policy, WhenFull::ShareOverflowBucket));
        assert_eq!(admitted, 99 + overflow, "{policy:?}");
        assert!(limiter.check(&victim).is_denied(), "{policy:?}");
        assert_eq!(limiter.tracked_keys(), 100);
    }
}

/// Memory is fixed at build time and a flood does not move it: about 22
/// bytes per key of `max_keys` under GCRA with the default regions.
#[test]
fn a_flood_leaves_gcra_memory_where_the_build_put_it() {
    for max_keys in [10_000, 100_000] {
        let clock = ManualClock::new();
        let limiter = Gcra::keyed(Quota::per_second(1_000).unwrap())
            .max_keys(max_keys)
            .clock(clock.clone())
            .build()
            .unwrap();
        let built = limiter.allocated_bytes();
        let per_key = built as f64 / max_keys as f64;
        assert!(
            per_key <= 24.0,
            "max_keys {max_keys}: {per_key} bytes per key"
        );
        let mut keys = Keys(3);
        for n in 0..3 * max_keys {
            let _ = limiter.check(&keys.next());
            if n % 1_000 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        assert_eq!(limiter.allocated_bytes(), built);
        assert!(limiter.tracked_keys() <= max_keys);
    }
}

/// Open (not fixed here, see the report): a refund of a key the table
/// forgot while idle goes to the overflow bucket, which that key's check
/// never charged, so the overflow bucket admits more than one client's
/// worth at one instant. The remote limiter refunds its local limiter
/// after awaiting the remote one, late enough for this. Fixing it needs the
/// refund to know which bucket the check charged (an API change).
#[test]
fn a_late_refund_of_a_forgotten_key_does_not_credit_the_overflow_bucket() {
    let clock = ManualClock::new();
    let limiter = Gcra::keyed(Quota::per_second(1).unwrap())
        .max_keys(1)
        .when_full(WhenFull::ShareOverflowBucket)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(limiter.check(&1u64).is_allowed()); // tracked, charged
    clock.advance(Duration::from_secs(1));
    assert!(limiter.check(&2u64).is_allowed()); // overwrites idle key 1
    assert!(limiter.check(&3u64).is_allowed()); // the overflow bucket
    assert!(limiter.check(&4u64).is_denied()); // the overflow bucket is spent
    limiter.refund(&1u64, 1); // key 1's allowance, a second late
    assert!(
        limiter.check(&4u64).is_denied(),
        "the overflow bucket admitted twice within one instant (burst 1)"
    );
}
