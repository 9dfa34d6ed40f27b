//! The count hook: what makes Lua code interruptible.
//!
//! A task that runs without waiting (an endless loop, or arithmetic in a
//! user without wait time) would keep its shard's thread, so the shard's
//! other users, its timers and its stop commands would never run. The hook
//! yields the coroutine being driven every [`HOOK_EVERY`] instructions, and
//! stops code that cannot yield after [`BUSY_LIMIT`] of its runs.

use std::cell::Cell;
use std::ffi::c_int;
use std::ptr;

use mlua::{Lua, ffi};

/// How often the count hook runs, in Lua instructions: often enough that a
/// task without I/O gives the shard's other users a turn within tens of
/// microseconds, rarely enough to cost nothing measurable per request.
const HOOK_EVERY: c_int = 1000;

/// Hook runs in a row without a chance to yield (Lua code on the main
/// state, in a metamethod, a `table.sort` comparator or a plan's own
/// coroutine) after which that code is stopped with an error: about a
/// billion instructions, several seconds of a shard that runs nothing else.
const BUSY_LIMIT: u32 = 1_000_000;

thread_local! {
    /// The coroutine this thread's driver is resuming (the hook yields
    /// only it: a plan's own coroutines must never see a yield they did
    /// not make).
    static DRIVEN: Cell<*mut ffi::lua_State> = const { Cell::new(ptr::null_mut()) };
    /// Set by the hook when it yielded the driven coroutine.
    static PAUSED: Cell<bool> = const { Cell::new(false) };
    /// Hook runs since the driver last got control back.
    static BUSY: Cell<u32> = const { Cell::new(0) };
}

/// Install the count hook on a new VM's main state (coroutines made later
/// inherit it).
pub fn install_hook(lua: &Lua) -> mlua::Result<()> {
    // SAFETY: a protected call on the VM's state whose closure holds
    // nothing; setting a hook cannot fail.
    unsafe { lua.exec_raw::<()>((), |s| ffi::lua_sethook(s, Some(count_hook), ffi::LUA_MASKCOUNT, HOOK_EVERY)) }
}

/// Forget earlier hook runs (before code that may legitimately run long
/// on the main state starts afresh, such as the plan file).
pub fn reset_busy() {
    BUSY.set(0);
}

/// Run `resume` with `l` as the driven coroutine; returns its result and
/// whether the hook yielded `l` (rather than `l` yielding by itself).
pub(super) fn driving<R>(l: *mut ffi::lua_State, resume: impl FnOnce() -> R) -> (R, bool) {
    let previous = DRIVEN.replace(l);
    let result = resume();
    DRIVEN.set(previous);
    BUSY.set(0);
    (result, PAUSED.replace(false))
}

/// The count hook. It holds nothing with a destructor: `luaL_error`
/// unwinds it with `longjmp`.
unsafe extern "C-unwind" fn count_hook(l: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    // SAFETY: Lua calls a hook on the running thread `l`; a hook may yield
    // with no values where `lua_isyieldable` allows, and may raise.
    unsafe {
        if DRIVEN.get() == l && ffi::lua_isyieldable(l) != 0 {
            PAUSED.set(true);
            ffi::lua_yield(l, 0);
            return;
        }
        let busy = BUSY.get() + 1;
        if busy < BUSY_LIMIT {
            BUSY.set(busy);
            return;
        }
        BUSY.set(0);
        ffi::luaL_error(
            l,
            c"Lua code ran about a billion instructions without a chance to wait (an endless loop?); Swarmer stopped it so the shard can go on"
                .as_ptr(),
        );
    }
}
