//! The VMs of a plan: one per shard for its users, and the process VM for
//! its once-per-process code (see `crate::process`). Each gets the standard
//! libraries, `require` resolving next to the plan, the `swarmer` module,
//! then the plan file itself.
//!
//! Which hooks run where: `init`, `test_start`, `test_stopping`,
//! `test_stop`, `quitting`, `spawning_complete`, `reset_stats`,
//! `usage_monitor`, `cpu_warning`, message handlers and background
//! coroutines started at load run in the process VM only; `request` and
//! `user_error` listeners run in the VM where the sample or the error
//! happened (a shard's, for its users).

use std::path::{Path, PathBuf};

use std::rc::Rc;

use mlua::{Function, Lua, Table, Value};
use swarmer_engine::{
    ClassOutline, Notice, NoticeHook, OptionValues, RequestHook, RequestSample, ShardHook, ShardHooks, ShardInfo,
    ShardPlan, SharedData, UserErrorHook,
};

use crate::module::{self, VmKind};
use crate::{classes, process};

/// What every VM of one load of a plan shares.
#[derive(Clone)]
pub struct PlanContext {
    /// The plan file.
    pub path: PathBuf,
    /// Values of the plan's own options.
    pub options: OptionValues,
    /// Data the plan's VMs share (CSV datasets, shared values and queues).
    pub shared: SharedData,
}

/// The data a VM's plan shares with the plan's other VMs (app data).
#[derive(Clone)]
pub struct PlanData(pub SharedData);

/// A VM of `kind` for the plan of `ctx`, not yet running it.
/// The VM's app data `T`, unless the VM is closing. A VM runs the
/// finalizers of what is left (a plan's `__gc`, a connection's) while it
/// closes, when its handle is being dropped: reaching the app data then
/// would revive that handle (undefined behaviour in mlua), so callbacks
/// find none and fail with an error the closing VM ignores.
#[allow(clippy::disallowed_methods)]
pub fn app_data<T: 'static>(lua: &Lua) -> Option<mlua::AppDataRef<'_, T>> {
    // A closing VM cannot be upgraded to (its last strong handle is going).
    lua.weak().try_upgrade()?;
    lua.app_data_ref::<T>()
}

pub fn new_vm(ctx: &PlanContext, kind: VmKind) -> mlua::Result<Lua> {
    // No native code, no bytecode, no debug library for plans (see
    // `raw::new_lua`); the prelude gets the debug functions it needs.
    let (lua, debug) = crate::raw::new_lua()?;
    crate::memory_limit::apply(&lua)?;
    crate::raw::install_hook(&lua)?;
    let dir = ctx.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let package: mlua::Table = lua.globals().get("package")?;
    let dir_text = dir.to_string_lossy();
    // The plan's folder first, then the working directory (as Locust puts
    // it on `sys.path`: a plan in a subfolder can use a package at the root).
    package.set("path", format!("{dir_text}/?.lua;{dir_text}/?/init.lua;./?.lua;./?/init.lua"))?;
    module::install(&lua, kind, dir, debug)?;
    lua.set_app_data(ctx.options.clone());
    lua.set_app_data(PlanData(ctx.shared.clone()));
    lua.set_app_data(PlanName(ctx.path.display().to_string()));
    Ok(lua)
}

/// The plan file a VM runs, as messages name it.
pub struct PlanName(pub String);

/// The plan file `lua` runs, for messages ("the plan" if unknown).
pub fn plan_name(lua: &Lua) -> String {
    app_data::<PlanName>(lua).map_or_else(|| "the plan".to_owned(), |name| name.0.clone())
}

/// The first load of a plan, in what becomes its process VM: what the
/// process needs to know of it. The VM is returned with it, to be adopted
/// by the process shard.
/// `probe` says what the VM will serve, as far as is known (its role).
pub fn describe(ctx: &PlanContext, probe: &ShardInfo) -> Result<(Lua, PlanDescription), String> {
    let lua = new_vm(ctx, VmKind::Process).map_err(|e| clean(&e))?;
    module::bind(&lua, probe).map_err(|e| clean(&e))?;
    lua.set_app_data(crate::data::UsedFiles::default());
    run_plan_file(&lua, &ctx.path)?;
    let files = used_files(&lua).map_err(|e| clean(&e))?;
    lua.remove_app_data::<crate::data::UsedFiles>();
    let classes = classes::build(&lua).map_err(|e| format!("{}: {}", ctx.path.display(), clean(&e)))?;
    let outlines = classes.iter().map(ClassOutline::of).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    drop(classes);
    let options = declared_options(&lua)?;
    let thresholds = declared_thresholds(&lua)?;
    Ok((lua, PlanDescription { options, outlines, files, thresholds }))
}

