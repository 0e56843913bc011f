//! What can be wrong with a layer's settings: found when the layer is set
//! up, never under load.

/// A setting of [`RateLimitLayer`](super::RateLimitLayer),
/// [`TrustedProxies`](super::TrustedProxies) or
/// [`ClientIp`](super::ClientIp) that cannot work.
///
/// ```
/// use surgeguard::http::{ConfigError, TrustedProxies};
///
/// let err = TrustedProxies::new(["10.0.0.0/33"]).unwrap_err();
/// assert!(matches!(err, ConfigError::InvalidProxyRange { .. }));
/// assert!(err.to_string().contains("10.0.0.0/33"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A trusted-proxy entry is not an address or a CIDR range that can be
    /// matched.
    #[error("trusted proxy {entry:?}: {reason}")]
    InvalidProxyRange {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`ClientIp::ipv6_prefix`](super::ClientIp::ipv6_prefix) outside 1 to
    /// 128 bits.
    #[error("an IPv6 client's key prefix must be 1 to 128 bits, not {bits}")]
    InvalidIpv6Prefix {
        /// The prefix length as given.
        bits: u8,
    },
    /// A policy name would not make a valid `RateLimit` field item.
    #[error("policy name {name:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'")]
    InvalidPolicyName {
        /// The name as given.
        name: String,
    },
}
