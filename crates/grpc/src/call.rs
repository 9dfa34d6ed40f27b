//! One connection to a gRPC server and calls over it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::codec::DynamicCodec;
use crate::connector::Connector;
use crate::protos::ProtoError;

/// An HTTP/2 connection to one server (`http://` h2c or `https://` TLS),
/// opened on the first call and reopened after a failure. Clones share it.
#[derive(Clone)]
pub struct GrpcChannel {
    channel: Channel,
}

/// What a call sends besides its message.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Request metadata (headers), in order.
    pub metadata: Vec<(String, String)>,
    /// Binary request metadata (keys ending in `-bin`), sent base64-encoded
    /// as gRPC says.
    pub binary_metadata: Vec<(String, Vec<u8>)>,
    /// The call's deadline: sent to the server (`grpc-timeout`) and kept
    /// here, so a server that never answers ends in DEADLINE_EXCEEDED.
    pub timeout: Option<Duration>,
    /// Compress the request messages with this encoding (and accept
    /// replies compressed with it); `None` sends them as they are.
    pub compression: Option<CompressionEncoding>,
}

/// How a call ended.
#[derive(Debug)]
pub struct CallOutcome {
    /// The status: `Code::Ok` or the error the server (or the transport)
    /// gave.
    pub code: Code,
    /// The status message (`grpc-message`), empty on success.
    pub message: String,
    /// The reply, on success of a unary or client-streaming call.
    pub reply: Option<DynamicMessage>,
    /// The replies of a server-streaming or bidirectional call, in order.
    pub stream: Vec<DynamicMessage>,
    /// Messages sent (1, or a stream's count).
    pub sent: usize,
    /// The replies' encoded size in bytes (0 without any).
    pub reply_size: usize,
    /// Response metadata: headers, then trailers (text entries).
    pub metadata: Vec<(String, String)>,
    /// Binary response metadata (`-bin` keys), decoded.
    pub binary_metadata: Vec<(String, Vec<u8>)>,
    /// From sending to the status.
    pub elapsed: Duration,
}

impl CallOutcome {
    /// Whether the status is OK.
    pub fn ok(&self) -> bool {
        self.code == Code::Ok
    }

    /// The failure as recorded: `NOT_FOUND: no such item`, or `None`.
    pub fn failure(&self) -> Option<String> {
        (!self.ok()).then(|| {
            if self.message.is_empty() {
                code_name(self.code).to_owned()
            } else {
                format!("{}: {}", code_name(self.code), self.message)
            }
        })
    }
}

impl GrpcChannel {
    /// A channel to `url`: `http://host:port` (h2c) or `https://...`
    /// (TLS with `tls`, which should offer `h2` by ALPN; without one,
    /// the Mozilla roots). Nothing connects yet.
    pub fn lazy(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, ProtoError> {
        let secure = match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(ProtoError(format!("{url}: expected http://host:port (h2c) or https://host:port (TLS)"))),
        };
        // TLS is the connector's (with the test's trust), not tonic's: the
        // endpoint is given as http:// so that tonic, when another crate of
        // the build enables its own TLS, does not refuse an https:// one it
        // has no configuration for.
        // Requests still say `:scheme https` (the origin below).
        let plain = if secure { format!("http://{}", &url["https://".len()..]) } else { url.to_owned() };
        let invalid = |e: &dyn std::fmt::Display| ProtoError(format!("{url}: not a gRPC server address: {e}"));
        let mut endpoint = Endpoint::from_shared(plain).map_err(|e| invalid(&e))?;
        if secure {
            endpoint = endpoint.origin(url.parse().map_err(|e| invalid(&e))?);
        }
        let tls =
            secure.then(|| tls.unwrap_or_else(|| swarmer_http::ClientConfig::default_config().tls_with_alpn(&[b"h2"])));
        // As the HTTP client: 10 s to connect (TLS agreeing included).
        let connector = Connector { tls, connect_timeout: Duration::from_secs(10) };
        Ok(Self { channel: endpoint.connect_with_connector_lazy(connector) })
    }

    /// The underlying channel (for clients of fixed services, such as
    /// reflection).
    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Call a unary `method` with `request`.
    pub async fn unary(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        options: &CallOptions,
    ) -> CallOutcome {
        self.call(method, vec![request], options).await
    }

