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
//! An IPv6 client is keyed by its network, a /64 unless configured: an
//! ISP or cloud provider hands each customer a /64 or more, and the
//! customer picks the rest of the address freely, so one key per address
//! would be a fresh key per request (and, with `max_keys`, one client
//! filling the table). Which peer is trusted is decided on the full
//! address; only the resulting key is shortened.
//!
//! `header.rs` is the choice of header, `walk.rs` the walk and the
//! single-address rule, `address.rs` and `forwarded.rs` the syntax of a hop,
//! `proxies.rs` the trusted ranges; this file is the extractor.

mod address;
mod forwarded;
mod header;
mod proxies;
mod walk;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::error::ConfigError;
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
/// **An IPv6 client is keyed by its /64**, the address with its last 64
/// bits zeroed (`2001:db8:1:2::7` is keyed `2001:db8:1:2::`), whether the
/// address is the peer's or read from a header. Providers assign each
/// subscriber a /64 or a shorter prefix (RFC 6177), each LAN is a /64
/// (RFC 7421), and the subscriber picks the other 64 bits freely: keyed by the full
/// address, one client would have 2^64 keys, escape its limit by changing
/// address, and fill a limiter's `max_keys` table so that
/// [`WhenFull::DenyNewKeys`](crate::limit::WhenFull::DenyNewKeys) locks new
/// clients out. [`ipv6_prefix`](Self::ipv6_prefix) changes the length (a
/// /56 for providers that hand out /56s, /128 for the exact address). An
/// IPv4 address is keyed as it is: a customer rarely has more than one,
/// and carrier-grade NAT already puts many customers behind one; an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is its IPv4 address. Which peer and hops are trusted is decided on the
/// full address; only the key is shortened.
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
#[derive(Debug, Clone)]
pub struct ClientIp {
    behind: Option<Proxies>,
    ipv6_prefix: u8,
}

/// The prefix an IPv6 client is keyed by unless configured: one subscriber
/// or LAN.
const DEFAULT_IPV6_PREFIX: u8 = 64;

impl Default for ClientIp {
    /// [`ClientIp::peer`].
    fn default() -> Self {
        ClientIp::peer()
    }
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
        ClientIp {
            behind: None,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
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
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// Keys an IPv6 client by its first `bits` bits (64 unless set): 56 for
    /// clients whose provider assigns /56s, 128 for the exact address.
    /// IPv4 addresses are keyed whole whatever this says.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidIpv6Prefix`] unless `bits` is 1 to 128. (The
    /// crate's builders check their settings in `build()`; `ClientIp` has
    /// none, so the setter checks its own. A 0, which would put every IPv6
    /// client under one key, is refused rather than taken.)
    ///
    /// ```
    /// # use surgeguard::http::{ClientIp, KeyExtractor, PeerAddr, RequestHead};
    /// let per_56 = ClientIp::peer().ipv6_prefix(56)?;
    /// let mut request = http::Request::get("/").body(())?;
    /// request.extensions_mut().insert(PeerAddr("[2001:db8:1:2ff::7]:1".parse()?));
    /// assert_eq!(per_56.extract(&RequestHead::of(&request)), Some("2001:db8:1:200::".parse()?));
    /// let exact = ClientIp::peer().ipv6_prefix(128)?;
    /// assert_eq!(exact.extract(&RequestHead::of(&request)), Some("2001:db8:1:2ff::7".parse()?));
    /// assert!(ClientIp::peer().ipv6_prefix(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ipv6_prefix(self, bits: u8) -> Result<Self, ConfigError> {
        if !(1..=128).contains(&bits) {
            return Err(ConfigError::InvalidIpv6Prefix { bits });
        }
        Ok(ClientIp {
            ipv6_prefix: bits,
            ..self
        })
    }

