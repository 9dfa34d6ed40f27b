//! Lua definitions → engine user classes.
//!
//! Reads `swarmer._users` after the plan ran, and builds a
//! [`UserClass`] per definition: weight, fixed_count, host, wait time,
//! hooks, and tasks (functions, `swarmer.task` entries, task sets). Each
//! task becomes an engine task whose body calls the Lua function in a
//! coroutine ([`crate::call`]).

use std::rc::Rc;
use std::time::Duration;

use mlua::{Function, Lua, Table, Value};
use swarmer_engine::{Connections, Task, TaskFn, TaskSet, User, UserClass, WaitTime};

use crate::call::{self, ClassContext, LuaUser, SetScope};
use crate::driver::Bridge;
use crate::module;
use crate::threads::ThreadPool;

/// Build every registered class.
pub fn build(lua: &Lua) -> mlua::Result<Vec<UserClass>> {
    let m = module::module(lua)?;
    let users: Table = m.get("_users")?;
    let threads = Rc::new(ThreadPool::default());
    let bridge = module::bridge(lua)?;
    let mut classes = Vec::new();
    for def in users.sequence_values::<Table>() {
        classes.push(build_class(lua, &m, def?, &bridge, &threads)?);
    }
    Ok(classes)
}

fn build_class(
    lua: &Lua,
    m: &Table,
    def: Table,
    bridge: &Rc<Bridge>,
    threads: &Rc<ThreadPool>,
) -> mlua::Result<UserClass> {
    let name: String = def.get("name")?;
    let context = Rc::new(ClassContext {
        lua: lua.clone(),
        new_user: m.get("_new_user")?,
        control: m.get("_CONTROL")?,
        def: def.clone(),
        bridge: bridge.clone(),
        threads: threads.clone(),
        set_view: m.get("_set_view")?,
        sets: Default::default(),
    });
    let mut class = UserClass::new(&name).state(LuaUser::default);
    if let Some(weight) = def.get::<Option<u32>>("weight")? {
        class = class.weight(weight);
    }
    if let Some(count) = def.get::<Option<u32>>("fixed_count")? {
        class = class.fixed_count(count);
    }
    if let Some(host) = def.get::<Option<String>>("host")? {
        class = class.host(host);
    }
    if let Some(c) = def.get::<Option<Table>>("connections")? {
        let max: usize = c.get("max")?;
        let shared: Option<bool> = c.get("shared")?;
        class = class.connections(if shared == Some(true) {
            Connections::Shared { max }
        } else {
            Connections::UserLimit { max }
        });
    }
    if let Some(wait) = wait_time(m, def.get("wait_time")?)? {
        class = class.wait_time(wait);
    }
    class.on_start =
        def.get::<Option<Function>>("on_start")?.map(|f| lua_fn(&context, f, "on_start", None)).transpose()?;
    class.on_stop =
        def.get::<Option<Function>>("on_stop")?.map(|f| lua_fn(&context, f, "on_stop", None)).transpose()?;
    let tasks: Table = def.get("tasks")?;
    for task in tasks_of(lua, m, &context, &None, &tasks)? {
        class = class.task(task);
    }
    if class.tasks.tasks.is_empty() {
        let at: String = def.get("where")?;
        return Err(mlua::Error::runtime(format!("{at}: user class {name} has no tasks")));
    }
    Ok(class)
}

/// The engine body of a Lua function; `scope` is the task set it belongs
/// to, if any (its `self` is then the user's object for that set).
fn lua_fn(context: &Rc<ClassContext>, function: Function, name: &str, scope: Scope) -> mlua::Result<TaskFn> {
    let task = Rc::new(LuaTask {
        body: context.lua.create_registry_value(function)?,
        context: context.clone(),
        name: name.into(),
        scope,
    });
    Ok(Rc::new(move |user: &mut User| {
        // One reference counted per call, whatever the task holds.
        let task = task.clone();
        crate::in_place::boxed(move || async move {
            call::run(&task.context, user, &task.body, &task.name, task.scope.as_deref()).await
        })
    }))
}

/// What a Lua task's engine body calls: its function (a registry key),
/// its class, its name and the task set it belongs to.
struct LuaTask {
    body: mlua::RegistryKey,
    context: Rc<ClassContext>,
    name: Box<str>,
    scope: Scope,
}

type Scope = Option<Rc<SetScope>>;

