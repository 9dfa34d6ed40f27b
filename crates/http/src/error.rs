//! Why a request got no response. Each variant is a cause a user can act on.

use std::time::Duration;

/// A request that could not complete. Recorded by the engine as a failure
/// whose error text is this error's `Display`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// The URL could not be parsed, has no host or an unsupported scheme, or
    /// is relative with no base URL to join it to.
    #[error("InvalidURL: {0}")]
    InvalidUrl(String),
    /// The host name could not be resolved to an address.
    #[error("ConnectionError: could not resolve {host}: {reason}")]
    Resolve {
        /// The host name looked up.
        host: String,
        /// The resolver's error text.
        reason: String,
    },
    /// No address of the host accepted a TCP connection.
    #[error("ConnectionRefusedError: {addr}: {reason}")]
    Connect {
        /// `host:port` connected to.
        addr: String,
        /// The last connection error, or "no address" if the name resolved to none.
        reason: String,
    },
    /// Resolving and connecting took longer than [`crate::ClientConfig::connect_timeout`].
    #[error("ConnectTimeout: no connection to {addr} within {timeout:?}")]
    ConnectTimeout {
        /// `host:port` connected to.
        addr: String,
        /// The connect timeout that ran out.
        timeout: Duration,
    },
    /// Loading certificate files, or the TLS handshake with the server, failed.
    #[error("SSLError: {0}")]
    Tls(String),
    /// The whole request, redirects included, took longer than its timeout
    /// (the request's own or [`crate::ClientConfig::timeout`]).
    #[error("ReadTimeout: no complete response within {0:?}")]
    Timeout(Duration),
    /// The connection failed or closed, or the server's response was not valid HTTP.
    #[error("ConnectionError: {0}")]
    Protocol(String),
    /// More redirects than [`crate::ClientConfig::max_redirects`] (the number held).
    #[error("TooManyRedirects: exceeded {0} redirects")]
    TooManyRedirects(usize),
    /// The body could not be decompressed as its `Content-Encoding` says.
    #[error("ContentDecodingError: {0}")]
    Decode(String),
    /// The request could not be built: an invalid header name or value, or a JSON
    /// body that failed to serialize.
    #[error("InvalidRequest: {0}")]
    InvalidRequest(String),
    /// The response body was larger than the limit: the request's
    /// [`crate::Request::max_body`] or else [`crate::ClientConfig::max_body_bytes`].
    /// `decoded` says whether the limit was hit while undoing the
    /// `Content-Encoding` (a small gzip body can inflate to gigabytes).
    /// Reading stops at the limit, so memory never grows past it.
    #[error("BodyTooLarge: {}response body larger than the {} limit (max body size)", decoded_word(*.decoded), ByteSize(*.limit))]
    BodyTooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
        /// True if the limit was hit while decompressing, false if on the wire.
        decoded: bool,
    },
}

fn decoded_word(decoded: bool) -> &'static str {
    if decoded { "decoded " } else { "" }
}

/// A byte count as people write limits: `64 MiB`, `512 KiB`, `1000 bytes`.
struct ByteSize(usize);

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const KIB: usize = 1024;
        const MIB: usize = 1024 * KIB;
        const GIB: usize = 1024 * MIB;
        match self.0 {
            n if n >= GIB && n % GIB == 0 => write!(f, "{} GiB", n / GIB),
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            1 => f.write_str("1 byte"),
            n => write!(f, "{n} bytes"),
        }
    }
}

impl From<hyper::Error> for HttpError {
    fn from(e: hyper::Error) -> Self {
        // hyper's Display is terse; include the source chain for a useful text.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        HttpError::Protocol(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_too_large_names_the_limit_and_the_setting() {
        let e = HttpError::BodyTooLarge { limit: 64 << 20, decoded: false };
        assert_eq!(e.to_string(), "BodyTooLarge: response body larger than the 64 MiB limit (max body size)");
        let e = HttpError::BodyTooLarge { limit: 1500, decoded: true };
        assert_eq!(
            e.to_string(),
            "BodyTooLarge: decoded response body larger than the 1500 bytes limit (max body size)"
        );
        assert_eq!(ByteSize(2 << 30).to_string(), "2 GiB");
        assert_eq!(ByteSize(3 << 10).to_string(), "3 KiB");
        assert_eq!(ByteSize(0).to_string(), "0 bytes");
    }
}
