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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::FORWARDED;
use http::HeaderName;

use super::error::ConfigError;
use super::key::{KeyExtractor, RequestHead};

/// The most forwarding hops read from the right before giving up: real
/// chains are a handful of proxies; a longer one is garbage or an attack.
const MAX_HOPS: usize = 32;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

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

/// Address ranges whose forwarding headers are believed.
///
/// ```
/// use surgeguard::http::TrustedProxies;
///
/// let trusted = TrustedProxies::new(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])?;
/// assert!(trusted.contains("10.1.2.3".parse()?));
/// assert!(!trusted.contains("192.0.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Arc<[(IpAddr, u8)]>,
}

impl TrustedProxies {
    /// Parses addresses (`10.0.0.1`) and CIDR ranges (`10.0.0.0/8`,
    /// `2001:db8::/32`).
    ///
    /// ```
    /// # use surgeguard::http::{ConfigError, TrustedProxies};
    /// assert!(TrustedProxies::new(["192.0.2.0/24"]).is_ok());
    /// assert!(matches!(
    ///     TrustedProxies::new(["proxy.local"]),
    ///     Err(ConfigError::InvalidProxyRange { .. })
    /// ));
    /// ```
    pub fn new<I, T>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let ranges = entries
            .into_iter()
            .map(|entry| parse_range(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies {
            ranges: ranges.into(),
        })
    }

    /// Whether `ip` is in one of the ranges (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address).
    ///
    /// ```
    /// # use surgeguard::http::TrustedProxies;
    /// let trusted = TrustedProxies::new(["10.0.0.0/8"])?;
    /// assert!(trusted.contains("::ffff:10.0.0.1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges
            .iter()
            .any(|&(network, prefix)| in_range(ip, network, prefix))
    }
}

fn parse_range(entry: &str) -> Result<(IpAddr, u8), ConfigError> {
    let invalid = || ConfigError::InvalidProxyRange {
        entry: entry.to_owned(),
    };
    let (address, prefix) = match entry.trim().split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry.trim(), None),
    };
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let address = address.to_canonical();
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(prefix) => prefix.parse::<u8>().map_err(|_| invalid())?,
    };
    if prefix > bits {
        return Err(invalid());
    }
    Ok((address, prefix))
}

fn in_range(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

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
        let headers = head.headers();
        let mut client = peer;
        let forwarded = headers.contains_key(FORWARDED);
        let name = if forwarded {
            &FORWARDED
        } else {
            &X_FORWARDED_FOR
        };
        let hops = headers
            .get_all(name)
            .iter()
            .rev()
            .flat_map(|line| line.to_str().unwrap_or("\u{0}").rsplit(','));
        for hop in hops.take(MAX_HOPS) {
            let address = if forwarded {
                forwarded_for(hop)
            } else {
                parse_node(hop)
            };
            let Some(address) = address else {
                return Some(client);
            };
            client = address;
            if !trusted.contains(address) {
                return Some(address);
            }
        }
        Some(client)
    }
}

/// The `for=` address of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_node(value)
    })
}

/// An address with or without a port: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    node.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(trusted: &[&str], peer: &str, headers: &[(&str, &str)]) -> Option<IpAddr> {
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

    fn ip(text: &str) -> Option<IpAddr> {
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
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let xff = [("x-forwarded-for", "6.6.6.6, 203.0.113.4, 10.0.0.3")];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &xff),
            ip("203.0.113.4")
        );
        let split = [
            ("x-forwarded-for", "6.6.6.6, 203.0.113.4"),
            ("x-forwarded-for", "10.0.0.3"),
        ];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &split),
            ip("203.0.113.4")
        );
        let all_trusted = [("x-forwarded-for", "10.9.9.9, 10.0.0.3")];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &all_trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn forwarded_is_read_with_quotes_ports_and_brackets() {
        let header = [(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.3",
        )];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &header),
            ip("2001:db8::17")
        );
        let both = [
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "6.6.6.6"),
        ];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &both),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn malformed_hops_stop_at_the_last_known_address() {
        let trusted = ["10.0.0.0/8"];
        for garbage in ["not-an-ip", "", " , ", "unknown", "1.2.3.4:99999", "[::1"] {
            let header = [("x-forwarded-for", garbage)];
            assert_eq!(
                client(&trusted, "10.0.0.1:1", &header),
                ip("10.0.0.1"),
                "{garbage:?}"
            );
        }
        let mixed = [("x-forwarded-for", "203.0.113.4, garbage, 10.0.0.3")];
        assert_eq!(client(&trusted, "10.0.0.1:1", &mixed), ip("10.0.0.3"));
        let hidden = [("forwarded", "for=_hidden, for=10.0.0.3")];
        assert_eq!(client(&trusted, "10.0.0.1:1", &hidden), ip("10.0.0.3"));
        let no_for = [("forwarded", "proto=https")];
        assert_eq!(client(&trusted, "10.0.0.1:1", &no_for), ip("10.0.0.1"));
    }

    #[test]
    fn huge_headers_are_walked_only_so_far() {
        let long = vec!["10.0.0.9"; 100_000].join(",");
        let header = [("x-forwarded-for", long.as_str())];
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1:1", &header),
            ip("10.0.0.9")
        );
        let non_utf8 = http::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        let mut request = http::Request::get("/").body(()).unwrap();
        request.headers_mut().insert("x-forwarded-for", non_utf8);
        request
            .extensions_mut()
            .insert(PeerAddr("10.0.0.1:1".parse().unwrap()));
        let extractor =
            ClientIp::from_peer_or_forwarded(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
        assert_eq!(
            extractor.extract(&RequestHead::of(&request)),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ranges_parse_and_match() {
        assert!(TrustedProxies::new(["0.0.0.0/0"])
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(TrustedProxies::new(["2001:db8::/32"])
            .unwrap()
            .contains("2001:db8:1::1".parse().unwrap()));
        assert!(!TrustedProxies::new(["2001:db8::/32"])
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/x", "host", "10.0.0.0/-1"] {
            assert!(TrustedProxies::new([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_peer_means_no_key() {
        let request = http::Request::get("/").body(()).unwrap();
        assert_eq!(ClientIp::peer().extract(&RequestHead::of(&request)), None);
    }
}
