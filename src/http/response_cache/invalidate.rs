//! Invalidation (RFC 9111 §4.4): a request with an unsafe method that
//! succeeds changes the resource, so what is stored for it goes.
//!
//! Every method but `GET`, `HEAD`, `OPTIONS` and `TRACE` is unsafe, the
//! ones the layer has never heard of included (RFC 9110 §9.2.1). Such a
//! request always goes to the handler; when its answer is a non-error
//! (2xx or 3xx), the layer removes every stored variant of the target URI
//! and of the URIs in `Location` and `Content-Location`, when those are on
//! the same origin (a different host could be used to wipe someone else's
//! entries, §4.4), in each request-target form a `GET` for them may have
//! been stored under (origin form with `Host`, absolute form with or
//! without it).
//!
//! A `GET` whose load was already running when the invalidation happened
//! may have read the resource before the change: its answer still goes to
//! the requests that waited for it (they overlapped the unsafe request),
//! but it is not stored. The cache's own rule (a remove supersedes a load
//! in flight) does not cover this: the layer's loader stores its answer
//! itself, with the response's own lifetime, and a revalidation stores
//! into the response cache from another cache's flight. So each load
//! notes [`Invalidations::count`] for its resource before it calls the
//! handler, and stores only if the count has not moved since. Counts are
//! kept per bucket of resource hashes (fixed memory, whatever the number
//! of URIs): an invalidation of another resource in the same bucket only
//! costs a load that was running at that moment its storing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{CONTENT_LOCATION, HOST, LOCATION};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};

use super::key::ResourceKey;
use super::Core;

/// Whether a request with `method` leaves the resource as it is.
#[inline]
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Buckets of [`Invalidations`]: 32 KiB per layer.
const INVALIDATION_BUCKETS: usize = 4096;

/// How many invalidations each bucket of resources has seen.
pub(crate) struct Invalidations {
    counts: Box<[AtomicU64]>,
}

impl Invalidations {
    pub(crate) fn new() -> Self {
        let counts = (0..INVALIDATION_BUCKETS)
            .map(|_| AtomicU64::new(0))
            .collect();
        Invalidations { counts }
    }

    /// The count of `resource`'s bucket, read before a load calls the
    /// handler and again once it has stored.
    pub(crate) fn count(&self, resource: &ResourceKey) -> u64 {
        // SeqCst with `record`: a store's check and an invalidation's
        // count are ordered, whichever comes first (see `Core::store`).
        self.counts[resource.bucket(INVALIDATION_BUCKETS)].load(Ordering::SeqCst)
    }

    /// Counts an invalidation of `resource`, before its entries go.
    pub(crate) fn record(&self, resource: &ResourceKey) {
        self.counts[resource.bucket(INVALIDATION_BUCKETS)].fetch_add(1, Ordering::SeqCst);
    }
}

/// What an unsafe request would invalidate, kept until its answer.
pub(crate) struct Target {
    core: Arc<Core>,
    host: Option<HeaderValue>,
    uri: Uri,
}

impl Target {
    pub(crate) fn of<B>(core: &Arc<Core>, request: &Request<B>) -> Target {
        Target {
            core: Arc::clone(core),
            host: request.headers().get(HOST).cloned(),
            uri: request.uri().clone(),
        }
    }

    /// Invalidates what the answer `status`, `headers` changed.
    pub(crate) fn answered(self, status: StatusCode, headers: &HeaderMap) {
        if !(status.is_success() || status.is_redirection()) {
            return;
        }
        let host = self.host.as_ref();
        self.invalidate_every_form(host, &self.uri);
        for name in [LOCATION, CONTENT_LOCATION] {
            for value in headers.get_all(name) {
                for uri in same_origin(host, &self.uri, value) {
                    self.invalidate_every_form(host, &uri);
                }
            }
        }
    }

