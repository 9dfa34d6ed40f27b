//! Installs the `swarmer` module: the Lua prelude (`prelude.lua`) plus the
//! functions that wait, which are async Rust.

use std::rc::Rc;

use mlua::{Function, Lua, Table};
use swarmer_engine::{OptionValues, ShardInfo};

use crate::client::Clients;
use crate::driver::Bridge;
use crate::responses::Responses;

const PRELUDE: &str = include_str!("prelude.lua");

/// Make `swarmer` a global and `require("swarmer")`-able, for the shard
/// described by `shard` (or a probe VM that only inspects the plan).
pub fn install(lua: &Lua, shard: &ShardInfo, plan_dir: &std::path::Path, debug: Table) -> mlua::Result<()> {
    lua.set_app_data(shard.clone());
    lua.set_app_data(crate::data::PlanDir(plan_dir.to_path_buf()));
    let methods = crate::raw::request_methods(lua)?;
    let (request, sleep) = crate::raw::operation_codes();
    let module: Table = lua.load(PRELUDE).set_name("@swarmer").call((methods, request, sleep, debug))?;
    let responses = Responses::new(lua, module.get::<Table>("_RESPONSE")?)?;
    if !shard.probe {
        // A shard's VM lives on the shard's thread, where its users'
        // responses are read: numbered heads spare comparing header lines.
        swarmer_http::number_heads_on_this_thread();
    }
    // Out of the plan's reach: a `__gc` added to it would give every
    // response a finalizer.
    module.set("_RESPONSE", mlua::Value::Nil)?;
    lua.set_app_data(Rc::new(Bridge { clients: Clients::default(), responses }));
    module.set(
        "_option_value",
        lua.create_function(|lua, name: String| Ok(lua.app_data_ref::<OptionValues>().and_then(|v| v.get(&name))))?,
    )?;
    let runner: Table = module.get("runner")?;
    runner.set("shard", shard.index)?;
    runner.set("shards", shard.count)?;
    runner.set("role", shard.role.as_str())?;
    if let swarmer_engine::NodeRole::Worker(id) = &shard.role {
        runner.set("worker_id", id.as_str())?;
    }
    runner.set(
        "workers",
        lua.create_function(|lua, ()| Ok(lua.app_data_ref::<ShardInfo>().map(|s| s.workers()).unwrap_or_default()))?,
    )?;
    module.set(
        "_send_message",
        lua.create_function(|lua, (kind, data, to): (String, String, Option<String>)| {
            let shard = lua.app_data_ref::<ShardInfo>().ok_or_else(|| mlua::Error::runtime("no shard"))?;
            let message = swarmer_engine::ClusterMessage { kind, data, peer: to.unwrap_or_default() };
            shard.send_message(message).map_err(|e| mlua::Error::runtime(format!("send_message: {e}")))
        })?,
    )?;
    module.set("spawn", lua.create_function(spawn)?)?;
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
    module.set("stats", lua.create_function(stats)?)?;
    module.set(
        "quit",
        lua.create_function(|lua, ()| {
            if let Some(shard) = lua.app_data_ref::<ShardInfo>() {
                shard.request_stop_test();
            }
            Ok(())
        })?,
    )?;
    let started = std::time::Instant::now();
    module.set("_clock", lua.create_function(move |_, ()| Ok(started.elapsed().as_secs_f64()))?)?;
    lua.set_named_registry_value(REGISTRY_KEY, module.clone())?;
    lua.globals().set("swarmer", module.clone())?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("swarmer", module)?;
    Ok(())
}

/// This VM's users' clients and response bridge (see [`Bridge`]).
pub fn bridge(lua: &Lua) -> mlua::Result<Rc<Bridge>> {
    lua.app_data_ref::<Rc<Bridge>>()
        .map(|c| c.clone())
        .ok_or_else(|| mlua::Error::runtime("internal: the VM has no client list"))
}

/// `swarmer.spawn(fn)`: run `fn` as a background coroutine on this shard
/// (Locust's `gevent.spawn`). Errors inside are logged.
fn spawn(lua: &Lua, body: Function) -> mlua::Result<()> {
    let probe = lua.app_data_ref::<ShardInfo>().is_none_or(|s| s.probe);
    if probe {
        return Err(mlua::Error::runtime(format!(
            "{}swarmer.spawn: only available while a test runs (from an event listener, on_start or a task)",
            caller_location(lua)
        )));
    }
    let mut thread = crate::raw::Coroutine::new(lua)?;
    thread.push_args(body)?;
    let bridge = bridge(lua)?;
    tokio::task::spawn_local(async move {
        let ended = crate::driver::drive(&bridge, &mut thread, 0, false, &Default::default()).await;
        if let Err(e) = ended.and_then(|ended| ended.into_result()) {
            tracing::error!("background coroutine failed: {}", crate::vm::clean(&e));
        }
    });
    Ok(())
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

/// `swarmer.stats()`: live totals of the whole test (all shards), as
/// Locust's `environment.runner.stats.total` and `runner.user_count`.
fn stats(lua: &Lua, (): ()) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let Some(shard) = lua.app_data_ref::<ShardInfo>() else { return Ok(t) };
    // Copy what is needed and let go of the store before touching Lua: a
    // table write may run a finalizer that calls back in here.
    let now = swarmer_engine::unix_now();
    let (state, numbers): (_, [(&str, mlua::Value); 8]) = {
        let store = shard.stats.read();
        let total = store.stats.total();
        let (rps, fps) = total.current_rates(now);
        let numbers = [
            ("user_count", mlua::Value::Integer(store.user_count as i64)),
            ("num_requests", mlua::Value::Integer(total.num_requests as i64)),
            ("num_failures", mlua::Value::Integer(total.num_failures as i64)),
            ("fail_ratio", mlua::Value::Number(total.fail_ratio())),
            ("current_rps", mlua::Value::Number(rps)),
            ("current_fail_per_sec", mlua::Value::Number(fps)),
            ("total_rps", mlua::Value::Number(total.total_rps(store.stats.run_seconds()))),
            ("avg_response_time", mlua::Value::Number(total.avg_response_time_ms())),
        ];
        (store.state, numbers)
    };
    drop(shard);
    for (key, value) in numbers {
        t.set(key, value)?;
    }
    t.set("state", state.as_str())?;
    Ok(t)
}

const REGISTRY_KEY: &str = "swarmer.module";

/// The installed module (from the registry: a plan may shadow the global).
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(REGISTRY_KEY)
}
