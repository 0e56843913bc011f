//! Several limits on one request, all or nothing.
//!
//! A request is usually limited more than once: per client address, per
//! account, and globally. [`AllOf`] checks them in the order they were added
//! and consumes from none unless all allow.
//!
//! **How: check, then roll back.** Each limit is checked (and so takes the
//! cost) in turn; at the first denial, every limit that already took the cost
//! gets it back through [`RateLimiter::refund`], in reverse order. No lock
//! spans the limits, so the combination costs the sum of its parts.
//!
//! **Concurrency.** Between a limit taking the cost and the refund, other
//! requests see those units as spent, so a concurrent request may be denied
//! that would have been allowed a moment later: transient under-admission,
//! never over-admission. Each limit on its own stays exact. Putting the limit
//! most likely to deny first (the per-client one) keeps that window short.

use std::fmt;
use std::marker::PhantomData;

use super::{CheckError, Decision, RateLimiter};

/// One limit and how to find its key in a request.
trait Member<R: ?Sized>: Send + Sync {
    fn check_n(&self, request: &R, cost: u32) -> Result<Decision, CheckError>;
    fn refund(&self, request: &R, cost: u32);
}

struct Bound<L, F, K> {
    limiter: L,
    key_of: F,
    _key: PhantomData<fn() -> K>,
}

impl<R, K, L, F> Member<R> for Bound<L, F, K>
where
    R: ?Sized,
    L: RateLimiter<K>,
    F: Fn(&R) -> K + Send + Sync,
{
    fn check_n(&self, request: &R, cost: u32) -> Result<Decision, CheckError> {
        self.limiter.check_n(&(self.key_of)(request), cost)
    }

    fn refund(&self, request: &R, cost: u32) {
        self.limiter.refund(&(self.key_of)(request), cost);
    }
}

/// Limits that must all allow a request; it consumes from none unless they
/// do.
///
/// **How: check, then roll back.** Each limit is checked (and so takes the
/// cost) in the order added; at the first denial, every limit that already
/// took the cost gets it back through [`RateLimiter::refund`], in reverse
/// order. No lock spans the limits.
///
/// **Concurrency.** Between a limit taking the cost and the refund, other
/// requests see those units as spent, so a concurrent request may be denied
/// that would have been allowed a moment later: transient under-admission,
/// never over-admission. Putting the limit most likely to deny first (the
/// per-client one) keeps that window short.
///
/// ```
/// use std::net::IpAddr;
/// use std::sync::Arc;
/// use surgeguard::limit::{AllOf, Gcra, Quota, RateLimiter};
///
/// struct Request { client: IpAddr }
///
/// let per_ip = Arc::new(Gcra::keyed(Quota::per_minute(2)?).build()?);
/// let global = Gcra::direct(Quota::per_minute(3)?).build()?;
/// let limits = AllOf::new(per_ip.clone(), |request: &Request| request.client)
///     .and(global, |_: &Request| ());
///
/// let alice = Request { client: "192.0.2.1".parse()? };
/// let bob = Request { client: "192.0.2.2".parse()? };
/// assert!(limits.check(&alice).is_allowed());
/// assert!(limits.check(&alice).is_allowed());
/// assert!(limits.check(&alice).is_denied()); // per IP: 2 a minute
/// assert!(limits.check(&bob).is_allowed()); // global: the 3rd
/// assert!(limits.check(&bob).is_denied()); // global is spent...
/// // ...and bob's per-IP unit was given back.
/// assert_eq!(per_ip.check_n(&bob.client, 0)?.remaining(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AllOf<R: ?Sized> {
    members: Vec<Box<dyn Member<R>>>,
}

