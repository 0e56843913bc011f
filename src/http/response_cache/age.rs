//! `Age` values without an allocation per answer.
//!
//! Every answer from storage carries `Age` (RFC 9111 §5.1).
//! `HeaderValue::from(u64)` formats into a new buffer, an allocation on
//! the hit path; ages are small numbers of seconds, so the ones below
//! [`TABLE_AGES`] are slices of one static table of digits instead.

use bytes::Bytes;
use http::HeaderValue;

/// Ages with a static value: up to 2 h 46 min, past any common `max-age`
/// plus its stale windows; older ones are formatted as before.
const TABLE_AGES: usize = 10_000;
/// Digits per age in the table: every age is written with four digits,
/// zero-padded, and sliced past its leading zeros.
const WIDTH: usize = 4;

static DIGITS: [u8; TABLE_AGES * WIDTH] = digits();

const fn digits() -> [u8; TABLE_AGES * WIDTH] {
    let mut table = [0u8; TABLE_AGES * WIDTH];
    let mut age = 0;
    while age < TABLE_AGES {
        let mut rest = age;
        let mut place = WIDTH;
        while place > 0 {
            place -= 1;
            table[age * WIDTH + place] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        age += 1;
    }
    table
}

/// `seconds` as an `Age` value.
pub(crate) fn age_value(seconds: u64) -> HeaderValue {
    let Ok(age) = usize::try_from(seconds) else {
        return HeaderValue::from(seconds);
    };
    if age >= TABLE_AGES {
        return HeaderValue::from(seconds);
    }
    let length = match age {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        _ => 4,
    };
    let end = (age + 1) * WIDTH;
    let digits = Bytes::from_static(&DIGITS[end - length..end]);
    // Digits are always a valid value; the fallback only keeps this path
    // free of a panic.
    HeaderValue::from_maybe_shared(digits).unwrap_or_else(|_| HeaderValue::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_age_reads_as_its_number() {
        for seconds in (0..12_000).chain([u64::from(u32::MAX), u64::MAX]) {
            assert_eq!(age_value(seconds), seconds.to_string().as_str());
        }
    }
}
