//! The seed's text-classification API, served over gRPC (the REST half,
//! `POST /predict`, is in [`crate::routes`]): service
//! `categorization.TextCategorization`, method `GetPrediction`, messages
//! as in `examples/lua/predict/categorization.proto`.
//!
//! The category is a pure function of the text ([`category_of`]), the
//! same over REST and gRPC. A text `fail:CODE[:message]` answers with that
//! gRPC status (a number or a name such as `NOT_FOUND`) in the trailers, so
//! tests can see failures; `sleep:MS` answers after that many milliseconds.
//! Request metadata named `x-...` is sent back in the reply's metadata, and
//! the `grpc-timeout` received as `x-grpc-timeout`. `streams.Streams/Echo`
//! answers each message of a bidirectional stream as it comes. Server reflection
//! (v1 and v1alpha) describes the service, for clients without the
//! `.proto`. A request whose `:scheme` is not the connection's (`http`
//! over TLS, `https` over h2c) is refused with INVALID_ARGUMENT, as strict
//! proxies do.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codec::CompressionEncoding;
use tonic::server::UnaryService;
use tonic::{Code, Request, Response, Status};

use crate::TargetError;

/// `TextCategorizationInput { string text = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TextCategorizationInput {
    /// The text to classify.
    #[prost(string, tag = "2")]
    pub text: String,
}

/// `TextCategorizationOutput { string text = 1; string prediction_id = 2;
/// int32 category = 3; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TextCategorizationOutput {
    /// The text classified.
    #[prost(string, tag = "1")]
    pub text: String,
    /// A new id per prediction.
    #[prost(string, tag = "2")]
    pub prediction_id: String,
    /// The category, 0 to 9.
    #[prost(int32, tag = "3")]
    pub category: i32,
}

/// The category of a text, 0 to 9 (the sum of its bytes, modulo 10).
pub fn category_of(text: &str) -> i32 {
    (text.bytes().map(u32::from).sum::<u32>() % 10) as i32
}

const PATH: &str = "/categorization.TextCategorization/GetPrediction";

/// The gRPC service (a tower service, as tonic's generated servers are).
#[derive(Clone)]
pub struct PredictService {
    served: Arc<AtomicU64>,
    reflection: crate::predict_reflection::Route,
    /// Whether the connection is TLS: the `:scheme` a request must carry.
    secure: bool,
}

impl Default for PredictService {
    fn default() -> Self {
        Self { served: Arc::default(), reflection: crate::predict_reflection::route(), secure: false }
    }
}

