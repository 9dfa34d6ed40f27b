//! One keep-alive connection to one origin: TCP, optional TLS, and an
//! HTTP/1.1 or HTTP/2 handshake. The connection's driver runs as a tokio
//! task on the current thread; the session keeps the sending half.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::config::{ClientConfig, HttpVersionPreference};
use crate::error::HttpError;

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

/// The sending half of an open connection.
pub(crate) enum Connection {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// Outcome of sending on a connection that may have gone stale.
pub(crate) enum SendError {
    /// The request was never written: safe to retry on a new connection.
    NotSent(http::Request<Full<Bytes>>),
    Failed(HttpError),
}

impl Connection {
    pub fn is_http2(&self) -> bool {
        matches!(self, Connection::Http2(_))
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Connection::Http1(s) => s.is_closed(),
            Connection::Http2(s) => s.is_closed(),
        }
    }

    pub async fn send(&mut self, request: http::Request<Full<Bytes>>) -> Result<http::Response<Incoming>, SendError> {
        match self {
            Connection::Http1(sender) => {
                if sender.ready().await.is_err() {
                    return Err(SendError::NotSent(request));
                }
                sender.try_send_request(request).await.map_err(|mut e| match e.take_message() {
                    Some(req) => SendError::NotSent(req),
                    None => SendError::Failed(e.into_error().into()),
                })
            }
            Connection::Http2(sender) => {
                if sender.ready().await.is_err() {
                    return Err(SendError::NotSent(request));
                }
                sender.try_send_request(request).await.map_err(|mut e| match e.take_message() {
                    Some(req) => SendError::NotSent(req),
                    None => SendError::Failed(e.into_error().into()),
                })
            }
        }
    }
}

/// Open a connection to `origin`, negotiating the protocol.
pub(crate) async fn connect(origin: &Origin, config: &ClientConfig) -> Result<Connection, HttpError> {
    let tcp = tcp_connect(origin, config.connect_timeout).await?;
    if origin.https {
        let server_name = ServerName::try_from(origin.host.clone())
            .map_err(|e| HttpError::InvalidUrl(format!("{}: {e}", origin.host)))?;
        let tls = tokio_rustls::TlsConnector::from(config.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| HttpError::Tls(format!("{}:{}: {e}", origin.host, origin.port)))?;
        let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let h2 = negotiated_h2 || config.version == HttpVersionPreference::Http2Only;
        handshake(TokioIo::new(tls), h2).await
    } else {
        handshake(TokioIo::new(tcp), config.version == HttpVersionPreference::Http2Only).await
    }
}

async fn handshake<T>(io: TokioIo<T>, http2: bool) -> Result<Connection, HttpError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if http2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new()).handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection::Http2(sender))
    } else {
        let (sender, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection::Http1(sender))
    }
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
