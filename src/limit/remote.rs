//! One limiter interface for the middleware, local and remote: a limiter
//! answers now (every local one: a few nanoseconds, no allocation) or
//! later (a limit shared by a fleet, one round trip to Redis away).
//!
//! The HTTP middleware asks through [`AsyncRateLimiter::begin`] and gets a
//! [`Checked`]: `Now` keeps today's synchronous path exactly as it was (no
//! future is made, nothing is boxed); only `Later` makes the request wait.
//! [`LocalThenRemote`] checks local limits first and the remote one only
//! when they allow, so a local denial costs the remote limit nothing and
//! a remote denial gives the local units back.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::store::KeyRule;
use super::{AllOf, Counted, Decision, Gcra, Keyed, RateLimiter, Shadow};
use crate::clock::Clock;

/// A limiter the middleware can ask, whether it answers at once or after a
/// round trip: every local limiter, [`Local`] around your own
/// [`RateLimiter`], [`RedisLimiter`](crate::redis::RedisLimiter) (feature
/// `redis`), and [`LocalThenRemote`].
///
/// ```
/// use std::sync::Arc;
/// use surgeguard::limit::{AsyncRateLimiter, Checked, Gcra, Quota};
///
/// let per_ip = Arc::new(Gcra::keyed::<u64>(Quota::per_minute(1)?).max_keys(10).build()?);
/// match AsyncRateLimiter::begin(&per_ip, &7) {
///     Checked::Now(decision) => assert!(decision.is_allowed()), // local: answered at once
///     Checked::Later(_) => unreachable!("a local limiter never waits"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AsyncRateLimiter<K: ?Sized>: Send + Sync + 'static {
    /// Why a later answer failed (a key the remote limiter cannot take).
    /// Local limiters never fail: [`Infallible`].
    type Error: std::error::Error + Send + Sync + 'static;

    /// The answer to come, for a limiter that answers later.
    type Pending: Future<Output = Result<Decision, Self::Error>> + Send + 'static;

    /// Takes one unit from `key`'s limit, now or later. `this` is the
    /// limiter's own handle, for a pending answer to keep it alive.
    fn begin(this: &Arc<Self>, key: &K) -> Checked<Self::Pending>;
}

/// What [`AsyncRateLimiter::begin`] gives: the decision, or the future of
/// it.
pub enum Checked<P> {
    /// Decided at once.
    Now(Decision),
    /// Decided when this completes.
    Later(P),
}

impl<P> fmt::Debug for Checked<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checked::Now(decision) => f.debug_tuple("Now").field(decision).finish(),
            Checked::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// The pending answer of a local limiter: there is none (it answers now).
pub type NeverPending = std::future::Pending<Result<Decision, Infallible>>;

/// Your own [`RateLimiter`] as an [`AsyncRateLimiter`] that answers now.
/// (The crate's limiters need no wrapper.)
///
/// ```
/// use std::sync::Arc;
/// use surgeguard::limit::{AsyncRateLimiter, CheckError, Checked, Decision, Local, RateLimiter};
///
/// /// Lets everyone through: a limiter of one's own.
/// struct Open;
/// impl RateLimiter<u64> for Open {
///     fn check(&self, _: &u64) -> Decision { self.check_n(&0, 1).unwrap() }
///     fn check_n(&self, _: &u64, _: u32) -> Result<Decision, CheckError> {
///         Ok(Decision::Allowed {
///             limit: 1,
///             remaining: 1,
///             reset_after: std::time::Duration::ZERO,
///             policy_window: std::time::Duration::from_secs(1),
///         })
///     }
///     fn refund(&self, _: &u64, _: u32) {}
/// }
/// let open = Arc::new(Local(Open));
/// assert!(matches!(AsyncRateLimiter::begin(&open, &1), Checked::Now(d) if d.is_allowed()));
/// ```
#[derive(Debug, Clone)]
pub struct Local<L>(pub L);

impl<K: ?Sized, L: RateLimiter<K> + 'static> AsyncRateLimiter<K> for Local<L> {
    type Error = Infallible;
    type Pending = NeverPending;

    #[inline]
    fn begin(this: &Arc<Self>, key: &K) -> Checked<NeverPending> {
        Checked::Now(this.0.check(key))
    }
}

/// The crate's local limiters answer now, with no wrapper.
macro_rules! answers_now {
    ($([$($generics:tt)*] $limiter:ty;)*) => {$(
        impl<Key: ?Sized, $($generics)*> AsyncRateLimiter<Key> for $limiter
        where
            $limiter: RateLimiter<Key> + 'static,
        {
            type Error = Infallible;
            type Pending = NeverPending;

            #[inline]
            fn begin(this: &Arc<Self>, key: &Key) -> Checked<NeverPending> {
                Checked::Now(RateLimiter::check(&**this, key))
            }
        }
    )*};
}

