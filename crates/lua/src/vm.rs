//! One Lua VM per shard: standard libraries, `require` resolving next to
//! the plan, the `swarmer` module, then the plan file itself.

use std::path::Path;

use std::rc::Rc;

use mlua::{Function, Lua, Table, Value};
use swarmer_engine::{
    ClassOutline, Notice, NoticeHook, OptionValues, RequestHook, RequestSample, ShardHook, ShardHooks, ShardInfo,
    ShardPlan, UserErrorHook,
};

use crate::{classes, module};

/// Create a VM for `shard`, run the plan, build the user classes it
/// registered and its event hooks, and fire `init` (not for a probe).
/// Errors name the file and line (`plan.lua:12: …`).
pub fn load_shard_plan(path: &Path, shard: &ShardInfo, options: &OptionValues) -> Result<ShardPlan, String> {
    let lua = new_vm(path, shard).map_err(|e| clean(&e))?;
    lua.set_app_data(options.clone());
    run_plan_file(&lua, path)?;
    let classes = classes::build(&lua).map_err(|e| format!("{}: {}", path.display(), clean(&e)))?;
    let m = module::module(&lua).map_err(|e| clean(&e))?;
    let fire: Function = m.get("_fire").map_err(|e| clean(&e))?;
    let listening: Function = m.get("_listening").map_err(|e| clean(&e))?;
    if !shard.probe {
        report(&fire.call::<Table>("init"), "init");
    }
    // Per-sample and per-exception listeners cost a Lua call each, so they
    // are only hooked in when the plan has some (after init, which may add).
    let wants = |event: &str| listening.call::<bool>(event).unwrap_or(false);
    let hooks = ShardHooks {
        test_start: vec![hook(&lua, &fire, "test_start")],
        test_stop: vec![hook(&lua, &fire, "test_stop")],
        quitting: vec![hook(&lua, &fire, "quitting")],
        notice: Some(notice_hook(&lua, &fire)),
        request: wants("request").then(|| request_hook(&lua, &fire)),
        user_error: wants("user_error").then(|| user_error_hook(&fire)),
    };
    Ok(ShardPlan { classes, hooks })
}

/// Runner notices → `spawning_complete(user_count)`, `reset_stats()`,
/// `test_stopping()`, `cpu_warning(percent)`, `usage_monitor(cpu_percent, rss_bytes)`;
/// custom messages go to the handler `swarmer.register_message` gave.
fn notice_hook(lua: &Lua, fire: &Function) -> NoticeHook {
    let (lua, fire) = (lua.clone(), fire.clone());
    Rc::new(move |notice: Notice| {
        let (lua, fire) = (lua.clone(), fire.clone());
        Box::pin(async move {
            let (name, args): (&str, mlua::MultiValue) = match notice {
                Notice::SpawningComplete { user_count } => ("spawning_complete", args(&lua, user_count)),
                Notice::ResetStats => ("reset_stats", mlua::MultiValue::new()),
                Notice::TestStopping => ("test_stopping", mlua::MultiValue::new()),
                Notice::CpuWarning { cpu_percent } => ("cpu_warning", args(&lua, cpu_percent)),
                Notice::UsageMonitor { cpu_percent, rss_bytes } => {
                    ("usage_monitor", args(&lua, (cpu_percent, rss_bytes)))
                }
                Notice::Message(m) => {
                    let deliver = module::module(&lua).and_then(|m| m.get::<Function>("_deliver"));
                    if let Err(e) = deliver.and_then(|f| f.call::<()>((m.kind.clone(), m.data, m.peer))) {
                        tracing::error!("the handler of {:?} messages failed: {}", m.kind, clean(&e));
                    }
                    return;
                }
            };
            let mut call = mlua::MultiValue::new();
            call.push_back(mlua::Value::String(lua.create_string(name).expect("a short string")));
            call.extend(args);
            report(&fire_async(&lua, &fire, call).await, name);
        })
    })
}

fn args(lua: &Lua, values: impl mlua::IntoLuaMulti) -> mlua::MultiValue {
    values.into_lua_multi(lua).unwrap_or_default()
}

/// Every sample → `request{request_type, name, response_time, response_length, exception}`.
fn request_hook(lua: &Lua, fire: &Function) -> RequestHook {
    let (lua, fire) = (lua.clone(), fire.clone());
    Rc::new(move |sample: &RequestSample<'_>| {
        let table = (|| -> mlua::Result<Table> {
            let t = lua.create_table()?;
            t.set("request_type", sample.method)?;
            t.set("name", sample.name)?;
            t.set("response_time", sample.response_time_us.map(|us| us as f64 / 1000.0))?;
            t.set("response_length", sample.content_length)?;
            t.set("exception", sample.error)?;
            Ok(t)
        })();
        match table {
            Ok(t) => report(&fire.call::<Table>(("request", t)), "request"),
            Err(e) => tracing::error!("request event: {}", clean(&e)),
        }
    })
}

/// Every exception in user code → `user_error(message, traceback)`.
fn user_error_hook(fire: &Function) -> UserErrorHook {
    let fire = fire.clone();
    Rc::new(move |message: &str, traceback: &str| {
        report(&fire.call::<Table>(("user_error", message, traceback)), "user_error")
    })
}

