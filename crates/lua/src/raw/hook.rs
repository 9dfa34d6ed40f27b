//! The count hook: what makes Lua code interruptible.
//!
//! A task that runs without waiting (an endless loop, or arithmetic in a
//! user without wait time) would keep its shard's thread, so the shard's
//! other users, its timers and its stop commands would never run. The hook
//! yields the coroutine being driven, and stops code that cannot yield
//! after [`BUSY_LIMIT`] of its runs, [`HOOK_EVERY`] instructions apart.
//!
//! The main state and a plan's own coroutines always have the hook. The
//! coroutines the driver resumes get it only when a resume has run for a
//! while (`super::preempt`), where the platform allows; elsewhere they
//! keep the main state's.

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
/// inherit it), and replace `coroutine.create` and `coroutine.wrap` with
/// versions whose coroutines have it too.
pub fn install_hook(lua: &Lua) -> mlua::Result<()> {
    // SAFETY: a protected call on the VM's state whose closure holds
    // nothing; setting a hook cannot fail.
    unsafe { lua.exec_raw::<()>((), |s| ffi::lua_sethook(s, Some(count_hook), ffi::LUA_MASKCOUNT, HOOK_EVERY))? };
    let coroutine: mlua::Table = lua.globals().get("coroutine")?;
    let wrap: mlua::Function = coroutine.get("wrap")?;
    // SAFETY: both follow Lua's protocol for C functions (below).
    unsafe {
        coroutine.set("create", lua.create_c_function(hooked_create)?)?;
        // The original `wrap` is the new one's first upvalue.
        let hooked = lua.exec_raw::<mlua::Function>(wrap, |s| ffi::lua_pushcclosure(s, hooked_wrap, 1))?;
        coroutine.set("wrap", hooked)?;
    }
    Ok(())
}

/// Whether coroutines the driver resumes on this thread may go without
/// the hook (the watchdog sets it when needed); see [`Coroutine::new`].
///
/// [`Coroutine::new`]: super::Coroutine::new
pub(super) fn preempted_on_demand() -> bool {
    super::preempt::available()
}

/// `coroutine.create(f)`, with the count hook on the new coroutine.
unsafe extern "C-unwind" fn hooked_create(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls this on the running `l`; `luaL_checktype` raises
    // (a C function may) before anything is pushed; the new thread and
    // the function fit in the 20 free slots of a C call; `lua_xmove`
    // moves the copy of the function onto the new thread's empty stack.
    unsafe {
        ffi::luaL_checktype(l, 1, ffi::LUA_TFUNCTION);
        let thread = ffi::lua_newthread(l);
        ffi::lua_sethook(thread, Some(count_hook), ffi::LUA_MASKCOUNT, HOOK_EVERY);
        ffi::lua_pushvalue(l, 1);
        ffi::lua_xmove(l, thread, 1);
        1
    }
}

/// `coroutine.wrap(f)`: Lua's own (the first upvalue), then the count
/// hook on the coroutine the returned function resumes (its first upvalue).
unsafe extern "C-unwind" fn hooked_wrap(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls this on the running `l`; the call to Lua's `wrap`
    // may raise as this function may; its result is a C closure whose
    // first upvalue is the coroutine (lcorolib.c), checked to be a thread
    // before the hook is set; at most three slots are used.
    unsafe {
        ffi::lua_settop(l, 1);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
        ffi::lua_insert(l, 1);
        ffi::lua_call(l, 1, 1);
        if !ffi::lua_getupvalue(l, 1, 1).is_null() {
            let thread = ffi::lua_tothread(l, -1);
            if !thread.is_null() {
                ffi::lua_sethook(thread, Some(count_hook), ffi::LUA_MASKCOUNT, HOOK_EVERY);
            }
            ffi::lua_settop(l, 1);
        }
        1
    }
}

/// Set the always-on count hook on `l`, for code about to run on it
/// outside a resume (a dead coroutine's `__close` handlers), and count
/// its runs from zero.
///
/// # Safety
/// `l` is a live state of a VM.
pub(super) unsafe fn hook_always(l: *mut ffi::lua_State) {
    BUSY.set(0);
    // SAFETY: per the contract; setting a hook cannot fail.
    unsafe { ffi::lua_sethook(l, Some(count_hook), ffi::LUA_MASKCOUNT, HOOK_EVERY) };
}

/// The coroutine this thread's driver is resuming, if any (read by the
/// signal handler of `super::preempt`).
pub(super) fn driven() -> *mut ffi::lua_State {
    DRIVEN.get()
}

/// Forget earlier hook runs (before code that may legitimately run long
/// on the main state starts afresh, such as the plan file).
pub fn reset_busy() {
    BUSY.set(0);
}

/// Run `resume` with `l` as the driven coroutine; returns its result and
/// whether the hook yielded `l` (rather than `l` yielding by itself).
///
/// # Safety
/// `l` is a live state of a VM.
pub(super) unsafe fn driving<R>(l: *mut ffi::lua_State, resume: impl FnOnce() -> R) -> (R, bool) {
    // SAFETY: per the contract. Where the watchdog preempts, a hook the
    // signal set (during an earlier resume, or after it ended) comes off
    // before this one: it would pause it at once.
    unsafe {
        if ffi::lua_gethookmask(l) != 0 && super::preempt::available() {
            ffi::lua_sethook(l, None, 0, 0);
        }
    }
    let previous = DRIVEN.replace(l);
    super::preempt::mark_resume();
    let result = resume();
    super::preempt::mark_resume();
    DRIVEN.set(previous);
    BUSY.set(0);
    (result, PAUSED.replace(false))
}

/// The count hook. It holds nothing with a destructor: `luaL_error`
/// unwinds it with `longjmp`.
pub(super) unsafe extern "C-unwind" fn count_hook(l: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    // SAFETY: Lua calls a hook on the running thread `l`; a hook may yield
    // with no values where `lua_isyieldable` allows, and may raise.
    unsafe {
        if DRIVEN.get() == l && ffi::lua_isyieldable(l) != 0 {
            PAUSED.set(true);
            ffi::lua_yield(l, 0);
            return;
        }
        if ffi::lua_gethookcount(l) != HOOK_EVERY {
            // Set by the watchdog to fire at once, on code that cannot
            // yield: from now on, count as the always-on hook does.
            ffi::lua_sethook(l, Some(count_hook), ffi::LUA_MASKCOUNT, HOOK_EVERY);
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
