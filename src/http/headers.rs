//! The rate-limit response fields, formatted without recomputing anything
//! the [`Decision`](crate::limit::Decision) already says.
//!
//! Syntax of draft-ietf-httpapi-ratelimit-headers-09 (March 2025), the
//! structured-field form the draft has used since -07:
//!
//! ```text
//! RateLimit-Policy: "default";q=100;w=60      quota q per window w seconds
//! RateLimit: "default";r=42;t=17              r left, full again in t seconds
//! Retry-After: 3                              RFC 9110 §10.2.3, delta-seconds
//! ```
//!
//! Seconds are rounded up: a client told to come back after 0.2 s and
//! coming back after 0 s would be refused again.

use std::time::Duration;

use http::HeaderValue;

/// `RateLimit-Policy`: the quota policy (draft -09 §4).
pub(crate) static RATELIMIT_POLICY: http::HeaderName =
    http::HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: the current state of the quota (draft -09 §5).
pub(crate) static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// `duration` in whole seconds, rounded up.
pub(crate) fn delta_seconds(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

/// `Retry-After` in delta-seconds, rounded up.
pub(crate) fn retry_after(wait: Duration) -> HeaderValue {
    HeaderValue::from(delta_seconds(wait))
}

/// `"name";q=limit;w=window` (a window of at least one second: the draft's
/// `w` is a positive integer).
pub(crate) fn policy(name: &str, limit: u32, window: Duration) -> HeaderValue {
    item(
        name,
        ('q', u64::from(limit)),
        ('w', delta_seconds(window).max(1)),
    )
}

/// `"name";r=remaining;t=reset`.
pub(crate) fn state(name: &str, remaining: u32, reset_after: Duration) -> HeaderValue {
    item(
        name,
        ('r', u64::from(remaining)),
        ('t', delta_seconds(reset_after)),
    )
}

/// One structured-field item: a string with two integer parameters. The
/// name was validated (`[A-Za-z0-9._-]{1,64}`), so it needs no escaping and
/// the whole fits the buffer. Formatted by hand: `write!` cost about 100 ns
/// more per response in `benches/http.rs`.
fn item(name: &str, first: (char, u64), second: (char, u64)) -> HeaderValue {
    let mut buffer = [0u8; 128];
    let mut end = 0;
    let mut push = |bytes: &[u8]| {
        let room = buffer.len() - end;
        let take = bytes.len().min(room);
        buffer[end..end + take].copy_from_slice(&bytes[..take]);
        end += take;
    };
    push(b"\"");
    push(name.as_bytes());
    push(b"\";");
    for (index, (key, value)) in [first, second].into_iter().enumerate() {
        if index > 0 {
            push(b";");
        }
        push(&[key as u8, b'=']);
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = value;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        push(&digits[start..]);
    }
    HeaderValue::from_bytes(&buffer[..end])
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

/// Whether `name` can be a policy name: short, and only characters that
/// need no escaping in a structured-field string or in JSON.
pub(crate) fn is_valid_policy_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(delta_seconds(Duration::ZERO), 0);
        assert_eq!(delta_seconds(Duration::from_millis(1)), 1);
        assert_eq!(delta_seconds(Duration::from_millis(1_000)), 1);
        assert_eq!(delta_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after(Duration::from_millis(200)), "1");
    }

    #[test]
    fn fields_follow_the_draft_syntax() {
        assert_eq!(
            policy("default", 100, Duration::from_secs(60)),
            "\"default\";q=100;w=60"
        );
        assert_eq!(
            policy("burst", 5, Duration::from_millis(10)),
            "\"burst\";q=5;w=1"
        );
        assert_eq!(
            state("default", 42, Duration::from_millis(16_500)),
            "\"default\";r=42;t=17"
        );
        let long = "n".repeat(64);
        let value = state(&long, u32::MAX, Duration::MAX);
        assert!(value.to_str().unwrap().starts_with("\"nnnn"));
    }

    #[test]
    fn policy_names_are_checked() {
        assert!(is_valid_policy_name("per-ip_v1.2"));
        assert!(!is_valid_policy_name(""));
        assert!(!is_valid_policy_name("a\"b"));
        assert!(!is_valid_policy_name(&"x".repeat(65)));
    }
}
