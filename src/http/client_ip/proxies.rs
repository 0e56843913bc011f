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
}
