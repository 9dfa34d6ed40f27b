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

use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, Table, Thread, ThreadStatus, Value};
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

/// What a coroutine yields: an operation code and up to four operands
/// (read straight off the Lua stack: no list is built per step).
type Yielded = (Value, Value, Value, Value, Value);

/// Run `thread` to completion: each time it yields an operation (an HTTP
/// request, a sleep), do it as async Rust and resume it with the result.
/// This is what makes `self.client:get` look blocking: one resume and one
/// yield per request, no future boxed per call. Returns the first value
/// the coroutine's function returned.
pub async fn drive(lua: &Lua, thread: &Thread, first: impl IntoLuaMulti) -> mlua::Result<Value> {
    let mut step: Yielded = thread.resume(first)?;
    loop {
        if thread.status() != ThreadStatus::Resumable {
            return Ok(step.0);
        }
        let (op, a, b, c, d) = step;
        step = match op {
            Value::Integer(OP_REQUEST) => {
                let Value::UserData(client) = a else {
                    return Err(mlua::Error::runtime("internal: a request without a client"));
                };
                let method = match &b {
                    Value::String(m) => m.to_str()?,
                    other => return Err(mlua::Error::runtime(format!("expected a method, got {}", other.type_name()))),
                };
                let result = match (c, d) {
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
                    Ok(response) => thread.resume(response)?,
                    Err(e) => thread.resume((Value::Nil, crate::vm::clean(&e)))?,
                }
            }
            Value::Integer(OP_SLEEP) => match a {
                Value::Integer(s) if s >= 0 => {
                    tokio::time::sleep(Duration::from_secs(s as u64)).await;
                    thread.resume(())?
                }
                Value::Number(s) if s.is_finite() && s >= 0.0 => {
                    tokio::time::sleep(Duration::from_secs_f64(s)).await;
                    thread.resume(())?
                }
                other => thread.resume((Value::Nil, format!("sleep: expected non-negative seconds, got {other:?}")))?,
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
        Ok(thread) => drive(&context.lua, &thread, (body, &self_table)).await,
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
