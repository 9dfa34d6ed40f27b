//! Running one Lua task body for one user.
//!
//! The body runs through `swarmer._run` (an `xpcall` with a traceback
//! handler) inside a coroutine that mlua drives as a Rust future: when the
//! body calls something that waits, the coroutine yields and the shard runs
//! other users. The outcome maps to the engine's [`TaskError`]: control
//! tables to StopUser/StopTest/Interrupt/Reschedule, anything else to an
//! exception with the Lua message and traceback.

use mlua::{AnyUserData, Function, Table, Value};
use swarmer_engine::{TaskError, TaskResult, User};

use crate::client::{LuaClient, Pending};

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

/// Call `body(self)` for `user`.
pub async fn run(context: &ClassContext, user: &mut User, body: &Function) -> TaskResult {
    let (self_table, pending) = user_object(context, user).map_err(|e| lua_exception(&e))?;
    let outcome = context.run.call_async::<Value>((body.clone(), self_table)).await;
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