/// A shard hook that fires the Lua event `name` (listeners may wait).
fn hook(lua: &Lua, fire: &Function, name: &'static str) -> ShardHook {
    let (lua, fire) = (lua.clone(), fire.clone());
    Rc::new(move || {
        let (lua, fire) = (lua.clone(), fire.clone());
        Box::pin(async move {
            let outcome = fire_async(&lua, &fire, (name,)).await;
            report(&outcome, name);
        })
    })
}

/// Fire an event in a coroutine of its own, so listeners may wait.
async fn fire_async(lua: &Lua, fire: &Function, args: impl mlua::IntoLuaMulti) -> mlua::Result<Table> {
    let mut thread = crate::raw::Coroutine::new(lua)?;
    thread.push_args(fire.clone())?;
    let nargs = thread.push_args(args)?;
    match crate::driver::drive(&*crate::module::bridge(lua)?, &mut thread, nargs, true, &Default::default())
        .await?
        .into_result()?
    {
        mlua::Value::Table(t) => Ok(t),
        _ => lua.create_table(),
    }
}

fn report(outcome: &mlua::Result<Table>, event: &str) {
    match outcome {
        Ok(failed) => {
            for message in failed.clone().sequence_values::<String>().flatten() {
                tracing::error!("a {event} listener failed: {message}");
            }
        }
        Err(e) => tracing::error!("firing {event} failed: {}", clean(e)),
    }
}

/// Load the plan once to describe it: the options it declares with
/// `swarmer.add_option` and the outlines of its user classes.
pub fn describe_plan(path: &Path) -> Result<PlanDescription, String> {
    let lua = new_vm(path, &ShardInfo::probe()).map_err(|e| clean(&e))?;
    lua.set_app_data(crate::data::UsedFiles::default());
    run_plan_file(&lua, path)?;
    let files = used_files(&lua).map_err(|e| clean(&e))?;
    let classes = classes::build(&lua).map_err(|e| format!("{}: {}", path.display(), clean(&e)))?;
    let outlines = classes.iter().map(ClassOutline::of).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    Ok(PlanDescription { options: declared_options(&lua)?, outlines, files })
}

/// What loading a plan once found.
pub struct PlanDescription {
    /// The options it declares.
    pub options: Vec<crate::PlanOption>,
    /// Its user classes.
    pub outlines: Vec<ClassOutline>,
    /// The files it loaded besides itself: Lua modules it required and data
    /// files it read (`swarmer.csv`, `swarmer.json`).
    pub files: Vec<std::path::PathBuf>,
}

/// The module files `require` loaded (found again on `package.path`) and
/// the data files the plan read, in `lua`.
fn used_files(lua: &Lua) -> mlua::Result<Vec<std::path::PathBuf>> {
    let package: Table = lua.globals().get("package")?;
    let loaded: Table = package.get("loaded")?;
    let search_path: String = package.get("path")?;
    let searchpath: Function = package.get("searchpath")?;
    let mut files = Vec::new();
    for pair in loaded.pairs::<Value, Value>() {
        let (name, _) = pair?;
        let Value::String(name) = name else { continue };
        if let Some(found) = searchpath.call::<Option<String>>((name, search_path.as_str()))? {
            files.push(std::path::PathBuf::from(found));
        }
    }
    if let Some(used) = lua.app_data_ref::<crate::data::UsedFiles>() {
        files.extend(used.0.borrow().iter().cloned());
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// The options the plan in `lua` declared with `swarmer.add_option`.
fn declared_options(lua: &Lua) -> Result<Vec<crate::PlanOption>, String> {
    let list: Table = module::module(lua).and_then(|m| m.get("_options")).map_err(|e| clean(&e))?;
    let mut out = Vec::new();
    for spec in list.sequence_values::<Table>() {
        let spec = spec.map_err(|e| clean(&e))?;
        let get = |k: &str| spec.get::<Option<String>>(k).map_err(|e| clean(&e));
        out.push(crate::PlanOption {
            name: get("name")?.unwrap_or_default(),
            help: get("help")?.unwrap_or_default(),
            default: get("default")?,
            kind: match get("type")?.as_deref() {
                Some("boolean") => crate::OptionKind::Boolean,
                Some("number") => crate::OptionKind::Number,
                _ => crate::OptionKind::String,
            },
        });
    }
    Ok(out)
}

/// A VM whose `require` looks next to the plan and which has `swarmer`.
pub fn new_vm(plan: &Path, shard: &ShardInfo) -> mlua::Result<Lua> {
    // No native code, no bytecode, no debug library for plans (see
    // `raw::new_lua`); the prelude gets the debug functions it needs.
    let (lua, debug) = crate::raw::new_lua()?;
    crate::raw::install_hook(&lua)?;
    let dir = plan.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let package: mlua::Table = lua.globals().get("package")?;
    let dir_text = dir.to_string_lossy();
    // The plan's folder first, then the working directory (as Locust puts
    // it on `sys.path`: a plan in a subfolder can use a package at the root).
    package.set("path", format!("{dir_text}/?.lua;{dir_text}/?/init.lua;./?.lua;./?/init.lua"))?;
    module::install(&lua, shard, dir, debug)?;
    Ok(lua)
}

fn run_plan_file(lua: &Lua, path: &Path) -> Result<(), String> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let display = path.display().to_string();
    crate::raw::reset_busy();
    lua.load(source).set_name(format!("@{display}")).exec().map_err(|e| clean(&e))
}

/// The first, most useful line of a Lua error (the traceback is elsewhere).
pub(crate) fn clean(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => clean(cause),
        other => other.to_string(),
    }
}
