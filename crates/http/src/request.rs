//! What a task asks for: method, URL, headers, query, body and per-request
//! options. Built with chained methods; sent with [`crate::Session::send`].

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::error::HttpError;

/// A request body and the content type it implies.
#[derive(Clone, Debug, Default)]
pub enum Body {
    /// No body (the default).
    #[default]
    Empty,
    /// Raw bytes, content type left to the headers.
    Raw(Bytes),
    /// `application/x-www-form-urlencoded`.
    Form(Bytes),
    /// `application/json`.
    Json(Bytes),
}

impl Body {
    pub(crate) fn content_type(&self) -> Option<&'static str> {
        match self {
            Body::Form(_) => Some("application/x-www-form-urlencoded"),
            Body::Json(_) => Some("application/json"),
            _ => None,
        }
    }

    pub(crate) fn bytes(&self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::Raw(b) | Body::Form(b) | Body::Json(b) => b.clone(),
        }
    }
}

/// One HTTP request as a task describes it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The HTTP method.
    pub method: Method,
    /// A path appended to the user's host (`/items`), or an absolute URL.
    pub url: String,
    /// The name statistics are grouped under; defaults to `url`.
    pub name: Option<String>,
    /// Headers to send; the session adds defaults such as `User-Agent` and
    /// `Accept-Encoding` for those missing.
    pub headers: HeaderMap,
    /// Query parameters, appended to any query already in `url`.
    pub query: Vec<(String, String)>,
    /// The body; a form or JSON body also sets `Content-Type` when the headers have none.
    pub body: Body,
    /// Overrides the configured total timeout.
    pub timeout: Option<Duration>,
    /// Follow redirects (the default); false returns the 3xx response itself.
    pub allow_redirects: bool,
    /// Overrides [`crate::ClientConfig::max_body_bytes`] for this request.
    pub max_body: Option<usize>,
    /// First invalid builder input, reported when the request is sent.
    pub(crate) invalid: Option<String>,
}

impl Request {
    /// A request for `url` with `method`, no headers or body, following redirects.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            name: None,
            headers: HeaderMap::new(),
            query: Vec::new(),
            body: Body::Empty,
            timeout: None,
            allow_redirects: true,
            max_body: None,
            invalid: None,
        }
    }

    /// A `GET` request for `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }
    /// A `POST` request for `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::POST, url)
    }
    /// A `PUT` request for `url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::PUT, url)
    }
    /// A `PATCH` request for `url`.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::PATCH, url)
    }
    /// A `DELETE` request for `url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::DELETE, url)
    }
    /// A `HEAD` request for `url`.
    pub fn head(url: impl Into<String>) -> Self {
        Self::new(Method::HEAD, url)
    }
    /// An `OPTIONS` request for `url`.
    pub fn options(url: impl Into<String>) -> Self {
        Self::new(Method::OPTIONS, url)
    }

    /// Group statistics under `name` instead of the URL (`/item?id=[id]`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Add a header. An invalid name or value makes the request fail when
    /// sent, with an error naming the header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => self.set_invalid(format!("invalid header {name:?}: {value:?}")),
        }
        self
    }

    /// Add a query parameter (appended to any query already in the URL).
    pub fn query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Send `pairs` as an urlencoded form.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .finish();
        self.body = Body::Form(encoded.into());
        self
    }

    /// Send `value` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => self.body = Body::Json(v.into()),
            Err(e) => self.set_invalid(format!("JSON body: {e}")),
        }
        self
    }

    /// Send raw bytes as the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Body::Raw(body.into());
        self
    }

    /// Allow this request `timeout` in total, redirects included, instead of the
    /// configured timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether to follow redirects (true by default).
    pub fn allow_redirects(mut self, allow: bool) -> Self {
        self.allow_redirects = allow;
        self
    }

    /// Accept a response body of at most `bytes` (received, and again after
    /// decoding gzip or deflate) for this request, instead of the
    /// configured [`crate::ClientConfig::max_body_bytes`]: a larger body
    /// fails with [`HttpError::BodyTooLarge`].
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// The name statistics use: the explicit name or the URL as given.
    pub fn stats_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }

    pub(crate) fn check(&self) -> Result<(), HttpError> {
        match &self.invalid {
            Some(why) => Err(HttpError::InvalidRequest(why.clone())),
            None => Ok(()),
        }
    }

    fn set_invalid(&mut self, why: String) {
        self.invalid.get_or_insert(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_name_defaults_to_url() {
        assert_eq!(Request::get("/a?x=1").stats_name(), "/a?x=1");
        assert_eq!(Request::get("/a?x=1").name("/a?x=[x]").stats_name(), "/a?x=[x]");
    }

    #[test]
    fn form_is_urlencoded() {
        let r = Request::post("/login").form(&[("username", "ellen key"), ("password", "a&b")]);
        assert_eq!(r.body.bytes(), Bytes::from_static(b"username=ellen+key&password=a%26b"));
        assert_eq!(r.body.content_type(), Some("application/x-www-form-urlencoded"));
    }

    #[test]
    fn invalid_header_is_reported_not_panicking() {
        let r = Request::get("/").header("bad header", "x");
        assert!(r.check().unwrap_err().to_string().contains("bad header"));
    }
}
