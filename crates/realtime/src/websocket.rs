//! WebSocket clients: open (recorded), send, receive with a timeout,
//! request/reply pairs (recorded), close; a reading task per connection
//! that answers pings and records a broken connection as a failure.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use swarmer_engine::Client;
use swarmer_http::Stream;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{WebSocketConfig, frame::coding::CloseCode};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{RealtimeError, opening};

/// How a WebSocket is opened.
#[derive(Debug, Clone, Default)]
pub struct WsOptions {
    /// The name the opening is recorded under (default: the URL as given).
    pub name: Option<String>,
    /// Extra headers of the opening request.
    pub headers: Vec<(String, String)>,
    /// Subprotocols offered (`Sec-WebSocket-Protocol`).
    pub subprotocols: Vec<String>,
    /// Time allowed to connect and open (default: the test's request timeout).
    pub timeout: Option<Duration>,
}

/// A message of the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl WsMessage {
    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            WsMessage::Text(text) => text.as_bytes(),
            WsMessage::Binary(bytes) => bytes,
        }
    }
}

/// What a receive found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A message.
    Message(WsMessage),
    /// The server closed the connection (with its close code and reason,
    /// when it sent a close frame), or the connection ended.
    Closed {
        /// The close code, when a close frame came.
        code: Option<u16>,
        /// The close reason (may be empty).
        reason: String,
    },
    /// Nothing came within the time allowed.
    TimedOut,
}

type Socket = WebSocketStream<Stream>;

/// What the pump passes on to receivers.
enum Arrival {
    Message(WsMessage),
    /// A close frame came (or the closing handshake ended).
    Closed {
        code: Option<u16>,
        reason: String,
    },
    /// The connection ended without a close frame (`None`) or with a
    /// protocol error (its text).
    Broken(Option<String>),
}

/// Messages the pump may hold for receivers before it stops reading (and
/// so stops answering pings) until the plan receives.
const HELD_MESSAGES: usize = 64;

/// What the pump and the clients share (not the pump's own handle, so the
/// connection goes with its last clone).
struct Shared {
    client: Client,
    /// For recording a break.
    life: opening::Life,
    /// Closed by the plan (`close`) or seen closed by a receive.
    closed: Cell<bool>,
}

struct Inner {
    arrivals: Mutex<mpsc::Receiver<Arrival>>,
    writer: Mutex<SplitSink<Socket, Message>>,
    shared: Rc<Shared>,
    pump: tokio::task::AbortHandle,
    url: String,
    status: u16,
    protocol: Option<String>,
    /// Longest a send or close may wait for the peer to read (the test's
    /// request timeout).
    write_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// One open WebSocket of a user. Cheap to clone: clones share the
/// connection, so one task may receive while another sends.
///
/// A task of the shard reads the connection all the time, so pings are
/// answered even while nobody receives; it holds up to 64 messages for
/// receivers, then waits for one. A connection that ends without a
/// closing handshake (or with a protocol error) is recorded once, as a
/// failure of type `WS` named `<name> (connection)`, its time the
/// connection's life, unless the plan had closed it.
#[derive(Clone)]
pub struct WebSocket {
    inner: Rc<Inner>,
}

/// Read `reader` until the connection ends, passing messages on and
/// recording a break.
async fn pump(mut reader: SplitStream<Socket>, arrivals: mpsc::Sender<Arrival>, shared: Rc<Shared>) {
    loop {
        let arrival = match reader.next().await {
            Some(Ok(Message::Text(text))) => Arrival::Message(WsMessage::Text(text.to_string())),
            Some(Ok(Message::Binary(bytes))) => Arrival::Message(WsMessage::Binary(bytes.to_vec())),
            // Reading on answers a ping (tungstenite queues the pong and
            // sends it before its next read).
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(frame) => (Some(u16::from(frame.code)), frame.reason.to_string()),
                    None => (None, String::new()),
                };
                Arrival::Closed { code, reason }
            }
            // After a closing handshake.
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                Arrival::Closed { code: None, reason: String::new() }
            }
            None | Some(Err(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                shared.broke("closed without a close frame (1006)");
                Arrival::Broken(None)
            }
            Some(Err(e)) => {
                let why = e.to_string();
                shared.broke(&why);
                Arrival::Broken(Some(why))
            }
        };
        let last = !matches!(arrival, Arrival::Message(_));
        let closing = matches!(arrival, Arrival::Closed { .. });
        if arrivals.send(arrival).await.is_err() || last {
            if closing {
                // Reading on sends tungstenite's reply to the close frame
                // (queued, written by the next read), so the server sees
                // a clean close.
                let finish = async { while let Some(Ok(_)) = reader.next().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(1), finish).await;
            }
            return;
        }
    }
}