    /// The key for the client at `ip`: an IPv6 address's network of
    /// `ipv6_prefix` bits, an IPv4 address (mapped or not) as it is.
    fn key(&self, ip: IpAddr) -> IpAddr {
        // Canonical again, though every source already is: a mapped
        // address shortened as IPv6 would put all of IPv4 under one key.
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - u32::from(self.ipv6_prefix));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
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
        let client = match &self.behind {
            Some(Proxies { trusted, header }) if trusted.contains(peer) => {
                header.client(peer, head.headers(), trusted)
            }
            _ => peer,
        };
        Some(self.key(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::get("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().unwrap()));
        request
    }

    /// The client `ClientIp::behind(trusted, header)` finds for a request
    /// from `peer` with `headers`, as its exact address (`ipv6_prefix(128)`),
    /// so that tests of the walk (also `walk`'s and `forwarded`'s) see which
    /// address it picked.
    pub(crate) fn client(
        header: ProxyHeader,
        trusted: &[&str],
        peer: &str,
        headers: &[(&str, &str)],
    ) -> Option<IpAddr> {
        let extractor = ClientIp::behind(TrustedProxies::new(trusted).unwrap(), header)
            .ipv6_prefix(128)
            .unwrap();
        extractor.extract(&RequestHead::of(&request(peer, headers)))
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
    fn an_ipv6_client_is_keyed_by_its_slash_64_by_default() {
        let direct = ClientIp::peer();
        let behind = ClientIp::behind(
            TrustedProxies::new(["10.0.0.0/8", "2001:db8:ffff::1"]).unwrap(),
            ProxyHeader::XForwardedFor,
        );
        let client = "2001:db8:1:2:dead:beef:0:7";
        let cases = [
            (
                &direct,
                "[2001:db8:1:2:dead:beef:0:7]:1",
                client,
                "2001:db8:1:2::",
            ),
            (&behind, "10.0.0.1:1", client, "2001:db8:1:2::"),
            (&behind, "[2001:db8:ffff::1]:1", client, "2001:db8:1:2::"),
            // The fallback to a trusted proxy is shortened like any key.
            (&behind, "[2001:db8:ffff::1]:1", "junk", "2001:db8:ffff::"),
            (&behind, "10.0.0.1:1", "junk", "10.0.0.1"),
        ];
        for (extractor, peer, header, expected) in cases {
            let request = request(peer, &[("x-forwarded-for", header)]);
            let key = extractor.extract(&RequestHead::of(&request));
            assert_eq!(key, ip(expected), "{peer} {header:?}");
        }
    }

    #[test]
    fn ipv6_prefix_sets_the_length_of_an_ipv6_key() {
        let peer = "[2001:db8:1:2ff:dead:beef:0:7]:1";
        for (bits, expected) in [
            (1, "::"),
            (16, "2001::"),
            (48, "2001:db8:1::"),
            (56, "2001:db8:1:200::"),
            (63, "2001:db8:1:2fe::"),
            (64, "2001:db8:1:2ff::"),
            (127, "2001:db8:1:2ff:dead:beef:0:6"),
            (128, "2001:db8:1:2ff:dead:beef:0:7"),
        ] {
            let extractor = ClientIp::peer().ipv6_prefix(bits).unwrap();
            assert_eq!(
                extractor.extract(&RequestHead::of(&request(peer, &[]))),
                ip(expected),
                "/{bits}"
            );
        }
        for bits in [0, 129, 255] {
            assert_eq!(
                ClientIp::peer().ipv6_prefix(bits).unwrap_err(),
                ConfigError::InvalidIpv6Prefix { bits }
            );
        }
    }

    #[test]
    fn ipv4_and_ipv4_mapped_clients_are_keyed_whole_whatever_the_ipv6_prefix() {
        for bits in [1, 64, 128] {
            let direct = ClientIp::peer().ipv6_prefix(bits).unwrap();
            let behind = ClientIp::behind(
                TrustedProxies::new(["10.0.0.0/8"]).unwrap(),
                ProxyHeader::XForwardedFor,
            )
            .ipv6_prefix(bits)
            .unwrap();
            for (peer, headers, extractor) in [
                ("192.0.2.7:1", vec![], &direct),
                ("[::ffff:192.0.2.7]:1", vec![], &direct),
                (
                    "10.0.0.1:1",
                    vec![("x-forwarded-for", "192.0.2.7")],
                    &behind,
                ),
                (
                    "[::ffff:10.0.0.1]:1",
                    vec![("x-forwarded-for", "::ffff:192.0.2.7")],
                    &behind,
                ),
            ] {
                let key = extractor.extract(&RequestHead::of(&request(peer, &headers)));
                assert_eq!(key, ip("192.0.2.7"), "/{bits} {peer} {headers:?}");
            }
            // The key of a mapped address that reached it uncanonicalised
            // is still the IPv4 address, not `::` (all of IPv4 as one key).
            let mapped = "::ffff:192.0.2.7".parse().unwrap();
            assert_eq!(Some(direct.key(mapped)), ip("192.0.2.7"));
        }
    }

    #[test]
    fn trust_is_decided_on_the_full_address_and_only_the_key_is_shortened() {
        let extractor = ClientIp::behind(
            TrustedProxies::new(["2001:db8::5"]).unwrap(),
            ProxyHeader::XForwardedFor,
        );
        let spoof = [("x-forwarded-for", "198.51.100.9")];
        // The trusted proxy's header is read.
        let key = extractor.extract(&RequestHead::of(&request("[2001:db8::5]:1", &spoof)));
        assert_eq!(key, ip("198.51.100.9"));
        // A neighbour in the proxy's /64 is not the proxy: the header is not
        // read, and the key is the neighbour's /64.
        let key = extractor.extract(&RequestHead::of(&request("[2001:db8::6]:1", &spoof)));
        assert_eq!(key, ip("2001:db8::"));
        // A trusted hop is passed on its full address, and the walk goes on
        // to the client left of it; an untrusted neighbour of it is the
        // client.
        let hops = [("x-forwarded-for", "2001:db8:9:9::1, 2001:db8::5")];
        let key = extractor.extract(&RequestHead::of(&request("[2001:db8::5]:1", &hops)));
        assert_eq!(key, ip("2001:db8:9:9::"));
        let hops = [("x-forwarded-for", "2001:db8:9:9::1, 2001:db8::6")];
        let key = extractor.extract(&RequestHead::of(&request("[2001:db8::5]:1", &hops)));
        assert_eq!(key, ip("2001:db8::"));
    }

    #[test]
    fn no_peer_means_no_key() {
        let request = http::Request::get("/").body(()).unwrap();
        assert_eq!(ClientIp::peer().extract(&RequestHead::of(&request)), None);
        let behind = ClientIp::behind(TrustedProxies::default(), ProxyHeader::XForwardedFor);
        assert_eq!(behind.extract(&RequestHead::of(&request)), None);
    }
}
