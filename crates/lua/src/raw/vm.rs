//! A new VM: the safe standard libraries, with the parts of the debug
//! library the prelude needs handed over and the library itself, native
//! libraries and binary chunks out of every plan's reach.

use std::cell::Cell;
use std::rc::Rc;

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
    lua.set_app_data(MemoryLimit::default());
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
    super::wanted::check_layout(&lua);
    Ok((lua, kept))
}

/// Whether a VM has a memory limit, shared by the VM's app data and its
/// [`super::Coroutine`]s. Without one, an allocation that fails aborts
/// the process (mlua's allocator) instead of raising, so building values
/// cannot raise and needs no protected call; with one it can, so values
/// are built protected. Only [`set_memory_limit`] sets a limit (clippy's
/// `disallowed-methods` refuses mlua's own setter everywhere else), and it
/// raises this flag first. A VM not made by [`new_lua`] counts as limited.
#[derive(Clone)]
pub(super) struct MemoryLimit(pub(super) Rc<Cell<bool>>);

impl Default for MemoryLimit {
    fn default() -> Self {
        Self(Rc::new(Cell::new(false)))
    }
}

impl MemoryLimit {
    /// The flag of `lua`'s VM (read while building values, never by a
    /// finalizer).
    #[allow(clippy::disallowed_methods)]
    pub(super) fn of(lua: &Lua) -> Rc<Cell<bool>> {
        match lua.app_data_ref::<MemoryLimit>() {
            Some(limit) => limit.0.clone(),
            None => Rc::new(Cell::new(true)),
        }
    }
}

/// Limit the memory `lua`'s VM may use to `bytes` (0: no limit); returns
/// the previous limit. Past the limit, allocations raise Lua's memory
/// error. The flag that makes value building protected is raised before
/// a limit is set and lowered only after it is lifted
/// (`crate::memory_limit` gives each VM the process's limit).
#[allow(clippy::disallowed_methods)]
pub fn set_memory_limit(lua: &Lua, bytes: usize) -> mlua::Result<usize> {
    let flag = match lua.app_data_ref::<MemoryLimit>() {
        Some(limit) => limit.0.clone(),
        None => {
            let limit = MemoryLimit(Rc::new(Cell::new(true)));
            lua.set_app_data(limit.clone());
            limit.0
        }
    };
    flag.set(true);
    let previous = lua.set_memory_limit(bytes)?;
    flag.set(bytes > 0);
    Ok(previous)
}
