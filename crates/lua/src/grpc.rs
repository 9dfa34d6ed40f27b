//! `swarmer.grpc` and `client:grpc(...)`: gRPC calls from a plan.
//!
//! `swarmer.grpc.load(file)` compiles a `.proto` file (beside the plan
//! unless absolute) into this VM's [`Protos`]. A call converts its Lua
//! table into the method's request message at once (so a wrong field is an
//! error at the calling line), files the call as a pending operation, and
//! the prelude yields until it ends. The call is recorded as a request of
//! type `grpc` named by the method (`package.Service/Method`) or the
//! plan's `name`; a status other than OK is a failure named by the status.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use swarmer_grpc::{CallOptions, CallOutcome, Protos, code_name, message_json};

use crate::data::PlanDir;

/// The `.proto` files this VM loaded.
#[derive(Default)]
struct VmProtos(RefCell<Protos>);

/// Add `_grpc_load` and `_grpc_start` to the module.
pub fn install(lua: &Lua, module: &Table) -> mlua::Result<()> {
    lua.set_app_data(VmProtos::default());
    lua.set_app_data(SharedChannels::default());
    module.set("_grpc_load", lua.create_function(load)?)?;
    module.set("_grpc_start", lua.create_function(start)?)?;
    module.set("_grpc_reflect", lua.create_function(reflect)?)?;
    Ok(())
}

/// `swarmer.grpc.load(file, { includes })`: `nil`, or what was wrong.
fn load(lua: &Lua, (file, includes): (String, Option<Vec<String>>)) -> mlua::Result<Option<String>> {
    let dir = crate::vm::app_data::<PlanDir>(lua).map(|d| d.0.clone()).unwrap_or_default();
    let resolve = |name: &str| -> PathBuf { dir.join(name) };
    let includes: Vec<PathBuf> = includes.unwrap_or_default().iter().map(|i| resolve(i)).collect();
    let protos = crate::vm::app_data::<VmProtos>(lua).ok_or_else(|| mlua::Error::runtime("internal: no protos"))?;
    let loaded = protos.0.borrow_mut().load(&resolve(&file), &includes);
    match loaded {
        Ok(read) => {
            // Shipped to `-f -` workers with the plan.
            if let Some(used) = crate::vm::app_data::<crate::data::UsedFiles>(lua) {
                used.0.borrow_mut().extend(read);
            }
            Ok(None)
        }
        Err(e) => Ok(Some(e.0)),
    }
}

/// `swarmer.grpc.reflect(host, { timeout })`: the services the server at
/// `host` describes by reflection (their files added to this VM's), or
/// `nil` and what was wrong. It waits (on a thread of its own: plans load
/// outside any user), so it belongs at the plan's top level. TLS trusts
/// what the test does (`--ca-cert`, `--insecure`: see [`crate::trust`]).
fn reflect(lua: &Lua, (host, timeout): (String, Option<f64>)) -> mlua::Result<(Option<Vec<String>>, Option<String>)> {
    if crate::vm::app_data::<crate::module::Loading>(lua).is_none() {
        let why = "call it at the plan's top level (it waits, and would hold up every user of the shard)";
        return Ok((None, Some(why.into())));
    }
    let timeout = match timeout {
        None => Duration::from_secs(10),
        Some(s) if s > 0.0 && s <= MOST_TIMEOUT as f64 => Duration::from_secs_f64(s),
        Some(_) => return Ok((None, Some(format!("option timeout: seconds above 0, at most {MOST_TIMEOUT}")))),
    };
    let protos = crate::vm::app_data::<VmProtos>(lua).ok_or_else(|| mlua::Error::runtime("internal: no protos"))?;
    let mut known = protos.0.borrow().clone();
    let asked = std::thread::scope(|scope| {
        let asking = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            // The channel's tasks run on this runtime (the caller's thread waits).
            Ok::<_, std::io::Error>(runtime.block_on(async {
                let tls = crate::trust::current().map(|config| config.tls_with_alpn(&[b"h2"]));
                let channel = swarmer_grpc::GrpcChannel::lazy(&host, tls)?;
                swarmer_grpc::reflect(&channel, &mut known, timeout).await
            }))
        });
        asking.join()
    });
    match asked {
        Ok(Ok(Ok(services))) => {
            *protos.0.borrow_mut() = known;
            Ok((Some(services), None))
        }
        Ok(Ok(Err(e))) => Ok((None, Some(e.0))),
        Ok(Err(e)) => Ok((None, Some(format!("reflection: {e}")))),
        Err(_) => Ok((None, Some("reflection: its thread failed".into()))),
    }
}

