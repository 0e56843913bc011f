//! The keyed store: at most `max_keys` per-key states, whatever arrives.
//!
//! A bounded keyed table exists for one moment, a flood of distinct keys
//! (a botnet, spoofed addresses, random API keys): memory must stay fixed,
//! a client that is being limited must not be forgotten, and a check must
//! cost the same whatever the attacker sends. Two storages meet that,
//! because the rules' states differ in width:
//!
//! * **Tags** (`tags.rs`, GCRA): the state is one word (the TAT), so a slot
//!   is two atomic words (a 64-bit tag of the key, the TAT) that a check
//!   reads and compare-and-swaps with no lock at all.
//! * **Entries** (`entries.rs`, the windows): the state is several words
//!   updated together (two counters, or a log of timestamps), so each shard
//!   is a hash table of keys and states under a mutex.
//!
//! What they share is here: the interface a [`Keyed`](crate::limit::Keyed)
//! limiter drives ([`KeyRule`], [`KeyStore`], [`Outcome`]), the slack a
//! small part gets, and (`bound.rs`) the bound-keeping: the table-wide
//! count of places, the idle bound, and making room in other parts. Both
//! storages forget a key only when it is idle (its state decides as a fresh
//! one would), so forgetting never changes a decision.
//!
//! ```text
//!   limiters:  Gcra (gcra.rs)   Keyed (keyed.rs)   SlidingWindow, ExactWindow (window.rs)
//!                  │                 │                      │
//!                  ▼                 ▼                      ▼
//!   store:     KeyRule, KeyStore, Outcome (here) ◄── tags.rs, entries.rs ──► bound.rs
//!                  │
//!   rule:      gcra_rule.rs (the GCRA arithmetic; tags.rs stores its TATs)
//! ```

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use super::Decision;

pub(crate) mod bound;
pub(crate) mod entries;
pub(crate) mod tags;

pub(crate) use entries::Table;

/// The most shards a keyed limiter may have.
///
/// ```
/// use surgeguard::limit::{BuildError, Gcra, Quota, MAX_SHARDS};
///
/// let err = Gcra::keyed::<u64>(Quota::per_second(1)?).shards(MAX_SHARDS + 1).build();
/// assert!(matches!(err, Err(BuildError::InvalidShards { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const MAX_SHARDS: usize = 1 << 16;

pub mod sealed {
    /// Only this crate's rules can run in a keyed table.
    pub trait Sealed {}
}

/// The per-key rule a [`Keyed`](crate::limit::Keyed) limiter applies: GCRA,
/// the approximate sliding window or the exact one. Sealed, and not
/// nameable outside the crate (this module is private): the table's memory
/// bound relies on each rule's idle time being right.
pub trait KeyRule: sealed::Sealed + Send + Sync + fmt::Debug + 'static {
    /// One key's state.
    type State: Send + Sync + fmt::Debug;

    /// The key table that holds this rule's states.
    type Store<K, S>: KeyStore<K, S, Rule = Self>;

    /// The state of a key never seen (or idle).
    fn fresh_state(&self) -> Self::State;

    /// The largest cost one check may ask for.
    fn max_cost(&self) -> u32;

    /// Decides a check of `cost` (at most `max_cost`) at `now`, updating the
    /// state if it is allowed.
    fn decide(&self, state: &mut Self::State, now: u64, cost: u32) -> Decision;

    /// Gives back `cost` units taken by an allowed check.
    fn refund(&self, state: &mut Self::State, now: u64, cost: u32);

    /// From this time on the state decides exactly as a fresh one would, so
    /// the key can be forgotten. Never decreases as checks are made.
    fn idle_at(&self, state: &Self::State) -> u64;

    /// The limit a decision announces.
    fn limit(&self) -> u32;

    /// The policy window a decision announces.
    fn policy_window(&self) -> Duration;
}

/// What a check under the lock decided: a decision, or no room for a new
/// key.
#[derive(Debug)]
pub enum Outcome {
    /// The check was decided.
    Decided(Decision),
    /// The shard (or the whole table) is full of active keys; none of the
    /// shard's is idle before this time.
    Full {
        /// A lower bound of the time a key may go idle and make room.
        next_idle: u64,
    },
}

/// The memory for the requested number of keys could not be reserved.
#[derive(Debug)]
pub struct TableTooLarge;

/// The operations a [`Keyed`](crate::limit::Keyed) limiter needs from its
/// key table, so that each rule can have the table that suits its state
/// ([`KeyRule::Store`]): GCRA, whose state is one word, the lock-free
/// [`TagTable`](tags::TagTable); the window rules, whose state is wider, the locked
/// [`Table`]. Public in name only (the module is private), as a bound of
/// the sealed [`KeyRule`].
pub trait KeyStore<K, S>: fmt::Debug + Sized {
    /// The rule whose states the table holds.
    type Rule: KeyRule;

    /// A table for at most `max_keys` keys in `shards` shards (regions),
    /// between 1 and `max_keys` (the builder checks); `None` for the
    /// table's default.
    fn build(
        rule: Self::Rule,
        max_keys: usize,
        shards: Option<usize>,
        hasher: S,
    ) -> Result<Self, TableTooLarge>
    where
        K: Hash + Eq + Clone,
        S: BuildHasher;

    /// The hot part of a check: a tracked key, decided without an exclusive
    /// lock. `Err(hash)`: the check needs
    /// [`check_exclusive`](Self::check_exclusive), given the hash.
    fn check_tracked(&self, key: &K, now: u64, cost: u32) -> Result<Decision, u64>
    where
        K: Hash + Eq + Clone,
        S: BuildHasher;