answers_now! {
    [C: Clock] Gcra<C>;
    [K, R: KeyRule, S] Keyed<K, R, S>;
    [L] Shadow<L>;
    [L] Counted<L>;
}

impl<R: ?Sized + 'static> AsyncRateLimiter<R> for AllOf<R> {
    type Error = Infallible;
    type Pending = NeverPending;

    #[inline]
    fn begin(this: &Arc<Self>, key: &R) -> Checked<NeverPending> {
        Checked::Now(this.check(key))
    }
}

/// Local limits first, then a remote one, all or nothing: the remote limit
/// is asked only when every local one allows (a flood that the per-client
/// limit stops costs the fleet's limit nothing), and a remote denial gives
/// the local units back. A remote failure does not: whoever lets such a
/// request through anyway has still counted it against the local limits.
///
/// ```
/// use std::sync::Arc;
/// use surgeguard::limit::{AllOf, AsyncRateLimiter, Checked, Gcra, LocalThenRemote, Quota, RateLimiter};
///
/// let per_client = Gcra::keyed::<u64>(Quota::per_minute(1)?).max_keys(100).build()?;
/// // Any limiter can be the remote one; a `RedisLimiter` answers later.
/// let fleet = Arc::new(Gcra::direct(Quota::per_minute(100)?).build()?);
/// let both = Arc::new(LocalThenRemote::new(
///     AllOf::new(per_client, |client: &u64| *client),
///     Arc::clone(&fleet),
///     |_: &u64| (),
/// ));
/// assert!(matches!(AsyncRateLimiter::begin(&both, &7), Checked::Now(d) if d.is_allowed()));
/// // The per-client limit is spent: denied at once, and the fleet's limit
/// // was not asked (one unit taken from it so far, not two).
/// assert!(matches!(AsyncRateLimiter::begin(&both, &7), Checked::Now(d) if d.is_denied()));
/// assert_eq!(RateLimiter::check(&*fleet, &()).remaining(), 98);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LocalThenRemote<R: ?Sized, B, F> {
    local: AllOf<R>,
    remote: Arc<B>,
    remote_key: F,
}

impl<R: ?Sized, B, F> fmt::Debug for LocalThenRemote<R, B, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalThenRemote")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl<R: ?Sized, B, F> LocalThenRemote<R, B, F> {
    /// `local` limits, then `remote` under the key `remote_key` draws from
    /// the request's key.
    pub fn new(local: AllOf<R>, remote: Arc<B>, remote_key: F) -> Self {
        LocalThenRemote {
            local,
            remote,
            remote_key,
        }
    }
}

impl<R, B, F, RK> AsyncRateLimiter<R> for LocalThenRemote<R, B, F>
where
    R: ?Sized + 'static,
    B: AsyncRateLimiter<RK>,
    F: Fn(&R) -> RK + Send + Sync + 'static,
    RK: 'static,
    R: ToOwned,
    R::Owned: Send + Sync + 'static + std::borrow::Borrow<R>,
{
    type Error = B::Error;
    type Pending = Pin<Box<dyn Future<Output = Result<Decision, B::Error>> + Send>>;

    fn begin(this: &Arc<Self>, key: &R) -> Checked<Self::Pending> {
        let local = this.local.check(key);
        if local.is_denied() {
            return Checked::Now(local);
        }
        let remote = match B::begin(&this.remote, &(this.remote_key)(key)) {
            Checked::Now(remote) => {
                if remote.is_denied() {
                    this.local.refund(key, 1);
                    return Checked::Now(remote);
                }
                return Checked::Now(tighter(local, remote));
            }
            Checked::Later(remote) => remote,
        };
        let this = Arc::clone(this);
        let key = key.to_owned();
        Checked::Later(Box::pin(async move {
            match remote.await {
                Ok(remote) if remote.is_allowed() => Ok(tighter(local, remote)),
                Ok(denied) => {
                    this.local.refund(std::borrow::Borrow::borrow(&key), 1);
                    Ok(denied)
                }
                // A remote error keeps the local unit spent: the caller may
                // let the request through (the middleware's
                // `MissingKey::Allow`), and a client who can make the remote
                // key fail (a key too long for Redis) must still meet the
                // local limit.
                Err(error) => Err(error),
            }
        }))
    }
}

/// Of two allowing decisions, the one with less left (what the client
/// should be told).
fn tighter(a: Decision, b: Decision) -> Decision {
    if a.remaining() <= b.remaining() {
        a
    } else {
        b
    }
}

/// A limiter behind a handle answers as the limiter does.
impl<K: ?Sized, L: AsyncRateLimiter<K>> AsyncRateLimiter<K> for Arc<L> {
    type Error = L::Error;
    type Pending = L::Pending;

    #[inline]
    fn begin(this: &Arc<Self>, key: &K) -> Checked<L::Pending> {
        L::begin(&**this, key)
    }
}
