//! The policy's per-entry state, kept by the shard in its slab entry.
//!
//! A hit must touch as little memory as possible. The slab entry already
//! holds the key and the value the hit reads; putting the policy's word (hit
//! tally, segment and key fingerprint) and the weight there too means a hit
//! reads and writes one cache line, and for `u64` keys and values the eight
//! bytes fill what would otherwise be padding. The policy reaches the words
//! through the small [`Entries`] trait, so it never needs to know the slab's
//! layout.

use std::sync::atomic::{AtomicU32, Ordering};

// Layout of `EntryMeta::word`: hits:4 | queue:2 | fingerprint:26.
pub(super) const HITS_MASK: u32 = 0xF;
pub(super) const QUEUE_SHIFT: u32 = 4;
pub(super) const QUEUE_MASK: u32 = 0b11 << QUEUE_SHIFT;
pub(super) const FP_SHIFT: u32 = 6;

/// The policy's state that lives in the shell's slab entry, beside the key
/// and value: a hit then touches one cache line, and for `u64` keys and
/// values the eight bytes fill what would otherwise be padding.
#[derive(Debug, Default)]
pub(crate) struct EntryMeta {
    /// hits:4 | queue:2 | fingerprint:26. Hits are bumped under the shard's
    /// read lock; everything else changes only under its write lock.
    word: AtomicU32,
    /// The entry's weight (>= 1).
    weight: u32,
}

impl EntryMeta {
    /// Metadata of a new entry weighing `weight`, not yet known to a policy.
    pub(crate) fn new(weight: u32) -> Self {
        EntryMeta {
            word: AtomicU32::new(0),
            weight,
        }
    }

    /// A hit on this entry; called under a shared read lock, concurrently.
    /// One relaxed load and at most one relaxed store; racing hits may be
    /// lost, which only makes the entry look a little colder.
    #[inline]
    pub(crate) fn record_hit(&self) {
        let word = self.word.load(Ordering::Relaxed);
        if word & HITS_MASK != HITS_MASK {
            self.word.store(word + 1, Ordering::Relaxed);
        }
    }

    /// The entry's weight.
    #[inline]
    pub(crate) fn weight(&self) -> u32 {
        self.weight
    }

    /// Sets the weight; the caller then tells the policy ([`Policy::update`]).
    pub(crate) fn set_weight(&mut self, weight: u32) {
        self.weight = weight;
    }

    #[inline]
    pub(super) fn load(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    /// Only called under the write lock, so no hit can race with it.
    #[inline]
    pub(super) fn store(&self, word: u32) {
        self.word.store(word, Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn queue(&self) -> usize {
        ((self.load() & QUEUE_MASK) >> QUEUE_SHIFT) as usize
    }
}

/// The shell's slab as the policy sees it: metadata by slot index.
pub(crate) trait Entries {
    /// The metadata of the entry in slot `index`.
    fn meta(&self, index: u32) -> &EntryMeta;
}
