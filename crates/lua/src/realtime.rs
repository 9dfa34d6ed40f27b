//! `self.client:websocket(...)`, `self.client:sse(...)` and
//! `self.client:tcp(...)`: WebSocket, Server-Sent Events and raw TCP for a
//! plan's own protocol (see `swarmer_realtime`).
//!
//! Each operation (open, send, receive, close) is filed as a pending
//! operation the prelude yields on, so a user waits without blocking the
//! shard. Open connections belong to the user's client ([`Live`], by
//! number) and close when the plan closes them or the user goes. The
//! prelude wraps the numbers in objects (`ws:send`, `ws:receive`,
//! `ws:request`, `ws:close`; `events:receive`, `events:close`;
//! `conn:send`, `conn:receive_line`, `conn:receive`, `conn:close`).

use std::rc::Rc;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use swarmer_grpc::StreamReceived;
use swarmer_realtime::sse::Next;
use swarmer_realtime::tcp::{TcpReceived, Until};
use swarmer_realtime::{
    EventStream, RealtimeError, Received, SseOptions, TcpConnection, TcpOptions, WebSocket, WsMessage, WsOptions,
};

use crate::client::{ClientCore, MOST_LIVE};
use crate::module::bridge;
use crate::pending::Finish;

/// An open connection of a user.
#[derive(Clone)]
pub enum Live {
    /// A WebSocket.
    Socket(WebSocket),
    /// An event stream.
    Events(EventStream),
    /// A raw TCP (or TLS) connection.
    Tcp(TcpConnection),
    /// An interactive gRPC call.
    Grpc(Rc<crate::grpc_stream::StreamCall>),
}

/// What the functions filing an operation return: its number, or nil and
/// what was wrong.
pub type Answer = mlua::Result<(Option<i64>, Option<String>)>;

/// Add the `_ws_*`, `_sse_*`, `_tcp_*` and `_live_*` functions to the module.
pub fn install(lua: &Lua, module: &Table) -> mlua::Result<()> {
    module.set("_ws_open", lua.create_function(ws_open)?)?;
    module.set("_tcp_open", lua.create_function(tcp_open)?)?;
    module.set("_live_send", lua.create_function(send)?)?;
    module.set("_live_close", lua.create_function(close)?)?;
    module.set("_sse_open", lua.create_function(sse_open)?)?;
    module.set("_live_receive", lua.create_function(receive)?)?;
    // A finalizer's: it must not fail, borrow what may be borrowed, or
    // touch the `Lua` (finalizers also run while the VM closes, when even
    // its app data is out of reach): the bridge is held here, weakly.
    let bridge_of_vm = Rc::downgrade(&bridge(lua)?);
    module.set(
        "_live_forget",
        lua.create_function(move |_, (client, id): (i64, i64)| {
            if let Some(core) = bridge_of_vm.upgrade().and_then(|bridge| bridge.clients.find(client)) {
                core.drop_live(id);
            }
            Ok(())
        })?,
    )?;
    Ok(())
}

/// The longest wait a plan may ask for, in seconds (a day).
const MOST_WAIT: f64 = 86_400.0;

/// File `operation` and return its number for the prelude to yield on.
fn file(lua: &Lua, operation: impl Future<Output = Finish> + 'static, bytes: usize) -> mlua::Result<i64> {
    bridge(lua)?.pending.file(operation, bytes)
}

/// Seconds given by a plan, checked.
fn seconds(what: &str, value: Option<f64>) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(s) if s > 0.0 && s <= MOST_WAIT => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => Err(format!("{what}: seconds above 0, at most {MOST_WAIT}")),
    }
}

/// How long a receive waits unless told: the test's request timeout, or 60 s.
fn default_wait(core: &ClientCore) -> Duration {
    core.engine_client().http_config().timeout.unwrap_or(Duration::from_secs(60))
}

/// The options both openings take: `name`, `headers`, `timeout`.
type Common = (Option<String>, Vec<(String, String)>, Option<Duration>);

/// Read the options both openings take.
fn common(opts: Option<&Table>) -> Result<Common, String> {
    let Some(opts) = opts else { return Ok((None, Vec::new(), None)) };
    let name = opts.get::<Option<String>>("name").map_err(|_| "option name: expected a string".to_owned())?;
    let mut headers = Vec::new();
    if let Some(table) = opts.get::<Option<Table>>("headers").map_err(|_| "option headers: expected a table")? {
        for pair in table.pairs::<String, String>() {
            headers.push(pair.map_err(|_| "option headers: names and values must be strings".to_owned())?);
        }
    }
    let timeout = opts.get::<Option<f64>>("timeout").map_err(|_| "option timeout: expected seconds".to_owned())?;
    Ok((name, headers, seconds("option timeout", timeout)?))
}

