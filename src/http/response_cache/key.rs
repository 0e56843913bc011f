//! What a stored response is found by: the resource (`Host` and URI), and
//! the values of the request headers its `Vary` names (RFC 9111 §4.1).
//!
//! A resource's `Vary` is known only once a response arrived, so the layer
//! remembers it per resource; requests for a resource whose responses vary
//! are keyed by those headers' values as sent (not normalised: two
//! spellings of one value are two entries, never one wrong answer).
//!
//! A hit should hash once (the project's rule for hot paths), yet it looks
//! up two tables: the resource's known `Vary`, then the variant. So a
//! resource key carries its hash, taken once from the raw bytes of `Host`
//! and the URI, and both tables hash that one `u64`; and
//! [`VariedResources`] remembers, one bit per hash bucket, which resources
//! ever varied, so a resource that never did skips the `Vary` lookup.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HOST, VARY};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};

/// The resource a request is for.
#[derive(Debug, Clone, Eq)]
pub(crate) struct ResourceKey {
    /// Of the raw bytes below; part of equality, so that two keys that hash
    /// apart (an authority's letter case, which `Uri` equality ignores) are
    /// never equal.
    hash: u64,
    host: Option<HeaderValue>,
    uri: Uri,
}

impl ResourceKey {
    pub(crate) fn of<B>(request: &Request<B>, hasher: &ahash::RandomState) -> ResourceKey {
        ResourceKey::new(request.headers().get(HOST), request.uri(), hasher)
    }

    /// The key a `GET` for `uri` with `Host: host` would have.
    pub(crate) fn new(
        host: Option<&HeaderValue>,
        uri: &Uri,
        hasher: &ahash::RandomState,
    ) -> ResourceKey {
        let mut state = hasher.build_hasher();
        host.map(HeaderValue::as_bytes).hash(&mut state);
        uri.scheme_str().hash(&mut state);
        uri.authority().map(Authority::as_str).hash(&mut state);
        uri.path_and_query()
            .map(PathAndQuery::as_str)
            .hash(&mut state);
        ResourceKey {
            hash: state.finish(),
            host: host.cloned(),
            uri: uri.clone(),
        }
    }
}

impl ResourceKey {
    /// Which of `buckets` this resource falls in, by its hash.
    pub(crate) fn bucket(&self, buckets: usize) -> usize {
        (self.hash % buckets as u64) as usize
    }
}

impl PartialEq for ResourceKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.host == other.host && self.uri == other.uri
    }
}

impl Hash for ResourceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Bits in [`VariedResources`]: 8 KiB per layer; with a thousand resources
/// that vary, a resource that does not still skips the `Vary` lookup 98%
/// of the time.
const VARIED_BITS: usize = 1 << 16;

/// Which resources ever stored a response with `Vary`, as one bit per
/// bucket of resource hashes: a clear bit means "never varied", so the
/// `Vary` lookup can be skipped; a set bit (maybe another resource's) means
/// "look". Bits are only cleared by `invalidate_all`.
pub(crate) struct VariedResources {
    bits: Box<[AtomicU64]>,
}

impl VariedResources {
    pub(crate) fn new() -> Self {
        let bits = (0..VARIED_BITS / 64).map(|_| AtomicU64::new(0)).collect();
        VariedResources { bits }
    }

    fn place(resource: &ResourceKey) -> (usize, u64) {
        // The low bits pick the word and the bit; the high bits, which the
        // tables' own hashing of this `u64` spreads anyway, stay unused.
        let bucket = resource.hash as usize % VARIED_BITS;
        (bucket / 64, 1 << (bucket % 64))
    }

    pub(crate) fn mark(&self, resource: &ResourceKey) {
        let (word, bit) = Self::place(resource);
        self.bits[word].fetch_or(bit, Ordering::Release);
    }

    pub(crate) fn may_vary(&self, resource: &ResourceKey) -> bool {
        let (word, bit) = Self::place(resource);
        self.bits[word].load(Ordering::Acquire) & bit != 0
    }

    pub(crate) fn clear(&self) {
        for word in self.bits.iter() {
            word.store(0, Ordering::Release);
        }
    }
}

/// Variants of one resource the invalidation of it (RFC 9111 §4.4) must
/// reach: more than this many are not stored.
const MOST_VARIANTS: usize = 256;

/// What the layer knows of a resource whose responses vary: the header
/// names its `Vary` lists, and the variants it stored, so that an unsafe
/// request can remove them all.
pub(crate) struct Variants {
    pub(crate) names: Box<[HeaderName]>,
    stored: parking_lot::Mutex<Vec<VariantKey>>,
}

