//! HTTP-dates (RFC 9110 §5.6.7) as seconds since 1970.
//!
//! A recipient MUST accept all three formats a date has ever been sent in:
//! the IMF-fixdate senders generate today (`Sun, 06 Nov 1994 08:49:37 GMT`),
//! the obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`) and C's
//! asctime form (`Sun Nov  6 08:49:37 1994`). `Expires`, `Date`,
//! `Last-Modified` and `If-Modified-Since` are all read here, so the
//! cache's freshness and its `304` answers agree on what a date is.
//!
//! The parser is strict about layout (a date that does not fit one of the
//! three is `None`, which each caller turns into its safe reading: an
//! `Expires` that is already past, a condition that does not hold) and
//! lenient about the day name, which carries no information.

/// Seconds since 1970 of an HTTP-date in any of the three formats.
/// `now` (seconds since 1970) settles RFC 850's two-digit years: one that
/// would be more than 50 years ahead is the latest past year with those
/// digits.
pub(crate) fn parse(text: &[u8], now: i64) -> Option<i64> {
    let text = trim(text);
    imf_fixdate(text)
        .or_else(|| rfc850(text, now))
        .or_else(|| asctime(text))
}

/// Seconds since 1970 of the system clock: what a response without a
/// `Date` is dated by (RFC 9111 §4.2.1), and the "now" of RFC 850 years.
pub(crate) fn system_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn trim(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

const SHORT_DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const LONG_DAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(text: &[u8]) -> Option<i64> {
    if text.len() != 29 || !SHORT_DAYS.contains(&&text[..3]) {
        return None;
    }
    if &text[3..5] != b", " || text[7] != b' ' || text[11] != b' ' || &text[25..] != b" GMT" {
        return None;
    }
    let day = digits(&text[5..7])?;
    let month = month(&text[8..11])?;
    let year = digits(&text[12..16])?;
    if text[16] != b' ' {
        return None;
    }
    let time = time_of_day(&text[17..25])?;
    seconds(year, month, day, time)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(text: &[u8], now: i64) -> Option<i64> {
    let comma = text.iter().position(|&b| b == b',')?;
    if !LONG_DAYS.contains(&&text[..comma]) {
        return None;
    }
    let rest = &text[comma..];
    if rest.len() != 24 || &rest[..2] != b", " || rest[4] != b'-' || rest[8] != b'-' {
        return None;
    }
    if rest[11] != b' ' || &rest[20..] != b" GMT" {
        return None;
    }
    let day = digits(&rest[2..4])?;
    let month = month(&rest[5..8])?;
    let two_digits = digits(&rest[9..11])?;
    let time = time_of_day(&rest[12..20])?;
    let this_year = civil_year(now);
    let mut year = this_year - this_year.rem_euclid(100) + two_digits;
    if year > this_year + 50 {
        year -= 100;
    }
    seconds(year, month, day, time)
}

/// `Sun Nov  6 08:49:37 1994` (the day is padded with a space).
fn asctime(text: &[u8]) -> Option<i64> {
    if text.len() != 24 || !SHORT_DAYS.contains(&&text[..3]) {
        return None;
    }
    if text[3] != b' ' || text[7] != b' ' || text[10] != b' ' || text[19] != b' ' {
        return None;
    }
    let month = month(&text[4..7])?;
    let day = match &text[8..10] {
        [b' ', digit] => digits(&[*digit])?,
        both => digits(both)?,
    };
    let time = time_of_day(&text[11..19])?;
    let year = digits(&text[20..24])?;
    seconds(year, month, day, time)
}

fn digits(text: &[u8]) -> Option<i64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0')),
    )
}

fn month(text: &[u8]) -> Option<i64> {
    MONTHS
        .iter()
        .position(|m| *m == text)
        .map(|index| index as i64 + 1)
}

/// `08:49:37` as seconds into the day (a leap second reads as :59).
fn time_of_day(text: &[u8]) -> Option<i64> {
    if text.len() != 8 || text[2] != b':' || text[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        digits(&text[0..2])?,
        digits(&text[3..5])?,
        digits(&text[6..8])?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(hour * 3_600 + minute * 60 + second.min(59))
}

fn seconds(year: i64, month: i64, day: i64, time: i64) -> Option<i64> {
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + time)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`, "chrono-Compatible Low-Level Date Algorithms").
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The Gregorian year `seconds` after 1970 falls in (the inverse of the
/// above, year only).
fn civil_year(seconds: i64) -> i64 {
    let days = seconds.div_euclid(86_400) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let year = year_of_era + era * 400;
    if month_index >= 10 {
        year + 1
    } else {
        year
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-02, for two-digit years.
    const NOW: i64 = 1_796_169_600;
    const NOV_6_1994: i64 = 784_111_777;

    #[test]
    fn the_three_formats_read_alike() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse(text.as_bytes(), NOW), Some(NOV_6_1994), "{text}");
        }
        assert_eq!(parse(b"Thu, 01 Jan 1970 00:00:00 GMT", NOW), Some(0));
        assert_eq!(parse(b"Thu Jan 11 00:00:00 1970", NOW), Some(10 * 86_400));
    }

    #[test]
    fn two_digit_years_are_never_more_than_fifty_years_ahead() {
        let year_of = |text: &str| civil_year(parse(text.as_bytes(), NOW).unwrap());
        assert_eq!(year_of("Friday, 01-Jan-27 00:00:00 GMT"), 2027);
        assert_eq!(year_of("Thursday, 01-Jan-76 00:00:00 GMT"), 2076);
        assert_eq!(year_of("Friday, 01-Jan-77 00:00:00 GMT"), 1977);
        assert_eq!(civil_year(NOW), 2026);
        assert_eq!(civil_year(0), 1970);
        assert_eq!(civil_year(NOV_6_1994), 1994);
    }

    #[test]
    fn anything_else_is_no_date() {
        for text in [
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1993 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 94",
            "1994-11-06T08:49:37Z",
            "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(text.as_bytes(), NOW), None, "{text:?}");
        }
        assert_eq!(
            parse(b"Sun, 29 Feb 2004 00:00:00 GMT", NOW),
            Some(1_078_012_800)
        );
    }
}
