//! Running one Lua task body for one user.
//!
//! The body runs as the function of a coroutine from the VM's pool,
//! driven by [`crate::driver::drive`]. What it raises maps to the engine's
//! [`TaskError`]: control tables to StopUser/StopTest/Interrupt/Reschedule,
//! anything else to an exception with the Lua message and the coroutine's
//! traceback (a coroutine that died keeps its stack for that).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{Function, RegistryKey, Table, Value};
use swarmer_engine::{TaskError, TaskResult, User};

use crate::client::ClientCore;
use crate::driver::{self, Bridge, Ended};
use crate::threads::ThreadPool;

/// What every task of a class needs.
pub struct ClassContext {
    pub lua: mlua::Lua,
    pub new_user: Function,
    pub control: Table,
    pub def: Table,
    /// The VM's users' clients and free coroutines, shared by its classes.
    pub bridge: Rc<Bridge>,
    pub threads: Rc<ThreadPool>,
    /// `swarmer._set_view`, which makes the `self` of a task set's functions.
    pub set_view: Function,
    /// How many task sets the class has numbered so far.
    pub sets: Cell<usize>,
}

/// A task set a function belongs to: its definition and the set it is
/// nested in. A user's `self` for the set (`swarmer._set_view`) is made
/// on the first call after each entry into the set.
pub struct SetScope {
    pub index: usize,
    pub set: RegistryKey,
    pub parent: Option<Rc<SetScope>>,
}

/// A user's Lua side, made on its first task: its `self` table (kept in
/// the registry) and its client. The client leaves the VM's list with
/// the user.
#[derive(Default)]
pub struct LuaUser {
    made: Option<MadeUser>,
}

struct MadeUser {
    self_key: RegistryKey,
    client_id: i64,
    core: Rc<ClientCore>,
    bridge: Rc<Bridge>,
    /// The user's `self` in each task set it entered, by set number.
    views: Vec<Option<RegistryKey>>,
}

impl Drop for MadeUser {
    fn drop(&mut self) {
        self.bridge.clients.remove(self.client_id);
    }
}

/// Call `body(self)` for `user`; `body` is a registry key of the task's
/// function, `name` the task's name, `scope` the task set it belongs to.
pub async fn run(
    context: &ClassContext,
    user: &mut User,
    body: &RegistryKey,
    name: &str,
    scope: Option<&SetScope>,
) -> TaskResult {
    let (self_id, core) = user_object(context, user, scope).map_err(|e| lua_exception(&e))?;
    let busy_since = Cell::new(None);
    let mut stuck = StuckReport { busy_since: &busy_since, core: &core, task: name, armed: true };
    let outcome = async {
        let mut thread = context.threads.take(&context.lua)?;
        thread.push_registered(&[body.id(), self_id])?;
        driver::drive(&context.bridge, &mut thread, 1, false, &busy_since).await
    }
    .await;
    stuck.armed = false;
    core.finish_pending();
    let (message, location) = match outcome {
        Ok(Ended::Returned(_)) => return Ok(()),
        Ok(Ended::Raised { error: Value::Table(t), traceback }) => return Err(table_outcome(context, &t, traceback)),
        Ok(Ended::Raised { error, traceback }) => (driver::error_message(&error), traceback),
        Err(e) => (crate::vm::clean(&e), String::new()),
    };
    if crate::memory_limit::is_limit_error(&message) {
        // The VM is full: this user stops (what it holds can be taken
        // back), said once per user in the exceptions table.
        let plan = crate::vm::plan_name(&context.lua);
        core.record_exception(&format!("{}; its user was stopped", crate::memory_limit::explain(&plan)), name);
        return Err(TaskError::StopUser);
    }
    Err(TaskError::exception_at(message, location))
}

/// Reports a task whose user was stopped while it ran Lua code that had
/// not waited on anything for a while (an endless loop): the run ends at
/// its time all the same (the driver yields such code to the shard), and
/// the exceptions table names the task that never finished.
struct StuckReport<'a> {
    busy_since: &'a Cell<Option<Instant>>,
    core: &'a ClientCore,
    task: &'a str,
    armed: bool,
}

