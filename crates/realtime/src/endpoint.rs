//! Where a connection goes: a URL resolved against the user's host.

use crate::RealtimeError;

/// A resolved connection target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS (`wss://`, `https://`).
    pub secure: bool,
    /// Host name or address, without brackets.
    pub host: String,
    /// Port, the scheme's default when the URL has none.
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// The full URL, with the scheme the protocol uses (`ws`/`wss` for
    /// WebSocket, `http`/`https` for SSE).
    pub url: String,
}

impl Endpoint {
    /// Resolve `url` against `base` (the user's host): an absolute URL
    /// (`ws`, `wss`, `http` or `https`) is used as it is; a path is joined
    /// to the host. `websocket` chooses the scheme pair of the result.
    pub fn resolve(base: &str, url: &str, websocket: bool) -> Result<Self, RealtimeError> {
        let invalid = |why: String| RealtimeError::InvalidUrl { url: url.to_owned(), why };
        // Absolute when it begins with a scheme (a query may hold "://").
        let absolute = url.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        let parsed = if absolute {
            url::Url::parse(url).map_err(|e| invalid(e.to_string()))?
        } else {
            if base.is_empty() {
                return Err(invalid("a path needs a host (--host, or the class's host)".into()));
            }
            let base = url::Url::parse(base).map_err(|e| invalid(format!("the host {base}: {e}")))?;
            base.join(url).map_err(|e| invalid(e.to_string()))?
        };
        let secure = match parsed.scheme() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            other => return Err(invalid(format!("scheme {other}: expected ws, wss, http or https"))),
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => return Err(invalid("no host".into())),
        };
        let port = parsed.port().unwrap_or(if secure { 443 } else { 80 });
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        let scheme = match (websocket, secure) {
            (true, false) => "ws",
            (true, true) => "wss",
            (false, false) => "http",
            (false, true) => "https",
        };
        let authority = match parsed.host() {
            Some(url::Host::Ipv6(_)) => format!("[{host}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let url = format!("{scheme}://{authority}{path}");
        Ok(Self { secure, host, port, path, url })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = if self.secure { 443 } else { 80 };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn paths_join_the_host_and_take_the_protocols_scheme() {
        let e = Endpoint::resolve("http://127.0.0.1:8089", "/ws?room=1", true).unwrap();
        assert_eq!((e.secure, e.port, e.path.as_str()), (false, 8089, "/ws?room=1"));
        assert_eq!(e.url, "ws://127.0.0.1:8089/ws?room=1");
        let e = Endpoint::resolve("https://example.test", "/events", false).unwrap();
        assert_eq!((e.secure, e.port, e.url.as_str()), (true, 443, "https://example.test:443/events"));
        assert_eq!(e.authority(), "example.test");
        let e = Endpoint::resolve("", "wss://[::1]:9/x", true).unwrap();
        assert_eq!((e.host.as_str(), e.authority().as_str()), ("::1", "[::1]:9"));
    }

    #[test]
    fn a_path_whose_query_holds_a_url_is_a_path() {
        let e = Endpoint::resolve("http://h:1", "/cb?u=http://x/y", true).unwrap();
        assert_eq!(e.url, "ws://h:1/cb?u=http://x/y");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let e = Endpoint::resolve("", "/ws", true).unwrap_err().to_string();
        assert!(e.contains("needs a host"), "{e}");
        let e = Endpoint::resolve("", "ftp://h/x", true).unwrap_err().to_string();
        assert!(e.contains("scheme ftp"), "{e}");
    }
}
