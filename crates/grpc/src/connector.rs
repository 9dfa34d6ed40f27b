//! How a channel reaches its server: the HTTP client's own connect
//! (`swarmer_http::open_stream`: resolution, connect timeout, TLS with the
//! test's trust), offering only `h2` by ALPN, as the tower service of URIs
//! tonic asks of a connector.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;

/// A connection: plain TCP (h2c) or TLS.
pub type Connection = TokioIo<swarmer_http::Stream>;

/// Opens connections for a channel.
#[derive(Clone)]
pub struct Connector {
    /// TLS settings when the channel's scheme is `https`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Time allowed to resolve and connect.
    pub connect_timeout: Duration,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Connection;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Connection>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (tls, timeout) = (self.tls.clone(), self.connect_timeout);
        Box::pin(async move {
            let failed = |what: String| std::io::Error::other(what);
            let host = uri.host().ok_or_else(|| failed(format!("{uri}: no host")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
            let stream =
                swarmer_http::open_stream(&host, port, tls, timeout).await.map_err(|e| failed(e.to_string()))?;
            Ok(TokioIo::new(stream))
        })
    }
}