impl<R: ?Sized + 'static> AllOf<R> {
    /// A combination of one limit so far, keyed by `key_of(request)`.
    ///
    /// ```
    /// # use surgeguard::limit::{AllOf, Gcra, Quota, RateLimiter};
    /// let per_user = Gcra::keyed(Quota::per_second(1)?).build()?;
    /// let limits = AllOf::new(per_user, |user: &u64| *user);
    /// assert!(limits.check(&7).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<K, L, F>(limiter: L, key_of: F) -> Self
    where
        K: 'static,
        L: RateLimiter<K> + 'static,
        F: Fn(&R) -> K + Send + Sync + 'static,
    {
        AllOf {
            members: Vec::new(),
        }
        .and(limiter, key_of)
    }

    /// Adds a limit, checked after those already added.
    ///
    /// ```
    /// # use surgeguard::limit::{AllOf, Gcra, Quota, RateLimiter};
    /// let limits = AllOf::new(Gcra::keyed(Quota::per_second(5)?).build()?, |user: &u64| *user)
    ///     .and(Gcra::direct(Quota::per_second(100)?).build()?, |_| ());
    /// assert_eq!(limits.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn and<K, L, F>(mut self, limiter: L, key_of: F) -> Self
    where
        K: 'static,
        L: RateLimiter<K> + 'static,
        F: Fn(&R) -> K + Send + Sync + 'static,
    {
        self.members.push(Box::new(Bound {
            limiter,
            key_of,
            _key: PhantomData,
        }));
        self
    }

    /// The number of limits combined (at least 1).
    ///
    /// ```
    /// # use surgeguard::limit::{AllOf, Gcra, Quota};
    /// let limits = AllOf::new(Gcra::direct(Quota::per_second(1)?).build()?, |_: &()| ());
    /// assert_eq!(limits.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    #[allow(clippy::len_without_is_empty)] // never empty: `new` takes the first limit
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Takes `cost` from every limit, or from none. Allowed: the decision of
    /// the most restrictive limit (least remaining). Denied: the first
    /// denial, in the order the limits were added. An error (a cost above
    /// one limit's burst) also takes nothing.
    ///
    /// ```
    /// # use surgeguard::limit::{AllOf, CheckError, Gcra, Quota};
    /// # // Clocks that stand still: no unit refills between the checks,
    /// # // however slowly the example runs.
    /// # use surgeguard::clock::ManualClock;
    /// let ten = Gcra::direct(Quota::per_second(10)?)
    /// #   .clock(ManualClock::new())
    ///     .build()?;
    /// let five = Gcra::direct(Quota::per_second(5)?)
    /// #   .clock(ManualClock::new())
    ///     .build()?;
    /// let limits = AllOf::new(ten, |_: &()| ()).and(five, |_: &()| ());
    /// assert_eq!(limits.check_n(&(), 2)?.remaining(), 3);
    /// assert!(matches!(limits.check_n(&(), 6), Err(CheckError::CostExceedsBurst { .. })));
    /// assert_eq!(limits.check_n(&(), 0)?.remaining(), 3); // the error took nothing
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_n(&self, request: &R, cost: u32) -> Result<Decision, CheckError> {
        let mut tightest: Option<Decision> = None;
        for (taken, member) in self.members.iter().enumerate() {
            let outcome = member.check_n(request, cost);
            let decision = match outcome {
                Ok(decision) if decision.is_allowed() => decision,
                refused => {
                    self.roll_back(&self.members[..taken], request, cost);
                    return refused;
                }
            };
            tightest = Some(match tightest {
                Some(earlier) if earlier.remaining() <= decision.remaining() => earlier,
                _ => decision,
            });
        }
        // `members` is never empty (`new` takes the first), so this is set.
        Ok(tightest.unwrap_or_else(never_decided))
    }

    /// Takes one unit from every limit, or from none.
    ///
    /// ```
    /// # use surgeguard::limit::{AllOf, Gcra, Quota};
    /// let limits = AllOf::new(Gcra::direct(Quota::per_hour(1)?).build()?, |_: &()| ());
    /// assert!(limits.check(&()).is_allowed());
    /// assert!(limits.check(&()).is_denied());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self, request: &R) -> Decision {
        // A cost of 1 is never an error: no quota has a burst below 1.
        self.check_n(request, 1).unwrap_or_else(|_| never_decided())
    }

    /// Gives `cost` back to every limit.
    ///
    /// ```
    /// # use surgeguard::limit::{AllOf, Gcra, Quota};
    /// let limits = AllOf::new(Gcra::direct(Quota::per_hour(1)?).build()?, |_: &()| ());
    /// assert!(limits.check(&()).is_allowed());
    /// limits.refund(&(), 1);
    /// assert!(limits.check(&()).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refund(&self, request: &R, cost: u32) {
        self.roll_back(&self.members, request, cost);
    }

    fn roll_back(&self, taken: &[Box<dyn Member<R>>], request: &R, cost: u32) {
        for member in taken.iter().rev() {
            member.refund(request, cost);
        }
    }
}

/// For the cases the types cannot rule out but construction does (no limit
/// at all, a limit with a burst below 1): a denial that announces nothing,
/// rather than a panic.
#[cold]
fn never_decided() -> Decision {
    Decision::Denied {
        limit: 0,
        remaining: 0,
        retry_after: std::time::Duration::ZERO,
        reset_after: std::time::Duration::ZERO,
        policy_window: std::time::Duration::ZERO,
    }
}

impl<R: ?Sized + 'static> RateLimiter<R> for AllOf<R> {
    fn check(&self, request: &R) -> Decision {
        AllOf::check(self, request)
    }

    fn check_n(&self, request: &R, cost: u32) -> Result<Decision, CheckError> {
        AllOf::check_n(self, request, cost)
    }

    fn refund(&self, request: &R, cost: u32) {
        AllOf::refund(self, request, cost);
    }
}

impl<R: ?Sized> fmt::Debug for AllOf<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllOf")
            .field("limits", &self.members.len())
            .finish()
    }
}
