//! The builder settings for loading: refresh-ahead, the stale windows,
//! negative caching, the load timeout and the bound on background reloads.
//!
//! They live here, next to the code that reads them, and are validated by
//! [`CacheBuilder::build`] like every other setting.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::builder::{checked_duration, BuildError, CacheBuilder};
use crate::cache::expiry::Deadlines;

/// Default bound on reloads running in the background at once (threads for
/// the blocking API, tasks for the async one).
pub(crate) const DEFAULT_BACKGROUND_RELOADS: usize = 64;

/// After a failed reload, the entry's next reload waits this long, so that a
/// hot key does not hammer a failing origin with back-to-back reloads.
pub(crate) const RELOAD_RETRY_DELAY: Duration = Duration::from_secs(1);

type IsNegative<V> = Arc<dyn Fn(&V) -> bool + Send + Sync + 'static>;

/// Loading settings as the builder collects them, unvalidated.
pub(crate) struct LoadSettings<V> {
    refresh_after: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    load_timeout: Option<Duration>,
    background_reloads: usize,
    negative: Option<(Duration, IsNegative<V>)>,
}

impl<V> Default for LoadSettings<V> {
    fn default() -> Self {
        LoadSettings {
            refresh_after: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            load_timeout: None,
            background_reloads: DEFAULT_BACKGROUND_RELOADS,
            negative: None,
        }
    }
}

impl<V> fmt::Debug for LoadSettings<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadSettings")
            .field("refresh_after", &self.refresh_after)
            .field("stale_while_revalidate", &self.stale_while_revalidate)
            .field("stale_if_error", &self.stale_if_error)
            .field("load_timeout", &self.load_timeout)
            .field("background_reloads", &self.background_reloads)
            .field("negative_ttl", &self.negative.as_ref().map(|(ttl, _)| ttl))
            .finish()
    }
}

/// Validated loading settings, in nanoseconds.
pub(crate) struct LoadConfig<V> {
    refresh_after: Option<u64>,
    /// 0 when off.
    pub(crate) stale_while_revalidate: u64,
    /// 0 when off.
    pub(crate) stale_if_error: u64,
    pub(crate) load_timeout: Option<Duration>,
    pub(crate) background_reloads: usize,
    negative: Option<(u64, IsNegative<V>)>,
}

impl<V> LoadConfig<V> {
    /// The refresh age, for a tier in front of this cache to share.
    #[cfg(feature = "tokio")]
    pub(crate) fn refresh_after(&self) -> Option<Duration> {
        self.refresh_after.map(Duration::from_nanos)
    }
}

impl<V> LoadSettings<V> {
    pub(crate) fn validate(self, time_to_live: Option<u64>) -> Result<LoadConfig<V>, BuildError> {
        let refresh_after = checked_duration("refresh_after", self.refresh_after)?;
        if let (Some(refresh), Some(ttl)) = (refresh_after, time_to_live) {
            if refresh >= ttl {
                return Err(BuildError::RefreshNotBeforeExpiry);
            }
        }
        let stale_while_revalidate =
            checked_duration("stale_while_revalidate", self.stale_while_revalidate)?;
        let stale_if_error = checked_duration("stale_if_error", self.stale_if_error)?;
        checked_duration("load_timeout", self.load_timeout)?;
        if self.background_reloads == 0 {
            return Err(BuildError::NoBackgroundReloads);
        }
        let negative = match self.negative {
            None => None,
            Some((ttl, is_negative)) => {
                checked_duration("negative_ttl", Some(ttl))?.map(|ttl| (ttl, is_negative))
            }
        };
        Ok(LoadConfig {
            refresh_after,
            stale_while_revalidate: stale_while_revalidate.unwrap_or(0),
            stale_if_error: stale_if_error.unwrap_or(0),
            load_timeout: self.load_timeout,
            background_reloads: self.background_reloads,
            negative,
        })
    }
}

impl<V> LoadConfig<V> {
    /// How long entries stay stored past their deadline to be served stale.
    pub(crate) fn grace(&self) -> u64 {
        self.stale_while_revalidate.max(self.stale_if_error)
    }

