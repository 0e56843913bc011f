//! The one forwarding header a deployment's proxies write, named by the
//! user. There is no default and no fallback from one header to another:
//! a proxy writes one of them and passes the rest through from the client,
//! so any header but the one it writes is the client's own words.

use std::net::IpAddr;

use http::header::FORWARDED;
use http::{HeaderMap, HeaderName};

use super::proxies::TrustedProxies;
use super::{address, forwarded, walk};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The header the trusted proxies in front of the server write the client's
/// address in; [`ClientIp::behind`](super::ClientIp::behind) reads this one
/// header and never another.
///
/// Name the header *your* proxy writes. A proxy writes one header and, unless
/// told otherwise, passes every other forwarding header through exactly as
/// the client sent it. nginx, for instance, appends to `X-Forwarded-For` and
/// forwards a client's `Forwarded: for=1.2.3.4` untouched: reading
/// `Forwarded` there would let every client pick its own rate-limit key.
///
/// What common proxies write by default, or with the setting named:
///
/// | proxy | header | how | configure |
/// |---|---|---|---|
/// | nginx, `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` | `X-Forwarded-For` | appends the peer | [`XForwardedFor`](Self::XForwardedFor) |
/// | nginx, `proxy_set_header X-Real-IP $remote_addr` | `X-Real-IP` | overwrites | [`XRealIp`](Self::XRealIp) |
/// | HAProxy, `option forwardfor` | `X-Forwarded-For` | adds a line with the peer | [`XForwardedFor`](Self::XForwardedFor) |
/// | HAProxy, `option forwarded` | `Forwarded` | adds a line with the peer's element | [`Forwarded`](Self::Forwarded) |
/// | AWS Application Load Balancer | `X-Forwarded-For` | appends the peer | [`XForwardedFor`](Self::XForwardedFor) |
/// | Google Cloud Application Load Balancer | `X-Forwarded-For` | appends `<client>, <load balancer>` | [`XForwardedFor`](Self::XForwardedFor), trusting the load balancer's own address too |
/// | Envoy, `use_remote_address: true` | `X-Forwarded-For` | appends the peer | [`XForwardedFor`](Self::XForwardedFor) |
/// | Traefik | `X-Forwarded-For` | appends the peer | [`XForwardedFor`](Self::XForwardedFor) |
/// | Caddy, `reverse_proxy` | `X-Forwarded-For` | appends the peer | [`XForwardedFor`](Self::XForwardedFor) |
/// | Cloudflare | `CF-Connecting-IP` | overwrites | `Custom("cf-connecting-ip")` |
/// | Akamai, with True-Client-IP on and clients' own not allowed | `True-Client-IP` | overwrites | `Custom("true-client-ip")` |
/// | Fly.io | `Fly-Client-IP` | overwrites | `Custom("fly-client-ip")` |
///
/// Cloudflare and Fly.io append to `X-Forwarded-For` as well; either header
/// works, as long as it is the only one configured and
/// [`TrustedProxies`] holds the ranges they connect from.
///
/// **Settings under which the client writes the header.** The rightmost
/// address is then the client's own words, and reading it lets every
/// client pick its key. Change the setting, or configure a header the
/// proxy does write:
///
/// * HAProxy `option forwardfor if-none` adds `X-Forwarded-For` only to a
///   request that has none, so a client that sends one gets it through as
///   written.
/// * HAProxy `option forwardfor except <network>` adds nothing for a
///   client connecting from `<network>`, whose own header goes through.
/// * AWS Application Load Balancer with
///   `routing.http.xff_header_processing.mode` set to `preserve` passes the
///   header on unchanged.
/// * Envoy with `use_remote_address: false` (its default) or
///   `skip_xff_append: true` does not append the peer: the header reaches
///   the server as Envoy received it. Behind another proxy that appends,
///   its last address is that proxy's doing and reads right; with Envoy at
///   the edge, it is the client's.
///
/// **Settings under which every client shares one key.** Not a bypass, but
/// every client's requests then count against one limit:
///
/// * AWS Application Load Balancer with
///   `routing.http.xff_header_processing.mode` set to `remove` sends no
///   header, so every client is keyed as the load balancer node it came
///   through.
/// * A proxy that writes `for=unknown` or an obfuscated `for=_name` in
///   `Forwarded` (RFC 7239 §6.2, §6.3) names no address, so the walk stops
///   at that proxy and every client behind it is keyed as the proxy.
///
/// How each kind is read (the peer is always a trusted proxy here; an
/// untrusted peer is the client whatever it sends):
///
/// * **Lists** ([`XForwardedFor`](Self::XForwardedFor),
///   [`Forwarded`](Self::Forwarded)): every line of the header, as one list,
///   walked from the right; each trusted address leads one hop further left,
///   and the first untrusted one is the client. Anything that is not an
///   address ends the walk at the last trusted hop.
/// * **Single addresses** ([`XRealIp`](Self::XRealIp),
///   [`Custom`](Self::Custom)): the header must be one line holding one
///   address (a port is allowed). Anything else is the peer: a proxy that
///   overwrites the header leaves exactly one line, so a second line means a
///   client's line got through next to the proxy's, and which is which
///   cannot be told; a list means the proxy appends, and the header is not a
///   single-address one.
///
/// ```
/// use http::HeaderName;
/// use surgeguard::http::{ClientIp, ProxyHeader, TrustedProxies};
///
/// // Behind nginx on 10.0.0.0/8 with `$proxy_add_x_forwarded_for`:
/// let behind_nginx = ClientIp::behind(TrustedProxies::new(["10.0.0.0/8"])?, ProxyHeader::XForwardedFor);
/// // Behind Cloudflare (its published ranges, abridged here):
/// let behind_cloudflare = ClientIp::behind(
///     TrustedProxies::new(["173.245.48.0/20", "2400:cb00::/32"])?,
///     ProxyHeader::Custom(HeaderName::from_static("cf-connecting-ip")),
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For: <client>, <proxy1>, <proxy2>`: addresses, each with
    /// an optional port (`192.0.2.1:4711`, `[2001:db8::1]:4711`), walked
    /// from the right.
    XForwardedFor,
    /// `Forwarded: for=<client>, for=<proxy1>` (RFC 7239): the `for=` node
    /// of each element, walked from the right.
    Forwarded,
    /// `X-Real-IP: <client>`, as nginx's `proxy_set_header X-Real-IP
    /// $remote_addr` writes it: one address.
    XRealIp,
    /// Another header holding one address, written over by the proxy, such
    /// as a CDN's `CF-Connecting-IP`, `True-Client-IP` or `Fly-Client-IP`.
    /// Read as [`XRealIp`](Self::XRealIp) is: one line, one address. (A list
    /// header named here counts only when it holds a single address; any
    /// longer list is read as the peer.)
    Custom(HeaderName),
}

impl ProxyHeader {
    /// The client behind `peer`, a trusted proxy, according to this header.
    pub(super) fn client(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        trusted: &TrustedProxies,
    ) -> IpAddr {
        match self {
            ProxyHeader::XForwardedFor => walk::list_from_the_right(
                peer,
                headers.get_all(&X_FORWARDED_FOR),
                trusted,
                address::split_plain_list,
                address::parse,
            ),
            ProxyHeader::Forwarded => walk::list_from_the_right(
                peer,
                headers.get_all(FORWARDED),
                trusted,
                forwarded::split_elements,
                forwarded::for_address,
            ),
            ProxyHeader::XRealIp => walk::single_address(peer, headers.get_all(&X_REAL_IP)),
            ProxyHeader::Custom(name) => walk::single_address(peer, headers.get_all(name)),
        }
    }
}