/// Entries of a `tasks` list: array entries in order, then named entries
/// (`name = function`) sorted by name so every shard builds the same list.
fn tasks_of(lua: &Lua, m: &Table, context: &Rc<ClassContext>, scope: &Scope, tasks: &Table) -> mlua::Result<Vec<Task>> {
    let mut out = Vec::new();
    for value in tasks.clone().sequence_values::<Value>() {
        out.push(task_of(lua, m, context, scope, None, value?)?);
    }
    let mut named: Vec<(String, Value)> = Vec::new();
    for pair in tasks.clone().pairs::<Value, Value>() {
        let (key, value) = pair?;
        if let Value::String(s) = key {
            named.push((s.to_str()?.to_string(), value));
        }
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in named {
        out.push(task_of(lua, m, context, scope, Some(name), value)?);
    }
    Ok(out)
}

fn task_of(
    lua: &Lua,
    m: &Table,
    context: &Rc<ClassContext>,
    scope: &Scope,
    name: Option<String>,
    value: Value,
) -> mlua::Result<Task> {
    let task_mt: Table = m.get("_TASK")?;
    let set_mt: Table = m.get("_TASKSET")?;
    match value {
        Value::Function(f) => {
            let name = name.unwrap_or_else(|| function_name(&f));
            let body = lua_fn(context, f, &name, scope.clone())?;
            Ok(Task::from_fn(name, body))
        }
        Value::Table(t) if t.metatable().as_ref() == Some(&set_mt) => task_set(lua, m, context, scope, t),
        Value::Table(t) if t.metatable().as_ref() == Some(&task_mt) => {
            let weight: u32 = t.get("weight")?;
            let tags: Vec<String> = t.get("tags")?;
            let run: Value = t.get("run")?;
            let explicit: Option<String> = t.get("name")?;
            let mut task = match run {
                Value::Table(set) => task_set(lua, m, context, scope, set)?,
                Value::Function(f) => {
                    let name = explicit.clone().or(name).unwrap_or_else(|| function_name(&f));
                    {
                        let body = lua_fn(context, f, &name, scope.clone())?;
                        Task::from_fn(name, body)
                    }
                }
                other => {
                    return Err(mlua::Error::runtime(format!("a task must run a function, got {}", other.type_name())));
                }
            };
            if let Some(n) = explicit {
                task.name = n;
            }
            task.weight = weight;
            task.tags.extend(tags);
            Ok(task)
        }
        other => Err(mlua::Error::runtime(format!(
            "tasks may hold functions, swarmer.task(...) or swarmer.task_set(...), got a {}",
            other.type_name()
        ))),
    }
}

fn task_set(lua: &Lua, m: &Table, context: &Rc<ClassContext>, outer: &Scope, t: Table) -> mlua::Result<Task> {
    let name: String = t.get("name")?;
    let sequential: bool = t.get("sequential")?;
    let index = context.sets.get();
    context.sets.set(index + 1);
    let this = Rc::new(SetScope { index, set: lua.create_registry_value(t.clone())?, parent: outer.clone() });
    let scope = Some(this.clone());
    let mut set = if sequential { TaskSet::sequential(&name) } else { TaskSet::new(&name) };
    for task in tasks_of(lua, m, context, &scope, &t.get::<Table>("tasks")?)? {
        set = set.task(task);
    }
    if set.tasks.is_empty() {
        return Err(mlua::Error::runtime(format!("task set {name} has no tasks")));
    }
    set.wait_time = wait_time(m, t.get("wait_time")?)?;
    set.on_start = Some(set_entry(context, &this, t.get::<Option<Function>>("on_start")?)?);
    set.on_stop =
        t.get::<Option<Function>>("on_stop")?.map(|f| lua_fn(context, f, "on_stop", scope.clone())).transpose()?;
    let mut task = Task::set(set).weight(t.get("weight")?);
    task.tags = t.get("tags")?;
    Ok(task)
}

/// What runs each time a user enters a task set: the user's `self` for
/// the set is made anew (Locust makes a new TaskSet instance on each
/// entry, so fields a visit wrote do not leak into the next), then the
/// set's own `on_start`, if it has one.
fn set_entry(context: &Rc<ClassContext>, scope: &Rc<SetScope>, on_start: Option<Function>) -> mlua::Result<TaskFn> {
    let on_start = on_start.map(|f| lua_fn(context, f, "on_start", Some(scope.clone()))).transpose()?;
    let index = scope.index;
    Ok(Rc::new(move |user: &mut User| {
        call::forget_set_object(user, index);
        match &on_start {
            Some(body) => body(user),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }))
}

/// `task@plan.lua:12` for an anonymous function, its name otherwise.
fn function_name(f: &Function) -> String {
    let info = f.info();
    match info.name {
        Some(name) => name,
        None => format!("task@{}:{}", info.short_src.unwrap_or_default(), info.line_defined.unwrap_or(0)),
    }
}

fn wait_time(m: &Table, value: Value) -> mlua::Result<Option<WaitTime>> {
    let wait_mt: Table = m.get("_WAIT")?;
    match value {
        Value::Nil => Ok(None),
        Value::Table(t) if t.metatable().as_ref() == Some(&wait_mt) => {
            let kind: String = t.get("kind")?;
            let a: f64 = t.get(1)?;
            Ok(Some(match kind.as_str() {
                "between" => WaitTime::Between(a, t.get(2)?),
                "constant" => WaitTime::Constant(a),
                "constant_pacing" => WaitTime::ConstantPacing(a),
                _ => WaitTime::ConstantThroughput(a),
            }))
        }
        Value::Function(f) => Ok(Some(WaitTime::Custom(Rc::new(move || {
            let seconds = f.call::<f64>(()).unwrap_or(0.0);
            Duration::from_secs_f64(if seconds.is_finite() && seconds > 0.0 { seconds } else { 0.0 })
        })))),
        other => Err(mlua::Error::runtime(format!("invalid wait_time: a {}", other.type_name()))),
    }
}
