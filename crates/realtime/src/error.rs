//! What can go wrong opening or using a connection.

/// Why a connection could not be opened or used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RealtimeError {
    /// The URL cannot be used (scheme, host, syntax).
    #[error("invalid URL {url}: {why}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// TCP or TLS connect failed.
    #[error("{0}")]
    Connect(String),
    /// The server answered the opening request, but not as it should
    /// (a status other than 101 for WebSocket, or other than 200 with
    /// `text/event-stream` for SSE).
    #[error("{0}")]
    Refused(String),
    /// The connection broke, or the protocol was broken.
    #[error("{0}")]
    Protocol(String),
    /// Nothing came within the time allowed.
    #[error("timed out after {0:?}")]
    TimedOut(std::time::Duration),
    /// An argument the protocol does not allow (a close code, say).
    #[error("{0}")]
    Invalid(String),
    /// The connection was closed before the operation.
    #[error("the connection is closed")]
    Closed,
}
