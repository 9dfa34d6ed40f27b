//! One keep-alive connection to one origin: TCP, optional TLS, then either
//! our HTTP/1.1 codec (driven by the user's task) or an HTTP/2 handshake
//! (hyper; its driver runs as a task on the same thread).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::config::{ClientConfig, HttpVersionPreference};
use crate::error::HttpError;
use crate::h1::{self, H1Connection, H1Error, RawResponse, Stream};

/// Where a connection goes: scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn of(url: &url::Url) -> Result<Self, HttpError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(HttpError::InvalidUrl(format!("unsupported scheme '{other}' in {url}"))),
        };
        let host = url.host_str().ok_or_else(|| HttpError::InvalidUrl(format!("no host in {url}")))?;
        // IPv6 literals come bracketed from the URL; sockets want them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { https, host, port })
    }
}

/// An open connection: our own HTTP/1.1 codec, or hyper's HTTP/2 client.
pub(crate) enum Connection {
    Http1(H1Connection),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// Outcome of sending on a connection that may have gone stale.
pub(crate) enum SendError {
    /// The kept-alive connection was closed and the request was not sent
    /// on it: safe to send on a new connection, whatever the method.
    NotSent,
    /// The kept-alive connection closed without answering after the
    /// request was (partly) written: the server may have acted on it, so
    /// only an idempotent request may be sent again.
    Stale,
    Failed(HttpError),
}

impl Connection {
    pub fn is_http2(&self) -> bool {
        matches!(self, Connection::Http2(_))
    }

    /// Whether a new request can go on this connection.
    pub fn is_usable(&self) -> bool {
        match self {
            Connection::Http1(c) => c.is_usable(),
            Connection::Http2(s) => !s.is_closed(),
        }
    }

    /// Send one request and read the whole response, whose body may be at
    /// most `max_body` bytes. `target` is the origin-form for HTTP/1.1 and
    /// the absolute URI for HTTP/2.
    pub async fn send(
        &mut self,
        method: &Method,
        target: &str,
        headers: HeaderMap,
        body: Bytes,
        started: Instant,
        max_body: usize,
    ) -> Result<RawResponse, SendError> {
        match self {
            Connection::Http1(conn) => {
                conn.send(method, target, &headers, &body, started, max_body).await.map_err(|e| match e {
                    H1Error::NotSent => SendError::NotSent,
                    H1Error::Stale => SendError::Stale,
                    H1Error::Failed(e) => SendError::Failed(e),
                })
            }
            Connection::Http2(sender) => {
                Box::pin(http2_send(sender, method, target, headers, body, started, max_body)).await
            }
        }
    }
}

/// One HTTP/2 exchange (boxed by the caller to keep HTTP/1's future small).
async fn http2_send(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    method: &Method,
    target: &str,
    headers: HeaderMap,
    body: Bytes,
    started: Instant,
    max_body: usize,
) -> Result<RawResponse, SendError> {
    let mut builder = http::Request::builder().method(method.clone()).uri(target);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let request =
        builder.body(Full::new(body)).map_err(|e| SendError::Failed(HttpError::InvalidRequest(e.to_string())))?;
    if sender.ready().await.is_err() {
        return Err(SendError::NotSent);
    }
    let response = sender.try_send_request(request).await.map_err(|mut e| match e.take_message() {
        Some(_) => SendError::NotSent,
        None => SendError::Failed(e.into_error().into()),
    })?;
    let ttfb = started.elapsed();
    let (parts, incoming) = response.into_parts();
    let no_body =
        *method == Method::HEAD || parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED;
    if !no_body && h1::content_length(&parts.headers).map_err(SendError::Failed)?.is_some_and(|n| n > max_body as u64) {
        return Err(SendError::Failed(HttpError::BodyTooLarge { limit: max_body, decoded: false }));
    }
    let body = collect_limited(incoming, max_body).await.map_err(SendError::Failed)?;
    Ok(RawResponse { status: parts.status, version: parts.version, headers: parts.headers, head_id: 0, body, ttfb })
}

/// The data of `incoming`, failing as soon as it passes `limit` bytes. A
/// body in one frame is returned as it is, without a copy.
async fn collect_limited(mut incoming: hyper::body::Incoming, limit: usize) -> Result<Bytes, HttpError> {
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = incoming.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(HttpError::BodyTooLarge { limit, decoded: false });
        }
        match &mut joined {
            Some(joined) => joined.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut both = BytesMut::with_capacity(first.len() + data.len());
                both.extend_from_slice(&first);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

/// Open a connection to `origin`, negotiating the protocol.
pub(crate) async fn connect(origin: &Origin, config: &ClientConfig) -> Result<Connection, HttpError> {
    let tls = origin.https.then(|| config.tls.clone());
    let prior_knowledge = config.version == HttpVersionPreference::Http2Only;
    match open_stream(&origin.host, origin.port, tls, config.connect_timeout).await? {
        Stream::Tls(tls) if prior_knowledge || tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
            http2_handshake(TokioIo::new(*tls)).await
        }
        Stream::Tcp(tcp) if prior_knowledge => http2_handshake(TokioIo::new(tcp)).await,
        stream => Ok(Connection::Http1(H1Connection::new(stream))),
    }
}

/// A TCP connection to `host:port` (resolved, within `connect_timeout`,
/// with TCP_NODELAY), then TLS with `tls` when given: how the HTTP client
/// connects, for clients of other protocols over the same trust (gRPC).
pub async fn open_stream(
    host: &str,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
) -> Result<Stream, HttpError> {
    let origin = Origin { https: tls.is_some(), host: host.to_owned(), port };
    let tcp = tcp_connect(&origin, connect_timeout).await?;
    let Some(tls) = tls else { return Ok(Stream::Tcp(tcp)) };
    let server_name =
        ServerName::try_from(origin.host.clone()).map_err(|e| HttpError::InvalidUrl(format!("{host}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| HttpError::Tls(format!("{host}:{port}: {e}")))?;
    Ok(Stream::Tls(Box::new(tls)))
}

async fn http2_handshake<T>(io: TokioIo<T>) -> Result<Connection, HttpError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new()).handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Connection::Http2(sender))
}

async fn tcp_connect(origin: &Origin, timeout: Duration) -> Result<TcpStream, HttpError> {
    let display = format!("{}:{}", origin.host, origin.port);
    let attempt = async {
        let addrs: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
            Err(_) => tokio::net::lookup_host((origin.host.as_str(), origin.port))
                .await
                .map_err(|e| HttpError::Resolve { host: origin.host.clone(), reason: e.to_string() })?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(HttpError::Connect {
            addr: display.clone(),
            reason: last.map_or_else(|| "no address".to_owned(), |e| e.to_string()),
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| HttpError::ConnectTimeout { addr: display.clone(), timeout })?
}