    /// A check under the lock: a new key (inserted if there is room), or
    /// one the hot part could not decide.
    fn check_exclusive(&self, hash: u64, key: &K, now: u64, cost: u32) -> Outcome
    where
        K: Hash + Eq + Clone,
        S: BuildHasher;

    /// Gives back `cost` to `key`; false if the key is not tracked.
    fn refund(&self, key: &K, now: u64, cost: u32) -> bool
    where
        K: Hash + Eq + Clone,
        S: BuildHasher;

    /// Keys tracked now.
    fn tracked_keys(&self) -> usize;

    /// Bytes the table holds.
    fn allocated_bytes(&self) -> usize;

    /// Forgets every key idle at `now`; returns how many.
    fn reclaim_all_idle(&self, now: u64) -> usize;

    /// The rule.
    fn rule(&self) -> &Self::Rule;

    /// The most keys tracked at once.
    fn max_keys(&self) -> usize;

    /// Shards (regions) the table is split into.
    fn shard_count(&self) -> usize;
}

/// Shards with a share of at least this many keys hold exactly their share;
/// smaller shares get slack (see the module docs).
pub(crate) const EXACT_SHARE_KEYS: usize = 256;

/// Places a shard with a mean share of `share` keys may hold beyond its
/// share: `⌈4√share⌉ + 4` below [`EXACT_SHARE_KEYS`], none from there on.
pub(crate) fn slack(share: usize) -> usize {
    if share >= EXACT_SHARE_KEYS {
        return 0;
    }
    let square = 16 * share;
    let root = square.isqrt();
    root + usize::from(root * root < square) + 4
}

/// Both storages' bound-keeping under one random operation sequence.
#[cfg(all(test, not(surgeguard_loom)))]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::limit::gcra_rule::GcraRule;
    use crate::limit::Quota;

    /// A check as `Keyed` runs it: the hot part, then the locked one.
    fn check<T: KeyStore<u64, ahash::RandomState>>(
        store: &T,
        key: u64,
        now: u64,
        cost: u32,
    ) -> Outcome {
        match store.check_tracked(&key, now, cost) {
            Ok(decision) => Outcome::Decided(decision),
            Err(hash) => store.check_exclusive(hash, &key, now, cost),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Check { key: u64, cost: u32 },
        Refund { key: u64, cost: u32 },
        ReclaimAll,
    }

    fn op() -> impl Strategy<Value = (u64, Op)> {
        let op = prop_oneof![
            8 => (0u64..60, 0u32..4).prop_map(|(key, cost)| Op::Check { key, cost }),
            1 => (0u64..60, 1u32..4).prop_map(|(key, cost)| Op::Refund { key, cost }),
            1 => Just(Op::ReclaimAll),
        ];
        // Mostly short steps, so that tables fill with active keys; now and
        // then one long enough for every key to go idle.
        let step = prop_oneof![8 => 0u64..200_000, 1 => 0u64..5_000_000];
        (step, op)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The same operations against the tag store and the entry store,
        /// with the same rule: neither ever tracks more than `max_keys`, each
        /// one's count of places equals the keys it holds, and (every shard
        /// and region of tables this small can hold the whole table, so only
        /// `max_keys` limits them) they decide alike, refusals included.
        #[test]
        fn both_storages_keep_the_same_bound(
            max_keys in 1usize..=40,
            parts in 1usize..=3,
            burst in 1u32..4,
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let parts = parts.min(max_keys);
            let rule = GcraRule::new(Quota::per_second(1_000).unwrap().burst(burst).unwrap());
            let hasher = || ahash::RandomState::with_seeds(seed, 2, 3, 4);
            let tags = tags::TagTable::new(rule, max_keys, Some(parts), hasher()).unwrap();
            let entries = entries::Table::<u64, GcraRule, _>::new(rule, max_keys, parts, hasher())
                .unwrap();
            let mut now = 0;
            for (step, op) in ops {
                now += step;
                match op {
                    Op::Check { key, cost } => {
                        let cost = cost.min(burst);
                        match (check(&tags, key, now, cost), check(&entries, key, now, cost)) {
                            (Outcome::Decided(a), Outcome::Decided(b)) => prop_assert_eq!(a, b),
                            (Outcome::Full { .. }, Outcome::Full { .. }) => {}
                            (a, b) => prop_assert!(false, "key {}: tags {:?}, entries {:?}", key, a, b),
                        }
                    }
                    Op::Refund { key, cost } => {
                        let cost = cost.min(burst);
                        let a = KeyStore::<u64, _>::refund(&tags, &key, now, cost);
                        let b = KeyStore::<u64, _>::refund(&entries, &key, now, cost);
                        // A key one store forgot idle may be tracked by the
                        // other; a refund to an idle key changes nothing.
                        let _ = (a, b);
                    }
                    Op::ReclaimAll => {
                        KeyStore::<u64, _>::reclaim_all_idle(&tags, now);
                        KeyStore::<u64, _>::reclaim_all_idle(&entries, now);
                    }
                }
                let (in_tags, in_entries) = (
                    KeyStore::<u64, _>::tracked_keys(&tags),
                    KeyStore::<u64, _>::tracked_keys(&entries),
                );
                prop_assert!(in_tags <= max_keys && in_entries <= max_keys);
                prop_assert_eq!(tags.places_taken(), in_tags);
                if let Some(taken) = entries.places_taken() {
                    prop_assert_eq!(taken, in_entries);
                }
            }
        }
    }
}