impl PredictService {
    /// The same service, for a connection that is (or is not) TLS.
    fn over(&self, secure: bool) -> Self {
        Self { secure, ..self.clone() }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<B> tower_service::Service<http::Request<B>> for PredictService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let handler = Predict(self.served.clone());
        let expected = if self.secure { "https" } else { "http" };
        if let Some(scheme) = request.uri().scheme_str().filter(|scheme| *scheme != expected) {
            let status = Status::invalid_argument(format!(":scheme {scheme} on a connection that is {expected}"));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        if request.uri().path().starts_with("/grpc.reflection.") {
            return (self.reflection)(request.map(tonic::body::Body::new));
        }
        if request.uri().path() == ECHO_PATH {
            let echo = EchoWords(self.served.clone());
            return Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.streaming(echo, request).await)
            });
        }
        if request.uri().path() != PATH {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(async move {
            // Compressed requests are read, and replies compressed when the
            // client accepts it.
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Deflate)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Deflate);
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// `GetPrediction`.
struct Predict(Arc<AtomicU64>);

/// `streams.Streams/Echo` (tests/grpc/streams.proto, the same wire
/// shapes as the prediction messages): each word back as it comes, as a
/// prediction; a word `fail:CODE:message` ends the call with that status.
const ECHO_PATH: &str = "/streams.Streams/Echo";

struct EchoWords(Arc<AtomicU64>);

type Replies = Pin<Box<dyn futures_util::Stream<Item = Result<TextCategorizationOutput, Status>> + Send>>;

impl tonic::server::StreamingService<TextCategorizationInput> for EchoWords {
    type Response = TextCategorizationOutput;
    type ResponseStream = Replies;
    type Future = BoxFuture<Response<Replies>, Status>;

    fn call(&mut self, request: Request<tonic::Streaming<TextCategorizationInput>>) -> Self::Future {
        use futures_util::StreamExt;
        let served = self.0.clone();
        let words = request.into_inner();
        let replies = words
            .map(move |word| {
                let text = word?.text;
                if let Some(rest) = text.strip_prefix("fail:") {
                    let (code, message) = rest.split_once(':').unwrap_or((rest, "asked to fail"));
                    return Err(Status::new(code_from(code), message.to_owned()));
                }
                let id = served.fetch_add(1, Ordering::Relaxed);
                Ok(TextCategorizationOutput { category: category_of(&text), prediction_id: format!("p-{id}"), text })
            })
            // The stream ends after the first failure.
            .scan(false, |failed, reply| {
                let stop = *failed;
                *failed |= reply.is_err();
                std::future::ready((!stop).then_some(reply))
            });
        Box::pin(async move { Ok(Response::new(Box::pin(replies) as Replies)) })
    }
}

/// Request metadata sent back in the reply.
enum Echo {
    Text(tonic::metadata::MetadataKey<tonic::metadata::Ascii>, tonic::metadata::MetadataValue<tonic::metadata::Ascii>),
    Binary(
        tonic::metadata::MetadataKey<tonic::metadata::Binary>,
        tonic::metadata::MetadataValue<tonic::metadata::Binary>,
    ),
}

impl UnaryService<TextCategorizationInput> for Predict {
    type Response = TextCategorizationOutput;
    type Future = BoxFuture<Response<TextCategorizationOutput>, Status>;

    fn call(&mut self, request: Request<TextCategorizationInput>) -> Self::Future {
        let id = self.0.fetch_add(1, Ordering::Relaxed);
        // Request metadata named `x-...` comes back in the reply's.
        let echoed: Vec<_> = request
            .metadata()
            .iter()
            .filter_map(|entry| match entry {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) if k.as_str().starts_with("x-") => {
                    Some(Echo::Text(k.clone(), v.clone()))
                }
                tonic::metadata::KeyAndValueRef::Binary(k, v) if k.as_str().starts_with("x-") => {
                    Some(Echo::Binary(k.clone(), v.clone()))
                }
                // The encoding the request came in, for tests to see.
                tonic::metadata::KeyAndValueRef::Ascii(k, v) if k.as_str() == "grpc-encoding" => {
                    Some(Echo::Text(tonic::metadata::MetadataKey::from_static("x-grpc-encoding"), v.clone()))
                }
                // The deadline the client sent, for tests to see.
                tonic::metadata::KeyAndValueRef::Ascii(k, v) if k.as_str() == "grpc-timeout" => {
                    Some(Echo::Text(tonic::metadata::MetadataKey::from_static("x-grpc-timeout"), v.clone()))
                }
                _ => None,
            })
            .collect();
        Box::pin(async move {
            let text = request.into_inner().text;
            if let Some(ms) = text.strip_prefix("sleep:").and_then(|ms| ms.parse::<u64>().ok()) {
                tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
            }
            if let Some(rest) = text.strip_prefix("fail:") {
                let (code, message) = rest.split_once(':').unwrap_or((rest, "asked to fail"));
                return Err(Status::new(code_from(code), message.to_owned()));
            }
            let mut response = Response::new(TextCategorizationOutput {
                category: category_of(&text),
                prediction_id: format!("p-{id}"),
                text,
            });
            for echo in echoed {
                match echo {
                    Echo::Text(key, value) => response.metadata_mut().append(key, value),
                    Echo::Binary(key, value) => response.metadata_mut().append_bin(key, value),
                };
            }
            Ok(response)
        })
    }
}

/// A status code from its number or its name (`5`, `NOT_FOUND`).
fn code_from(text: &str) -> Code {
    if let Ok(n) = text.parse::<i32>() {
        return Code::from_i32(n);
    }
    (1..=16)
        .map(Code::from_i32)
        .find(|c| format!("{c:?}").to_ascii_uppercase() == text.replace('_', ""))
        .unwrap_or(Code::Unknown)
}

/// The prediction service on its own port and thread.
pub struct PredictServer {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    https: bool,
    thread: Option<(std::thread::JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

/// Accept connections and serve each over HTTP/2 (after a TLS handshake
/// when there is an acceptor).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: PredictService,
    accepted: Arc<AtomicU64>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let (tls, service) = (tls.clone(), service.over(tls.is_some()));
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(service);
            let http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let _ = http2.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http2.serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

impl PredictServer {
    /// Serve gRPC on `addr` with `threads` worker threads: h2c, or TLS
    /// (ALPN `h2`) with `tls`.
    pub fn spawn(addr: &str, threads: usize, tls: Option<&crate::TlsFiles>) -> Result<Self, TargetError> {
        let bind = |source| TargetError::Bind { addr: addr.into(), source };
        let acceptor = match tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(crate::tls::server_config(files)?))),
            None => None,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
            .map_err(TargetError::Runtime)?;
        let service = PredictService::default();
        let served = service.served.clone();
        let accepted = Arc::new(AtomicU64::new(0));
        let counting = accepted.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("predict-grpc".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                    let serving = tokio::spawn(accept_loop(listener, acceptor, service, counting));
                    // Stopped at once, not gracefully: a client's open
                    // connection would hold a graceful stop forever.
                    let _ = stop_rx.await;
                    serving.abort();
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(TargetError::Runtime)?;
        Ok(Self { addr: local, served, accepted, https: tls.is_some(), thread: Some((thread, stop_tx)) })
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` (or `https://`), for a plan's host.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.addr)
    }

    /// Predictions made (calls that reached the method).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for PredictServer {
    fn drop(&mut self) {
        if let Some((thread, stop)) = self.thread.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
