//! What can go wrong building a Redis limiter, and checking with one.

use std::time::Duration;

/// A setting of [`RedisLimiterBuilder`](super::RedisLimiterBuilder) that
/// cannot work.
///
/// ```
/// use surgeguard::limit::Quota;
/// use surgeguard::redis::{BuildError, RedisGcra};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let err = RedisGcra::builder("not a url", Quota::per_second(10)?).build().await.unwrap_err();
/// assert!(matches!(err, BuildError::InvalidUrl(_)));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Redis URL does not parse (expected `redis://host:port/db`).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// A fallback share must be in (0, 1].
    #[error("the local fallback's share of the limit must be in (0, 1], got {0}")]
    InvalidShare(f64),
    /// A timeout or cool-down must be between 1 ms and 1 minute.
    #[error("{what} must be between 1 ms and 60 s, got {value:?}")]
    InvalidDuration {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: Duration,
    },
    /// The breaker must open after at least one failure.
    #[error("the breaker must open after 1 or more failures")]
    InvalidFailureThreshold,
    /// The key prefix leaves no room for keys under `max_key_len`.
    #[error("the key prefix ({prefix_len} bytes) leaves no room under max_key_len ({max_key_len} bytes)")]
    PrefixTooLong {
        /// Bytes in the prefix.
        prefix_len: usize,
        /// The longest key allowed.
        max_key_len: usize,
    },
    /// A lease batch must be between 2 and the quota's burst.
    #[error("a lease batch must be between 2 and the burst ({burst}), got {batch}")]
    InvalidLeaseBatch {
        /// The batch asked for.
        batch: u32,
        /// The quota's burst.
        burst: u32,
    },
    /// A cache tier's key prefix holds a brace, which would break the
    /// hash tag that keeps a key's value and lease in one cluster slot.
    #[error("the key prefix {0:?} must not contain '{{' or '}}'")]
    InvalidPrefix(String),
    /// The local limiter (fallback, over-limit cache) refused its settings.
    #[error("local limiter: {0}")]
    Local(#[from] crate::limit::BuildError),
    /// A local cache refused its settings.
    #[error("local cache: {0}")]
    Cache(#[from] crate::cache::BuildError),
    /// The fallback's scaled quota is invalid.
    #[error("fallback quota: {0}")]
    Quota(#[from] crate::limit::QuotaError),
}

/// Why a check could not be decided. Redis being unreachable or slow is
/// not an error: the fallback policy decides then.
///
/// ```
/// use surgeguard::redis::CheckError;
/// let err = CheckError::KeyTooLong { len: 600, max: 512 };
/// assert_eq!(err.to_string(), "the key is 600 bytes with its prefix; at most 512 allowed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The key, with its prefix and hash tag, is longer than `max_key_len`.
    #[error("the key is {len} bytes with its prefix; at most {max} allowed")]
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More units than the quota's burst can ever allow at once.
    #[error("a cost of {cost} exceeds the burst of {burst}")]
    CostExceedsBurst {
        /// The cost asked for.
        cost: u32,
        /// The quota's burst.
        burst: u32,
    },
    /// Redis answered with an error that retrying will not fix (a script
    /// error, a key of the wrong type under the prefix).
    #[error("Redis refused the script: {0}")]
    Script(String),
}
