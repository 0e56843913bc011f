//! What a stored response is found by: the resource (`Host` and URI), and
//! the values of the request headers its `Vary` names (RFC 9111 §4.1).
//!
//! A resource's `Vary` is known only once a response arrived, so the layer
//! remembers it per resource; requests for a resource whose responses vary
//! are keyed by those headers' values as sent (not normalised: two
//! spellings of one value are two entries, never one wrong answer).

use http::header::{HOST, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};

/// The resource a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ResourceKey {
    host: Option<HeaderValue>,
    uri: Uri,
}

impl ResourceKey {
    pub(crate) fn of<B>(request: &Request<B>) -> ResourceKey {
        ResourceKey {
            host: request.headers().get(HOST).cloned(),
            uri: request.uri().clone(),
        }
    }
}

/// One stored variant of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct VariantKey {
    pub(crate) resource: ResourceKey,
    /// The request's values of the headers `Vary` names, in its order.
    varying: Box<[Option<HeaderValue>]>,
}

impl VariantKey {
    pub(crate) fn new(resource: ResourceKey, vary: &[HeaderName], headers: &HeaderMap) -> Self {
        let varying = vary.iter().map(|name| joined(headers, name)).collect();
        VariantKey { resource, varying }
    }
}

/// All values of `name`, joined with `, ` when there are several.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(first.clone());
    };
    let mut all = first.as_bytes().to_vec();
    for value in std::iter::once(second).chain(values) {
        all.extend_from_slice(b", ");
        all.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&all).ok()
}

/// The header names a response's `Vary` lists, lower-cased and in order;
/// `None` for `Vary: *` or a value that is not a list of field names (such
/// a response is not stored).
pub(crate) fn vary_names(headers: &HeaderMap) -> Option<Box<[HeaderName]>> {
    let mut names = Vec::new();
    for line in headers.get_all(VARY) {
        let text = line.to_str().ok()?;
        for item in super::policy::split_list(text) {
            if item == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(item.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_lists_are_read_and_stars_refused() {
        let mut headers = HeaderMap::new();
        headers.append(
            VARY,
            HeaderValue::from_static("Accept-Encoding, accept-language"),
        );
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
        let names = vary_names(&headers).unwrap();
        assert_eq!(
            &*names,
            &[
                HeaderName::from_static("accept-encoding"),
                HeaderName::from_static("accept-language"),
            ]
        );
        headers.append(VARY, HeaderValue::from_static("*"));
        assert!(vary_names(&headers).is_none());
        let mut bad = HeaderMap::new();
        bad.insert(VARY, HeaderValue::from_static("not a name"));
        assert!(vary_names(&bad).is_none());
    }

    #[test]
    fn variants_differ_by_the_varying_values_only() {
        let request = |language: &str| {
            Request::get("/page")
                .header("accept-language", language)
                .header("x-other", language)
                .body(())
                .unwrap()
        };
        let vary = [HeaderName::from_static("accept-language")];
        let key = |r: &Request<()>| VariantKey::new(ResourceKey::of(r), &vary, r.headers());
        assert_eq!(key(&request("de")), key(&request("de")));
        assert_ne!(key(&request("de")), key(&request("fr")));
        let without = VariantKey::new(ResourceKey::of(&request("de")), &[], &HeaderMap::new());
        assert_ne!(key(&request("de")), without);
    }
}