/// Running this long without waiting when stopped is reported.
const STUCK_AFTER: Duration = Duration::from_secs(1);

impl Drop for StuckReport<'_> {
    fn drop(&mut self) {
        let Some(since) = self.busy_since.get().filter(|_| self.armed) else { return };
        let busy = since.elapsed();
        if busy >= STUCK_AFTER {
            let message = format!(
                "task {} was stopped with its user after running Lua code for {:.1} s without waiting on anything \
                 (an endless loop?)",
                self.task,
                busy.as_secs_f64()
            );
            self.core.record_exception(&message, self.task);
        }
    }
}

/// The registry id of the user's `self` (or its `self` in the task set
/// `scope`), made on first use, and its client.
fn user_object(
    context: &ClassContext,
    user: &mut User,
    scope: Option<&SetScope>,
) -> mlua::Result<(std::ffi::c_int, Rc<ClientCore>)> {
    if let Some(made) = user.state::<LuaUser>().and_then(|state| state.made.as_mut()) {
        let id = match scope {
            None => made.self_key.id(),
            Some(scope) => set_object(context, made, scope)?,
        };
        return Ok((id, made.core.clone()));
    }
    let (id, client) = (user.id(), user.client.clone());
    let Some(state) = user.state::<LuaUser>() else {
        return Err(mlua::Error::runtime("internal: the Lua user state is missing"));
    };
    let (client_id, core) = context.bridge.clients.add(client);
    let self_key = context
        .new_user
        .call::<Table>((context.def.clone(), client_id, id))
        .and_then(|table| context.lua.create_registry_value(table))
        .inspect_err(|_| context.bridge.clients.remove(client_id))?;
    let made = state.made.insert(MadeUser {
        self_key,
        client_id,
        core: core.clone(),
        bridge: context.bridge.clone(),
        views: Vec::new(),
    });
    let id = match scope {
        None => made.self_key.id(),
        Some(scope) => set_object(context, made, scope)?,
    };
    Ok((id, core))
}

/// The registry id of the user's `self` in a task set, made on first use
/// from the set's definition and the object of what it is nested in.
fn set_object(context: &ClassContext, made: &mut MadeUser, scope: &SetScope) -> mlua::Result<std::ffi::c_int> {
    if let Some(Some(key)) = made.views.get(scope.index) {
        return Ok(key.id());
    }
    let parent: Table = match &scope.parent {
        None => context.lua.registry_value(&made.self_key)?,
        Some(outer) => {
            set_object(context, made, outer)?;
            match made.views.get(outer.index) {
                Some(Some(key)) => context.lua.registry_value(key)?,
                _ => return Err(mlua::Error::runtime("internal: a task set's outer object is missing")),
            }
        }
    };
    let user: Table = context.lua.registry_value(&made.self_key)?;
    let set: Table = context.lua.registry_value(&scope.set)?;
    let view: Table = context.set_view.call((set, parent, user))?;
    let key = context.lua.create_registry_value(view)?;
    let id = key.id();
    if made.views.len() <= scope.index {
        made.views.resize_with(scope.index + 1, || None);
    }
    made.views[scope.index] = Some(key);
    Ok(id)
}

/// Forget the user's `self` in task set `index`: it is made anew when
/// the user next runs one of the set's functions.
pub fn forget_set_object(user: &mut User, index: usize) {
    if let Some(slot) = user.state::<LuaUser>().and_then(|s| s.made.as_mut()).and_then(|m| m.views.get_mut(index)) {
        *slot = None;
    }
}

fn table_outcome(context: &ClassContext, t: &Table, traceback: String) -> TaskError {
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
    TaskError::exception_at(driver::error_message(&Value::Table(t.clone())), traceback)
}

fn lua_exception(e: &mlua::Error) -> TaskError {
    TaskError::exception_at(crate::vm::clean(e), "")
}
