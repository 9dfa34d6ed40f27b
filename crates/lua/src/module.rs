//! Installs the `swarmer` module: the Lua prelude (`prelude.lua`) plus the
//! functions that wait, which are async Rust.

use std::rc::Rc;

use mlua::{Function, Lua, Table};
use swarmer_engine::{OptionValues, ShardInfo};

use crate::client::Clients;
use crate::driver::Bridge;
use crate::responses::Responses;

const PRELUDE: &str = include_str!("prelude.lua");

/// Make `swarmer` a global and `require("swarmer")`-able in a new VM of
/// the given kind, for a plan in `plan_dir`. The VM is told which process
/// and shard it serves later ([`bind`]).
pub fn install(lua: &Lua, kind: VmKind, plan_dir: &std::path::Path, debug: Table) -> mlua::Result<()> {
    lua.set_app_data(kind);
    lua.set_app_data(Background::default());
    if kind == VmKind::Process {
        lua.set_app_data(DeferredSpawns::default());
    }
    lua.set_app_data(crate::data::PlanDir(plan_dir.to_path_buf()));
    let methods = crate::raw::request_methods(lua)?;
    let (request, sleep, wait) = crate::raw::operation_codes();
    let module: Table = lua.load(PRELUDE).set_name("@swarmer").call((methods, request, sleep, wait, debug))?;
    let responses = Responses::new(lua, module.get::<Table>("_RESPONSE")?)?;
    // Out of the plan's reach: a `__gc` added to it would give every
    // response a finalizer.
    module.set("_RESPONSE", mlua::Value::Nil)?;
    lua.set_app_data(Rc::new(Bridge { clients: Clients::default(), responses, pending: Default::default() }));
    module.set(
        "_option_value",
        lua.create_function(|lua, name: String| {
            Ok(crate::vm::app_data::<OptionValues>(lua).and_then(|v| v.get(&name)))
        })?,
    )?;
    let runner: Table = module.get("runner")?;
    runner.set(
        "workers",
        lua.create_function(|lua, ()| {
            Ok(crate::vm::app_data::<ShardInfo>(lua).map(|s| s.workers()).unwrap_or_default())
        })?,
    )?;
    module.set(
        "_send_message",
        lua.create_function(|lua, (kind, data, to): (String, String, Option<String>)| {
            let shard = crate::vm::app_data::<ShardInfo>(lua).ok_or_else(|| mlua::Error::runtime("no shard"))?;
            let message = swarmer_engine::ClusterMessage { kind, data, peer: to.unwrap_or_default() };
            shard.send_message(message).map_err(|e| mlua::Error::runtime(format!("send_message: {e}")))
        })?,
    )?;
    lua.globals().set("print", lua.create_function(print_line)?)?;
    module.set(
        "_warn",
        lua.create_function(|_, text: mlua::String| {
            tracing::warn!("{}", text.to_string_lossy());
            Ok(())
        })?,
    )?;
    module.set("spawn", lua.create_function(spawn)?)?;
    module.set("_new_client", lua.create_function(new_client)?)?;
    // A finalizer's (an http_client that is garbage): finalizers also run
    // while the VM closes, when nothing may reach the `Lua` any more (not
    // even its app data), so the bridge is held here, weakly.
    let bridge_of_vm = Rc::downgrade(&bridge(lua)?);
    module.set(
        "_drop_client",
        lua.create_function(move |_, id: i64| {
            let Some(bridge) = bridge_of_vm.upgrade() else { return Ok(()) };
            if let Some(core) = bridge.clients.find(id) {
                core.finish_pending();
            }
            bridge.clients.remove(id);
            Ok(())
        })?,
    )?;
    module.set(
        "_fire_request",
        lua.create_function(|lua, (id, t): (i64, Table)| crate::client::fire_request(&bridge(lua)?.clients, id, &t))?,
    )?;
    module.set(
        "_verdict",
        lua.create_function(|lua, (id, seq, failure): (i64, u64, Option<String>)| {
            crate::client::verdict(&bridge(lua)?.clients, id, seq, failure)
        })?,
    )?;
    crate::data::install(lua, &module)?;
    crate::shared::install(lua, &module)?;
    crate::grpc::install(lua, &module)?;
    crate::grpc_stream::install(lua, &module)?;
    crate::realtime::install(lua, &module)?;
    module.set("stats", lua.create_function(stats)?)?;
    module.set(
        "quit",
        lua.create_function(|lua, ()| {
            if let Some(shard) = crate::vm::app_data::<ShardInfo>(lua) {
                shard.request_stop_test();
            }
            Ok(())
        })?,
    )?;
    module.set("_exit_code", lua.create_function(exit_code)?)?;
    module.set("_set_load", lua.create_function(crate::load_request::set_load)?)?;
    let started = std::time::Instant::now();
    module.set("_clock", lua.create_function(move |_, ()| Ok(started.elapsed().as_secs_f64()))?)?;
    lua.set_named_registry_value(REGISTRY_KEY, module.clone())?;
    lua.globals().set("swarmer", module.clone())?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("swarmer", module)?;
    Ok(())
}

