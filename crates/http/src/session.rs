//! One user's HTTP client: connections, cookies, redirects, timing.
//!
//! HOT PATH. [`Session::send`] runs for every request a user makes. It
//! reuses the user's open connection to the origin, builds the request
//! head, and collects the body; the per-request allocations are the URL,
//! the header map and the body. The body limit costs integer compares.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use cookie_store::CookieStore;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE,
    USER_AGENT,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use url::Url;

use crate::config::ClientConfig;
use crate::connection::{self, Connection, Origin, SendError};
use crate::decode::decode_body;
use crate::error::HttpError;
use crate::pool::{ConnectionPool, Leased};
use crate::request::Request;
use crate::response::Response;

/// One simulated user's client. Lives on one shard; not `Send`.
pub struct Session {
    config: Arc<ClientConfig>,
    base_url: String,
    /// `base_url` parsed once, when it has no path of its own: relative
    /// URLs then only set the path and query instead of a full parse.
    parsed_base: Option<Url>,
    /// Header values made once per session instead of once per request:
    /// the Host of the base URL and the User-Agent.
    base_host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    connections: Vec<(Origin, Connection)>,
    /// When set, connections come from this pool instead (`connections` stays empty).
    pool: Option<Rc<ConnectionPool>>,
    /// Created on the first `Set-Cookie`, so users that never get cookies
    /// pay nothing for a jar.
    cookies: Option<Box<CookieStore>>,
}

/// The connection an exchange uses: the session's own (by index), or one
/// lent by its pool.
enum Slot {
    Own(usize),
    Leased(Leased),
}

/// One hop of a possibly redirected request.
struct Hop {
    status: StatusCode,
    headers: http::HeaderMap,
    head_id: u64,
    body: Bytes,
    version: http::Version,
    ttfb: Duration,
}

impl Session {
    /// A session whose relative URLs are appended to `base_url` (the host).
    pub fn new(config: Arc<ClientConfig>, base_url: impl Into<String>) -> Self {
        let mut base_url = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        let parsed_base = Url::parse(&base_url).ok().filter(|u| u.path() == "/" && u.query().is_none());
        let base_host = parsed_base.as_ref().and_then(|u| HeaderValue::try_from(host_of(u)?).ok());
        let user_agent = HeaderValue::try_from(config.user_agent.as_str()).ok();
        Self {
            config,
            base_url,
            parsed_base,
            base_host,
            user_agent,
            connections: Vec::new(),
            pool: None,
            cookies: None,
        }
    }

    /// A session that takes its connections from `pool` for each request
    /// (see [`ConnectionPool`]).
    pub fn with_pool(config: Arc<ClientConfig>, base_url: impl Into<String>, pool: Rc<ConnectionPool>) -> Self {
        Self { pool: Some(pool), ..Self::new(config, base_url) }
    }

    /// The base URL given to [`Session::new`], trailing slashes removed; empty if none was given.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Number of open connections (for tests and diagnostics); a pooled
    /// session counts its pool's.
    pub fn open_connections(&self) -> usize {
        match &self.pool {
            Some(pool) => pool.open_connections(),
            None => self.connections.iter().filter(|(_, c)| c.is_usable()).count(),
        }
    }

