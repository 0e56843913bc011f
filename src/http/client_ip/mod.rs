//! The client's IP address, for per-client limits.
//!
//! By default it is the TCP peer's address. Behind a reverse proxy every
//! peer is the proxy, so the client is the one the proxy names in
//! `Forwarded` (RFC 7239) or `X-Forwarded-For`; but anyone can send those
//! headers, so they are read only when the peer is one of the configured
//! [`TrustedProxies`], and then only as far back as the hops are trusted:
//!
//! ```text
//!   X-Forwarded-For: spoofed, 198.51.100.9, 10.0.0.2      peer 10.0.0.1
//!                                ▲          └ trusted ┘    └ trusted
//!                                └ first untrusted hop from the right: the client
//! ```
//!
//! Walking from the right, the first address that is not a trusted proxy is
//! the client; whatever a client wrote further left is never read. Fallbacks,
//! which never panic and never let a header pick an arbitrary key:
//!
//! * A hop that is not an address (garbage, `unknown`, an obfuscated
//!   `_identifier`, an empty element) ends the walk: the key is the last
//!   address known, which is a trusted proxy's.
//! * More than 32 hops: the walk stops there the same way.
//! * `Forwarded` wins over `X-Forwarded-For` when both are present.
//! * No peer address recorded: no key (the layer's
//!   [`MissingKey`](super::MissingKey) policy applies).
//!
//! The peer address comes from a [`PeerAddr`] extension (a hyper server
//! inserts it per connection) or, with feature `axum`, from axum's
//! `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`).
//!
//! `forwarded.rs` reads the headers, `proxies.rs` holds the trusted ranges;
//! this file is the extractor that puts them together.

mod forwarded;
mod proxies;

use std::net::{IpAddr, SocketAddr};

use super::key::{KeyExtractor, RequestHead};

pub use proxies::TrustedProxies;

/// The TCP peer's address, as a request extension.
///
/// ```
/// use surgeguard::http::PeerAddr;
///
/// let mut request = http::Request::get("/").body(()).unwrap();
/// request.extensions_mut().insert(PeerAddr("192.0.2.7:50123".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// Keys requests by client IP address.
///
/// By default it is the TCP peer's address. Behind a reverse proxy every
/// peer is the proxy, so the client is the one the proxy names in
/// `Forwarded` (RFC 7239) or `X-Forwarded-For`; but anyone can send those
/// headers, so they are read only when the peer is one of the configured
/// [`TrustedProxies`], and then only as far back as the hops are trusted:
///
/// ```text
///   X-Forwarded-For: spoofed, 198.51.100.9, 10.0.0.2      peer 10.0.0.1
///                                ▲          └ trusted ┘    └ trusted
///                                └ first untrusted hop from the right: the client
/// ```
///
/// Walking from the right, the first address that is not a trusted proxy is
/// the client; whatever a client wrote further left is never read. Fallbacks,
/// which never panic and never let a header pick an arbitrary key:
///
/// * A hop that is not an address (garbage, `unknown`, an obfuscated
///   `_identifier`, an empty element) ends the walk: the key is the last
///   address known, which is a trusted proxy's.
/// * More than 32 hops: the walk stops there the same way.
/// * `Forwarded` wins over `X-Forwarded-For` when both are present.
/// * No peer address recorded: no key (the layer's
///   [`MissingKey`](super::MissingKey) policy applies).
///
/// The peer address comes from a [`PeerAddr`] extension (a hyper server
/// inserts it per connection) or, with feature `axum`, from axum's
/// `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`).
///
/// ```
/// use surgeguard::http::{ClientIp, KeyExtractor, PeerAddr, RequestHead, TrustedProxies};
///
/// let client_ip = ClientIp::from_peer_or_forwarded(TrustedProxies::new(["10.0.0.0/8"])?);
/// let mut request = http::Request::get("/")
///     .header("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.0.0.2")
///     .body(())?;
/// request.extensions_mut().insert(PeerAddr("10.0.0.1:443".parse()?));
/// let ip = client_ip.extract(&RequestHead::of(&request));
/// assert_eq!(ip, Some("198.51.100.4".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    trusted: Option<TrustedProxies>,
}

impl ClientIp {
    /// The TCP peer's address; forwarding headers are ignored.
    ///
    /// ```
    /// # use surgeguard::http::{ClientIp, KeyExtractor, PeerAddr, RequestHead};
    /// let mut request = http::Request::get("/").header("x-forwarded-for", "1.2.3.4").body(())?;
    /// request.extensions_mut().insert(PeerAddr("192.0.2.7:1".parse()?));
    /// let ip = ClientIp::peer().extract(&RequestHead::of(&request));
    /// assert_eq!(ip, Some("192.0.2.7".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn peer() -> Self {
        ClientIp { trusted: None }
    }

    /// The peer's address, or the client a chain of `trusted` proxies
    /// names in `Forwarded` or `X-Forwarded-For`.
    ///
    /// ```
    /// # use surgeguard::http::{ClientIp, TrustedProxies};
    /// let client_ip = ClientIp::from_peer_or_forwarded(TrustedProxies::new(["10.0.0.0/8"])?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn from_peer_or_forwarded(trusted: TrustedProxies) -> Self {
        ClientIp {
            trusted: Some(trusted),
        }
    }

    fn peer_of(head: &RequestHead<'_>) -> Option<IpAddr> {
        if let Some(PeerAddr(address)) = head.extensions().get::<PeerAddr>() {
            return Some(address.ip().to_canonical());
        }
        #[cfg(feature = "axum")]
        if let Some(info) = head
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(info.0.ip().to_canonical());
        }
        None
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract(&self, head: &RequestHead<'_>) -> Option<IpAddr> {
        let peer = Self::peer_of(head)?;
        let Some(trusted) = &self.trusted else {
            return Some(peer);
        };
        if !trusted.contains(peer) {
            return Some(peer);
        }
        Some(forwarded::client_behind(peer, head.headers(), trusted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client `ClientIp` finds behind `trusted` proxies (also used by
    /// `forwarded`'s tests).
    pub(crate) fn client(trusted: &[&str], peer: &str, headers: &[(&str, &str)]) -> Option<IpAddr> {
        let mut builder = http::Request::get("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().unwrap()));
        let extractor = ClientIp::from_peer_or_forwarded(TrustedProxies::new(trusted).unwrap());
        extractor.extract(&RequestHead::of(&request))
    }

    pub(crate) fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let spoof = [("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=1.1.1.1")];
        assert_eq!(
            client(&["10.0.0.0/8"], "192.0.2.5:1", &spoof),
            ip("192.0.2.5")
        );
    }

    #[test]
    fn no_peer_means_no_key() {
        let request = http::Request::get("/").body(()).unwrap();
        assert_eq!(ClientIp::peer().extract(&RequestHead::of(&request)), None);
    }
}