impl Shared {
    /// Record the connection's break, unless the plan closed it.
    fn broke(&self, why: &str) {
        if !self.closed.get() {
            self.life.broke("connection", why);
        }
    }
}

impl WebSocket {
    /// Open `url` (`ws://`, `wss://`, or a path on the user's host) and
    /// record the opening as type `WS`, named `options.name` or `url`.
    /// Call it on a shard (inside tokio's `LocalSet`, as users and
    /// background tasks run): its reading task runs there.
    pub async fn connect(client: &Client, url: &str, options: &WsOptions) -> Result<Self, RealtimeError> {
        let name = options.name.as_deref().unwrap_or(url);
        let opened = opening::recorded(client, "WS", name, options.timeout, open(client, url, options)).await;
        let (socket, url, status, protocol) = opened?;
        let (writer, reader) = socket.split();
        let shared = Rc::new(Shared {
            client: client.clone(),
            life: opening::Life::begin(client, "WS", name),
            closed: Cell::new(false),
        });
        let (sender, arrivals) = mpsc::channel(HELD_MESSAGES);
        let pump = tokio::task::spawn_local(pump(reader, sender, shared.clone())).abort_handle();
        Ok(Self {
            inner: Rc::new(Inner {
                arrivals: Mutex::new(arrivals),
                writer: Mutex::new(writer),
                shared,
                pump,
                url,
                status,
                protocol,
                write_timeout: client.http_config().timeout.unwrap_or(opening::DEFAULT_TIMEOUT),
            }),
        })
    }

    /// The URL opened (`ws://host:port/path`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The opening's status (101).
    pub fn status(&self) -> u16 {
        self.inner.status
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.inner.protocol.as_deref()
    }

    /// Send a message (waiting until it is written).
    pub async fn send(&self, message: WsMessage) -> Result<(), RealtimeError> {
        if self.inner.shared.closed.get() {
            return Err(RealtimeError::Closed);
        }
        let frame = match message {
            WsMessage::Text(text) => Message::text(text),
            WsMessage::Binary(bytes) => Message::binary(bytes),
        };
        let allowed = self.inner.write_timeout;
        let sending = async { self.inner.writer.lock().await.send(frame).await.map_err(broken) };
        tokio::time::timeout(allowed, sending).await.map_err(|_| RealtimeError::TimedOut(allowed))?
    }