/// A shard's VM: run the plan, build the user classes it registered, and
/// hook in its per-request listeners. Errors name the file and line
/// (`plan.lua:12: …`).
pub fn load_users_shard(ctx: &PlanContext, shard: &ShardInfo) -> Result<ShardPlan, String> {
    let lua = new_vm(ctx, VmKind::Users).map_err(|e| clean(&e))?;
    module::bind(&lua, shard).map_err(|e| clean(&e))?;
    run_plan_file(&lua, &ctx.path)?;
    let classes = classes::build(&lua).map_err(|e| format!("{}: {}", ctx.path.display(), clean(&e)))?;
    let fire = fire_function(&lua)?;
    let listening: Function = module::module(&lua).and_then(|m| m.get("_listening")).map_err(|e| clean(&e))?;
    // Per-sample and per-exception listeners cost a Lua call each, so they
    // are only hooked in when the plan has some.
    let wants = |event: &str| listening.call::<bool>(event).unwrap_or(false);
    let hooks = ShardHooks {
        request: wants("request").then(|| request_hook(&lua, &fire)),
        user_error: wants("user_error").then(|| user_error_hook(&lua, &fire)),
        clients: Some(client_maker_hook(&lua)),
        close: Some(closer(&lua)),
        ..ShardHooks::default()
    };
    Ok(ShardPlan { classes, hooks })
}

/// The process VM, serving `shard` (the process shard): the VM of the
/// plan's first load when it is on this thread, else a new one. Its hooks
/// are the plan's once-per-process listeners; `init` fires first.
pub fn load_process_part(ctx: &PlanContext, shard: &ShardInfo) -> Result<ShardPlan, String> {
    let lua = match process::adopt() {
        Some(lua) => {
            // Made before the command line set the VMs' memory limit.
            crate::memory_limit::apply(&lua).map_err(|e| clean(&e))?;
            lua.set_app_data(ctx.options.clone());
            module::bind(&lua, shard).map_err(|e| clean(&e))?;
            lua
        }
        None => {
            let lua = new_vm(ctx, VmKind::Process).map_err(|e| clean(&e))?;
            module::bind(&lua, shard).map_err(|e| clean(&e))?;
            run_plan_file(&lua, &ctx.path)?;
            lua
        }
    };
    module::module(&lua)
        .and_then(|m| m.get::<Function>("_check_shape"))
        .and_then(|check| check.call::<()>(()))
        .map_err(|e| clean(&e))?;
    let fire = fire_function(&lua)?;
    let hooks = ShardHooks {
        init: vec![init_hook(&lua, &fire)],
        test_start: vec![hook(&lua, &fire, "test_start")],
        test_stop: vec![hook(&lua, &fire, "test_stop")],
        quitting: vec![hook(&lua, &fire, "quitting"), quit_hook(&lua, &fire)],
        notice: Some(notice_hook(&lua, &fire)),
        // The process VM's own requests (a listener's or a background
        // coroutine's client): few, so always hooked in.
        request: Some(request_hook(&lua, &fire)),
        user_error: Some(user_error_hook(&lua, &fire)),
        clients: Some(client_maker_hook(&lua)),
        close: Some(closer(&lua)),
    };
    Ok(ShardPlan { classes: Vec::new(), hooks })
}

/// `quit(exit_code)`, after the `quitting` listeners (which may have
/// chosen the code with `swarmer.runner.process_exit_code`).
fn quit_hook(lua: &Lua, fire: &Function) -> ShardHook {
    let (lua, fire) = (lua.clone(), fire.clone());
    Rc::new(move || {
        let (lua, fire) = (lua.clone(), fire.clone());
        Box::pin(async move {
            let code = crate::vm::app_data::<ShardInfo>(&lua).map(|shard| shard.stats.read().exit_code());
            if let Some(code) = code {
                report(&lua, &fire_async(&lua, &fire, ("quit", code)).await, "quit");
            }
        })
    })
}

