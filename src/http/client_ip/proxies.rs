//! The proxies whose forwarding headers are believed: addresses and CIDR
//! ranges, matched with IPv4-mapped IPv6 addresses as their IPv4 form.

use std::net::IpAddr;
use std::sync::Arc;

use crate::http::error::ConfigError;

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
    /// `2001:db8::/32`). Host bits right of the prefix are ignored:
    /// `10.0.0.1/8` is `10.0.0.0/8`.
    ///
    /// An IPv4-mapped IPv6 entry is the IPv4 address or range it maps:
    /// `::ffff:10.0.0.1` is `10.0.0.1`, and `::ffff:10.0.0.0/104` is
    /// `10.0.0.0/8` (the IPv6 prefix less the 96 bits of `::ffff:0:0/96`).
    /// A mapped entry with a prefix under 96 is refused: as IPv6 it would
    /// cover all of IPv4 and more, which is never what was meant.
    ///
    /// ```
    /// # use surgeguard::http::{ConfigError, TrustedProxies};
    /// assert!(TrustedProxies::new(["192.0.2.0/24"]).is_ok());
    /// assert!(TrustedProxies::new(["::ffff:192.0.2.0/120"])?.contains("192.0.2.9".parse()?));
    /// for bad in ["proxy.local", "10.0.0.0/33", "::ffff:10.0.0.0/8"] {
    ///     assert!(matches!(
    ///         TrustedProxies::new([bad]),
    ///         Err(ConfigError::InvalidProxyRange { .. })
    ///     ));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
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

/// The prefix of `::ffff:0:0/96`, the block IPv4-mapped addresses live in.
const MAPPED_PREFIX: u8 = 96;

fn parse_range(entry: &str) -> Result<(IpAddr, u8), ConfigError> {
    let invalid = |reason| ConfigError::InvalidProxyRange {
        entry: entry.to_owned(),
        reason,
    };
    let (address, prefix) = match entry.trim().split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry.trim(), None),
    };
    let address: IpAddr = address.parse().map_err(|_| {
        invalid("not an IP address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32")
    })?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(prefix) => prefix
            .parse::<u8>()
            .map_err(|_| invalid("the prefix length is not a number"))?,
    };
    if prefix > bits {
        return Err(invalid(
            "the prefix is longer than the address (at most /32 for IPv4, /128 for IPv6)",
        ));
    }
    // Addresses are matched in their canonical form (a mapped address as
    // IPv4), so a mapped range becomes the IPv4 range it covers.
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= MAPPED_PREFIX => Ok((IpAddr::V4(v4), prefix - MAPPED_PREFIX)),
            Some(_) => Err(invalid(
                "an IPv4-mapped range needs a prefix of /96 or more \
                 (::ffff:10.0.0.0/104 is 10.0.0.0/8); write a wider one as IPv4",
            )),
            None => Ok((address, prefix)),
        },
        IpAddr::V4(_) => Ok((address, prefix)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn host_bits_right_of_the_prefix_are_ignored() {
        let trusted = TrustedProxies::new(["10.0.0.1/8", "2001:db8::1/32"]).unwrap();
        assert!(trusted.contains("10.255.0.1".parse().unwrap()));
        assert!(trusted.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_ipv4_mapped_entry_is_the_ipv4_range_it_maps() {
        for (entry, range) in [
            ("::ffff:10.0.0.0/104", ("10.0.0.0", 8)),
            ("::ffff:10.0.0.1", ("10.0.0.1", 32)),
            ("::ffff:10.0.0.1/128", ("10.0.0.1", 32)),
            ("::ffff:0:0/96", ("0.0.0.0", 0)),
            ("::ffff:192.0.2.0/120", ("192.0.2.0", 24)),
        ] {
            assert_eq!(
                parse_range(entry),
                Ok((range.0.parse().unwrap(), range.1)),
                "{entry}"
            );
        }
    }

    #[test]
    fn an_ipv4_mapped_entry_wider_than_the_mapped_block_is_refused() {
        for entry in [
            "::ffff:10.0.0.0/8",
            "::ffff:10.0.0.0/32",
            "::ffff:0:0/95",
            "::ffff:0:0/0",
        ] {
            let error = TrustedProxies::new([entry]).unwrap_err();
            assert!(
                matches!(&error, ConfigError::InvalidProxyRange { entry: given, .. } if given == entry),
                "{entry}"
            );
            assert!(error.to_string().contains("/96 or more"), "{error}");
        }
        // IPv4-compatible addresses (deprecated, `::a.b.c.d`) are plain IPv6.
        let compatible = TrustedProxies::new(["::10.0.0.0/104"]).unwrap();
        assert!(!compatible.contains("10.0.0.1".parse().unwrap()));
        assert!(compatible.contains("::10.0.0.1".parse().unwrap()));
    }
}
