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

impl HttpVersionPreference {
    /// Every preference, in the order of [`HttpVersionPreference::NAMES`].
    pub const ALL: [Self; 3] = [Self::Auto, Self::Http1Only, Self::Http2Only];
    /// The names `--http-version` takes (`auto`, `1`, `2`).
    pub const NAMES: [&'static str; 3] = ["auto", "1", "2"];

    /// The name of this preference, as `--http-version` takes it.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|v| *v == self).expect("every preference is in ALL")]
    }

    /// The preference named `name` (one of [`HttpVersionPreference::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| Self::ALL[i])
    }
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

/// Default for [`ClientConfig::max_body_bytes`]: 64 MiB.
///
/// Why this size: the responses a load test fetches (pages, API answers,
/// scripts, images) are rarely more than a few MiB, and even large
/// downloads such as exports fit in 64 MiB, so real targets do not hit it.
/// What it prevents is one broken or hostile response (an endless chunked
/// body, a gzip bomb, a `Content-Length` of petabytes) taking the whole
/// load generator's memory, which would end the test for every user. The
/// bound is per response: a test whose many users download large files at
/// once needs memory for users x body size and should lower it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Everything a session needs that is the same for all users. Cheap to
/// clone (the TLS configuration is shared).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) tls: Arc<rustls::ClientConfig>,
    insecure: bool,
    /// Which HTTP version new connections speak.
    pub version: HttpVersionPreference,
    /// Time allowed to resolve the host and open the TCP connection (the TLS
    /// handshake is not included); default 10 s.
    pub connect_timeout: Duration,
    /// Total time for one request including redirects; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Redirects followed for one request before it fails with
    /// [`HttpError::TooManyRedirects`]; default 30.
    pub max_redirects: usize,
    /// `User-Agent` sent when a request sets none; default `swarmer/` and the crate version.
    pub user_agent: String,
    /// Largest response body accepted, in bytes, both as received and after
    /// undoing gzip or deflate; a larger one fails the request with
    /// [`HttpError::BodyTooLarge`] instead of being read into memory.
    /// [`crate::Request::max_body`] overrides it for one request. Default
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
}

impl ClientConfig {
    /// Build the shared configuration; reads certificate files now so that a
    /// bad path is reported before any load is sent.
    pub fn new(tls: &TlsOptions, version: HttpVersionPreference) -> Result<Self, HttpError> {
        Ok(Self {
            tls: Arc::new(tls::client_config(tls, version)?),
            insecure: tls.insecure,
            version,
            connect_timeout: Duration::from_secs(10),
            timeout: Some(Duration::from_secs(60)),
            max_redirects: 30,
            user_agent: concat!("swarmer/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    /// The test's TLS settings (roots, `--ca-cert`, `--insecure`, client
    /// certificate) offering only `protocols` by ALPN: for another
    /// protocol's client over the same trust (gRPC offers `h2`).
    pub fn tls_with_alpn(&self, protocols: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut config = (*self.tls).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// True when server certificates are not verified (built with
    /// [`TlsOptions::insecure`]).
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// Defaults: Mozilla roots, HTTP/2 by ALPN, 10 s connect, 60 s total,
    /// 64 MiB bodies.
    pub fn default_config() -> Self {
        Self::new(&TlsOptions::default(), HttpVersionPreference::Auto)
            .expect("the default TLS configuration reads no files and cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_through_their_flag_names() {
        for version in HttpVersionPreference::ALL {
            assert_eq!(HttpVersionPreference::from_name(version.name()), Some(version));
        }
        assert_eq!(HttpVersionPreference::Http2Only.name(), "2");
        assert_eq!(HttpVersionPreference::from_name("3"), None);
    }
}
