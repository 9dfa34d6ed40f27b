//! What a request produced: status, headers, decoded body, timing, or the
//! error that prevented a response (Locust's `response.error`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};

use crate::error::HttpError;

/// The outcome of one request, including redirects it followed.
#[derive(Debug, Clone)]
pub struct Response {
    /// `None` when no response arrived (see `error`).
    pub status: Option<StatusCode>,
    /// Headers of the final response; empty when no response arrived.
    pub headers: HeaderMap,
    /// Equal nonzero numbers mean the same status line and the same headers
    /// in the same order, byte for byte (numbers are never reused in a
    /// process); 0 means not numbered. Lets a consumer that converts
    /// headers skip the work when they are the ones it converted last.
    pub head_id: u64,
    /// The decoded body (gzip and deflate are undone).
    pub body: Bytes,
    /// The final URL after redirects.
    pub url: String,
    /// HTTP version of the final response (HTTP/1.1 when none arrived).
    pub version: Version,
    /// From sending the request to the last body byte, redirects included.
    pub elapsed: Duration,
    /// From sending the request to the first response headers.
    pub ttfb: Duration,
    /// Why there is no response.
    pub error: Option<HttpError>,
}

impl Response {
    pub(crate) fn failed(url: String, error: HttpError, elapsed: Duration) -> Self {
        Self {
            status: None,
            headers: HeaderMap::new(),
            head_id: 0,
            body: Bytes::new(),
            url,
            version: Version::HTTP_11,
            elapsed,
            ttfb: elapsed,
            error: Some(error),
        }
    }

    /// Status code as a number; 0 when there was no response (as in Locust).
    pub fn status_code(&self) -> u16 {
        self.status.map_or(0, |s| s.as_u16())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The first value of header `name` (any case) as text; `None` if absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Locust's default verdict: an error text when the request failed or the
    /// status is not 2xx/3xx, `None` when it succeeded. `name` is the stats
    /// name, used instead of the full URL so that failures of requests grouped
    /// under one name are also grouped together.
    pub fn default_failure(&self, name: &str) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.to_string());
        }
        let status = self.status?;
        if status.is_client_error() || status.is_server_error() {
            let kind = if status.is_client_error() { "Client Error" } else { "Server Error" };
            let reason = status.canonical_reason().unwrap_or("");
            return Some(format!("HTTPError('{} {kind}: {reason} for url: {name}')", status.as_u16()));
        }
        None
    }
}
