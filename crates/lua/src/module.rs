//! Installs the `swarmer` module: the Lua prelude (`prelude.lua`) plus the
//! functions that wait, which are async Rust.

use std::time::Duration;

use mlua::{Lua, Table};

const PRELUDE: &str = include_str!("prelude.lua");

/// Make `swarmer` a global and `require("swarmer")`-able.
pub fn install(lua: &Lua, _plan_dir: &str) -> mlua::Result<()> {
    let module: Table = lua.load(PRELUDE).set_name("@swarmer").eval()?;
    module.set(
        "sleep",
        lua.create_async_function(|_, seconds: f64| async move {
            if !(seconds.is_finite() && seconds >= 0.0) {
                return Err(mlua::Error::runtime(format!("sleep: expected non-negative seconds, got {seconds}")));
            }
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok(())
        })?,
    )?;
    // The prelude captured what it needs from `debug`; plans do not get it.
    lua.globals().set("debug", mlua::Value::Nil)?;
    lua.set_named_registry_value(REGISTRY_KEY, module.clone())?;
    lua.globals().set("swarmer", module.clone())?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("swarmer", module)?;
    loaded.set("debug", mlua::Value::Nil)?;
    Ok(())
}

const REGISTRY_KEY: &str = "swarmer.module";

/// The installed module (from the registry: a plan may shadow the global).
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(REGISTRY_KEY)
}