    /// Call `method` of any kind: `requests` holds its one request (unary,
    /// server streaming) or the messages its stream sends (client or
    /// bidirectional streaming), all sent at once. A stream of replies is
    /// read to its end (at most [`MAX_STREAM_MESSAGES`] messages and
    /// [`MAX_STREAM_BYTES`] bytes).
    pub async fn call(
        &self,
        method: &MethodDescriptor,
        requests: Vec<DynamicMessage>,
        options: &CallOptions,
    ) -> CallOutcome {
        let started = Instant::now();
        let sent = requests.len();
        let exchange = async {
            let (metadata, path) = prepare(method, options)?;
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            if let Some(encoding) = options.compression {
                grpc = grpc.send_compressed(encoding).accept_compressed(encoding);
            }
            grpc.ready().await.map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
            let codec = DynamicCodec::new(method.output());
            let single = || requests.first().cloned().ok_or_else(|| Status::invalid_argument("no request message"));
            let stream = || futures_util::stream::iter(requests.clone());
            let received = match (method.is_client_streaming(), method.is_server_streaming()) {
                (false, false) => Received::One(grpc.unary(request(single()?, &metadata, options), path, codec).await?),
                (true, false) => {
                    Received::One(grpc.client_streaming(request(stream(), &metadata, options), path, codec).await?)
                }
                (false, true) => {
                    Received::Many(grpc.server_streaming(request(single()?, &metadata, options), path, codec).await?)
                }
                (true, true) => {
                    Received::Many(grpc.streaming(request(stream(), &metadata, options), path, codec).await?)
                }
            };
            match received {
                Received::One(response) => {
                    let metadata = Metadata::of(response.metadata());
                    Ok((Some(response.into_inner()), Vec::new(), metadata))
                }
                Received::Many(response) => {
                    let mut metadata = Metadata::of(response.metadata());
                    let mut replies = response.into_inner();
                    let (mut stream, mut bytes) = (Vec::new(), 0usize);
                    while let Some(reply) = replies.message().await? {
                        bytes += reply.encoded_len();
                        stream.push(reply);
                        if stream.len() > MAX_STREAM_MESSAGES || bytes > MAX_STREAM_BYTES {
                            return Err(Status::resource_exhausted(format!(
                                "the reply stream passed {MAX_STREAM_MESSAGES} messages or {MAX_STREAM_BYTES} bytes"
                            )));
                        }
                    }
                    if let Some(trailers) = replies.trailers().await? {
                        metadata.extend(&trailers);
                    }
                    Ok((None, stream, metadata))
                }
            }
        };
        let done = match options.timeout {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("no reply within the call's timeout"))),
            None => exchange.await,
        };
        let elapsed = started.elapsed();
        match done {
            Ok((reply, stream, metadata)) => CallOutcome {
                code: Code::Ok,
                message: String::new(),
                reply_size: reply.iter().chain(&stream).map(Message::encoded_len).sum(),
                reply,
                stream,
                sent,
                metadata: metadata.text,
                binary_metadata: metadata.binary,
                elapsed,
            },
            Err(status) => {
                let metadata = Metadata::of(status.metadata());
                CallOutcome {
                    // A server that gave up at the deadline says CANCELLED
                    // (tonic does); past its deadline, the call is reported
                    // DEADLINE_EXCEEDED, as grpc's own clients report it. (The
                    // local timer above gives DEADLINE_EXCEEDED itself.)
                    code: match (options.timeout, status.code()) {
                        (Some(limit), Code::Cancelled) if elapsed >= limit => Code::DeadlineExceeded,
                        (_, code) => code,
                    },
                    message: status.message().to_owned(),
                    reply: None,
                    stream: Vec::new(),
                    sent,
                    reply_size: 0,
                    metadata: metadata.text,
                    binary_metadata: metadata.binary,
                    elapsed,
                }
            }
        }
    }
}

/// Most messages read from one reply stream.
pub const MAX_STREAM_MESSAGES: usize = 100_000;
/// Most bytes read from one reply stream.
pub const MAX_STREAM_BYTES: usize = 64 << 20;

/// A reply, or a stream of them.
enum Received {
    One(tonic::Response<DynamicMessage>),
    Many(tonic::Response<tonic::codec::Streaming<DynamicMessage>>),
}

/// A tonic request of `body` with the call's metadata and deadline.
pub(crate) fn request<T>(body: T, metadata: &MetadataMap, options: &CallOptions) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    *request.metadata_mut() = metadata.clone();
    if let Some(timeout) = options.timeout {
        request.set_timeout(timeout);
    }
    request
}

/// The request metadata and the HTTP path of a call.
pub(crate) fn prepare(
    method: &MethodDescriptor,
    options: &CallOptions,
) -> Result<(MetadataMap, http::uri::PathAndQuery), Status> {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = http::uri::PathAndQuery::from_maybe_shared(path)
        .map_err(|e| Status::invalid_argument(format!("method path: {e}")))?;
    let mut metadata = MetadataMap::new();
    for (key, value) in &options.metadata {
        let bad = |what: &str| Status::invalid_argument(format!("metadata {key:?}: {what}"));
        if key.ends_with("-bin") {
            return Err(bad("a binary key (-bin) takes bytes: give it among the binary metadata"));
        }
        let name = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes()).map_err(|_| bad("not a valid key"))?;
        let value = MetadataValue::try_from(value.as_str()).map_err(|_| bad("not a valid ASCII value"))?;
        metadata.append(name, value);
    }
    for (key, value) in &options.binary_metadata {
        let bad = |what: &str| Status::invalid_argument(format!("metadata {key:?}: {what}"));
        let name = MetadataKey::<tonic::metadata::Binary>::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|_| bad("not a valid binary key (it must end in -bin)"))?;
        metadata.append_bin(name, MetadataValue::from_bytes(value));
    }
    Ok((metadata, path))
}

/// Response metadata, text and binary entries apart.
#[derive(Default)]
pub(crate) struct Metadata {
    pub(crate) text: Vec<(String, String)>,
    pub(crate) binary: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    fn of(map: &MetadataMap) -> Self {
        let mut metadata = Self::default();
        metadata.extend(map);
        metadata
    }

    pub(crate) fn extend(&mut self, map: &MetadataMap) {
        for entry in map.iter() {
            match entry {
                tonic::metadata::KeyAndValueRef::Ascii(key, value) => {
                    self.text.push((key.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(key, value) => {
                    // A value that is not valid base64 is left out.
                    if let Ok(bytes) = value.to_bytes() {
                        self.binary.push((key.as_str().to_owned(), bytes.to_vec()));
                    }
                }
            }
        }
    }
}

/// gRPC's name of a status code (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