/// Lua's `print`, writing its whole line at once: the VMs of one process
/// print from several threads, and the standard one writes piece by piece
/// (two users' lines would mix on one line).
fn print_line(lua: &Lua, args: mlua::MultiValue) -> mlua::Result<()> {
    use std::io::Write;
    let mut line = Vec::new();
    for (i, value) in args.into_iter().enumerate() {
        if i > 0 {
            line.push(b'\t');
        }
        match &value {
            mlua::Value::String(s) => line.extend_from_slice(&s.as_bytes()),
            mlua::Value::Integer(_) | mlua::Value::Number(_) => match lua.coerce_string(value.clone())? {
                Some(s) => line.extend_from_slice(&s.as_bytes()),
                None => line.extend_from_slice(value.to_string()?.as_bytes()),
            },
            _ => line.extend_from_slice(value.to_string()?.as_bytes()),
        }
    }
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    // A closed stdout is not the plan's error (Lua's own print ignores it).
    let _ = out.write_all(&line).and_then(|()| out.flush());
    Ok(())
}

/// Tell a VM which process and shard it serves (a probe: none yet):
/// `swarmer.runner`'s fields, and what `swarmer.stats()`,
/// `swarmer.send_message` and `swarmer.quit()` reach.
pub fn bind(lua: &Lua, shard: &ShardInfo) -> mlua::Result<()> {
    lua.set_app_data(shard.clone());
    let runner: Table = module(lua)?.get("runner")?;
    runner.set("shard", shard.index)?;
    runner.set("shards", shard.count)?;
    runner.set("process", shard.process)?;
    runner.set("role", shard.role.as_str())?;
    if let swarmer_engine::NodeRole::Worker(id) = &shard.role {
        runner.set("worker_id", id.as_str())?;
    }
    if !shard.probe {
        // The VM's responses are read on this thread: numbered heads spare
        // comparing header lines.
        swarmer_http::number_heads_on_this_thread();
    }
    Ok(())
}

/// What a VM hosts: the users of one shard, or the plan's once-per-process
/// code (see `crate::process`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmKind {
    /// The process VM: listeners, message handlers, background coroutines.
    Process,
    /// A shard's VM: its users.
    Users,
}

/// Set while the plan file runs in a VM.
pub struct Loading;

/// Background coroutines a process VM's plan started while it was first
/// loaded, before the VM served a process: started when it does.
#[derive(Default)]
pub struct DeferredSpawns(pub std::cell::RefCell<Vec<Function>>);

/// Start the background coroutines deferred in `lua` (see [`DeferredSpawns`]).
pub fn start_deferred(lua: &Lua) -> mlua::Result<()> {
    let deferred = crate::vm::app_data::<DeferredSpawns>(lua).map(|d| d.0.take()).unwrap_or_default();
    for body in deferred {
        start_background(lua, body)?;
    }
    Ok(())
}

/// This VM's users' clients and response bridge (see [`Bridge`]).
pub fn bridge(lua: &Lua) -> mlua::Result<Rc<Bridge>> {
    crate::vm::app_data::<Rc<Bridge>>(lua)
        .map(|c| c.clone())
        .ok_or_else(|| mlua::Error::runtime("internal: the VM has no client list"))
}

/// `swarmer.spawn(fn)`: run `fn` as a background coroutine (Locust's
/// `gevent.spawn`). Called while the plan loads, it runs once per process:
/// in the process VM (when that VM starts serving the process), not in the
/// shards' VMs. Called later (from a listener, `on_start` or a task), it
/// runs in the VM it was called in. Errors inside are logged.
fn spawn(lua: &Lua, body: Function) -> mlua::Result<()> {
    let kind = crate::vm::app_data::<VmKind>(lua).map(|k| *k);
    let loading = crate::vm::app_data::<Loading>(lua).is_some();
    let serving = crate::vm::app_data::<ShardInfo>(lua).is_some_and(|s| !s.probe);
    match kind {
        Some(VmKind::Users) if loading => {
            tracing::debug!("swarmer.spawn at load time: the process VM runs it");
            Ok(())
        }
        Some(VmKind::Process) if !serving => {
            let deferred = crate::vm::app_data::<DeferredSpawns>(lua);
            deferred.ok_or_else(|| mlua::Error::runtime("internal: no deferred spawns"))?.0.borrow_mut().push(body);
            Ok(())
        }
        Some(_) if serving => start_background(lua, body),
        _ => Err(mlua::Error::runtime(format!(
            "{}swarmer.spawn: only available while a test runs (from an event listener, on_start or a task)",
            caller_location(lua)
        ))),
    }
}