    /// Invalidates `uri` under each key a `GET` for it may have been stored
    /// by: a resource is keyed by `Host` and the request-target as sent,
    /// and the same URI arrives in origin form with `Host` (HTTP/1.1), in
    /// absolute form without `Host` (HTTP/2, where hyper puts the scheme
    /// and `:authority` in the URI), or in absolute form with it (a
    /// client talking to a proxy). All name the same origin as `uri` does,
    /// so nothing on another origin is reached.
    fn invalidate_every_form(&self, host: Option<&HeaderValue>, uri: &Uri) {
        let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let mut keys = vec![(host.cloned(), uri.clone())];
        match uri.authority() {
            Some(authority) => {
                // Absolute form: its authority is the origin (RFC 9112
                // §3.2.2), whatever `Host` said.
                let origin_form = path.parse::<Uri>().ok();
                let named = HeaderValue::from_str(authority.as_str()).ok();
                if let (Some(origin_form), Some(named)) = (origin_form, named) {
                    keys.push((Some(named), origin_form));
                }
                keys.push((None, uri.clone()));
            }
            None => {
                let Some(authority) = host.and_then(|host| host.to_str().ok()) else {
                    return self.invalidate_keys(keys);
                };
                for scheme in ["http", "https"] {
                    if let Ok(absolute) = format!("{scheme}://{authority}{path}").parse::<Uri>() {
                        keys.push((host.cloned(), absolute.clone()));
                        keys.push((None, absolute));
                    }
                }
            }
        }
        self.invalidate_keys(keys);
    }

    fn invalidate_keys(&self, keys: Vec<(Option<HeaderValue>, Uri)>) {
        for (host, uri) in keys {
            let resource = ResourceKey::new(host.as_ref(), &uri, &self.core.hasher);
            self.core.invalidate(&resource);
        }
    }
}

/// The request-target forms a `GET` for the URI reference `value` could
/// be keyed under (origin form, and absolute form when the unsafe request
/// used it), if it is on the same origin as `host` and `uri`; nothing
/// otherwise.
fn same_origin(host: Option<&HeaderValue>, uri: &Uri, value: &HeaderValue) -> Vec<Uri> {
    let Ok(text) = value.to_str() else {
        return Vec::new();
    };
    let text = text.trim();
    let path = if text.starts_with("//") {
        return Vec::new();
    } else if text.starts_with('/') {
        text.to_string()
    } else if text.contains("://") {
        let Ok(absolute) = text.parse::<Uri>() else {
            return Vec::new();
        };
        let origin = uri
            .authority()
            .map(|authority| authority.as_str().to_string())
            .or_else(|| host.and_then(|h| h.to_str().ok()).map(str::to_string));
        let same = match (absolute.authority(), origin) {
            (Some(theirs), Some(ours)) => theirs.as_str().eq_ignore_ascii_case(&ours),
            _ => false,
        };
        let same_scheme = uri
            .scheme()
            .is_none_or(|ours| Some(ours) == absolute.scheme());
        if !same || !same_scheme {
            return Vec::new();
        }
        absolute
            .path_and_query()
            .map_or("/", PathAndQuery::as_str)
            .to_string()
    } else {
        // A relative reference: against the target's directory.
        let base = uri.path();
        let directory = &base[..base.rfind('/').map_or(0, |end| end + 1)];
        format!("{directory}{text}")
    };
    let mut forms = Vec::new();
    if let Ok(origin_form) = path.parse::<Uri>() {
        forms.push(origin_form);
    }
    if let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) {
        if let Ok(absolute) = format!("{scheme}://{authority}{path}").parse::<Uri>() {
            forms.push(absolute);
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(host: &str, uri: &str, location: &str) -> Vec<String> {
        let host = HeaderValue::from_str(host).unwrap();
        let uri: Uri = uri.parse().unwrap();
        let value = HeaderValue::from_str(location).unwrap();
        same_origin(Some(&host), &uri, &value)
            .iter()
            .map(Uri::to_string)
            .collect()
    }

    #[test]
    fn methods_not_known_to_be_safe_are_unsafe() {
        for safe in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(is_safe(&safe));
        }
        for unsafe_method in ["POST", "PUT", "DELETE", "PATCH", "PURGE", "FOO"] {
            let method = Method::from_bytes(unsafe_method.as_bytes()).unwrap();
            assert!(!is_safe(&method), "{unsafe_method}");
        }
    }

    #[test]
    fn only_same_origin_locations_are_reached() {
        assert_eq!(forms("a.test", "/x", "/y?z=1"), ["/y?z=1"]);
        assert_eq!(forms("a.test", "/dir/x", "y"), ["/dir/y"]);
        assert_eq!(forms("a.test", "/x", "http://A.test/y"), ["/y"]);
        assert_eq!(
            forms("a.test", "http://a.test/x", "/y"),
            ["/y", "http://a.test/y"]
        );
        assert!(forms("a.test", "/x", "http://b.test/y").is_empty());
        assert!(forms("a.test", "/x", "//b.test/y").is_empty());
        assert!(forms("a.test", "http://a.test/x", "https://a.test/y").is_empty());
    }
}
