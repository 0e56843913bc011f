//! A Redis limiter in the middleware: it answers later, after its round
//! trip (or at once, from its over-limit cache, its leases or its
//! fallback, all inside the same call).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;

use super::{CheckError, RedisLimiter};
use crate::limit::{AsyncRateLimiter, Checked, Decision};

/// A key the middleware can hand to a [`RedisLimiter`]: written as the text
/// of the Redis key. Implemented for the keys the crate's extractors draw
/// (`()` for a global limit, addresses, strings, integers, header values,
/// `(Method, String)` routes); implement it for a key of your own.
///
/// Different keys must write different text (two keys that write the same
/// text share one limit). That holds within one key type, not across
/// types: `()` and the string `"global"` both write `global`, the integer
/// `7` and the string `"7"` both write `7`, an address and a header whose
/// value is that address both write the address. Give each layer (each key
/// type) a limiter with a prefix of its own rather than sharing one
/// `RedisLimiter` between, say, a global limit and a per-header one.
///
/// ```
/// use surgeguard::redis::RedisKey;
///
/// let mut text = String::new();
/// "198.51.100.4".parse::<std::net::IpAddr>()?.write_key(&mut text);
/// assert_eq!(text, "198.51.100.4");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait RedisKey {
    /// Appends this key's text to `out`.
    fn write_key(&self, out: &mut String);
}

macro_rules! displayed {
    ($($key:ty),*) => {$(
        impl RedisKey for $key {
            fn write_key(&self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

displayed!(str, String, IpAddr, Ipv4Addr, Ipv6Addr, u16, u32, u64, u128, i32, i64);

/// A global limit: one key for everyone.
impl RedisKey for () {
    fn write_key(&self, out: &mut String) {
        out.push_str("global");
    }
}

impl<K: RedisKey + ?Sized> RedisKey for &K {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

/// A header's value: its text when it is visible ASCII; otherwise a DEL
/// character (which visible text never holds, so the two never collide)
/// and its bytes in hex.
#[cfg(feature = "tower")]
impl RedisKey for http::HeaderValue {
    fn write_key(&self, out: &mut String) {
        match self.to_str() {
            Ok(text) => out.push_str(text),
            Err(_) => {
                use std::fmt::Write;
                out.push('\u{7f}');
                for byte in self.as_bytes() {
                    let _ = write!(out, "{byte:02x}");
                }
            }
        }
    }
}

/// A route: the method, a space, the path.
#[cfg(feature = "tower")]
impl RedisKey for (http::Method, String) {
    fn write_key(&self, out: &mut String) {
        out.push_str(self.0.as_str());
        out.push(' ');
        out.push_str(&self.1);
    }
}

impl<K: RedisKey + ?Sized> AsyncRateLimiter<K> for RedisLimiter {
    type Error = CheckError;
    type Pending = Pin<Box<dyn Future<Output = Result<Decision, CheckError>> + Send>>;

    fn begin(this: &Arc<Self>, key: &K) -> Checked<Self::Pending> {
        // Written now, so the pending check owns its key whatever borrowed
        // type the caller had.
        let mut text = String::new();
        key.write_key(&mut text);
        let this = Arc::clone(this);
        Checked::Later(Box::pin(async move { this.check(text.as_str()).await }))
    }
}

#[cfg(all(test, feature = "tower"))]
mod tests {
    use super::*;

    fn text(key: &impl RedisKey) -> String {
        let mut out = String::new();
        key.write_key(&mut out);
        out
    }

    #[test]
    fn header_values_that_are_not_text_never_collide_with_text() {
        let binary = http::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        let lookalike = http::HeaderValue::from_static("fffe");
        assert_eq!(text(&binary), "\u{7f}fffe");
        assert_eq!(text(&lookalike), "fffe");
        assert_ne!(text(&binary), text(&lookalike));
    }

    #[test]
    fn keys_of_different_types_can_write_the_same_text() {
        // What the trait's docs warn about: across types, text collides.
        assert_eq!(text(&()), text(&"global"));
        assert_eq!(text(&7u64), text(&"7"));
        let address: std::net::IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(
            text(&address),
            text(&http::HeaderValue::from_static("198.51.100.4"))
        );
    }

    #[test]
    fn routes_and_the_global_key_have_distinct_text() {
        assert_eq!(text(&(http::Method::GET, "/cart".to_owned())), "GET /cart");
        assert_eq!(text(&()), "global");
    }
}
