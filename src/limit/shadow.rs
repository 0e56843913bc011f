//! Shadow mode (a dry run) for any limiter: decide, count, deny nobody.
//!
//! A limit that is set too low refuses real customers. Wrapped in
//! [`Shadow`], a limiter decides exactly as it would, but every denial is
//! turned into an allowance and counted ([`Shadow::would_deny`]), so a new
//! limit can be watched against real traffic before it is enforced (see
//! `docs/operations.md`). It is a [`RateLimiter`] itself, so it goes
//! wherever a limiter goes: inline, in an [`AllOf`](super::AllOf), in the
//! HTTP `RateLimitLayer`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{CheckError, Decision, RateLimiter};

/// A limiter that denies nobody and counts whom it would have denied.
///
/// ```
/// use surgeguard::limit::{Gcra, Quota, RateLimiter, Shadow};
///
/// let per_user = Shadow::new(Gcra::keyed(Quota::per_minute(2)?).max_keys(100).build()?);
/// for _ in 0..5 {
///     assert!(per_user.check(&"alice").is_allowed());
/// }
/// assert_eq!(per_user.would_deny(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Shadow<L> {
    inner: L,
    would_deny: AtomicU64,
}

impl<L> Shadow<L> {
    /// Runs `inner` in shadow mode.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota, Shadow};
    /// let global = Shadow::new(Gcra::direct(Quota::per_second(100)?).build()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: L) -> Self {
        Shadow {
            inner,
            would_deny: AtomicU64::new(0),
        }
    }

    /// Checks the wrapped limiter would have denied.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota, RateLimiter, Shadow};
    /// let limiter = Shadow::new(Gcra::direct(Quota::per_minute(1)?).build()?);
    /// let _ = limiter.check(&());
    /// assert_eq!(limiter.would_deny(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn would_deny(&self) -> u64 {
        self.would_deny.load(Ordering::Relaxed)
    }

    /// The wrapped limiter.
    ///
    /// ```
    /// # use surgeguard::limit::{Gcra, Quota, Shadow};
    /// let limiter = Shadow::new(Gcra::direct(Quota::per_minute(1)?).build()?);
    /// assert_eq!(limiter.inner().stripes(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inner(&self) -> &L {
        &self.inner
    }

    fn allow(&self, decision: Decision) -> Decision {
        match decision.denial_as_allowance() {
            Some(allowance) => {
                self.would_deny.fetch_add(1, Ordering::Relaxed);
                allowance
            }
            None => decision,
        }
    }
}

impl<K: ?Sized, L: RateLimiter<K>> RateLimiter<K> for Shadow<L> {
    fn check(&self, key: &K) -> Decision {
        self.allow(self.inner.check(key))
    }

    /// As the wrapped limiter's, with denials turned into allowances; a
    /// cost over the burst is still an error (it can never pass).
    fn check_n(&self, key: &K, cost: u32) -> Result<Decision, CheckError> {
        self.inner.check_n(key, cost).map(|d| self.allow(d))
    }

    /// Passed through. A refund after a check the wrapped limiter denied
    /// gives back units it never took (it keeps at most a burst); in an
    /// [`AllOf`](super::AllOf), put the shadowed limit last so it is never
    /// refunded.
    fn refund(&self, key: &K, cost: u32) {
        self.inner.refund(key, cost);
    }
}