/// Keeps the shard's maker of clients outside users (`swarmer.http_client`).
fn client_maker_hook(lua: &Lua) -> Rc<dyn Fn(swarmer_engine::ClientMaker)> {
    let lua = lua.clone();
    Rc::new(move |maker| {
        lua.set_app_data(maker);
    })
}

/// See [`module::close`].
fn closer(lua: &Lua) -> ShardHook {
    let lua = lua.clone();
    Rc::new(move || {
        let lua = lua.clone();
        Box::pin(async move { module::close(&lua).await })
    })
}

fn fire_function(lua: &Lua) -> Result<Function, String> {
    module::module(lua).and_then(|m| m.get("_fire")).map_err(|e| clean(&e))
}

/// `init`: background coroutines the plan started at load begin, then the
/// init listeners run (they may wait). A `request` listener added by them
/// sees only this VM's requests: the plan is told to add it at its top level.
fn init_hook(lua: &Lua, fire: &Function) -> ShardHook {
    let (lua, fire) = (lua.clone(), fire.clone());
    Rc::new(move || {
        let (lua, fire) = (lua.clone(), fire.clone());
        Box::pin(async move {
            if let Err(e) = module::start_deferred(&lua) {
                tracing::error!("starting the plan's background coroutines failed: {}", clean(&e));
            }
            let count = |event: &str| {
                module::module(&lua)
                    .and_then(|m| m.get::<Function>("_listener_count"))
                    .and_then(|f| f.call::<usize>(event))
                    .unwrap_or(0)
            };
            let before = (count("request"), count("user_error"));
            report(&lua, &fire_async(&lua, &fire, ("init",)).await, "init");
            if (count("request"), count("user_error")) != before {
                tracing::warn!(
                    "an init listener added a request or user_error listener: it sees only the requests of \
                     listeners and background coroutines, not the users' (each shard has its own VM). Add it at \
                     the plan's top level to see every request."
                );
            }
        })
    })
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
                Notice::HeartbeatSent { client_id, timestamp } => {
                    ("heartbeat_sent", args(&lua, (client_id, timestamp)))
                }
                Notice::HeartbeatReceived { client_id, timestamp } => {
                    ("heartbeat_received", args(&lua, (client_id, timestamp)))
                }
                Notice::CpuWarning { cpu_percent } => ("cpu_warning", args(&lua, cpu_percent)),
                Notice::UsageMonitor { cpu_percent, rss_bytes } => {
                    ("usage_monitor", args(&lua, (cpu_percent, rss_bytes)))
                }
                Notice::Message(m) => {
                    // Handlers may wait (an HTTP call, a sleep).
                    let deliver = module::module(&lua).and_then(|m| m.get::<Function>("_deliver"));
                    let delivered = match deliver {
                        Ok(deliver) => call_async(&lua, &deliver, (m.kind.clone(), m.data, m.peer)).await,
                        Err(e) => Err(e),
                    };
                    match delivered {
                        Ok(Value::String(unhandled)) => tracing::warn!("{}", unhandled.to_string_lossy()),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!("the handler of {:?} messages failed: {}", m.kind, clean(&e));
                            plan_error(&lua);
                        }
                    }
                    return;
                }
            };
            if !listening(&lua, name) {
                return;
            }
            let mut call = mlua::MultiValue::new();
            call.push_back(mlua::Value::String(lua.create_string(name).expect("a short string")));
            call.extend(args);
            report(&lua, &fire_async(&lua, &fire, call).await, name);
        })
    })
}

/// Whether the plan has listeners for `event` (a heartbeat a second per
/// worker then costs no coroutine).
fn listening(lua: &Lua, event: &str) -> bool {
    let count = module::module(lua).and_then(|m| m.get::<Function>("_listener_count")?.call::<usize>(event));
    count.map_or(true, |n| n > 0)
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
            Ok(t) => report(&lua, &fire.call::<Table>(("request", t)), "request"),
            Err(e) => tracing::error!("request event: {}", clean(&e)),
        }
    })
}

/// Every exception in user code → `user_error(message, traceback)`.
fn user_error_hook(lua: &Lua, fire: &Function) -> UserErrorHook {
    let (lua, fire) = (lua.clone(), fire.clone());
    Rc::new(move |message: &str, traceback: &str| {
        report(&lua, &fire.call::<Table>(("user_error", message, traceback)), "user_error")
    })
}