/// `swarmer.runner.process_exit_code`: read with no arguments, set with a
/// code, cleared with `(nil, true)`. Outside a run there is none to set.
fn exit_code(lua: &Lua, (code, clear): (Option<i32>, Option<bool>)) -> mlua::Result<Option<i32>> {
    let Some(shard) = crate::vm::app_data::<ShardInfo>(lua) else {
        if code.is_some() {
            return Err(mlua::Error::runtime(
                "swarmer.runner.process_exit_code: only settable while the plan runs (in a listener, say)",
            ));
        }
        return Ok(None);
    };
    if code.is_some() || clear == Some(true) {
        shard.set_process_exit_code(code);
    }
    Ok(shard.stats.read().process_exit_code)
}

/// `swarmer.http_client{ host =, record = }`: a client outside users (its
/// number in this VM's client list), or `nil, why not`.
fn new_client(lua: &Lua, (host, record): (Option<String>, bool)) -> mlua::Result<(Option<i64>, Option<String>)> {
    let Some(maker) = crate::vm::app_data::<swarmer_engine::ClientMaker>(lua).map(|m| m.clone()) else {
        let why = "only available while the plan runs (in a listener, a message handler, a background coroutine or \
                   a task), not while it loads";
        return Ok((None, Some(why.into())));
    };
    let Some(client) = maker.client(host, record) else {
        let why = "no host yet: give one (swarmer.http_client{ host = \"http://...\" }) or start the test with --host";
        return Ok((None, Some(why.into())));
    };
    Ok((Some(bridge(lua)?.clients.add(client).0), None))
}

fn start_background(lua: &Lua, body: Function) -> mlua::Result<()> {
    let mut thread = crate::raw::Coroutine::new(lua)?;
    thread.push_args(body)?;
    let bridge = bridge(lua)?;
    let vm = lua.clone();
    let task = tokio::task::spawn_local(async move {
        let ended = crate::driver::drive(&bridge, &mut thread, 0, false, &Default::default()).await;
        if let Err(e) = ended.and_then(|ended| ended.into_result()) {
            tracing::error!("background coroutine failed: {}", crate::vm::clean(&e));
            crate::vm::plan_error(&vm);
        }
    });
    if let Some(background) = crate::vm::app_data::<Background>(lua) {
        let mut tasks = background.0.borrow_mut();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }
    Ok(())
}

/// The background coroutines a VM started, to stop them when it closes.
#[derive(Default)]
pub struct Background(std::cell::RefCell<Vec<tokio::task::AbortHandle>>);

/// Close a VM whose shard has ended, while it is still alive: stop its
/// background coroutines, let go of everything the plan reached (globals,
/// loaded modules, the `swarmer` module) and collect, so that finalizers
/// run now. Left to the VM's end, a finalizer that calls into Swarmer
/// would find the VM half gone.
pub async fn close(lua: &Lua) {
    let stopping = crate::vm::app_data::<Background>(lua).map(|b| b.0.take()).unwrap_or_default();
    for task in &stopping {
        task.abort();
    }
    // An aborted task lets go of its coroutine when the scheduler next
    // sees it: give it the turns it needs before collecting.
    for _ in 0..100 {
        if stopping.iter().all(tokio::task::AbortHandle::is_finished) {
            break;
        }
        tokio::task::yield_now().await;
    }
    let released = (|| -> mlua::Result<()> {
        lua.named_registry_value::<Table>("_LOADED")?.clear()?;
        lua.globals().clear()?;
        lua.unset_named_registry_value(REGISTRY_KEY)?;
        lua.gc_collect()?;
        lua.gc_collect()
    })();
    if let Err(e) = released {
        tracing::debug!("closing a plan VM: {}", crate::vm::clean(&e));
    }
}