/// `client:grpc(method, message, opts)`: the number of the filed call, or
/// `nil` and what was wrong.
fn start(
    lua: &Lua,
    (client, method, message, opts): (i64, String, Value, Option<Table>),
) -> mlua::Result<(Option<i64>, Option<String>)> {
    let bridge = crate::module::bridge(lua)?;
    let core = bridge.clients.get(client)?;
    let descriptor = match method_of(lua, &method)? {
        Ok(descriptor) => descriptor,
        Err(e) => return Ok((None, Some(e))),
    };
    let json: serde_json::Value = match message {
        Value::Nil => serde_json::Value::Null,
        value @ Value::Table(_) => lua.from_value(value)?,
        other => return Ok((None, Some(format!("the message must be a table, got {}", other.type_name())))),
    };
    let requests = match requests(&descriptor, json) {
        Ok(requests) => requests,
        Err(e) => return Ok((None, Some(e))),
    };
    let (options, name, host, shared) = match read_options(opts.as_ref()) {
        Ok(read) => read,
        Err(e) => return Ok((None, Some(e))),
    };
    let grpc = match user_client(lua, &core, host, shared) {
        Ok(grpc) => grpc,
        Err(e) => return Ok((None, Some(e.0))),
    };
    let bytes = requests.iter().map(swarmer_grpc::Message::encoded_len).sum();
    let id = bridge.pending.file(
        async move {
            let outcome = grpc.call(&descriptor, requests, &options, name.as_deref()).await;
            Box::new(move |lua: &Lua| outcome_table(lua, &outcome).map_err(|e| crate::vm::clean(&e)))
                as crate::pending::Finish
        },
        bytes,
    )?;
    Ok((Some(id), None))
}

/// The messages a call sends: one table, or a list of them for a method
/// whose client streams.
fn requests(
    method: &swarmer_grpc::MethodDescriptor,
    json: serde_json::Value,
) -> Result<Vec<swarmer_grpc::DynamicMessage>, String> {
    let empty = || serde_json::Value::Object(Default::default());
    let one = |value: &serde_json::Value| Protos::request(method, value).map_err(|e| e.0);
    if method.is_client_streaming() {
        return match json {
            serde_json::Value::Null => Ok(Vec::new()),
            serde_json::Value::Array(list) => list.iter().map(one).collect(),
            // A table with named fields: one message.
            serde_json::Value::Object(_) => Err(format!(
                "{} streams its requests: give a list of messages ({{ {{...}}, {{...}} }})",
                method.full_name()
            )),
            other => Err(format!("expected a list of messages, got {other}")),
        };
    }
    match json {
        // An empty Lua table reads as an empty list.
        serde_json::Value::Null => Ok(vec![one(&empty())?]),
        serde_json::Value::Array(list) if list.is_empty() => Ok(vec![one(&empty())?]),
        value => Ok(vec![one(&value)?]),
    }
}

/// The user's client of `host` (default: the user's host): its own
/// channel, or the shared channel named `shared`.
pub fn user_client(
    lua: &Lua,
    core: &crate::client::ClientCore,
    host: Option<String>,
    shared: Option<String>,
) -> Result<swarmer_grpc::GrpcUserClient, swarmer_grpc::ProtoError> {
    let host = host.unwrap_or_else(|| core.base_url().to_owned());
    match shared {
        None => core.grpc_client(&host),
        Some(shared) => shared_channel(lua, &shared, &host, core.engine_client())
            .map(|channel| swarmer_grpc::GrpcUserClient::with_channel(core.engine_client(), channel)),
    }
}

/// The method `name` among the `.proto` files this VM loaded.
pub fn method_of(lua: &Lua, name: &str) -> mlua::Result<Result<swarmer_grpc::MethodDescriptor, String>> {
    let protos = crate::vm::app_data::<VmProtos>(lua).ok_or_else(|| mlua::Error::runtime("internal: no protos"))?;
    let found = protos.0.borrow().method(name);
    Ok(found.map_err(|e| e.0))
}

/// A call's settings: its options, row name, host and shared channel.
pub type Settings = (CallOptions, Option<String>, Option<String>, Option<String>);

/// Channels shared by the users of this VM (a shard), by the name calls
/// give them and the host: one HTTP/2 connection for all their calls.
#[derive(Default)]
struct SharedChannels(RefCell<Vec<(String, String, swarmer_grpc::GrpcChannel)>>);

/// Most shared channels one VM keeps (names are the plan's).
const MOST_SHARED: usize = 1_000;

fn shared_channel(
    lua: &Lua,
    name: &str,
    host: &str,
    client: &swarmer_engine::Client,
) -> Result<swarmer_grpc::GrpcChannel, swarmer_grpc::ProtoError> {
    let channels = crate::vm::app_data::<SharedChannels>(lua)
        .ok_or_else(|| swarmer_grpc::ProtoError("internal: no shared channels".into()))?;
    let mut channels = channels.0.borrow_mut();
    if let Some((_, _, channel)) = channels.iter().find(|(n, h, _)| n == name && h == host) {
        return Ok(channel.clone());
    }
    if channels.len() >= MOST_SHARED {
        return Err(swarmer_grpc::ProtoError(format!("at most {MOST_SHARED} shared channels")));
    }
    let channel = swarmer_grpc::GrpcChannel::lazy(host, Some(client.http_config().tls_with_alpn(&[b"h2"])))?;
    channels.push((name.to_owned(), host.to_owned(), channel.clone()));
    Ok(channel)
}

