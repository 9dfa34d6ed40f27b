//! Why a request got no response. Each variant is a cause a user can act on.

use std::time::Duration;

/// A request that could not complete. Recorded by the engine as a failure
/// whose error text is this error's `Display`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("InvalidURL: {0}")]
    InvalidUrl(String),
    #[error("ConnectionError: could not resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("ConnectionRefusedError: {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("ConnectTimeout: no connection to {addr} within {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("SSLError: {0}")]
    Tls(String),
    #[error("ReadTimeout: no complete response within {0:?}")]
    Timeout(Duration),
    #[error("ConnectionError: {0}")]
    Protocol(String),
    #[error("TooManyRedirects: exceeded {0} redirects")]
    TooManyRedirects(usize),
    #[error("ContentDecodingError: {0}")]
    Decode(String),
    #[error("InvalidRequest: {0}")]
    InvalidRequest(String),
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