impl Variants {
    pub(crate) fn new(names: Box<[HeaderName]>) -> Self {
        Variants {
            names,
            stored: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Records `key` as stored; `false` when the resource already has as
    /// many variants as it may (the response is then not stored).
    pub(crate) fn record(&self, key: &VariantKey) -> bool {
        let mut stored = self.stored.lock();
        if stored.contains(key) {
            return true;
        }
        if stored.len() >= MOST_VARIANTS {
            return false;
        }
        stored.push(key.clone());
        true
    }

    /// Every variant recorded.
    pub(crate) fn stored(&self) -> Vec<VariantKey> {
        self.stored.lock().clone()
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
    /// The key of a resource whose responses do not vary.
    pub(crate) fn whole(resource: ResourceKey) -> Self {
        VariantKey {
            resource,
            varying: Box::new([]),
        }
    }

    pub(crate) fn new(resource: ResourceKey, vary: &[HeaderName], headers: &HeaderMap) -> Self {
        let varying = vary.iter().map(|name| joined(headers, name)).collect();
        VariantKey { resource, varying }
    }
}

/// All values of `name`, joined with `, ` when there are several, and
/// normalised where the field's grammar makes spellings equivalent.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let second = values.next();
    let style = normalisation(name);
    if second.is_none() && !style.changes(first.as_bytes()) {
        return Some(first.clone());
    }
    let mut all = first.as_bytes().to_vec();
    for value in second.into_iter().chain(values) {
        all.extend_from_slice(b", ");
        all.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&style.apply(&all)).ok()
}

/// How a varying request field's value is normalised before it keys a
/// variant (RFC 9111 §4.1 lets a cache normalise values it knows the
/// syntax of): only for the content negotiation fields, which are lists
/// (whitespace around commas does not count) of case-insensitive tokens.
/// Any other field is keyed as sent: two spellings are two entries,
/// never one wrong answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Normalisation {
    AsSent,
    /// A list: items trimmed, joined with `,`.
    List,
    /// A list of case-insensitive items: also lower-cased.
    CaselessList,
}

fn normalisation(name: &HeaderName) -> Normalisation {
    match name.as_str() {
        "accept-encoding" | "accept-language" | "accept-charset" => Normalisation::CaselessList,
        "accept" => Normalisation::List,
        _ => Normalisation::AsSent,
    }
}

impl Normalisation {
    /// Whether normalising would change `value` (the common request
    /// needs no new value).
    fn changes(self, value: &[u8]) -> bool {
        match self {
            Normalisation::AsSent => false,
            Normalisation::List | Normalisation::CaselessList => {
                let padded = value
                    .windows(2)
                    .any(|pair| matches!(pair, [b',', b' ' | b'\t'] | [b' ' | b'\t', b',']));
                let edges = matches!(value.first(), Some(b' ' | b'\t'))
                    || matches!(value.last(), Some(b' ' | b'\t'));
                let upper =
                    self == Normalisation::CaselessList && value.iter().any(u8::is_ascii_uppercase);
                padded || edges || upper
            }
        }
    }

    fn apply(self, value: &[u8]) -> Vec<u8> {
        if self == Normalisation::AsSent {
            return value.to_vec();
        }
        let mut normal = Vec::with_capacity(value.len());
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            if !normal.is_empty() {
                normal.push(b',');
            }
            normal.extend_from_slice(item);
        }
        if self == Normalisation::CaselessList {
            normal.make_ascii_lowercase();
        }
        normal
    }
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
        let hasher = ahash::RandomState::new();
        let vary = [HeaderName::from_static("accept-language")];
        let key =
            |r: &Request<()>| VariantKey::new(ResourceKey::of(r, &hasher), &vary, r.headers());
        assert_eq!(key(&request("de")), key(&request("de")));
        assert_ne!(key(&request("de")), key(&request("fr")));
        let without = VariantKey::whole(ResourceKey::of(&request("de"), &hasher));
        assert_ne!(key(&request("de")), without);
    }

    #[test]
    fn negotiation_fields_are_normalised_others_are_not() {
        let hasher = ahash::RandomState::new();
        let vary = [
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("x-custom"),
        ];
        let key = |encoding: &[&str], custom: &str| {
            let mut request = Request::get("/page").header("x-custom", custom);
            for value in encoding {
                request = request.header("accept-encoding", *value);
            }
            let request = request.body(()).unwrap();
            VariantKey::new(ResourceKey::of(&request, &hasher), &vary, request.headers())
        };
        let plain = key(&["gzip,br"], "A, b");
        assert_eq!(key(&["GZIP , br"], "A, b"), plain);
        assert_eq!(key(&[" gzip,  BR "], "A, b"), plain);
        assert_eq!(key(&["gzip", "br"], "A, b"), plain);
        assert_ne!(key(&["br,gzip"], "A, b"), plain);
        assert_ne!(key(&["gzip,br"], "a, b"), plain);
        assert_ne!(key(&["gzip,br"], "A,b"), plain);
    }

    #[test]
    fn resources_differ_by_host_and_uri() {
        let hasher = ahash::RandomState::new();
        let key = |host: &str, uri: &str| {
            let request = Request::get(uri).header("host", host).body(()).unwrap();
            ResourceKey::of(&request, &hasher)
        };
        assert_eq!(key("a.test", "/x?q=1"), key("a.test", "/x?q=1"));
        assert_ne!(key("a.test", "/x?q=1"), key("a.test", "/x?q=2"));
        assert_ne!(key("a.test", "/x"), key("b.test", "/x"));
        assert_ne!(key("a.test", "/x"), key("a.test", "http://a.test/x"));
    }

    #[test]
    fn varied_resources_are_remembered_until_cleared() {
        let hasher = ahash::RandomState::new();
        let key = |uri: &str| ResourceKey::of(&Request::get(uri).body(()).unwrap(), &hasher);
        let varied = VariedResources::new();
        assert!(!varied.may_vary(&key("/a")));
        varied.mark(&key("/a"));
        assert!(varied.may_vary(&key("/a")));
        varied.clear();
        assert!(!varied.may_vary(&key("/a")));
    }
}