    /// Whether an entry's deadlines depend on the time it is written even
    /// without a time-to-live.
    pub(crate) fn uses_clock(&self) -> bool {
        self.refresh_after.is_some() || self.negative.is_some()
    }

    /// The deadlines of `value` written at `now` with the expiry `expire_at`
    /// its time-to-live gives it.
    pub(crate) fn deadlines(&self, value: &V, now: u64, expire_at: u64) -> Deadlines {
        let expire_at = match &self.negative {
            Some((ttl, is_negative)) if is_negative(value) => {
                expire_at.min(now.saturating_add(*ttl))
            }
            _ => expire_at,
        };
        let refresh_at = match self.refresh_after {
            Some(after) => now.saturating_add(after).min(expire_at),
            // Without refresh-ahead, an entry wants reloading once it expires
            // (within a stale window).
            None => expire_at,
        };
        Deadlines {
            expire_at,
            refresh_at,
        }
    }

    /// When to retry a reload that failed at `now`.
    pub(crate) fn retry_at(now: u64) -> u64 {
        now.saturating_add(RELOAD_RETRY_DELAY.as_nanos() as u64)
    }
}

/// Where an entry stands at a given time, as the loading methods see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Within its time-to-live, no reload due.
    Fresh,
    /// Within its time-to-live, past its refresh point: serve, and reload
    /// behind if no reload runs.
    RefreshDue,
    /// Expired, within stale-while-revalidate (or backing off after a failed
    /// reload within stale-if-error): serve stale at once; `reload` says
    /// whether a reload is due.
    ServeStale {
        /// A reload is due (not backing off after a failure).
        reload: bool,
    },
    /// Expired, past stale-while-revalidate but within stale-if-error: load
    /// (or wait for the load), and serve the stale value only if it fails.
    StaleIfError,
    /// Gone for every purpose.
    Expired,
}

impl Freshness {
    /// Classifies an entry with `deadlines` at `now`.
    #[inline]
    pub(crate) fn of<V>(deadlines: Deadlines, now: u64, config: &LoadConfig<V>) -> Freshness {
        if now < deadlines.expire_at {
            return if now >= deadlines.refresh_at {
                Freshness::RefreshDue
            } else {
                Freshness::Fresh
            };
        }
        let reload_due = now >= deadlines.refresh_at;
        let stale_for = now - deadlines.expire_at;
        if stale_for < config.stale_while_revalidate {
            Freshness::ServeStale { reload: reload_due }
        } else if stale_for < config.stale_if_error {
            if reload_due {
                Freshness::StaleIfError
            } else {
                // A reload failed a moment ago: the origin is failing, and
                // serving stale is what stale-if-error is for.
                Freshness::ServeStale { reload: false }
            }
        } else {
            Freshness::Expired
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// Reloads an entry in the background once it is this old (default:
    /// never): a read of an older entry returns it at once and starts one
    /// reload, so a hot key is replaced before it expires and no reader waits
    /// for the origin. Only the loading methods
    /// ([`Cache::get_or_try_load`](crate::cache::Cache::get_or_try_load) and
    /// its async and infallible forms) reload; `get` serves the entry as is.
    /// Must be shorter than the time-to-live. At most one reload per key runs
    /// at a time; an insert or remove while it runs wins (its result is
    /// dropped); a failed reload keeps the old value and is retried by a read
    /// one second later or more.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(60))
    ///     .refresh_after(Duration::from_secs(45))
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.loading.refresh_after = Some(age);
        self
    }

    /// After an entry expires, the loading methods keep serving it for this
    /// long while one reload runs behind (RFC 5861's stale-while-revalidate,
    /// applied to the cache). `get` never returns an expired entry.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(60))
    ///     .stale_while_revalidate(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.loading.stale_while_revalidate = Some(window);
        self
    }