    /// The value of cookie `name` for `url`, if the jar has one.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = Url::parse(url).ok()?;
        self.cookies.as_ref()?.get_request_values(&url).find(|(n, _)| *n == name).map(|(_, v)| v.to_owned())
    }

    /// Forget all cookies (a new browser session).
    pub fn clear_cookies(&mut self) {
        self.cookies = None;
    }

    /// Close every connection; the next request reconnects.
    pub fn close_connections(&mut self) {
        self.connections.clear();
    }

    /// Send `request`, following redirects. Never fails: a request that got
    /// no response returns a [`Response`] whose `error` says why.
    pub async fn send(&mut self, request: &Request) -> Response {
        let started = Instant::now();
        let url = match self.resolve(request) {
            Ok(url) => url,
            Err(e) => return Response::failed(request.url.clone(), e, started.elapsed()),
        };
        // A pooled request waits for its slot before its timeout starts.
        let _slot = match &self.pool {
            Some(pool) => match pool.slot().await {
                Ok(slot) => Some(slot),
                Err(e) => return Response::failed(url.into(), e, started.elapsed()),
            },
            None => None,
        };
        let timeout = request.timeout.or(self.config.timeout);
        let outcome = match timeout {
            Some(limit) => match tokio::time::timeout(limit, self.follow(request, url.clone(), started)).await {
                Ok(r) => r,
                Err(_) => Err(HttpError::Timeout(limit)),
            },
            None => self.follow(request, url.clone(), started).await,
        };
        match outcome {
            Ok((hop, final_url)) => Response {
                status: Some(hop.status),
                headers: hop.headers,
                head_id: hop.head_id,
                body: hop.body,
                url: final_url.into(),
                version: hop.version,
                elapsed: started.elapsed(),
                ttfb: hop.ttfb,
                error: None,
            },
            Err(e) => Response::failed(url.into(), e, started.elapsed()),
        }
    }

    /// The absolute URL of `request`: Locust appends relative URLs to the
    /// host as strings, so `http://h/api` + `/users` is `http://h/api/users`.
    fn resolve(&self, request: &Request) -> Result<Url, HttpError> {
        request.check()?;
        let raw = &request.url;
        let absolute = raw.starts_with("http://") || raw.starts_with("https://");
        let parsed = if absolute {
            Url::parse(raw)
        } else if let Some(base) =
            self.parsed_base.as_ref().filter(|_| raw.starts_with('/') && !raw.contains(['#', '\\']))
        {
            let mut url = base.clone();
            match raw.split_once('?') {
                Some((path, query)) => {
                    url.set_path(path);
                    url.set_query(Some(query));
                }
                None => url.set_path(raw),
            }
            Ok(url)
        } else if self.base_url.is_empty() {
            return Err(HttpError::InvalidUrl(format!(
                "relative URL {raw:?} but no host was given (use --host or set the user's host)"
            )));
        } else {
            Url::parse(&format!("{}{raw}", self.base_url))
        };
        let mut url = parsed.map_err(|e| HttpError::InvalidUrl(format!("{raw}: {e}")))?;
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(request.query.iter());
        }
        Ok(url)
    }

    async fn follow(&mut self, request: &Request, mut url: Url, started: Instant) -> Result<(Hop, Url), HttpError> {
        let mut method = request.method.clone();
        let mut body = request.body.bytes();
        let mut content_type = request.body.content_type();
        let mut redirects = 0;
        let mut first_ttfb = None;
        loop {
            let mut hop = self.exchange(&method, &url, request, body.clone(), content_type, started).await?;
            let ttfb = *first_ttfb.get_or_insert(hop.ttfb);
            let location = hop.headers.get(LOCATION).and_then(|v| v.to_str().ok());
            let next = match location {
                Some(loc) if request.allow_redirects && hop.status.is_redirection() => url.join(loc).ok(),
                _ => None,
            };
            let Some(next) = next else {
                hop.ttfb = ttfb;
                return Ok((hop, url));
            };
            redirects += 1;
            if redirects > self.config.max_redirects {
                return Err(HttpError::TooManyRedirects(self.config.max_redirects));
            }
            // Browsers and `requests` turn 303 (and 301/302 after POST) into GET.
            let to_get = hop.status == StatusCode::SEE_OTHER && method != Method::HEAD
                || matches!(hop.status.as_u16(), 301 | 302) && method == Method::POST;
            if to_get {
                method = Method::GET;
                body = Bytes::new();
                content_type = None;
            }
            url = next;
        }
    }

    /// One request/response on the origin's connection, reconnecting once
    /// if the kept-alive connection turned out to be closed.
    async fn exchange(
        &mut self,
        method: &Method,
        url: &Url,
        request: &Request,
        body: Bytes,
        content_type: Option<&'static str>,
        started: Instant,
    ) -> Result<Hop, HttpError> {
        let origin = Origin::of(url)?;
        let max_body = request.max_body.unwrap_or(self.config.max_body_bytes);
        let mut retried = false;
        let raw = loop {
            let mut slot = self.connection_for(&origin).await?;
            let http2 = match &slot {
                Slot::Own(index) => self.connections[*index].1.is_http2(),
                Slot::Leased(leased) => leased.connection.is_http2(),
            };
            let (target, headers) = self.head(url, &origin, http2, request, content_type)?;
            let connection = match &mut slot {
                Slot::Own(index) => &mut self.connections[*index].1,
                Slot::Leased(leased) => &mut leased.connection,
            };
            let sent = connection.send(method, &target, headers, body.clone(), started, max_body).await;
            let error = match sent {
                Ok(raw) => {
                    if let (Slot::Leased(leased), Some(pool)) = (slot, &self.pool) {
                        pool.give_back(leased);
                    }
                    break raw;
                }
                // Sending again is safe when the request never left, or
                // when sending it twice means the same as once (RFC 9110
                // §9.2.2); a POST or PATCH that may have reached the
                // server fails instead of possibly being acted on twice.
                Err(SendError::NotSent) if !retried => None,
                Err(SendError::Stale) if !retried && method.is_idempotent() => None,
                Err(SendError::NotSent | SendError::Stale) if retried => {
                    Some(HttpError::Protocol("connection closed before the response".into()))
                }
                Err(SendError::NotSent | SendError::Stale) => Some(HttpError::Protocol(
                    "the server closed the kept-alive connection after the request was sent, without \
                     answering; not sent again because the method is not idempotent"
                        .into(),
                )),
                Err(SendError::Failed(e)) => Some(e),
            };
            // A failed connection is not kept (a leased one frees its slot).
            if let Slot::Own(index) = slot {
                self.connections.swap_remove(index);
            }
            match error {
                None => retried = true,
                Some(e) => return Err(e),
            }
        };
        self.store_cookies(url, &raw.headers);
        let encoding = raw.headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok());
        let body = if *method == Method::HEAD { raw.body } else { decode_body(encoding, raw.body, max_body)? };
        Ok(Hop {
            status: raw.status,
            headers: raw.headers,
            head_id: raw.head_id,
            body,
            version: raw.version,
            ttfb: raw.ttfb,
        })
    }

    async fn connection_for(&mut self, origin: &Origin) -> Result<Slot, HttpError> {
        if let Some(pool) = &self.pool {
            return Ok(Slot::Leased(pool.lease(origin, &self.config).await?));
        }
        if let Some(i) = self.connections.iter().position(|(o, _)| o == origin) {
            if self.connections[i].1.is_usable() {
                return Ok(Slot::Own(i));
            }
            self.connections.swap_remove(i);
        }
        // Boxed: the TLS and HTTP/2 handshakes make a large future, and
        // keeping it inline would make every request's future (and the
        // copies of it) that large, although connecting is rare.
        let conn = Box::pin(connection::connect(origin, &self.config)).await?;
        self.connections.push((origin.clone(), conn));
        Ok(Slot::Own(self.connections.len() - 1))
    }

    /// The request target and the headers to send. HTTP/1.1 wants the
    /// origin-form plus Host; HTTP/2 wants the absolute URI so :scheme and
    /// :authority can be filled.
    fn head(
        &self,
        url: &Url,
        origin: &Origin,
        http2: bool,
        request: &Request,
        content_type: Option<&'static str>,
    ) -> Result<(String, HeaderMap), HttpError> {
        let target = if http2 {
            let mut absolute = url.clone();
            let _ = absolute.set_username("");
            let _ = absolute.set_password(None);
            absolute.to_string()
        } else {
            match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            }
        };
        let mut headers = request.headers.clone();
        if !http2 && !headers.contains_key(HOST) {
            let same_as_base =
                self.parsed_base.as_ref().is_some_and(|b| b.host_str() == url.host_str() && b.port() == url.port());
            let value = match (&self.base_host, same_as_base) {
                (Some(v), true) => v.clone(),
                _ => header_value(&host_of(url).unwrap_or_else(|| origin.host.clone()))?,
            };
            headers.insert(HOST, value);
        }
        if !headers.contains_key(USER_AGENT) {
            let value = match &self.user_agent {
                Some(v) => v.clone(),
                None => header_value(&self.config.user_agent)?,
            };
            headers.insert(USER_AGENT, value);
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        if !headers.contains_key(ACCEPT_ENCODING) {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"));
        }
        if let (Some(ct), false) = (content_type, headers.contains_key(CONTENT_TYPE)) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if !url.username().is_empty() && !headers.contains_key(AUTHORIZATION) {
            let user = percent_decode(url.username());
            let pass = percent_decode(url.password().unwrap_or(""));
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            headers.insert(AUTHORIZATION, header_value(&format!("Basic {token}"))?);
        }
        if let Some(jar) = &self.cookies {
            let cookie = jar.get_request_values(url).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
            if !cookie.is_empty() {
                headers.insert(COOKIE, header_value(&cookie)?);
            }
        }
        Ok((target, headers))
    }

    fn store_cookies(&mut self, url: &Url, headers: &http::HeaderMap) {
        let mut set_cookies = headers.get_all(SET_COOKIE).iter().peekable();
        if set_cookies.peek().is_none() {
            return;
        }
        let jar = self.cookies.get_or_insert_with(Default::default);
        for value in set_cookies {
            if let Ok(text) = value.to_str() {
                let _ = jar.parse(text, url);
            }
        }
    }
}

/// `host[:port]` as the Host header wants it (the port only when explicit).
fn host_of(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

fn header_value(text: &str) -> Result<HeaderValue, HttpError> {
    HeaderValue::try_from(text).map_err(|_| HttpError::InvalidRequest(format!("invalid header value {text:?}")))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(base: &str, raw: &str) -> String {
        let s = Session::new(Arc::new(ClientConfig::default_config()), base);
        s.resolve(&Request::get(raw)).unwrap().to_string()
    }

    #[test]
    fn relative_urls_resolve_like_a_full_parse() {
        for raw in ["/", "/a/b", "/a?x=1&y=two words", "/a/../b", "/%7Euser", "/ü?q=ü", "/a#frag", "/a\\b"] {
            let fast = resolved("http://127.0.0.1:8080", raw);
            let full = Url::parse(&format!("http://127.0.0.1:8080{raw}")).unwrap().to_string();
            assert_eq!(fast, full, "{raw}");
        }
        // A host with a path prefix keeps Locust's string concatenation.
        assert_eq!(resolved("http://h/api/", "/users"), "http://h/api/users");
    }
}
