//! Counting decisions for metrics, without one contended counter.
//!
//! A limiter checked from every core must not gain a shared counter that
//! every check writes: that single cache line would cost more than the
//! check. [`Counted`] keeps its counts in 16 cache-line-sized stripes, each
//! thread writing the stripe its id hashes to, and sums them when read.
//! With the `tracing` feature a denial is also a debug event, at most one a
//! second (with how many were held back).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{CheckError, Decision, RateLimiter};

const STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    allowed: AtomicU64,
    denied: AtomicU64,
}

/// A limiter that counts its allowed and denied checks (for
/// `surgeguard::metrics::Reporter::limiter`, or your own reporting).
///
/// ```
/// use surgeguard::limit::{Counted, Gcra, Quota, RateLimiter};
///
/// let per_ip = Counted::new(Gcra::keyed(Quota::per_minute(1)?).max_keys(100).build()?);
/// let _ = per_ip.check(&"192.0.2.1");
/// let _ = per_ip.check(&"192.0.2.1");
/// assert_eq!((per_ip.allowed(), per_ip.denied()), (1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Counted<L> {
    inner: L,
    stripes: Box<[Stripe; STRIPES]>,
    /// With the `tracing` feature, denials are debug events, at most one a
    /// second.
    #[cfg(feature = "tracing")]
    denial_events: crate::events::EventGate,
}

impl<L> Counted<L> {
    /// Counts the decisions of `inner`.
    ///
    /// ```
    /// # use surgeguard::limit::{Counted, Gcra, Quota};
    /// let global = Counted::new(Gcra::direct(Quota::per_second(100)?).build()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: L) -> Self {
        Counted {
            inner,
            stripes: Box::default(),
            #[cfg(feature = "tracing")]
            denial_events: crate::events::EventGate::new(),
        }
    }

    /// Checks allowed so far.
    ///
    /// ```
    /// # use surgeguard::limit::{Counted, Gcra, Quota, RateLimiter};
    /// let limiter = Counted::new(Gcra::direct(Quota::per_second(5)?).build()?);
    /// let _ = limiter.check(&());
    /// assert_eq!(limiter.allowed(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allowed(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.allowed.load(Ordering::Relaxed))
            .sum()
    }

    /// Checks denied so far.
    ///
    /// ```
    /// # use surgeguard::limit::{Counted, Gcra, Quota, RateLimiter};
    /// let limiter = Counted::new(Gcra::direct(Quota::per_minute(1)?).build()?);
    /// let _ = (limiter.check(&()), limiter.check(&()));
    /// assert_eq!(limiter.denied(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn denied(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.denied.load(Ordering::Relaxed))
            .sum()
    }

    /// The wrapped limiter.
    ///
    /// ```
    /// # use surgeguard::limit::{Counted, Gcra, Quota};
    /// let limiter = Counted::new(Gcra::direct(Quota::per_minute(1)?).build()?);
    /// assert_eq!(limiter.inner().stripes(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inner(&self) -> &L {
        &self.inner
    }

    #[inline]
    fn count(&self, decision: Decision) -> Decision {
        let stripe = &self.stripes[stripe_of_this_thread()];
        if decision.is_allowed() {
            stripe.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            stripe.denied.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "tracing")]
            self.denial_event(&decision);
        }
        decision
    }

    #[cfg(feature = "tracing")]
    #[cold]
    fn denial_event(&self, decision: &Decision) {
        use crate::clock::Clock;
        let now = crate::clock::SystemClock.now().as_nanos();
        if let Some(held_back) = self.denial_events.pass(now) {
            tracing::debug!(
                retry_after = ?decision.retry_after(),
                limit = decision.limit(),
                held_back,
                "surgeguard: rate limit denied a request"
            );
        }
    }
}

/// The stripe a thread writes: threads take stripes in turn as they first
/// count, so up to 16 threads never share one.
fn stripe_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

impl<K: ?Sized, L: RateLimiter<K>> RateLimiter<K> for Counted<L> {
    #[inline]
    fn check(&self, key: &K) -> Decision {
        self.count(self.inner.check(key))
    }

    #[inline]
    fn check_n(&self, key: &K, cost: u32) -> Result<Decision, CheckError> {
        self.inner.check_n(key, cost).map(|d| self.count(d))
    }

    fn refund(&self, key: &K, cost: u32) {
        self.inner.refund(key, cost);
    }
}

impl<L: std::fmt::Debug> std::fmt::Debug for Counted<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("inner", &self.inner)
            .field("allowed", &self.allowed())
            .field("denied", &self.denied())
            .finish()
    }
}
