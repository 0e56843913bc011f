//! What each request asks for: one or more weighted URLs, a method,
//! headers and a body, all checked before the first request goes out.
//!
//! The client speaks plain HTTP/1.1 only. A load test is meant to measure
//! the service, and TLS on the client's side of one machine would be
//! measured with it; point the client at the service's plain port.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;

/// The most URLs one run may spread its requests over.
pub const MAX_URLS: usize = 1_000;

/// Why a request template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// No URL was given.
    #[error("no URL to send to: give at least one (http://HOST:PORT/path)")]
    NoUrl,
    /// More than [`MAX_URLS`].
    #[error("{0} URLs given, at most {MAX_URLS}")]
    TooManyUrls(usize),
    /// A URL that does not parse.
    #[error("{url:?} is not a URL: {reason}")]
    Malformed {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL without `http://` or without a host.
    #[error("{0:?} is not an http:// URL with a host (write http://HOST:PORT/path)")]
    NotHttp(String),
    /// An `https://` URL.
    #[error("{0:?}: https is not supported; the client speaks plain HTTP/1.1, point it at the service's plain port")]
    Https(String),
    /// A URL of weight zero.
    #[error("{0:?} has weight 0: give it a weight of 1 or more, or leave it out")]
    ZeroWeight(String),
    /// A method that is not a valid token.
    #[error("{0:?} is not an HTTP method")]
    Method(String),
    /// A header that is not `Name: value` with a valid name and value.
    #[error("{0:?} is not a header: write \"Name: value\"")]
    Header(String),
}

/// The requests of a run: each picks one of the URLs (in proportion to
/// their weights, the same choice for the same request number on every
/// run) and carries the same method, headers and body.
///
/// ```
/// use surgeguard::loadtest::{Requests, TargetError};
///
/// let requests = Requests::new(&[("http://127.0.0.1:8080/search?q=1", 1), ("http://127.0.0.1:8080/", 3)])?
///     .method("POST")?
///     .header("content-type: application/json")?
///     .body(r#"{"q":1}"#);
/// let request = requests.request(0);
/// assert_eq!(request.method(), "POST");
/// assert!(matches!(Requests::new(&[("ftp://x/", 1)]), Err(TargetError::NotHttp(_))));
/// # Ok::<(), TargetError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Requests {
    urls: Vec<Uri>,
    /// Running totals of the weights, for picking a URL by binary search.
    cumulative: Vec<u64>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

impl Requests {
    /// GET requests spread over `urls`, each `(url, weight)`.
    pub fn new(urls: &[(&str, u32)]) -> Result<Requests, TargetError> {
        if urls.is_empty() {
            return Err(TargetError::NoUrl);
        }
        if urls.len() > MAX_URLS {
            return Err(TargetError::TooManyUrls(urls.len()));
        }
        let mut parsed = Vec::with_capacity(urls.len());
        let mut cumulative = Vec::with_capacity(urls.len());
        let mut total = 0u64;
        for &(url, weight) in urls {
            parsed.push(parse_url(url)?);
            if weight == 0 {
                return Err(TargetError::ZeroWeight(url.to_owned()));
            }
            total += u64::from(weight);
            cumulative.push(total);
        }
        Ok(Requests {
            urls: parsed,
            cumulative,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        })
    }

    /// Every request uses `method` (default GET).
    pub fn method(mut self, method: &str) -> Result<Requests, TargetError> {
        self.method = Method::from_bytes(method.as_bytes())
            .map_err(|_| TargetError::Method(method.to_owned()))?;
        Ok(self)
    }

    /// Adds a header, written `Name: value`, to every request.
    pub fn header(mut self, line: &str) -> Result<Requests, TargetError> {
        let bad = || TargetError::Header(line.to_owned());
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Every request carries `body` (default none).
    pub fn body(mut self, body: impl Into<Bytes>) -> Requests {
        self.body = body.into();
        self
    }

    /// The URLs, in the order given.
    pub fn urls(&self) -> &[Uri] {
        &self.urls
    }

    /// Which URL request number `index` goes to.
    pub fn pick(&self, index: u64) -> usize {
        let total = *self.cumulative.last().expect("at least one URL");
        let point = spread(index) % total;
        self.cumulative.partition_point(|&c| c <= point)
    }

    /// Request number `index` of the run.
    pub fn request(&self, index: u64) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.urls[self.pick(index)].clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Scatters request numbers over the weights: consecutive requests then
/// interleave the URLs rather than sending runs of one.
fn spread(index: u64) -> u64 {
    let mut x = index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Parses and checks one URL: `http://`, with a host.
pub(crate) fn parse_url(url: &str) -> Result<Uri, TargetError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| TargetError::Malformed {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    // `Uri` keeps a port it cannot read as a number (`:70000`), and the
    // connector then sends to port 80: somewhere the user did not point.
    let port = uri
        .authority()
        .map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h))
        .map(|host_port| host_port.rsplit_once(']').map_or(host_port, |(_, p)| p))
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(_, port)| port);
    if let Some(port) = port.filter(|p| p.parse::<u16>().map_or(true, |n| n == 0)) {
        return Err(TargetError::Malformed {
            url: url.to_owned(),
            reason: format!("the port {port:?} is not 1 to 65535"),
        });
    }
    match uri.scheme_str() {
        Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(uri),
        Some("https") => Err(TargetError::Https(url.to_owned())),
        _ => Err(TargetError::NotHttp(url.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_picked_in_proportion_to_their_weights() {
        let requests = Requests::new(&[("http://a/", 1), ("http://b/", 3)]).unwrap();
        let mut counts = [0u32; 2];
        for i in 0..40_000 {
            counts[requests.pick(i)] += 1;
        }
        // A deterministic function of the index: the same counts every run.
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((0.73..0.77).contains(&share), "{counts:?}");
        assert_eq!(
            requests.request(7).uri(),
            &requests.urls()[requests.pick(7)]
        );
    }

    #[test]
    fn bad_urls_methods_and_headers_are_refused_with_a_reason() {
        assert_eq!(Requests::new(&[]).unwrap_err(), TargetError::NoUrl);
        for (url, expected) in [
            ("http//nope", "Malformed"),
            ("http:///path-without-host", "Malformed"),
            ("not a url", "Malformed"),
            ("ftp://host/", "NotHttp"),
            ("/just/a/path", "NotHttp"),
            ("https://host/", "Https"),
            ("", "Malformed"),
        ] {
            let error = Requests::new(&[(url, 1)]).unwrap_err();
            assert!(
                format!("{error:?}").starts_with(expected),
                "{url:?}: {error:?}"
            );
            assert!(error.to_string().contains(url), "{error}");
        }
        assert!(matches!(
            Requests::new(&[("http://a/", 0)]),
            Err(TargetError::ZeroWeight(_))
        ));
        let ok = Requests::new(&[("http://a/", 1)]).unwrap();
        assert!(matches!(
            ok.clone().method("GE T"),
            Err(TargetError::Method(_))
        ));
        for header in ["no colon", ": empty name", "bad name: x", "x: \u{7f}"] {
            assert!(
                matches!(ok.clone().header(header), Err(TargetError::Header(_))),
                "{header:?}"
            );
        }
    }
}
