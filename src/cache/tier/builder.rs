//! Settings of a [`TieredCache`](super::TieredCache), validated in
//! [`build`](TieredCacheBuilder::build).

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use super::codec::Codec;
use super::remote::RemoteTier;
use super::through::{Through, TierSettings};
use super::TieredCache;
use crate::cache::{Cache, MAX_DURATION};

/// The shared tier's time-to-live when none is set.
const DEFAULT_REMOTE_TTL: Duration = Duration::from_secs(3600);
/// The lease when the local cache has no `load_timeout` to take it from.
const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// The size limit per value when none is set: large enough for a rendered
/// page, small enough that one value never stalls Redis's single thread.
const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
/// Redis refuses strings over 512 MiB.
const MOST_VALUE_BYTES: usize = 512 << 20;

/// Why a [`TieredCacheBuilder`] did not build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TierBuildError {
    /// No codec was given for the keys or for the values.
    #[error("no codec for the {0}: set one with TieredCacheBuilder::{0}")]
    MissingCodec(&'static str),
    /// A duration is under 1 ms (the shared tier counts in milliseconds) or
    /// longer than [`MAX_DURATION`].
    #[error("{setting} must be at least 1 ms and at most {MAX_DURATION:?}, not {value:?}")]
    InvalidDuration {
        /// The setting.
        setting: &'static str,
        /// What it was given.
        value: Duration,
    },
    /// The size limit per value is zero or over 512 MiB (Redis's own).
    #[error("max_value_bytes must be between 1 and {most}, not {value}")]
    InvalidMaxValueBytes {
        /// What it was given.
        value: usize,
        /// The largest allowed.
        most: usize,
    },
    /// Built outside a Tokio runtime: the backplane listener needs one.
    #[error("a tiered cache must be built within a Tokio runtime")]
    NoRuntime,
}

/// Builds a [`TieredCache`]; from [`TieredCache::builder`].
pub struct TieredCacheBuilder<K, V, S> {
    local: Cache<K, V, S>,
    remote: Arc<dyn RemoteTier>,
    keys: Option<Arc<dyn Codec<K>>>,
    values: Option<Box<dyn Codec<V>>>,
    remote_ttl: Duration,
    lease: Option<Duration>,
    fresh_for: Option<Duration>,
    max_value_bytes: usize,
}

impl<K, V, S> std::fmt::Debug for TieredCacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCacheBuilder")
            .field("keys", &self.keys.is_some())
            .field("values", &self.values.is_some())
            .field("remote_ttl", &self.remote_ttl)
            .field("lease", &self.lease)
            .field("remote_refresh_after", &self.fresh_for)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl<K, V, S> TieredCacheBuilder<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(super) fn new(local: Cache<K, V, S>, remote: Arc<dyn RemoteTier>) -> Self {
        let fresh_for = local.refresh_after();
        TieredCacheBuilder {
            local,
            remote,
            keys: None,
            values: None,
            remote_ttl: DEFAULT_REMOTE_TTL,
            lease: None,
            fresh_for,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }

    /// How keys become bytes (required): for example
    /// [`BigEndian`](super::BigEndian) for integers, [`Utf8`](super::Utf8)
    /// for strings.
    pub fn keys(mut self, codec: impl Codec<K>) -> Self {
        self.keys = Some(Arc::new(codec));
        self
    }

    /// How values become bytes (required): for example
    /// [`Postcard`](super::Postcard) (feature `serde`).
    pub fn values(mut self, codec: impl Codec<V>) -> Self {
        self.values = Some(Box::new(codec));
        self
    }

    /// How long a value lives in the shared tier (default one hour); usually
    /// longer than the local time-to-live, so a new instance finds values
    /// the fleet loaded long ago.
    pub fn remote_ttl(mut self, ttl: Duration) -> Self {
        self.remote_ttl = ttl;
        self
    }

    /// How long a loading instance holds a key's lease before another may
    /// take it over: the longest the fleet waits for an instance that died
    /// mid-load. Default: the local cache's `load_timeout`, or 10 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The age after which a value in the shared tier is reloaded by one
    /// instance for the fleet while the others are served the old one.
    /// Default: the local cache's `refresh_after`, or never.
    pub fn remote_refresh_after(mut self, age: Duration) -> Self {
        self.fresh_for = Some(age);
        self
    }

    /// The largest encoded value written to the shared tier (default
    /// 1 MiB); a larger one is kept locally only and counted in
    /// [`TierStats::too_large`](super::TierStats::too_large).
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Checks the settings and starts listening for the fleet's
    /// invalidations.
    pub fn build(self) -> Result<TieredCache<K, V, S>, TierBuildError> {
        let keys = self.keys.ok_or(TierBuildError::MissingCodec("keys"))?;
        let values = self.values.ok_or(TierBuildError::MissingCodec("values"))?;
        let lease = self
            .lease
            .or_else(|| self.local.load_timeout())
            .unwrap_or(DEFAULT_LEASE);
        check_duration("remote_ttl", self.remote_ttl)?;
        check_duration("lease", lease)?;
        if let Some(age) = self.fresh_for {
            check_duration("remote_refresh_after", age)?;
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > MOST_VALUE_BYTES {
            return Err(TierBuildError::InvalidMaxValueBytes {
                value: self.max_value_bytes,
                most: MOST_VALUE_BYTES,
            });
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TierBuildError::NoRuntime);
        }
        let through = Arc::new(Through {
            remote: self.remote,
            keys,
            values,
            settings: TierSettings {
                remote_ttl: self.remote_ttl,
                lease,
                fresh_for: self.fresh_for,
                max_value_bytes: self.max_value_bytes,
            },
            counters: Arc::default(),
        });
        Ok(TieredCache::start(self.local, through))
    }
}

/// Every duration of the shared tier becomes Redis milliseconds: less than
/// one is no time at all (a lease of 1 ns would make fleet-wide single
/// flight a no-op).
fn check_duration(setting: &'static str, value: Duration) -> Result<(), TierBuildError> {
    if value < Duration::from_millis(1) || value > MAX_DURATION {
        return Err(TierBuildError::InvalidDuration { setting, value });
    }
    Ok(())
}
