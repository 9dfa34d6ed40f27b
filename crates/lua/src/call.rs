//! Running one Lua task body for one user.
//!
//! The body runs through `swarmer._run` (an `xpcall` with a traceback
//! handler) inside a coroutine driven by [`drive`]: when the body calls
//! something that waits, the coroutine yields an operation, the user's task
//! awaits it (other users of the shard run meanwhile) and resumes the
//! coroutine with the result. The outcome maps to the engine's [`TaskError`]: control
//! tables to StopUser/StopTest/Interrupt/Reschedule, anything else to an
//! exception with the Lua message and traceback.

use std::time::Duration;

use mlua::{AnyUserData, FromLua, Function, IntoLuaMulti, Lua, MultiValue, Table, Thread, ThreadStatus, Value};
use swarmer_engine::{TaskError, TaskResult, User};

use crate::client::{LuaClient, Pending, perform};

/// What every task of a class needs.
pub struct ClassContext {
    pub lua: mlua::Lua,
    pub run: Function,
    pub new_user: Function,
    pub control: Table,
    pub def: Table,
}

/// A user's Lua side: its `self` table (made on first use) and the
/// catch-response results still waiting for a verdict.
#[derive(Default)]
pub struct LuaUser {
    self_table: Option<Table>,
    pending: Pending,
}

/// Operation codes a coroutine yields with (see `prelude.lua`).
const OP_REQUEST: i64 = 1;
const OP_SLEEP: i64 = 2;

/// Run `thread` to completion: each time it yields an operation (an HTTP
/// request, a sleep), do it as async Rust and resume it with the result.
/// This is what makes `self.client:get` look blocking: one resume and one
/// yield per request, no future boxed per call.
pub async fn drive(lua: &Lua, thread: &Thread, first: MultiValue) -> mlua::Result<MultiValue> {
    let mut args = first;
    loop {
        let out: MultiValue = thread.resume(args)?;
        if thread.status() != ThreadStatus::Resumable {
            return Ok(out);
        }
        let mut values = out.into_iter();
        args = match values.next() {
            Some(Value::Integer(OP_REQUEST)) => {
                let client = match values.next() {
                    Some(Value::UserData(ud)) => ud,
                    _ => return Err(mlua::Error::runtime("internal: a request without a client")),
                };
                let method = String::from_lua(values.next().unwrap_or(Value::Nil), lua)?;
                let url = values.next().unwrap_or(Value::Nil);
                let opts = values.next().unwrap_or(Value::Nil);
                let result = match (url, opts) {
                    (Value::String(url), Value::Nil) => {
                        perform(lua, &client, &method, url.to_str()?.to_string(), None).await
                    }
                    (Value::String(url), Value::Table(t)) => {
                        perform(lua, &client, &method, url.to_str()?.to_string(), Some(t)).await
                    }
                    (url, Value::Nil | Value::Table(_)) => {
                        Err(mlua::Error::runtime(format!("expected a URL string, got {}", url.type_name())))
                    }
                    (_, opts) => {
                        Err(mlua::Error::runtime(format!("expected an options table, got {}", opts.type_name())))
                    }
                };
                match result {
                    Ok(response) => (response,).into_lua_multi(lua)?,
                    Err(e) => (Value::Nil, crate::vm::clean(&e)).into_lua_multi(lua)?,
                }
            }
            Some(Value::Integer(OP_SLEEP)) => match values.next() {
                Some(Value::Integer(s)) if s >= 0 => {
                    tokio::time::sleep(Duration::from_secs(s as u64)).await;
                    MultiValue::new()
                }
                Some(Value::Number(s)) if s.is_finite() && s >= 0.0 => {
                    tokio::time::sleep(Duration::from_secs_f64(s)).await;
                    MultiValue::new()
                }
                other => {
                    (Value::Nil, format!("sleep: expected non-negative seconds, got {other:?}")).into_lua_multi(lua)?
                }
            },
            _ => {
                return Err(mlua::Error::runtime(
                    "coroutine.yield from a task, hook or background coroutine is not supported; use coroutine.wrap \
                     inside your own code, or swarmer.sleep",
                ));
            }
        };
    }
}

/// Call `body(self)` for `user`.
pub async fn run(context: &ClassContext, user: &mut User, body: &Function) -> TaskResult {
    let (self_table, pending) = user_object(context, user).map_err(|e| lua_exception(&e))?;
    let outcome = match context.lua.create_thread(context.run.clone()) {
        Ok(thread) => match (body.clone(), self_table).into_lua_multi(&context.lua) {
            Ok(args) => drive(&context.lua, &thread, args).await.map(|mut out| out.pop_front().unwrap_or(Value::Nil)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    // Catch-response results the task did not mark get Locust's default.
    let unmarked: Vec<_> = pending.borrow_mut().drain(..).collect();
    for response in unmarked {
        response.borrow_mut().finish_default();
    }
    match outcome {
        Ok(Value::Nil) => Ok(()),
        Ok(Value::Table(t)) => Err(table_outcome(context, &t)),
        Ok(other) => Err(TaskError::exception_at(format!("unexpected task outcome {other:?}"), "")),
        Err(e) => Err(lua_exception(&e)),
    }
}

fn user_object(context: &ClassContext, user: &mut User) -> mlua::Result<(Table, Pending)> {
    let id = user.id();
    if let Some(LuaUser { self_table: Some(table), pending }) = user.state::<LuaUser>() {
        return Ok((table.clone(), pending.clone()));
    }
    let client = user.client.clone();
    let Some(state) = user.state::<LuaUser>() else {
        return Err(mlua::Error::runtime("internal: the Lua user state is missing"));
    };
    let lua_client = LuaClient::new(client, state.pending.clone());
    let client_ud: AnyUserData = context.lua.create_userdata(lua_client)?;
    let table: Table = context.new_user.call((context.def.clone(), client_ud, id))?;
    state.self_table = Some(table.clone());
    Ok((table, state.pending.clone()))
}

fn table_outcome(context: &ClassContext, t: &Table) -> TaskError {
    if t.metatable().as_ref() == Some(&context.control) {
        let kind: String = t.get("kind").unwrap_or_default();
        return match kind.as_str() {
            "stop_user" => TaskError::StopUser,
            "stop_test" => TaskError::StopTest,
            "interrupt" => TaskError::Interrupt { reschedule: t.get("reschedule").unwrap_or(true) },
            "reschedule" => TaskError::Reschedule,
            _ => TaskError::RescheduleNow,
        };
    }
    let message: String = t.get("message").unwrap_or_else(|_| "error".into());
    let traceback: String = t.get("traceback").unwrap_or_default();
    TaskError::exception_at(message, traceback)
}

fn lua_exception(e: &mlua::Error) -> TaskError {
    TaskError::exception_at(crate::vm::clean(e), "")
}