/// `plan.lua:12: ` for the Lua code that called the running Rust function.
pub fn caller_location(lua: &Lua) -> String {
    lua.inspect_stack(1, |debug| {
        let source = debug.source().short_src.map(|s| s.into_owned()).unwrap_or_default();
        match debug.current_line() {
            Some(line) => format!("{source}:{line}: "),
            None => String::new(),
        }
    })
    .unwrap_or_default()
}

/// Percentiles every statistics table of `swarmer.stats` carries (Locust's
/// table columns), by quantile.
const PERCENTILES: [f64; 11] = [0.5, 0.66, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0];

/// `swarmer.stats([name [, method]])`: live statistics of the whole test
/// (all shards; on a master, all workers), as Locust's
/// `environment.runner.stats`: the total without arguments, else the entry
/// of that name (and method; without one, the only entry of that name),
/// or nil if there is none. Every table has the counts, rates and response
/// times (`percentiles[0.95]` and more); the total also has the runner's
/// `state`, `user_count` and `target_user_count`. An error names the
/// methods when several entries have the name.
fn stats(lua: &Lua, (name, method): (Option<String>, Option<String>)) -> mlua::Result<mlua::Value> {
    use mlua::Value;
    let Some(shard) = crate::vm::app_data::<ShardInfo>(lua) else { return lua.create_table().map(Value::Table) };
    // Copy what is needed and let go of the store before touching Lua: a
    // table write may run a finalizer that calls back in here.
    let now = swarmer_engine::unix_now();
    let is_total = name.is_none();
    let copied = {
        let store = shard.stats.read();
        let entry = match &name {
            None => Ok(Some(store.stats.total())),
            Some(name) => find_entry(&store.stats, name, method.as_deref()),
        };
        entry.map(|found| {
            found.map(|entry| {
                let (rps, fps) = entry.current_rates(now);
                let run_seconds = store.stats.run_seconds();
                let numbers: [(&str, Value); 11] = [
                    ("num_requests", Value::Integer(entry.num_requests as i64)),
                    ("num_failures", Value::Integer(entry.num_failures as i64)),
                    ("fail_ratio", Value::Number(entry.fail_ratio())),
                    ("current_rps", Value::Number(rps)),
                    ("current_fail_per_sec", Value::Number(fps)),
                    ("total_rps", Value::Number(entry.total_rps(run_seconds))),
                    ("avg_response_time", Value::Number(entry.avg_response_time_ms())),
                    ("min_response_time", entry.min_response_time_ms().map_or(Value::Nil, Value::Number)),
                    ("max_response_time", Value::Number(entry.max_response_time_ms())),
                    ("median_response_time", Value::Number(entry.median_response_time_ms())),
                    ("avg_content_length", Value::Number(entry.avg_content_length())),
                ];
                let percentiles = PERCENTILES.map(|q| (q, entry.percentile_ms(q)));
                let runner = (store.state, store.user_count, store.target_user_count);
                (numbers, percentiles, runner, entry.method.clone(), entry.name.clone())
            })
        })
    };
    drop(shard);
    let Some((numbers, percentiles, (state, users, target), method, name)) =
        copied.map_err(|e| mlua::Error::runtime(format!("{}swarmer.stats: {e}", caller_location(lua))))?
    else {
        return Ok(Value::Nil);
    };
    let t = lua.create_table()?;
    for (key, value) in numbers {
        t.set(key, value)?;
    }
    let by_quantile = lua.create_table()?;
    for (q, ms) in percentiles {
        by_quantile.set(q, ms)?;
    }
    t.set("percentiles", by_quantile)?;
    t.set("method", method)?;
    t.set("name", name)?;
    if is_total {
        t.set("state", state.as_str())?;
        t.set("user_count", users)?;
        t.set("target_user_count", target)?;
    }
    Ok(Value::Table(t))
}

/// The entry named `name` (of `method`, or the only one of that name).
fn find_entry<'a>(
    stats: &'a swarmer_engine::RequestStats,
    name: &str,
    method: Option<&str>,
) -> Result<Option<&'a swarmer_engine::StatsEntry>, String> {
    if let Some(method) = method {
        return Ok(stats.entry(method, name));
    }
    let matching: Vec<&swarmer_engine::StatsEntry> = stats.entries().filter(|e| e.name == name).collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        several => {
            let methods: Vec<&str> = several.iter().map(|e| e.method.as_str()).collect();
            Err(format!("several entries are named {name:?} ({}): give the method too", methods.join(", ")))
        }
    }
}

const REGISTRY_KEY: &str = "swarmer.module";

/// The installed module (from the registry: a plan may shadow the global).
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(REGISTRY_KEY)
}
