//! A new VM: the safe standard libraries, with the parts of the debug
//! library the prelude needs handed over and the library itself, native
//! libraries and binary chunks out of every plan's reach.

use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};

/// The debug functions the prelude is given (and no plan code is).
const KEPT_DEBUG: [&str; 5] = ["getinfo", "traceback", "getuservalue", "setuservalue", "getmetatable"];

/// A VM for a plan, and a table of the debug functions the prelude needs
/// ([`KEPT_DEBUG`]). When this returns, no Lua code has run that could
/// reach `debug` (its globals and `package.loaded` no longer have it),
/// `package.loadlib` and the C searchers are gone, and `load`, `loadfile`
/// and `dofile` accept text chunks only (Lua does not verify precompiled
/// bytecode, and a crafted binary chunk can corrupt memory).
pub fn new_lua() -> mlua::Result<(Lua, Table)> {
    // SAFETY: mlua calls the debug library unsafe because it reaches past
    // Lua's own rules (the registry, any value's metatable, any function's
    // locals and upvalues, mlua's internal userdata); it is loaded only to
    // take out the introspection and user-value accessors below, which
    // only the prelude gets, and removed before this returns, before any
    // code of a plan can run.
    let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL_SAFE | StdLib::DEBUG, LuaOptions::default()) };
    let globals = lua.globals();
    let debug: Table = globals.get("debug")?;
    let kept = lua.create_table()?;
    for name in KEPT_DEBUG {
        kept.set(name, debug.get::<Function>(name)?)?;
    }
    globals.set("debug", Value::Nil)?;
    let package: Table = globals.get("package")?;
    package.get::<Table>("loaded")?.set("debug", Value::Nil)?;
    package.set("cpath", "")?;
    package.set("loadlib", Value::Nil)?;
    // Only the preload and Lua-file searchers: no C libraries.
    let searchers: Table = package.get("searchers")?;
    for i in (3..=searchers.raw_len()).rev() {
        searchers.raw_remove(i)?;
    }
    lua.load(
        "local load, loadfile = load, loadfile\n\
         _G.load = function(chunk, name, _, env) return load(chunk, name, 't', env) end\n\
         _G.loadfile = function(file, _, env) return loadfile(file, 't', env) end\n\
         _G.dofile = function(file) return assert(_G.loadfile(file))() end",
    )
    .set_name("=swarmer")
    .exec()?;
    Ok((lua, kept))
}
