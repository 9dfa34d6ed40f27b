//! Settings shared by every [`crate::Session`] of a test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::HttpError;
use crate::tls;

/// Which HTTP version to speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersionPreference {
    /// HTTP/2 when TLS ALPN offers it, otherwise HTTP/1.1 (what browsers do).
    #[default]
    Auto,
    /// Only HTTP/1.1, even over TLS.
    Http1Only,
    /// HTTP/2 on every connection; on plain TCP this is prior-knowledge h2c.
    Http2Only,
}

/// TLS settings.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Accept any server certificate (like `curl -k` or `verify=False`).
    pub insecure: bool,
    /// Extra PEM files with CA certificates to trust, besides the Mozilla roots.
    pub ca_certs: Vec<PathBuf>,
    /// PEM certificate chain and private key presented to servers that ask.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Everything a session needs that is the same for all users. Cheap to
/// clone (the TLS configuration is shared).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub version: HttpVersionPreference,
    pub connect_timeout: Duration,
    /// Total time for one request including redirects; `None` waits forever.
    pub timeout: Option<Duration>,
    pub max_redirects: usize,
    pub user_agent: String,
}

impl ClientConfig {
    /// Build the shared configuration; reads certificate files now so that a
    /// bad path is reported before any load is sent.
    pub fn new(tls: &TlsOptions, version: HttpVersionPreference) -> Result<Self, HttpError> {
        Ok(Self {
            tls: Arc::new(tls::client_config(tls, version)?),
            version,
            connect_timeout: Duration::from_secs(10),
            timeout: Some(Duration::from_secs(60)),
            max_redirects: 30,
            user_agent: concat!("swarmer/", env!("CARGO_PKG_VERSION")).to_owned(),
        })
    }

    /// Defaults: Mozilla roots, HTTP/2 by ALPN, 10 s connect, 60 s total.
    pub fn default_config() -> Self {
        Self::new(&TlsOptions::default(), HttpVersionPreference::Auto)
            .expect("the default TLS configuration reads no files and cannot fail")
    }
}
