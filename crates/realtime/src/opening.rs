//! What opening a WebSocket and subscribing to an event stream share: the
//! connection (the HTTP client's own connect, TLS offering HTTP/1.1), the
//! headers a plan adds, the time limit and record of the opening, and the
//! record of a break.

use std::time::{Duration, Instant};

use swarmer_engine::Client;
use swarmer_http::Stream;

use crate::{Endpoint, RealtimeError};

/// How long an opening may take when the test has no `--request-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Resolve `url` against the user's host and connect to it.
pub async fn connect(client: &Client, url: &str, websocket: bool) -> Result<(Endpoint, Stream), RealtimeError> {
    let endpoint = Endpoint::resolve(client.base_url(), url, websocket)?;
    let config = client.http_config();
    let tls = endpoint.secure.then(|| config.tls_with_alpn(&[b"http/1.1"]));
    let stream = swarmer_http::open_stream(&endpoint.host, endpoint.port, tls, config.connect_timeout)
        .await
        .map_err(|e| RealtimeError::Connect(e.to_string()))?;
    Ok((endpoint, stream))
}

/// Set header `name` to `value` (given by a plan) in `headers`.
pub fn set_header(headers: &mut http::HeaderMap, url: &str, name: &str, value: &str) -> Result<(), RealtimeError> {
    let invalid = |e: &dyn std::fmt::Display| RealtimeError::InvalidUrl {
        url: url.to_owned(),
        why: format!("header {name}: {e}"),
    };
    let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(&e))?;
    let value = http::HeaderValue::from_str(value).map_err(|e| invalid(&e))?;
    headers.insert(header, value);
    Ok(())
}

/// Run `open` within `timeout` (default: the test's request timeout) and
/// record it as a request of type `kind` named `name`, its failure if any.
pub async fn recorded<T>(
    client: &Client,
    kind: &str,
    name: &str,
    timeout: Option<Duration>,
    open: impl Future<Output = Result<T, RealtimeError>>,
) -> Result<T, RealtimeError> {
    let started = Instant::now();
    let allowed = timeout.or(client.http_config().timeout).unwrap_or(DEFAULT_TIMEOUT);
    let opened = match tokio::time::timeout(allowed, open).await {
        Ok(opened) => opened,
        Err(_) => Err(RealtimeError::TimedOut(allowed)),
    };
    let failure = opened.as_ref().err().map(ToString::to_string);
    client.record_request(kind, name, started.elapsed(), 0, failure.as_deref());
    opened
}

/// The life of an open connection, for recording its break: once, as a
/// failure of type `kind` in the row `<name> (connection)`, its time the
/// connection's life.
pub struct Life {
    client: Client,
    kind: &'static str,
    row: String,
    opened: Instant,
}

impl Life {
    /// A connection of type `kind` opened now under `name`.
    pub fn begin(client: &Client, kind: &'static str, name: &str) -> Self {
        Self { client: client.clone(), kind, row: format!("{name} (connection)"), opened: Instant::now() }
    }

    /// Record that the connection broke (`what` broke: the connection, the
    /// stream) and why.
    pub fn broke(&self, what: &str, why: &str) {
        let failure = format!("the {what} broke: {why}");
        self.client.record_request(self.kind, &self.row, self.opened.elapsed(), 0, Some(&failure));
    }
}
