//! The locks and atomics of the shedder's admission core: parking_lot's and
//! std's, or loom's under `cfg(surgeguard_loom)`, so that the loom model in
//! `admission.rs` explores every interleaving of a release, a limit change,
//! a newcomer and a waiter queueing (and a lock or atomic that loom cannot
//! see would hide the race it is there to find).

#[cfg(not(surgeguard_loom))]
pub(super) use parking_lot::{Mutex, MutexGuard};
#[cfg(not(surgeguard_loom))]
pub(super) use std::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(surgeguard_loom)]
pub(super) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(surgeguard_loom)]
pub(super) use loom::sync::MutexGuard;

/// loom's mutex with parking_lot's signature (no poisoning).
#[cfg(surgeguard_loom)]
pub(super) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(surgeguard_loom)]
impl<T> Mutex<T> {
    pub(super) fn new(value: T) -> Self {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(surgeguard_loom)]
impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mutex { .. }")
    }
}
