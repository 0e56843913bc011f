//! `application/problem+json` bodies (RFC 9457) with the problem types the
//! rate-limit draft registers (draft-ietf-httpapi-ratelimit-headers-09 §6):
//! `quota-exceeded` for a `429`, `temporary-reduced-capacity` for the load
//! shedder's `503`.
//!
//! The bodies are built from validated policy names and numbers only, so
//! they need no JSON escaping and no serializer.

use bytes::Bytes;
use http::HeaderValue;

/// `Content-Type` of a problem body.
pub(crate) const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// The body of a `429` whose quota `policy` is spent.
pub(crate) fn quota_exceeded(policy: &str, retry_after_seconds: u64) -> Bytes {
    Bytes::from(format!(
        concat!(
            "{{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\",",
            "\"title\":\"Too Many Requests\",\"status\":429,",
            "\"detail\":\"The quota of policy {policy} is spent; retry after {retry} s.\",",
            "\"violated-policies\":[\"{policy}\"]}}"
        ),
        policy = policy,
        retry = retry_after_seconds,
    ))
}

/// The body of a `503` from a service shedding load.
pub(crate) fn temporary_reduced_capacity(retry_after_seconds: u64) -> Bytes {
    Bytes::from(format!(
        concat!(
            "{{\"type\":\"https://iana.org/assignments/http-problem-types#temporary-reduced-capacity\",",
            "\"title\":\"Service Unavailable\",\"status\":503,",
            "\"detail\":\"The service is shedding load; retry after {retry} s.\"}}"
        ),
        retry = retry_after_seconds,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_registered_problem_types() {
        let body = quota_exceeded("per-ip", 3);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.starts_with('{') && text.ends_with('}'));
        assert!(text.contains("#quota-exceeded\""));
        assert!(text.contains("\"violated-policies\":[\"per-ip\"]"));
        let shed = temporary_reduced_capacity(2);
        assert!(std::str::from_utf8(&shed)
            .unwrap()
            .contains("\"status\":503"));
    }
}