/// The longest deadline a call may ask for, in seconds (a day).
const MOST_TIMEOUT: i64 = 86_400;

/// The options of a call: `{ name =, metadata = { key = value }, timeout
/// = seconds, host = "http://...", compression = "gzip", channel = "name"
/// }` (a metadata key ending in `-bin` takes bytes; calls naming the same
/// channel share one connection per shard).
pub fn read_options(opts: Option<&Table>) -> Result<Settings, String> {
    let mut options = CallOptions::default();
    let (mut name, mut host, mut shared) = (None, None, None);
    let Some(opts) = opts else { return Ok((options, name, host, shared)) };
    for pair in opts.pairs::<String, Value>() {
        let (key, value) = pair.map_err(|e| format!("options: {e}"))?;
        match (key.as_str(), value) {
            ("name", Value::String(s)) => name = Some(s.to_string_lossy()),
            ("host", Value::String(s)) => host = Some(s.to_string_lossy()),
            ("channel", Value::String(s)) => shared = Some(s.to_string_lossy()),
            ("timeout", Value::Integer(n)) if n > 0 && n <= MOST_TIMEOUT => {
                options.timeout = Some(Duration::from_secs(n as u64))
            }
            ("timeout", Value::Number(n)) if n > 0.0 && n <= MOST_TIMEOUT as f64 => {
                options.timeout = Some(Duration::from_secs_f64(n))
            }
            ("timeout", Value::Integer(_) | Value::Number(_)) => {
                return Err(format!("option timeout: seconds above 0, at most {MOST_TIMEOUT}"));
            }
            ("metadata", Value::Table(t)) => {
                for entry in t.pairs::<String, mlua::String>() {
                    let (k, v) = entry.map_err(|e| format!("metadata: expected text keys and values ({e})"))?;
                    if k.to_ascii_lowercase().ends_with("-bin") {
                        // Binary metadata: the Lua string's bytes.
                        options.binary_metadata.push((k, v.as_bytes().to_vec()));
                    } else {
                        options
                            .metadata
                            .push((k, v.to_str().map_err(|_| "metadata: text values must be UTF-8")?.to_owned()));
                    }
                }
            }
            ("compression", Value::String(s)) => {
                options.compression = Some(match s.as_bytes().as_ref() {
                    b"gzip" => swarmer_grpc::CompressionEncoding::Gzip,
                    b"deflate" => swarmer_grpc::CompressionEncoding::Deflate,
                    _ => return Err("option compression: \"gzip\" or \"deflate\"".into()),
                })
            }
            (key @ ("name" | "host" | "timeout" | "metadata" | "compression" | "channel"), value) => {
                return Err(format!("option {key}: unexpected {}", value.type_name()));
            }
            (other, _) => {
                return Err(format!(
                    "unknown option {other} (options: name, metadata, timeout, host, compression, channel)"
                ));
            }
        }
    }
    Ok((options, name, host, shared))
}

/// `{ ok, code, status, message, reply, replies (a stream's), sent,
/// metadata, elapsed }` (elapsed in milliseconds).
pub fn outcome_table(lua: &Lua, outcome: &CallOutcome) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.set("ok", outcome.ok())?;
    table.set("code", outcome.code as i32)?;
    table.set("status", code_name(outcome.code))?;
    table.set("message", outcome.message.as_str())?;
    if let Some(reply) = &outcome.reply {
        table.set("reply", lua.to_value(&message_json(reply))?)?;
    }
    // A stream of replies: `replies`, in order (and the first as `reply`).
    if outcome.reply.is_none() && (outcome.ok() || !outcome.stream.is_empty()) {
        let replies = lua.create_table()?;
        for (i, reply) in outcome.stream.iter().enumerate() {
            replies.raw_set(i + 1, lua.to_value(&message_json(reply))?)?;
        }
        if let Some(first) = outcome.stream.first() {
            table.set("reply", lua.to_value(&message_json(first))?)?;
        }
        table.set("replies", replies)?;
    }
    table.set("sent", outcome.sent)?;
    let metadata = lua.create_table()?;
    for (key, value) in &outcome.metadata {
        metadata.set(key.as_str(), value.as_str())?;
    }
    for (key, value) in &outcome.binary_metadata {
        metadata.set(key.as_str(), lua.create_string(value)?)?;
    }
    table.set("metadata", metadata)?;
    table.set("elapsed", outcome.elapsed.as_secs_f64() * 1000.0)?;
    Ok(Value::Table(table))
}
