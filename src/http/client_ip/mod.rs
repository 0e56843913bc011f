//! The client's IP address, for per-client limits.
//!
//! By default it is the TCP peer's address. Behind a reverse proxy every
//! peer is the proxy, and the client is the address the proxy writes into a
//! header. Anyone can send such headers, so two things must hold before one
//! is believed:
//!
//! * the peer is one of the configured [`TrustedProxies`], and
//! * the header is the one the proxy writes. A proxy writes one header
//!   ([`ProxyHeader`], which tabulates what common proxies write) and passes
//!   the others through from the client untouched, so the user names it and
//!   no other header is ever read: there is no "`Forwarded` if present,
//!   else `X-Forwarded-For`", which let any client behind nginx pick its key.
//!
//! A list (`X-Forwarded-For`, `Forwarded`) is walked from the right through
//! trusted hops only; the first untrusted address is the client, and nothing
//! a client wrote further left is read. The fallback, for every input that
//! is not plainly an address (garbage, `unknown`, `_obfuscated`, an empty
//! element, bytes that are not UTF-8, a port out of range, an unclosed
//! bracket or quote, a `for=` value over 128 bytes, more than 32 hops, a
//! second line of a single-address header): the key is the last trusted
//! hop reached, the peer if none. Never an address a client chose.
//!
//! `header.rs` is the choice of header, `walk.rs` the walk and the
//! single-address rule, `address.rs` and `forwarded.rs` the syntax of a hop,
//! `proxies.rs` the trusted ranges; this file is the extractor.

mod address;
mod forwarded;
mod header;
mod proxies;
mod walk;

use std::net::{IpAddr, SocketAddr};

use super::key::{KeyExtractor, RequestHead};

pub use header::ProxyHeader;
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
/// [`ClientIp::peer`] (the default) is the TCP peer's address.
/// [`ClientIp::behind`] is for a server behind reverse proxies: when the
/// peer is one of the [`TrustedProxies`], the client is read from the one
/// [`ProxyHeader`] those proxies write, and from no other header. A list
/// header is walked from the right, only as far as the hops are trusted:
///
/// ```text
///   X-Forwarded-For: spoofed, 198.51.100.9, 10.0.0.2      peer 10.0.0.1
///                                ▲          └ trusted ┘    └ trusted
///                                └ first untrusted hop from the right: the client
/// ```
///
/// Whatever a client wrote left of the first untrusted hop is never read,
/// and neither is any other forwarding header it sends. Fallbacks, which
/// never panic and never let a header pick an arbitrary key:
///
/// * The peer is not trusted: the peer, whatever the headers say.
/// * A hop that is not an address (garbage, `unknown`, an obfuscated
///   `_identifier`, an empty element, bytes that are not UTF-8, a port over
///   65535, an unclosed bracket, a `Forwarded` line with an unclosed quoted
///   string, an element with no `for=` or a `for=` value over 128 bytes):
///   the walk ends, and the key is the last trusted hop reached (the peer if
///   none).
/// * More than 32 hops: the walk stops there the same way.
/// * A single-address header ([`ProxyHeader::XRealIp`],
///   [`ProxyHeader::Custom`]) missing, holding anything but one address, or
///   sent as more than one line: the peer.
/// * No peer address recorded: no key (the layer's
///   [`MissingKey`](super::MissingKey) policy applies).
///
/// The peer address comes from a [`PeerAddr`] extension (a hyper server
/// inserts it per connection) or, with feature `axum`, from axum's
/// `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`).
///
/// ```
/// use surgeguard::http::{ClientIp, KeyExtractor, PeerAddr, ProxyHeader, RequestHead, TrustedProxies};
///
/// let client_ip = ClientIp::behind(TrustedProxies::new(["10.0.0.0/8"])?, ProxyHeader::XForwardedFor);
/// let mut request = http::Request::get("/")
///     .header("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.0.0.2")
///     .header("forwarded", "for=192.0.2.1") // not the configured header: never read
///     .body(())?;
/// request.extensions_mut().insert(PeerAddr("10.0.0.1:443".parse()?));
/// let ip = client_ip.extract(&RequestHead::of(&request));
/// assert_eq!(ip, Some("198.51.100.4".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    behind: Option<Proxies>,
}