fn check_keys(opts: Option<&Table>, allowed: &[&str]) -> Result<(), String> {
    let Some(opts) = opts else { return Ok(()) };
    for pair in opts.pairs::<Value, Value>() {
        let (key, _) = pair.map_err(|e| e.to_string())?;
        let known = matches!(&key, Value::String(s) if allowed.iter().any(|a| s.as_bytes() == a.as_bytes()));
        if !known {
            return Err(format!(
                "unknown option {} (options: {})",
                key.to_string().unwrap_or_default(),
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// `_ws_open(client, url, opts)`: the number of the opening, or nil and
/// what was wrong with the options.
fn ws_open(lua: &Lua, (client, url, opts): (i64, String, Option<Table>)) -> Answer {
    let core = bridge(lua)?.clients.get(client)?;
    let read = check_keys(opts.as_ref(), &["name", "headers", "protocols", "timeout"])
        .and_then(|()| common(opts.as_ref()))
        .and_then(|(name, headers, timeout)| {
            let protocols = match &opts {
                Some(opts) => opts
                    .get::<Option<Vec<String>>>("protocols")
                    .map_err(|_| "option protocols: expected a list of strings".to_owned())?
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            Ok(WsOptions { name, headers, subprotocols: protocols, timeout })
        });
    let engine = core.clone();
    let opening = read.map(|options| async move {
        WebSocket::connect(engine.engine_client(), &url, &options).await.map(Live::Socket)
    });
    file_opening(lua, core, opening)
}

/// File an opening: the connection it makes is kept for the user, and
/// the plan gets `{ id, url, timeout, status, protocol }`; or nil and what
/// was wrong with the options.
fn file_opening<F>(lua: &Lua, core: Rc<ClientCore>, opening: Result<F, String>) -> Answer
where
    F: Future<Output = Result<Live, swarmer_realtime::RealtimeError>> + 'static,
{
    let opening = match opening {
        Ok(opening) => opening,
        Err(e) => return Ok((None, Some(e))),
    };
    let id = file(
        lua,
        async move {
            let opened = opening.await;
            Box::new(move |lua: &Lua| {
                let live = opened.map_err(|e| e.to_string())?;
                opened_table(lua, &core, live).map_err(|e| e.to_string())
            }) as Finish
        },
        0,
    )?;
    Ok((Some(id), None))
}

fn opened_table(lua: &Lua, core: &ClientCore, live: Live) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    let (url, status, protocol) = match &live {
        Live::Socket(socket) => (socket.url().to_owned(), Some(socket.status()), socket.protocol().map(str::to_owned)),
        Live::Events(events) => (events.url().to_owned(), None, None),
        Live::Tcp(connection) => (connection.peer().to_owned(), None, None),
        Live::Grpc(_) => (String::new(), None, None),
    };
    table.set("url", url)?;
    table.set("status", status)?;
    table.set("protocol", protocol)?;
    table.set("timeout", default_wait(core).as_secs_f64())?;
    match core.keep_live(live) {
        Some(id) => table.set("id", id)?,
        None => table.set(
            "refused",
            format!("a user may hold at most {MOST_LIVE} connections open: close those it is done with"),
        )?,
    }
    Ok(Value::Table(table))
}

/// The user of `client`, or `None` when it has gone (its connections are
/// closed then: operations on them say so rather than raise).
fn user(lua: &Lua, client: i64) -> mlua::Result<Option<Rc<ClientCore>>> {
    Ok(bridge(lua)?.clients.get(client).ok())
}

/// `operation`, ended early (with `closed`) when the user goes.
async fn unless_gone<T>(core: Option<&ClientCore>, closed: T, operation: impl Future<Output = T>) -> T {
    let Some(core) = core else { return closed };
    tokio::select! {
        done = operation => done,
        () = core.gone() => closed,
    }
}

fn done(lua: &Lua) -> Result<Value, String> {
    lua.create_table().map(Value::Table).map_err(|e| e.to_string())
}

/// `_live_send(client, id, data, binary)`: the number of the send (a
/// WebSocket message, text unless `binary`; bytes on a TCP connection).
fn send(lua: &Lua, (client, id, data, binary): (i64, i64, mlua::String, bool)) -> Answer {
    let core = user(lua, client)?;
    let found = core.as_ref().and_then(|core| core.live(id));
    let bytes = data.as_bytes().to_vec();
    let size = bytes.len();
    let message = match (&found, binary) {
        (Some(Live::Events(_)), _) => return Ok((None, Some("an event stream cannot send".into()))),
        (Some(Live::Grpc(_)), _) => return Ok((None, Some("a gRPC stream sends with stream:send".into()))),
        (_, true) => WsMessage::Binary(bytes),
        (_, false) => match String::from_utf8(bytes) {
            Ok(text) => WsMessage::Text(text),
            Err(_) => return Ok((None, Some("a text message must be UTF-8 (use send_binary for bytes)".into()))),
        },
    };
    let id = file(
        lua,
        async move {
            let sending = async {
                match found {
                    Some(Live::Socket(socket)) => socket.send(message).await,
                    Some(Live::Tcp(connection)) => connection.send(message.bytes()).await,
                    // Closed by the plan: the send fails as on a connection the peer closed.
                    Some(Live::Events(_) | Live::Grpc(_)) | None => Err(RealtimeError::Closed),
                }
            };
            let sent = unless_gone(core.as_deref(), Err(RealtimeError::Closed), sending).await;
            Box::new(move |lua: &Lua| match sent {
                Ok(()) => done(lua),
                Err(e) => Err(e.to_string()),
            }) as Finish
        },
        size,
    )?;
    Ok((Some(id), None))
}

/// `_live_close(client, id, code, reason)`: the number of the close (a
/// WebSocket's close frame carries `code` and `reason`).
fn close(lua: &Lua, (client, id, code, reason): (i64, i64, Option<u16>, Option<String>)) -> Answer {
    let core = user(lua, client)?;
    let found = core.as_ref().and_then(|core| core.live(id));
    if let Some(core) = &core {
        core.drop_live(id);
    }
    let id = file(
        lua,
        async move {
            let closing = async {
                match found {
                    Some(Live::Socket(socket)) => socket.close(code, reason.as_deref().unwrap_or("")).await,
                    Some(Live::Tcp(connection)) => connection.close().await,
                    Some(Live::Events(_) | Live::Grpc(_)) | None => Ok(()),
                }
            };
            let closed = unless_gone(core.as_deref(), Ok(()), closing).await;
            Box::new(move |lua: &Lua| match closed {
                Ok(()) | Err(RealtimeError::Closed) => done(lua),
                Err(e) => Err(e.to_string()),
            }) as Finish
        },
        0,
    )?;
    Ok((Some(id), None))
}

/// `_tcp_open(client, address, opts)`: the number of the connect (to the
/// user's host when `address` is nil).
fn tcp_open(lua: &Lua, (client, address, opts): (i64, Option<String>, Option<Table>)) -> Answer {
    let core = bridge(lua)?.clients.get(client)?;
    // Without an address: the user's host (`-H tcp://host:port`).
    let address = address.unwrap_or_else(|| core.base_url().to_owned());
    let read = check_keys(opts.as_ref(), &["tls", "timeout"]).and_then(|()| {
        let Some(opts) = &opts else { return Ok(TcpOptions::default()) };
        let tls = opts.get::<Option<bool>>("tls").map_err(|_| "option tls: expected true or false".to_owned())?;
        let timeout = opts.get::<Option<f64>>("timeout").map_err(|_| "option timeout: expected seconds".to_owned())?;
        Ok(TcpOptions { tls: tls.unwrap_or(false), timeout: seconds("option timeout", timeout)? })
    });
    let engine = core.clone();
    let opening = read.map(|options| async move {
        TcpConnection::connect(engine.engine_client(), &address, &options).await.map(Live::Tcp)
    });
    file_opening(lua, core, opening)
}

/// `_sse_open(client, url, opts)`: the number of the subscription.
fn sse_open(lua: &Lua, (client, url, opts): (i64, String, Option<Table>)) -> Answer {
    let core = bridge(lua)?.clients.get(client)?;
    let read = check_keys(opts.as_ref(), &["name", "headers", "last_event_id", "timeout"])
        .and_then(|()| common(opts.as_ref()))
        .and_then(|(name, headers, timeout)| {
            let last_event_id = match &opts {
                Some(opts) => opts
                    .get::<Option<String>>("last_event_id")
                    .map_err(|_| "option last_event_id: expected a string".to_owned())?,
                None => None,
            };
            Ok(SseOptions { name, headers, last_event_id, timeout })
        });
    let engine = core.clone();
    let opening = read.map(|options| async move {
        EventStream::subscribe(engine.engine_client(), &url, &options).await.map(Live::Events)
    });
    file_opening(lua, core, opening)
}

/// What a receive found, as the prelude reads it: `{ kind = "text" |
/// "binary" | "event" | "timeout" | "closed" | "ended", ... }`.
enum Got {
    Message(WsMessage),
    Closed(Option<u16>, String),
    Event(swarmer_realtime::Event),
    Reply(swarmer_grpc::DynamicMessage),
    TimedOut,
    Ended,
}

/// `_live_receive(client, id, timeout)`: the number of the receive.
fn receive(lua: &Lua, (client, id, timeout, until): (i64, i64, Option<f64>, Value)) -> Answer {
    let core = user(lua, client)?;
    let found = core.as_ref().and_then(|core| core.live(id));
    let until = match until {
        Value::Nil => Until::Any,
        Value::String(s) if s.as_bytes() == b"line" => Until::Line,
        Value::String(s) if s.as_bytes() == b"any" => Until::Any,
        Value::Integer(n) if n > 0 => Until::Bytes(n as usize),
        _ => return Ok((None, Some("expected a count of bytes above 0".into()))),
    };
    let wait = match seconds("timeout", timeout) {
        Ok(wait) => wait.or_else(|| core.as_deref().map(default_wait)).unwrap_or(Duration::ZERO),
        Err(e) => return Ok((None, Some(e))),
    };
    let id = file(
        lua,
        async move {
            let receiving = async {
                match found {
                    // Closed by the plan.
                    None => Ok(Got::Closed(None, String::new())),
                    Some(Live::Socket(socket)) => socket.receive(wait).await.map(|received| match received {
                        Received::Message(message) => Got::Message(message),
                        Received::Closed { code, reason } => Got::Closed(code, reason),
                        Received::TimedOut => Got::TimedOut,
                    }),
                    Some(Live::Events(events)) => events.next(wait).await.map(|next| match next {
                        Next::Event(event) => Got::Event(event),
                        Next::Ended => Got::Ended,
                        Next::TimedOut => Got::TimedOut,
                    }),
                    Some(Live::Grpc(call)) => Ok(match call.stream.receive(wait).await {
                        StreamReceived::Message(reply) => Got::Reply(reply),
                        StreamReceived::Ended => Got::Ended,
                        StreamReceived::TimedOut => Got::TimedOut,
                    }),
                    Some(Live::Tcp(connection)) => {
                        connection.receive(until, wait).await.map(|received| match received {
                            TcpReceived::Data(bytes) => Got::Message(WsMessage::Binary(bytes)),
                            TcpReceived::Closed => Got::Closed(None, String::new()),
                            TcpReceived::TimedOut => Got::TimedOut,
                        })
                    }
                }
            };
            let got = unless_gone(core.as_deref(), Ok(Got::Closed(None, String::new())), receiving).await;
            Box::new(move |lua: &Lua| got_table(lua, got.map_err(|e| e.to_string())?).map_err(|e| e.to_string()))
                as Finish
        },
        0,
    )?;
    Ok((Some(id), None))
}

fn got_table(lua: &Lua, got: Got) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    match got {
        Got::Message(WsMessage::Text(text)) => {
            table.set("kind", "text")?;
            table.set("data", lua.create_string(text)?)?;
        }
        Got::Message(WsMessage::Binary(bytes)) => {
            table.set("kind", "binary")?;
            table.set("data", lua.create_string(bytes)?)?;
        }
        Got::Closed(code, reason) => {
            table.set("kind", "closed")?;
            table.set("code", code)?;
            table.set("reason", reason)?;
        }
        Got::Event(event) => {
            table.set("kind", "event")?;
            table.set("event", event.event)?;
            table.set("data", lua.create_string(event.data)?)?;
            table.set("id", event.id)?;
            table.set("retry", event.retry)?;
        }
        Got::Reply(reply) => {
            table.set("kind", "reply")?;
            table.set("reply", lua.to_value(&swarmer_grpc::message_json(&reply))?)?;
        }
        Got::TimedOut => table.set("kind", "timeout")?,
        Got::Ended => table.set("kind", "ended")?,
    }
    Ok(Value::Table(table))
}
