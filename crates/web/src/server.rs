//! Binding and serving: plain HTTP, or HTTPS with rustls when
//! `--tls-cert`/`--tls-key` are given. One accept loop; each connection is
//! its own task (a slow TLS handshake never holds up the others).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use swarmer_engine::{RunnerHandle, StartError, TestSettings};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::Credentials;
use crate::logs::LogBuffer;
use crate::start_error::WebError;
use crate::state::AppState;

/// A certificate chain and its key (PEM files).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM file with the certificate chain (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM file with the private key (`--tls-key`).
    pub key: PathBuf,
}

/// What the start form shows before anyone types (`-u`, `-r`, `-t`).
#[derive(Clone, Debug)]
pub struct FormDefaults {
    /// Number of users (`-u`).
    pub users: usize,
    /// Users started per second (`-r`).
    pub spawn_rate: f64,
    /// Run time (`-t`); `None` leaves the field empty ("until stopped").
    pub run_time: Option<Duration>,
}

/// How the web UI is served.
pub struct WebOptions {
    /// Address to bind (`--web-host`; empty or `*` means every interface).
    pub host: String,
    /// `-P/--web-port`; 0 picks a free port.
    pub port: u16,
    /// `--web-base-path`: every route lives under it ("" or "/x").
    pub base_path: String,
    /// `--tls-cert`/`--tls-key`: serve HTTPS; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `--web-login`: who may use the UI and API.
    pub credentials: Option<Credentials>,
    /// `--class-picker`: the form offers the plan's classes to choose from.
    pub class_picker: bool,
    /// What the start form is filled in with.
    pub defaults: FormDefaults,
    /// The `--csv-full-history` file, served by `/stats/requests_full_history/csv`.
    pub full_history_csv: Option<PathBuf>,
    /// Recent log lines, served by `/logs`.
    pub logs: LogBuffer,
}

/// A running web server.
pub struct WebServer {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<AppState>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl WebServer {
    /// Bind and start serving on the current tokio runtime. Errors name the
    /// address or file that failed.
    pub async fn start(runner: RunnerHandle, options: WebOptions) -> Result<WebServer, WebError> {
        if !options.base_path.is_empty() && (!options.base_path.starts_with('/') || options.base_path.ends_with('/')) {
            return Err(WebError::BasePath(options.base_path.clone()));
        }
        let tls = match &options.tls {
            Some(files) => Some(TlsAcceptor::from(Arc::new(tls_config(files)?))),
            None => None,
        };
        let host = match options.host.as_str() {
            "" | "*" => "0.0.0.0",
            h => h,
        };
        let bind =
            if host.contains(':') { format!("[{host}]:{}", options.port) } else { format!("{host}:{}", options.port) };
        let listener = match TcpListener::bind(&bind).await {
            Ok(listener) => listener,
            Err(source) => return Err(WebError::Bind { addr: bind, source }),
        };
        let addr = listener.local_addr().map_err(|source| WebError::Bind { addr: bind, source })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new(AppState::new(runner, options, tls.is_some()));
        let router = crate::routes::router(state.clone());
        let accept_loop = tokio::spawn(accept(listener, tls, router));
        Ok(WebServer { addr, scheme, state, accept_loop })
    }

    /// The address bound, with the real port when `port` was 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The UI's address as a browser on this machine reaches it.
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { self.addr.ip().to_string() };
        let ip = if ip.contains(':') { format!("[{ip}]") } else { ip };
        format!("{}://{ip}:{}{}", self.scheme, self.addr.port(), self.state.options.base_path)
    }

    /// Start a test as the form would (`--autostart`), with the run time
    /// in `settings`.
    pub fn start_test(&self, settings: TestSettings) -> Result<(), StartError> {
        self.state.start_test(settings)
    }

    /// Stop accepting connections.
    pub fn shutdown(&self) {
        self.accept_loop.abort();
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, router: axum::Router) {
    let mut last_said = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin;
                // said once a second at most (it may go on for a while).
                if last_said.is_none_or(|at: std::time::Instant| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("web UI: accept failed: {e}");
                    last_said = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("web UI: TLS handshake with {peer} failed: {e}");
                        return;
                    }
                    Err(_) => return,
                },
                None => builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await,
            };
            if let Err(e) = result {
                tracing::debug!("web UI: connection from {peer}: {e}");
            }
        });
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, WebError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_error = |reason: String| WebError::TlsFile { flag: "--tls-cert", path: files.cert.clone(), reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| WebError::TlsFile {
        flag: "--tls-key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| WebError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
