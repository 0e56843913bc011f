//! What a request is limited by: a key drawn from its head.
//!
//! A [`KeyExtractor`] looks at the request's method, URI, headers and
//! extensions ([`RequestHead`]) and returns the key its limiter counts
//! under, or `None` when the request has none (no API-key header, no known
//! peer address). What happens then is the layer's [`MissingKey`] policy.

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};

/// The parts of a request a key may be drawn from (everything but the
/// body).
///
/// ```
/// use http::Request;
/// use surgeguard::http::RequestHead;
///
/// let request = Request::get("/product/7").body(()).unwrap();
/// let head = RequestHead::of(&request);
/// assert_eq!(head.uri().path(), "/product/7");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    ///
    /// ```
    /// # use surgeguard::http::RequestHead;
    /// let request = http::Request::head("/").body(()).unwrap();
    /// assert_eq!(RequestHead::of(&request).method(), http::Method::HEAD);
    /// ```
    pub fn of<B>(request: &'a Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The request method.
    ///
    /// ```
    /// # use surgeguard::http::RequestHead;
    /// let request = http::Request::post("/").body(()).unwrap();
    /// assert_eq!(RequestHead::of(&request).method(), http::Method::POST);
    /// ```
    #[must_use]
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request target.
    ///
    /// ```
    /// # use surgeguard::http::RequestHead;
    /// let request = http::Request::get("/a?b=1").body(()).unwrap();
    /// assert_eq!(RequestHead::of(&request).uri().query(), Some("b=1"));
    /// ```
    #[must_use]
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers.
    ///
    /// ```
    /// # use surgeguard::http::RequestHead;
    /// let request = http::Request::get("/").header("x-api-key", "k1").body(()).unwrap();
    /// assert_eq!(RequestHead::of(&request).headers()["x-api-key"], "k1");
    /// ```
    #[must_use]
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions (where servers record the peer address).
    ///
    /// ```
    /// # use surgeguard::http::{PeerAddr, RequestHead};
    /// let mut request = http::Request::get("/").body(()).unwrap();
    /// request.extensions_mut().insert(PeerAddr("192.0.2.1:80".parse().unwrap()));
    /// assert!(RequestHead::of(&request).extensions().get::<PeerAddr>().is_some());
    /// ```
    #[must_use]
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// Draws a rate-limit key from a request.
///
/// Implemented by [`ClientIp`](super::ClientIp), [`HeaderKey`],
/// [`RouteKey`], [`GlobalKey`] and by any closure
/// `Fn(&RequestHead<'_>) -> Option<K>`.
///
/// ```
/// use surgeguard::http::{KeyExtractor, RequestHead};
///
/// let tenant = |head: &RequestHead<'_>| {
///     head.uri().path().split('/').nth(1).map(str::to_owned)
/// };
/// let request = http::Request::get("/acme/orders").body(()).unwrap();
/// assert_eq!(tenant.extract(&RequestHead::of(&request)).as_deref(), Some("acme"));
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key a limiter counts under.
    type Key: Send + 'static;

    /// The key of the request, or `None` if it has none.
    fn extract(&self, head: &RequestHead<'_>) -> Option<Self::Key>;
}

impl<F, K> KeyExtractor for F
where
    F: Fn(&RequestHead<'_>) -> Option<K> + Send + Sync + 'static,
    K: Send + 'static,
{
    type Key = K;

    #[inline]
    fn extract(&self, head: &RequestHead<'_>) -> Option<K> {
        self(head)
    }
}

/// One key for every request: for a limiter over the whole service, such
/// as [`Gcra::direct`](crate::limit::Gcra::direct).
///
/// ```
/// use surgeguard::http::{GlobalKey, KeyExtractor, RequestHead};
/// let request = http::Request::get("/").body(()).unwrap();
/// assert_eq!(GlobalKey.extract(&RequestHead::of(&request)), Some(()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    type Key = ();

    #[inline]
    fn extract(&self, _head: &RequestHead<'_>) -> Option<()> {
        Some(())
    }
}

/// The value of a request header, such as an API key. A request without the
/// header, or with it more than once (which would let a client choose which
/// one counts), has no key.
///
/// ```
/// use surgeguard::http::{HeaderKey, KeyExtractor, RequestHead};
///
/// let api_key = HeaderKey::new(http::HeaderName::from_static("x-api-key"));
/// let request = http::Request::get("/").header("x-api-key", "k1").body(()).unwrap();
/// assert_eq!(api_key.extract(&RequestHead::of(&request)).unwrap(), "k1");
/// ```
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by the header `name`.
    ///
    /// ```
    /// # use surgeguard::http::HeaderKey;
    /// let by_token = HeaderKey::new(http::header::AUTHORIZATION);
    /// # drop(by_token);
    /// ```
    #[must_use]
    pub fn new(name: HeaderName) -> Self {
        HeaderKey { name }
    }
}

impl KeyExtractor for HeaderKey {
    type Key = HeaderValue;

    fn extract(&self, head: &RequestHead<'_>) -> Option<HeaderValue> {
        let mut values = head.headers.get_all(&self.name).iter();
        let first = values.next()?;
        values.next().is_none().then(|| first.clone())
    }
}

/// The route: axum's matched path template (`/product/{id}`, feature
/// `axum`) when there is one, else the request path, with the method. All
/// requests to one route share one limit.
///
/// ```
/// use surgeguard::http::{KeyExtractor, RequestHead, RouteKey};
///
/// let request = http::Request::get("/health").body(()).unwrap();
/// let key = RouteKey.extract(&RequestHead::of(&request)).unwrap();
/// assert_eq!(key, (http::Method::GET, "/health".to_string()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteKey;

impl KeyExtractor for RouteKey {
    type Key = (Method, String);

    fn extract(&self, head: &RequestHead<'_>) -> Option<(Method, String)> {
        #[cfg(feature = "axum")]
        if let Some(matched) = head.extensions.get::<axum::extract::MatchedPath>() {
            return Some((head.method.clone(), matched.as_str().to_owned()));
        }
        Some((head.method.clone(), head.uri.path().to_owned()))
    }
}

/// What the rate-limit layer does with a request its extractor finds no key
/// for.
///
/// The default rejects it with `400 Bad Request`: a missing key must never
/// be a way around the limit, and a server that forgot to record peer
/// addresses finds out in its first test instead of running unlimited.
///
/// ```
/// use http::StatusCode;
/// use surgeguard::http::MissingKey;
///
/// assert_eq!(MissingKey::default(), MissingKey::Reject(StatusCode::BAD_REQUEST));
/// let api = MissingKey::Reject(StatusCode::UNAUTHORIZED);
/// # drop(api);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// Answer with this status and an empty body; the handler is not called.
    Reject(http::StatusCode),
    /// Let the request through unlimited (for keys that are optional, when
    /// another layer limits the rest).
    Allow,
}

impl Default for MissingKey {
    fn default() -> Self {
        MissingKey::Reject(http::StatusCode::BAD_REQUEST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_header_gives_no_key() {
        let request = Request::get("/")
            .header("x-api-key", "a")
            .header("x-api-key", "b")
            .body(())
            .unwrap();
        let key = HeaderKey::new(HeaderName::from_static("x-api-key"));
        assert_eq!(key.extract(&RequestHead::of(&request)), None);
        let none = Request::get("/").body(()).unwrap();
        assert_eq!(key.extract(&RequestHead::of(&none)), None);
    }
}
