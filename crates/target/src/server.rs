//! Accepting connections and serving [`crate::routes`] over HTTP/1.1 and
//! HTTP/2, with or without TLS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::routes;

/// Why the target could not start.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The listening socket could not be bound or set up.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address as given, e.g. `127.0.0.1:8080`.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The certificate, key or client CA could not be loaded or used; the text says why.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The tokio runtime or its thread could not be started.
    #[error("could not start the target's runtime: {0}")]
    Runtime(std::io::Error),
}

/// Certificate files for serving HTTPS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM file with the server's certificate chain.
    pub cert: PathBuf,
    /// PEM file with the server's private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// How the target behaves.
#[derive(Clone, Debug, Default)]
pub struct TargetOptions {
    /// Added to every response.
    pub delay: Duration,
    /// Fraction (0..1) of requests answered with 500.
    pub error_rate: f64,
    /// Serve HTTPS with these files; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Requests answered so far (tests compare it with what a run recorded).
    pub served: Arc<AtomicU64>,
    /// Connections accepted, open now, and the most open at once.
    pub connections: Arc<ConnectionCounts>,
    /// A stretch of time during which the target answers nothing.
    pub stall: Option<Stall>,
}

/// A stall: requests that arrive while it lasts are answered when it ends
/// (a garbage-collection pause, a failover), to show what a load
/// generator makes of it.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    begins: std::time::Instant,
    ends: std::time::Instant,
}

impl Stall {
    /// A stall that begins `after` from now and lasts `lasting`.
    pub fn starting_in(after: Duration, lasting: Duration) -> Self {
        let begins = std::time::Instant::now() + after;
        Self { begins, ends: begins + lasting }
    }

    /// How long a request arriving now waits for the stall to end.
    fn hold(&self) -> Duration {
        let now = std::time::Instant::now();
        if now >= self.begins && now < self.ends { self.ends - now } else { Duration::ZERO }
    }
}

/// How many connections a target has had (tests check a client's limits).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    accepted: AtomicU64,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

impl ConnectionCounts {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The most connections that were open at once.
    pub fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }

    fn opened(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        self.held()
    }

    /// Count a connection open (again: an upgraded one outlives its HTTP
    /// connection) until the result is dropped.
    pub(crate) fn held(self: &Arc<Self>) -> OpenConnection {
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_open.fetch_max(now, Ordering::SeqCst);
        OpenConnection(self.clone())
    }
}

/// Counts a connection as open until dropped.
pub(crate) struct OpenConnection(Arc<ConnectionCounts>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running demo target. Stops when dropped.
pub struct DemoTarget {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    connections: Arc<ConnectionCounts>,
    https: bool,
    accept_loop: Option<JoinHandle<()>>,
    thread: Option<(std::thread::JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

impl DemoTarget {
    /// Listen on `addr` and serve on the current tokio runtime.
    pub async fn bind(addr: &str, options: TargetOptions) -> Result<Self, TargetError> {
        let (listener, tls) = listen(addr, &options).await?;
        let local = listener.local_addr().map_err(|source| TargetError::Bind { addr: addr.into(), source })?;
        let https = tls.is_some();
        let (served, connections) = (options.served.clone(), options.connections.clone());
        let handle = tokio::spawn(accept_loop(listener, tls, Arc::new(options)));
        Ok(Self { addr: local, served, connections, https, accept_loop: Some(handle), thread: None })
    }

    /// Start on a thread of its own with a `threads`-worker runtime: for
    /// tests and for callers that are not async.
    pub fn spawn(addr: &str, options: TargetOptions, threads: usize) -> Result<Self, TargetError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
            .map_err(TargetError::Runtime)?;
        let (listener, tls) = listen_std(addr, &options)?;
        let local = listener.local_addr().map_err(|source| TargetError::Bind { addr: addr.into(), source })?;
        let https = tls.is_some();
        let (served, connections) = (options.served.clone(), options.connections.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("demo-target".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    let serving = tokio::spawn(accept_loop(listener, tls, Arc::new(options)));
                    let _ = stop_rx.await;
                    serving.abort();
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(TargetError::Runtime)?;
        Ok(Self { addr: local, served, connections, https, accept_loop: None, thread: Some((thread, stop_tx)) })
    }

    /// The address actually bound (with the real port when `addr` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Responses sent so far.
    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Its connections so far.
    pub fn connections(&self) -> &ConnectionCounts {
        &self.connections
    }

    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serve until the process ends.
    pub async fn run_forever(mut self) {
        if let Some(handle) = self.accept_loop.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        if let Some(handle) = self.accept_loop.take() {
            handle.abort();
        }
        if let Some((thread, stop)) = self.thread.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

type Acceptor = Option<tokio_rustls::TlsAcceptor>;

async fn listen(addr: &str, options: &TargetOptions) -> Result<(TcpListener, Acceptor), TargetError> {
    let (listener, tls) = listen_std(addr, options)?;
    let listener = TcpListener::from_std(listener).map_err(|source| TargetError::Bind { addr: addr.into(), source })?;
    Ok((listener, tls))
}

/// Bind synchronously so that callers outside any runtime (and inside one)
/// get the address before serving starts.
fn listen_std(addr: &str, options: &TargetOptions) -> Result<(std::net::TcpListener, Acceptor), TargetError> {
    let tls = match &options.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(crate::tls::server_config(files)?))),
        None => None,
    };
    let bind_err = |source| TargetError::Bind { addr: addr.into(), source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok((listener, tls))
}

async fn accept_loop(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, options: Arc<TargetOptions>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let options = options.clone();
        let tls = tls.clone();
        let counted = options.connections.opened();
        tokio::spawn(async move {
            let _counted = counted;
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_connection(TokioIo::new(stream), options).await;
                    }
                }
                None => serve_connection(TokioIo::new(stream), options).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, options: Arc<TargetOptions>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, options.clone()));
    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(io, service).await;
}

/// A response: whole (every route but the live ones), or streamed.
type Answer = hyper::Response<Either<Full<Bytes>, crate::live::LiveBody>>;

async fn handle(req: hyper::Request<Incoming>, options: Arc<TargetOptions>) -> Result<Answer, Infallible> {
    if crate::live::is_live(req.uri().path()) {
        options.served.fetch_add(1, Ordering::Relaxed);
        return Ok(crate::live::respond(req, &options.connections).map(Either::Right));
    }
    Ok(whole(req, options).await.map(Either::Left))
}

async fn whole(req: hyper::Request<Incoming>, options: Arc<TargetOptions>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let req = hyper::Request::from_parts(parts, ());
    let mut delay = options.delay + options.stall.map_or(Duration::ZERO, |s| s.hold());
    if let Some(ms) = routes::requested_delay_ms(req.uri().path()) {
        delay += Duration::from_millis(ms);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    options.served.fetch_add(1, Ordering::Relaxed);
    if routes::should_inject_error(options.error_rate) {
        let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"injected error")));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    }
    if routes::requested_delay_ms(req.uri().path()).is_some() {
        return hyper::Response::new(Full::new(Bytes::from_static(b"delayed")));
    }
    routes::respond(&req, &body)
}
