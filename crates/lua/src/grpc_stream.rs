//! `self.client:grpc_stream(method, opts)`: an interactive gRPC call from
//! a plan: `stream:send(message)`, `stream:receive(timeout)`,
//! `stream:close_send()`, `stream:finish()`.
//!
//! The call belongs to the user like its other connections
//! (`crate::realtime::Live`); sends, receives and the finish are pending
//! operations. The call is recorded once, when finished, as a `grpc` row
//! (named by the method or `name`), from its start to its status, with
//! every reply's bytes.

use std::rc::Rc;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use swarmer_grpc::{GrpcStream, GrpcUserClient, MethodDescriptor, Protos};

use crate::module::bridge;
use crate::pending::Finish;
use crate::realtime::{Answer, Live};

/// An interactive call and what recording it needs.
pub struct StreamCall {
    /// The call.
    pub stream: GrpcStream,
    client: GrpcUserClient,
    method: MethodDescriptor,
    name: Option<String>,
}

/// Add `_grpc_open`, `_grpc_send`, `_grpc_close_send` and `_grpc_finish`.
pub fn install(lua: &Lua, module: &Table) -> mlua::Result<()> {
    module.set("_grpc_open", lua.create_function(open)?)?;
    module.set("_grpc_send", lua.create_function(send)?)?;
    module.set("_grpc_close_send", lua.create_function(close_send)?)?;
    module.set("_grpc_finish", lua.create_function(finish)?)?;
    Ok(())
}

/// The user's call `id`, or what to tell the plan.
fn call_of(lua: &Lua, client: i64, id: i64) -> mlua::Result<Result<Rc<StreamCall>, String>> {
    let Ok(core) = bridge(lua)?.clients.get(client) else { return Ok(Err("the user has stopped".into())) };
    Ok(match core.live(id) {
        Some(Live::Grpc(call)) => Ok(call),
        Some(_) => Err("not a gRPC stream".into()),
        None => Err("the stream is finished".into()),
    })
}

/// `_grpc_open(client, method, opts)`: the stream's number (the call
/// starts at once, sending nothing), or nil and what was wrong.
fn open(lua: &Lua, (client, method, opts): (i64, String, Option<Table>)) -> Answer {
    let core = bridge(lua)?.clients.get(client)?;
    let descriptor = match crate::grpc::method_of(lua, &method)? {
        Ok(descriptor) => descriptor,
        Err(e) => return Ok((None, Some(e))),
    };
    let (options, name, host, shared) = match crate::grpc::read_options(opts.as_ref()) {
        Ok(read) => read,
        Err(e) => return Ok((None, Some(e))),
    };
    let grpc = match crate::grpc::user_client(lua, &core, host, shared) {
        Ok(grpc) => grpc,
        Err(e) => return Ok((None, Some(e.0))),
    };
    let stream = match grpc.open_stream(&descriptor, &options) {
        Ok(stream) => stream,
        Err(status) => return Ok((None, Some(status.message().to_owned()))),
    };
    let call = StreamCall { stream, client: grpc, method: descriptor, name };
    match core.keep_live(Live::Grpc(Rc::new(call))) {
        Some(id) => Ok((Some(id), None)),
        None => Ok((None, Some(format!("a user may hold at most {} connections open", crate::client::MOST_LIVE)))),
    }
}

/// How long a send waits for room, and a finish for the end: the test's
/// request timeout, or a minute.
fn patience(call: &StreamCall) -> Duration {
    call.client.request_timeout().unwrap_or(Duration::from_secs(60))
}

/// `_grpc_send(client, id, message)`: the number of the send; a message
/// that does not fit the method's request type is refused at once.
fn send(lua: &Lua, (client, id, message): (i64, i64, Value)) -> Answer {
    let call = match call_of(lua, client, id)? {
        Ok(call) => call,
        Err(e) => return Ok((None, Some(e))),
    };
    let json: serde_json::Value = match message {
        value @ Value::Table(_) => lua.from_value(value)?,
        other => return Ok((None, Some(format!("the message must be a table, got {}", other.type_name())))),
    };
    let message = match Protos::request(&call.method, &json) {
        Ok(message) => message,
        Err(e) => return Ok((None, Some(e.0))),
    };
    let bytes = swarmer_grpc::Message::encoded_len(&message);
    let wait = patience(&call);
    let id = bridge(lua)?.pending.file(
        async move {
            let sent = call.stream.send(message, wait).await;
            Box::new(move |lua: &Lua| match sent {
                Ok(()) => lua.create_table().map(Value::Table).map_err(|e| e.to_string()),
                Err(status) => Err(status.message().to_owned()),
            }) as Finish
        },
        bytes,
    )?;
    Ok((Some(id), None))
}

/// `_grpc_close_send(client, id)`: no more messages from the plan.
fn close_send(lua: &Lua, (client, id): (i64, i64)) -> mlua::Result<()> {
    if let Ok(call) = call_of(lua, client, id)? {
        call.stream.close_send();
    }
    Ok(())
}

/// `_grpc_finish(client, id)`: the number of the finish, which records the
/// call and gives its outcome (as `client:grpc` does, with `received`).
fn finish(lua: &Lua, (client, id): (i64, i64)) -> Answer {
    let call = match call_of(lua, client, id)? {
        Ok(call) => call,
        Err(e) => return Ok((None, Some(e))),
    };
    if let Ok(core) = bridge(lua)?.clients.get(client) {
        core.drop_live(id);
    }
    let id = bridge(lua)?.pending.file(
        async move {
            let outcome = call.stream.finish(patience(&call)).await;
            call.client.record(&call.method, &outcome, call.name.as_deref());
            let received = call.stream.received();
            Box::new(move |lua: &Lua| {
                let table = crate::grpc::outcome_table(lua, &outcome).map_err(|e| crate::vm::clean(&e))?;
                if let Value::Table(t) = &table {
                    t.set("received", received).map_err(|e| e.to_string())?;
                }
                Ok(table)
            }) as Finish
        },
        0,
    )?;
    Ok((Some(id), None))
}