/// The proxies in front of the server and the header they write.
#[derive(Debug, Clone)]
struct Proxies {
    trusted: TrustedProxies,
    header: ProxyHeader,
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
        ClientIp { behind: None }
    }

    /// The client behind `trusted` proxies that write `header`: the peer's
    /// address unless the peer is trusted, then the client `header` names
    /// (see [`ProxyHeader`] for which header your proxy writes). No other
    /// header is read.
    ///
    /// ```
    /// # use surgeguard::http::{ClientIp, KeyExtractor, PeerAddr, ProxyHeader, RequestHead, TrustedProxies};
    /// // nginx on 10.0.0.1 with `proxy_set_header X-Real-IP $remote_addr;`
    /// let client_ip = ClientIp::behind(TrustedProxies::new(["10.0.0.1"])?, ProxyHeader::XRealIp);
    /// let mut request = http::Request::get("/")
    ///     .header("x-real-ip", "198.51.100.4")
    ///     .header("x-forwarded-for", "192.0.2.1")
    ///     .body(())?;
    /// request.extensions_mut().insert(PeerAddr("10.0.0.1:443".parse()?));
    /// assert_eq!(client_ip.extract(&RequestHead::of(&request)), Some("198.51.100.4".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn behind(trusted: TrustedProxies, header: ProxyHeader) -> Self {
        ClientIp {
            behind: Some(Proxies { trusted, header }),
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
        let Some(Proxies { trusted, header }) = &self.behind else {
            return Some(peer);
        };
        if !trusted.contains(peer) {
            return Some(peer);
        }
        Some(header.client(peer, head.headers(), trusted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client `ClientIp::behind(trusted, header)` finds for a request
    /// from `peer` with `headers` (also used by `walk`'s tests).
    pub(crate) fn client(
        header: ProxyHeader,
        trusted: &[&str],
        peer: &str,
        headers: &[(&str, &str)],
    ) -> Option<IpAddr> {
        let mut builder = http::Request::get("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().unwrap()));
        let extractor = ClientIp::behind(TrustedProxies::new(trusted).unwrap(), header);
        extractor.extract(&RequestHead::of(&request))
    }

    pub(crate) fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let spoof = [
            ("x-forwarded-for", "1.1.1.1"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "1.1.1.1"),
        ];
        for header in [
            ProxyHeader::XForwardedFor,
            ProxyHeader::Forwarded,
            ProxyHeader::XRealIp,
        ] {
            assert_eq!(
                client(header, &["10.0.0.0/8"], "192.0.2.5:1", &spoof),
                ip("192.0.2.5")
            );
        }
    }

    #[test]
    fn only_the_named_header_is_read() {
        let every_header = [
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=198.51.100.2"),
            ("x-real-ip", "198.51.100.3"),
            ("cf-connecting-ip", "198.51.100.4"),
        ];
        let cases = [
            (ProxyHeader::XForwardedFor, "198.51.100.1"),
            (ProxyHeader::Forwarded, "198.51.100.2"),
            (ProxyHeader::XRealIp, "198.51.100.3"),
            (
                ProxyHeader::Custom(http::HeaderName::from_static("cf-connecting-ip")),
                "198.51.100.4",
            ),
            (
                ProxyHeader::Custom(http::HeaderName::from_static("true-client-ip")),
                "10.0.0.1",
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                client(header.clone(), &["10.0.0.0/8"], "10.0.0.1:1", &every_header),
                ip(expected),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let other = [("forwarded", "for=198.51.100.2")];
        assert_eq!(
            client(
                ProxyHeader::XForwardedFor,
                &["10.0.0.0/8"],
                "10.0.0.1:1",
                &other
            ),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn no_peer_means_no_key() {
        let request = http::Request::get("/").body(()).unwrap();
        assert_eq!(ClientIp::peer().extract(&RequestHead::of(&request)), None);
        let behind = ClientIp::behind(TrustedProxies::default(), ProxyHeader::XForwardedFor);
        assert_eq!(behind.extract(&RequestHead::of(&request)), None);
    }
}
