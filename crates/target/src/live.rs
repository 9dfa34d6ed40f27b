//! The demo target's long-lived endpoints, for WebSocket and Server-Sent
//! Events clients (the target's `--delay` and `--error-rate` do not apply
//! to them):
//!
//! | path | what it does |
//! |---|---|
//! | `GET /ws` (WebSocket, HTTP/1.1) | echoes each message; `delay:MS:text` echoes `text` after `MS` ms; `burst:N` sends `1` … `N`; `close` closes with 1000 "bye"; `drop` drops the connection without a close frame; `ping:MS` pings and answers `pong` when the client's pong comes within `MS` ms, else closes with 1008 (as servers do with clients that stop answering); the first offered subprotocol is chosen; a client silent for 5 minutes is closed |
//! | `GET /sse?count=N&interval_ms=M&event=NAME&broken=1` | `N` events (default 5, at most 100,000) `M` ms apart (default 100), IDs from 1 (after `Last-Event-ID` when sent), data the ID; then the stream ends (with `broken=1`, the connection is cut instead, without the body's end) |

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::server::{ConnectionCounts, OpenConnection};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};

/// A streamed body.
pub type LiveBody = BoxBody<Bytes, std::io::Error>;

/// Whether `path` is one of these endpoints.
pub fn is_live(path: &str) -> bool {
    path == "/ws" || path == "/sse"
}

/// Answer a request for `/ws` or `/sse`.
/// A WebSocket counts in `connections` as open while its echo runs.
pub(crate) fn respond(req: Request<Incoming>, connections: &Arc<ConnectionCounts>) -> Response<LiveBody> {
    match req.uri().path() {
        "/ws" => websocket(req, connections.held()),
        _ => events(&req),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<LiveBody> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())).map_err(never).boxed());
    *response.status_mut() = status;
    response
}

fn never(never: Infallible) -> std::io::Error {
    match never {}
}

/// The opening handshake (RFC 6455 §4.2), then the echo on its own task.
fn websocket(mut req: Request<Incoming>, counted: OpenConnection) -> Response<LiveBody> {
    let headers = req.headers();
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = headers.get("sec-websocket-key").map(|v| derive_accept_key(v.as_bytes()));
    let (Some(accept), true, http::Version::HTTP_11) = (key, upgrade.eq_ignore_ascii_case("websocket"), req.version())
    else {
        return plain(StatusCode::BAD_REQUEST, "ws: expected a WebSocket opening request over HTTP/1.1");
    };
    let protocol = headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| offered.split(',').next())
        .map(|first| first.trim().to_owned());
    let upgrading = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _counted = counted;
        if let Ok(upgraded) = upgrading.await {
            let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            echo(socket).await;
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).map_err(never).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = http::HeaderValue::from_str(&accept) {
        out.insert("sec-websocket-accept", accept);
    }
    if let Some(chosen) = protocol.and_then(|p| http::HeaderValue::from_str(&p).ok()) {
        out.insert("sec-websocket-protocol", chosen);
    }
    response
}

/// How long the echo waits for a silent client.
const IDLE: Duration = Duration::from_secs(300);

async fn echo<S>(socket: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut out, mut incoming) = socket.split();
    // A client silent for five minutes is let go.
    while let Ok(Some(Ok(message))) = tokio::time::timeout(IDLE, incoming.next()).await {
        let replies: Vec<Message> = match message {
            Message::Text(text) => match text.as_str() {
                "close" => {
                    let bye = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
                    let _ = out.send(Message::Close(Some(bye))).await;
                    return;
                }
                "drop" => return,
                text => match text.split_once(':') {
                    Some(("ping", ms)) => {
                        let allowed = Duration::from_millis(ms.parse::<u64>().unwrap_or(0).min(60_000));
                        if out.send(Message::Ping("check".into())).await.is_err() {
                            return;
                        }
                        if !pong_within(&mut incoming, allowed).await {
                            let late = format!("no pong within {} ms", allowed.as_millis());
                            let frame = CloseFrame { code: CloseCode::Policy, reason: late.into() };
                            let _ = out.send(Message::Close(Some(frame))).await;
                            return;
                        }
                        vec![Message::text("pong")]
                    }
                    Some(("delay", rest)) => {
                        let (ms, said) = rest.split_once(':').unwrap_or((rest, ""));
                        tokio::time::sleep(Duration::from_millis(ms.parse::<u64>().unwrap_or(0).min(60_000))).await;
                        vec![Message::text(said.to_owned())]
                    }
                    Some(("burst", n)) => {
                        (1..=n.parse::<u32>().unwrap_or(0).min(100_000)).map(|i| Message::text(i.to_string())).collect()
                    }
                    _ => vec![Message::text(text.to_owned())],
                },
            },
            Message::Binary(bytes) => vec![Message::binary(bytes)],
            Message::Close(_) => return,
            _ => continue,
        };
        for reply in replies {
            if out.feed(reply).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

/// Whether a pong comes from `incoming` within `allowed` (other messages
/// meanwhile are dropped).
async fn pong_within<S>(incoming: &mut S, allowed: Duration) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + allowed;
    loop {
        match tokio::time::timeout_at(deadline, incoming.next()).await {
            Ok(Some(Ok(Message::Pong(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
            _ => return false,
        }
    }
}

/// `/sse`: a finite event stream paced by the query.
fn events(req: &Request<Incoming>) -> Response<LiveBody> {
    let query = req.uri().query().unwrap_or("");
    let read = |key: &str| {
        query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.to_owned())
    };
    let count: u64 = read("count").and_then(|n| n.parse().ok()).unwrap_or(5).min(100_000);
    let interval = Duration::from_millis(read("interval_ms").and_then(|n| n.parse().ok()).unwrap_or(100).min(60_000));
    let event = read("event").filter(|e| e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    let after: u64 =
        req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let after = after.min(u64::MAX - count - 1);
    let ids = (after + 1)..=(after + count);
    let broken = read("broken").is_some_and(|b| b == "1");
    let frames = futures_util::stream::iter(ids).then(move |id| {
        let event = event.clone();
        async move {
            if id > after + 1 {
                tokio::time::sleep(interval).await;
            }
            let named = event.map(|e| format!("event: {e}\n")).unwrap_or_default();
            Ok(Frame::data(Bytes::from(format!("{named}id: {id}\ndata: {id}\n\n"))))
        }
    });
    // A body that fails makes hyper cut the connection before its end
    // (a moment after the last event, which is sent first).
    let cut = futures_util::stream::iter(broken.then_some(())).then(|()| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("cut on purpose (broken=1)"))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames.chain(cut))));
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    out.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    response
}