/// A shard hook that fires the Lua event `name` (listeners may wait).
fn hook(lua: &Lua, fire: &Function, name: &'static str) -> ShardHook {
    let (lua, fire) = (lua.clone(), fire.clone());
    Rc::new(move || {
        let (lua, fire) = (lua.clone(), fire.clone());
        Box::pin(async move {
            let outcome = fire_async(&lua, &fire, (name,)).await;
            report(&lua, &outcome, name);
        })
    })
}

/// Fire an event in a coroutine of its own, so listeners may wait.
async fn fire_async(lua: &Lua, fire: &Function, args: impl mlua::IntoLuaMulti) -> mlua::Result<Table> {
    match call_async(lua, fire, args).await? {
        mlua::Value::Table(t) => Ok(t),
        _ => lua.create_table(),
    }
}

/// Call `function` in a coroutine of its own, doing what it waits for.
async fn call_async(lua: &Lua, function: &Function, args: impl mlua::IntoLuaMulti) -> mlua::Result<Value> {
    let mut thread = crate::raw::Coroutine::new(lua)?;
    thread.push_args(function.clone())?;
    let nargs = thread.push_args(args)?;
    let bridge = crate::module::bridge(lua)?;
    crate::driver::drive(&bridge, &mut thread, nargs, true, &Default::default()).await?.into_result()
}

/// Log the listeners of `event` that failed; each counts as an error of
/// the plan (the run then exits with 2).
fn report(lua: &Lua, outcome: &mlua::Result<Table>, event: &str) {
    match outcome {
        Ok(failed) => {
            for message in failed.clone().sequence_values::<String>().flatten() {
                tracing::error!("a {event} listener failed: {message}");
                plan_error(lua);
            }
        }
        Err(e) => {
            tracing::error!("firing {event} failed: {}", clean(e));
            plan_error(lua);
        }
    }
}

/// Count an error of the plan's own code outside users (see
/// `swarmer_engine::StatsStore::plan_errors`).
pub(crate) fn plan_error(lua: &Lua) {
    if let Some(shard) = crate::vm::app_data::<ShardInfo>(lua) {
        shard.report_plan_error();
    }
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
    /// The thresholds it declares (`swarmer.threshold`).
    pub thresholds: Vec<swarmer_engine::threshold::Threshold>,
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
    if let Some(used) = crate::vm::app_data::<crate::data::UsedFiles>(lua) {
        files.extend(used.0.borrow().iter().cloned());
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// The thresholds the plan in `lua` declared with `swarmer.threshold`; a
/// bad one names the plan's line.
fn declared_thresholds(lua: &Lua) -> Result<Vec<swarmer_engine::threshold::Threshold>, String> {
    let list: Table = module::module(lua).and_then(|m| m.get("_thresholds")).map_err(|e| clean(&e))?;
    let mut out = Vec::new();
    for spec in list.sequence_values::<Table>() {
        let spec = spec.map_err(|e| clean(&e))?;
        let expression: String = spec.get("expression").map_err(|e| clean(&e))?;
        let at: String = spec.get("where").map_err(|e| clean(&e))?;
        let threshold = swarmer_engine::threshold::Threshold::parse(&expression)
            .map_err(|e| format!("{at}: swarmer.threshold({expression:?}): {}", e.problem))?;
        out.push(threshold);
    }
    Ok(out)
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
            choices: match spec.get::<Option<Table>>("choices").map_err(|e| clean(&e))? {
                Some(list) => list.sequence_values::<String>().collect::<Result<_, _>>().map_err(|e| clean(&e))?,
                None => Vec::new(),
            },
        });
    }
    Ok(out)
}

fn run_plan_file(lua: &Lua, path: &Path) -> Result<(), String> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let display = path.display().to_string();
    crate::raw::reset_busy();
    lua.set_app_data(module::Loading);
    let ran = lua.load(source).set_name(format!("@{display}")).exec().map_err(|e| {
        let message = clean(&e);
        if crate::memory_limit::is_limit_error(&message) { crate::memory_limit::explain(&display) } else { message }
    });
    lua.remove_app_data::<module::Loading>();
    ran
}

/// The first, most useful line of a Lua error (the traceback is elsewhere).
pub(crate) fn clean(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => clean(cause),
        mlua::Error::MemoryError(_) => "not enough memory".to_owned(),
        other => other.to_string(),
    }
}
