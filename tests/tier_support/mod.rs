//! An in-memory shared tier for the tiered cache's tests: several
//! "instances" share one state, time is a `ManualClock`, and the backplane
//! calls the other instances' listeners at once. Its rules are the ones
//! `RemoteTier` documents (fetch-or-lease in one step, fill only while the
//! lease holds, store and remove clear the lease and tell the others).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use surgeguard::cache::tier::{
    Fetch, FetchRequest, Invalidation, InvalidationListener, LeaseToken, RemoteTier, TierError,
    TierFuture,
};
use surgeguard::clock::{Clock, ManualClock};

#[derive(Default)]
struct State {
    /// key → (bytes, written at, expires at)
    values: HashMap<Vec<u8>, (Vec<u8>, Duration, Duration)>,
    /// key → (token, expires at)
    leases: HashMap<Vec<u8>, (String, Duration)>,
    listeners: Vec<(u64, InvalidationListener)>,
    next_token: u64,
    next_instance: u64,
}

/// One instance's handle on the shared memory tier.
#[derive(Clone)]
pub struct MemoryTier {
    state: Arc<Mutex<State>>,
    clock: ManualClock,
    instance: u64,
    /// When set, every call fails as if the tier were down.
    pub down: Arc<std::sync::atomic::AtomicBool>,
    pub calls: Arc<AtomicU64>,
}

impl MemoryTier {
    pub fn new(clock: ManualClock) -> Self {
        MemoryTier {
            state: Arc::default(),
            clock,
            instance: 0,
            down: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Another instance's handle on the same tier.
    pub fn join(&self) -> Self {
        let instance = {
            let mut state = self.state.lock();
            state.next_instance += 1;
            state.next_instance
        };
        MemoryTier {
            state: Arc::clone(&self.state),
            clock: self.clock.clone(),
            instance,
            down: Arc::default(),
            calls: Arc::default(),
        }
    }

    pub fn holds(&self, key: &[u8]) -> Option<Vec<u8>> {
        let now = self.now();
        let state = self.state.lock();
        state
            .values
            .get(key)
            .filter(|(_, _, expires)| *expires > now)
            .map(|(bytes, _, _)| bytes.clone())
    }

    pub fn leased(&self, key: &[u8]) -> bool {
        let now = self.now();
        self.state
            .lock()
            .leases
            .get(key)
            .is_some_and(|(_, expires)| *expires > now)
    }

    pub fn put_raw(&self, key: &[u8], bytes: &[u8]) {
        let now = self.now();
        self.state
            .lock()
            .values
            .insert(key.to_vec(), (bytes.to_vec(), now, Duration::MAX));
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.clock.now().as_nanos())
    }

    fn check(&self) -> Result<(), TierError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(TierError::Unavailable("down (test)".into()))
        } else {
            Ok(())
        }
    }

    fn announce(&self, key: &[u8]) {
        let listeners: Vec<InvalidationListener> = self
            .state
            .lock()
            .listeners
            .iter()
            .filter(|(instance, _)| *instance != self.instance)
            .map(|(_, listener)| Arc::clone(listener))
            .collect();
        for listener in listeners {
            listener(Invalidation::Key(key));
        }
    }

    fn fetch_now(&self, key: &[u8], want: FetchRequest) -> Result<Fetch, TierError> {
        self.check()?;
        let now = self.now();
        let mut state = self.state.lock();
        let value = state
            .values
            .get(key)
            .filter(|(_, _, expires)| *expires > now)
            .cloned();
        if let Some((bytes, born, _)) = &value {
            let fresh = want
                .fresh_for
                .is_none_or(|age| now.saturating_sub(*born) < age);
            if fresh {
                return Ok(Fetch::Value(bytes.clone()));
            }
        }
        let held = state
            .leases
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .cloned();
        match held {
            None => {
                state.next_token += 1;
                let token = format!("{}-{}", self.instance, state.next_token);
                state
                    .leases
                    .insert(key.to_vec(), (token.clone(), now + want.lease));
                Ok(Fetch::Leased(LeaseToken::new(token)))
            }
            Some((_, expires)) => match value {
                Some((bytes, _, _)) => Ok(Fetch::Stale(bytes)),
                None => Ok(Fetch::Busy {
                    lease_left: expires - now,
                }),
            },
        }
    }
}

impl RemoteTier for MemoryTier {
    fn fetch<'a>(&'a self, key: &'a [u8], want: FetchRequest) -> TierFuture<'a, Fetch> {
        let result = self.fetch_now(key, want);
        Box::pin(async move { result })
    }

    fn fill<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        ttl: Duration,
        lease: &'a LeaseToken,
    ) -> TierFuture<'a, bool> {
        let result = self.check().map(|()| {
            let now = self.now();
            let mut state = self.state.lock();
            let holds = state
                .leases
                .get(key)
                .is_some_and(|(token, expires)| token == lease.as_str() && *expires > now);
            if holds {
                state.leases.remove(key);
                state
                    .values
                    .insert(key.to_vec(), (value.to_vec(), now, now.saturating_add(ttl)));
            }
            holds
        });
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, key: &'a [u8], lease: &'a LeaseToken) -> TierFuture<'a, ()> {
        let result = self.check().map(|()| {
            let mut state = self.state.lock();
            if state
                .leases
                .get(key)
                .is_some_and(|(token, _)| token == lease.as_str())
            {
                state.leases.remove(key);
            }
        });
        Box::pin(async move { result })
    }

    fn store<'a>(&'a self, key: &'a [u8], value: &'a [u8], ttl: Duration) -> TierFuture<'a, ()> {
        let result = self.check().map(|()| {
            let now = self.now();
            {
                let mut state = self.state.lock();
                state.leases.remove(key);
                state
                    .values
                    .insert(key.to_vec(), (value.to_vec(), now, now.saturating_add(ttl)));
            }
            self.announce(key);
        });
        Box::pin(async move { result })
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> TierFuture<'a, ()> {
        let result = self.check().map(|()| {
            {
                let mut state = self.state.lock();
                state.leases.remove(key);
                state.values.remove(key);
            }
            self.announce(key);
        });
        Box::pin(async move { result })
    }

    fn subscribe(&self, listener: InvalidationListener) {
        self.state.lock().listeners.push((self.instance, listener));
    }
}
