//! How keys and values become bytes for the shared tier, and back.
//!
//! Bytes from the shared tier are input like any other: another version of
//! the service, a stray writer or a truncated reply may have put them
//! there. A value that does not decode is a [`DecodeError`], which the
//! tiered cache counts and treats as a miss; decoding never panics (and a
//! panic in a codec of your own is taken as a `DecodeError`).

use std::fmt;

/// Turns `T` into bytes and back. Implement it for your own format, or use
/// [`Utf8`], [`RawBytes`], [`BigEndian`] or, with feature `serde`,
/// [`Postcard`].
///
/// ```
/// use surgeguard::cache::tier::{Codec, DecodeError, EncodeError};
///
/// /// Prices in cents, as eight little-endian bytes.
/// struct Cents;
/// impl Codec<u64> for Cents {
///     fn encode(&self, value: &u64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
///         out.extend_from_slice(&value.to_le_bytes());
///         Ok(())
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<u64, DecodeError> {
///         let bytes = <[u8; 8]>::try_from(bytes).map_err(|_| DecodeError::new("not 8 bytes"))?;
///         Ok(u64::from_le_bytes(bytes))
///     }
/// }
/// let mut out = Vec::new();
/// Cents.encode(&1999, &mut out)?;
/// assert_eq!(Cents.decode(&out)?, 1999);
/// assert!(Cents.decode(b"short").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Codec<T>: Send + Sync + 'static {
    /// Appends `value`'s bytes to `out`.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Reads a value from `bytes`: all of them, or an error.
    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError>;
}

/// A value the codec could not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode for the shared tier: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    /// An error saying why.
    pub fn new(why: impl fmt::Display) -> Self {
        EncodeError(why.to_string())
    }
}

/// Bytes the codec could not read as a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode what the shared tier holds: {0}")]
pub struct DecodeError(String);

impl DecodeError {
    /// An error saying why.
    pub fn new(why: impl fmt::Display) -> Self {
        DecodeError(why.to_string())
    }
}

/// Decodes `bytes` with `codec`, a panic in it (a codec that unwraps what
/// it should refuse) taken as a [`DecodeError`]: the bytes come from the
/// network, and one junk message must not take down the backplane's
/// listener, nor one junk value every read of its key.
pub(crate) fn decode_guarded<T: 'static>(
    codec: &dyn Codec<T>,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| codec.decode(bytes)))
        .unwrap_or_else(|_| Err(DecodeError::new("the codec panicked on these bytes")))
}

/// `String`s as their UTF-8 bytes; bytes that are not UTF-8 do not decode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Codec<String> for Utf8 {
    fn encode(&self, value: &String, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<String, DecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(DecodeError::new)
    }
}

impl Codec<std::sync::Arc<str>> for Utf8 {
    fn encode(&self, value: &std::sync::Arc<str>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<std::sync::Arc<str>, DecodeError> {
        std::str::from_utf8(bytes)
            .map(std::sync::Arc::from)
            .map_err(DecodeError::new)
    }
}

/// `Vec<u8>` as itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Codec<Vec<u8>> for RawBytes {
    fn encode(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        Ok(bytes.to_vec())
    }
}

/// Fixed-width integers in network byte order: keys that sort and read the
/// same from every language.
#[derive(Debug, Clone, Copy, Default)]
pub struct BigEndian;

macro_rules! big_endian {
    ($($int:ty),*) => {$(
        impl Codec<$int> for BigEndian {
            fn encode(&self, value: &$int, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }

            fn decode(&self, bytes: &[u8]) -> Result<$int, DecodeError> {
                let array = bytes.try_into().map_err(|_| {
                    DecodeError::new(format_args!(
                        "{} bytes, not the {} of a {}",
                        bytes.len(),
                        std::mem::size_of::<$int>(),
                        stringify!($int),
                    ))
                })?;
                Ok(<$int>::from_be_bytes(array))
            }
        }
    )*};
}

big_endian!(u16, u32, u64, u128, i16, i32, i64, i128);

/// Any `serde` type in the [postcard](https://docs.rs/postcard) format
/// (feature `serde`): compact (varint integers, no field names), stable
/// and documented as a wire format, and strict on input (trailing bytes are
/// an error, so a truncated or foreign value is a miss, not a wrong value).
///
/// Adding a field to a value type changes its encoding: give the new
/// version of a service its own [`RedisTier`](crate::redis::RedisTier)
/// prefix while old and new run side by side.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

#[cfg(feature = "serde")]
impl<T> Codec<T> for Postcard
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let bytes = postcard::to_allocvec(value).map_err(EncodeError::new)?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        match postcard::take_from_bytes::<T>(bytes) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(DecodeError::new(format_args!(
                "{} bytes left over after the value",
                rest.len()
            ))),
            Err(error) => Err(DecodeError::new(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_round_trips_and_refuses_other_widths() {
        let mut out = Vec::new();
        BigEndian.encode(&0x0102_0304_u32, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
        assert_eq!(Codec::<u32>::decode(&BigEndian, &out), Ok(0x0102_0304));
        assert!(Codec::<u64>::decode(&BigEndian, &out).is_err());
        assert!(Codec::<u16>::decode(&BigEndian, &[]).is_err());
    }

    #[test]
    fn utf8_refuses_invalid_bytes() {
        assert!(Codec::<String>::decode(&Utf8, &[0xff, 0xfe]).is_err());
        assert_eq!(
            Codec::<String>::decode(&Utf8, "kettle".as_bytes()).as_deref(),
            Ok("kettle")
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn postcard_refuses_truncated_and_trailing_bytes() {
        let value = (7u64, String::from("kettle"), vec![1u32, 2, 3]);
        let mut out = Vec::new();
        Postcard.encode(&value, &mut out).unwrap();
        assert_eq!(Postcard.decode(&out), Ok(value.clone()));
        for cut in 0..out.len() {
            assert!(
                Codec::<(u64, String, Vec<u32>)>::decode(&Postcard, &out[..cut]).is_err(),
                "a value cut at {cut} bytes decoded"
            );
        }
        out.push(0);
        assert!(Codec::<(u64, String, Vec<u32>)>::decode(&Postcard, &out).is_err());
    }
}