    /// After an entry expires, the loading methods fall back to it for this
    /// long when the reload fails (RFC 5861's stale-if-error): a failing
    /// origin does not take the pages that depend on it down. Failures are
    /// counted in [`CacheStats::load_errors`](crate::cache::CacheStats::load_errors).
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(60))
    ///     .stale_if_error(Duration::from_secs(300))
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.loading.stale_if_error = Some(window);
        self
    }

    /// Stores values that `is_negative` picks (a "not found", or an error
    /// mapped to a value) for `ttl` only, when that is shorter than their
    /// time-to-live (default: off). With `V = Option<T>`, caching `None` for a
    /// few seconds keeps a flood of requests for a missing key off the origin
    /// without hiding the key for long once it appears.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u64, Option<String>> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(60))
    ///     .negative_caching(Duration::from_secs(5), Option::is_none)
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn negative_caching(
        mut self,
        ttl: Duration,
        is_negative: impl Fn(&V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.loading.negative = Some((ttl, Arc::new(is_negative)));
        self
    }

    /// How long a caller waits for another caller's load (default: until it
    /// ends). A blocking waiter gives up after this long on the cache's clock
    /// and gets [`LoadError::TimedOut`](crate::cache::LoadError::TimedOut)
    /// (or the stale value within stale-if-error) while the load goes on for
    /// the others; an async load (feature `tokio`) is dropped after this long
    /// on Tokio's timer, and all its waiters get `TimedOut`.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .load_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.loading.load_timeout = Some(timeout);
        self
    }

    /// The most reloads (refresh-ahead and stale-while-revalidate) that may
    /// run in the background at once (default: 64). A read that finds a
    /// reload due while this many run serves its value without starting one;
    /// a later read starts it.
    ///
    /// ```
    /// # use surgeguard::cache::Cache;
    /// let cache: Cache<u64, u64> = Cache::builder()
    ///     .max_capacity(100)
    ///     .background_reloads(8)
    ///     .build()?;
    /// # Ok::<(), surgeguard::cache::BuildError>(())
    /// ```
    pub fn background_reloads(mut self, most: usize) -> Self {
        self.loading.background_reloads = most;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::expiry::NEVER;

    fn config(swr: u64, sie: u64) -> LoadConfig<u32> {
        LoadConfig {
            refresh_after: Some(50),
            stale_while_revalidate: swr,
            stale_if_error: sie,
            load_timeout: None,
            background_reloads: 1,
            negative: None,
        }
    }

    #[test]
    fn freshness_at_every_edge() {
        let config = config(30, 300);
        let deadlines = config.deadlines(&0, 0, 100);
        assert_eq!(deadlines.refresh_at, 50);
        let at = |now| Freshness::of(deadlines, now, &config);
        assert_eq!(at(49), Freshness::Fresh);
        assert_eq!(at(50), Freshness::RefreshDue);
        assert_eq!(at(99), Freshness::RefreshDue);
        assert_eq!(at(100), Freshness::ServeStale { reload: true });
        assert_eq!(at(129), Freshness::ServeStale { reload: true });
        assert_eq!(at(130), Freshness::StaleIfError);
        assert_eq!(at(399), Freshness::StaleIfError);
        assert_eq!(at(400), Freshness::Expired);
    }

    #[test]
    fn a_failed_reload_backs_off_and_serves_stale_meanwhile() {
        let config = config(30, 300);
        let backing_off = Deadlines {
            expire_at: 100,
            refresh_at: 200,
        };
        let at = |now| Freshness::of(backing_off, now, &config);
        assert_eq!(at(90), Freshness::Fresh);
        assert_eq!(at(110), Freshness::ServeStale { reload: false });
        assert_eq!(at(150), Freshness::ServeStale { reload: false });
        assert_eq!(at(200), Freshness::StaleIfError);
    }

    #[test]
    fn without_windows_an_expired_entry_is_gone() {
        let config = config(0, 0);
        let deadlines = config.deadlines(&0, 0, 100);
        assert_eq!(Freshness::of(deadlines, 100, &config), Freshness::Expired);
        assert_eq!(NEVER, config.deadlines(&0, 0, NEVER).expire_at);
    }
}