    /// The next message, waiting at most `timeout`.
    pub async fn receive(&self, timeout: Duration) -> Result<Received, RealtimeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut arrivals = match tokio::time::timeout_at(deadline, self.inner.arrivals.lock()).await {
            Ok(arrivals) => arrivals,
            Err(_) => return Ok(Received::TimedOut),
        };
        let closed = Received::Closed { code: None, reason: String::new() };
        let arrival = match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(arrival) => arrival,
            Err(_) => return Ok(Received::TimedOut),
        };
        if !matches!(arrival, Some(Arrival::Message(_))) {
            self.inner.shared.closed.set(true);
        }
        match arrival {
            Some(Arrival::Message(message)) => Ok(Received::Message(message)),
            Some(Arrival::Closed { code, reason }) => Ok(Received::Closed { code, reason }),
            // The pump has ended (after passing on how): closed.
            Some(Arrival::Broken(None)) | None => Ok(closed),
            Some(Arrival::Broken(Some(why))) => Err(RealtimeError::Protocol(why)),
        }
    }

    /// Send `message` and wait for the first reply `accept` takes (others
    /// are skipped), within `timeout`; recorded as type `WSR` named `name`,
    /// from the send to the reply, with the reply's size.
    pub async fn request(
        &self,
        message: WsMessage,
        name: &str,
        timeout: Duration,
        mut accept: impl FnMut(&WsMessage) -> bool,
    ) -> Result<WsMessage, RealtimeError> {
        let started = Instant::now();
        let outcome = async {
            self.send(message).await?;
            loop {
                let left = timeout.saturating_sub(started.elapsed());
                match self.receive(left).await? {
                    Received::Message(reply) if accept(&reply) => return Ok(reply),
                    Received::Message(_) => continue,
                    Received::Closed { .. } => return Err(RealtimeError::Closed),
                    Received::TimedOut => return Err(RealtimeError::TimedOut(timeout)),
                }
            }
        }
        .await;
        let size = outcome.as_ref().map_or(0, |reply| reply.bytes().len() as u64);
        let failure = outcome.as_ref().err().map(ToString::to_string);
        self.inner.shared.client.record_request("WSR", name, started.elapsed(), size, failure.as_deref());
        outcome
    }

    /// Close with `code` (1000 when `None`; 1000–1003, 1007–1014 or
    /// 3000–4999) and `reason` (at most 123 bytes); closing a closed socket
    /// does nothing. While a send is still waiting, no close frame is sent:
    /// the connection goes with its last clone.
    pub async fn close(&self, code: Option<u16>, reason: &str) -> Result<(), RealtimeError> {
        let code = code.unwrap_or(1000);
        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
            return Err(RealtimeError::Invalid(format!("close code {code}: 1000-1003, 1007-1014 or 3000-4999")));
        }
        if reason.len() > 123 {
            return Err(RealtimeError::Invalid("a close reason has at most 123 bytes".into()));
        }
        if self.inner.shared.closed.replace(true) {
            return Ok(());
        }
        let Ok(mut writer) = self.inner.writer.try_lock() else { return Ok(()) };
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
        match tokio::time::timeout(self.inner.write_timeout, writer.send(Message::Close(Some(frame)))).await {
            Err(_) => Ok(()),
            Ok(Ok(()) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => Ok(()),
            Ok(Err(e)) => Err(broken(e)),
        }
    }
}

fn broken(e: tungstenite::Error) -> RealtimeError {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => RealtimeError::Closed,
        other => RealtimeError::Protocol(other.to_string()),
    }
}

/// Connect and do the opening handshake: the socket, the URL, the status
/// and the chosen subprotocol.
async fn open(
    client: &Client,
    url: &str,
    options: &WsOptions,
) -> Result<(Socket, String, u16, Option<String>), RealtimeError> {
    let (endpoint, stream) = opening::connect(client, url, true).await?;
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| RealtimeError::InvalidUrl { url: url.to_owned(), why: e.to_string() })?;
    let config = client.http_config();
    let headers = request.headers_mut();
    opening::set_header(headers, url, "user-agent", &config.user_agent)?;
    if !options.subprotocols.is_empty() {
        opening::set_header(headers, url, "sec-websocket-protocol", &options.subprotocols.join(", "))?;
    }
    for (name, value) in &options.headers {
        opening::set_header(headers, url, name, value)?;
    }
    let limits = WebSocketConfig::default().max_message_size(Some(config.max_body_bytes));
    let (socket, response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(limits)).await.map_err(|e| match e {
            tungstenite::Error::Http(response) => RealtimeError::Refused(format!(
                "the server answered {} instead of opening a WebSocket",
                response.status()
            )),
            other => RealtimeError::Protocol(other.to_string()),
        })?;
    let protocol = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((socket, endpoint.url, response.status().as_u16(), protocol))
}
