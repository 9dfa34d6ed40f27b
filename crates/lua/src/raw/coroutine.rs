//! A coroutine the driver runs, and a view of the values it yields.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::ptr;
use std::rc::Rc;

use mlua::{IntoLuaMulti, Lua, Thread, Value, ffi};

use super::hook;
use super::vm::MemoryLimit;

/// A coroutine of a VM and its raw state. It holds the VM and the thread,
/// so the raw state is alive for as long as this is.
pub struct Coroutine {
    pub(super) lua: Lua,
    _thread: Thread,
    pub(super) state: *mut ffi::lua_State,
    /// Which VM it belongs to (see [`super::Slot`]).
    pub(super) vm: *const c_void,
    /// Whether its VM has a memory limit (see [`super::vm::MemoryLimit`]).
    pub(super) limited: Rc<Cell<bool>>,
    /// Known idle with an empty stack: new, or emptied by `finish_*` after
    /// its last resume (no Lua code runs between that and the pool's
    /// check, see [`Coroutine::is_reusable`]).
    idle: bool,
}

/// How a resume ended.
pub enum Resumed {
    /// The function returned this many values.
    Returned(c_int),
    /// The coroutine yielded this many values.
    Yielded(c_int),
    /// The count hook yielded it (no values): it runs without waiting.
    Paused,
    /// It raised an error (see [`Coroutine::finish_raised`]).
    Raised,
    /// Not resumed: its stack does not hold the values to resume it with.
    Refused,
}

/// A Lua type, as `lua_type` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    None,
    Nil,
    Boolean,
    LightUserdata,
    Number,
    String,
    Table,
    Function,
    Userdata,
    Thread,
}

impl Kind {
    fn of(code: c_int) -> Self {
        match code {
            ffi::LUA_TNIL => Kind::Nil,
            ffi::LUA_TBOOLEAN => Kind::Boolean,
            ffi::LUA_TLIGHTUSERDATA => Kind::LightUserdata,
            ffi::LUA_TNUMBER => Kind::Number,
            ffi::LUA_TSTRING => Kind::String,
            ffi::LUA_TTABLE => Kind::Table,
            ffi::LUA_TFUNCTION => Kind::Function,
            ffi::LUA_TUSERDATA => Kind::Userdata,
            ffi::LUA_TTHREAD => Kind::Thread,
            _ => Kind::None,
        }
    }

    /// Lua's name of the type, as in its own error messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "no value",
            Kind::Nil => "nil",
            Kind::Boolean => "boolean",
            Kind::LightUserdata | Kind::Userdata => "userdata",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Table => "table",
            Kind::Function => "function",
            Kind::Thread => "thread",
        }
    }
}

/// The identity of the VM whose state `s` is: its main thread.
///
/// # Safety
/// `s` is a state of a live VM with a free stack slot.
pub(super) unsafe fn vm_of_state(s: *mut ffi::lua_State) -> *const c_void {
    // SAFETY: per the contract above; the registry's main-thread slot
    // always holds the main thread, and one slot is pushed and popped.
    unsafe {
        ffi::lua_rawgeti(s, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_MAINTHREAD);
        let main = ffi::lua_tothread(s, -1);
        ffi::lua_settop(s, -2);
        main as *const c_void
    }
}

/// The identity of `lua`'s VM.
pub(super) fn vm_of(lua: &Lua) -> mlua::Result<*const c_void> {
    let mut vm = ptr::null();
    // SAFETY: a protected call; the closure only reads the registry.
    unsafe { lua.exec_raw::<()>((), |s| vm = vm_of_state(s))? };
    Ok(vm)
}

impl Coroutine {
    /// A new coroutine with an empty stack: push its function and
    /// arguments, then resume it.
    pub fn new(lua: &Lua) -> mlua::Result<Self> {
        let (mut state, mut vm) = (ptr::null_mut(), ptr::null());
        // SAFETY: a protected call (`lua_newthread` may raise on memory);
        // the closure holds only references; the thread is left as the
        // call's result, which mlua takes a reference to.
        let thread = unsafe {
            lua.exec_raw::<Thread>((), |s| {
                vm = vm_of_state(s);
                state = ffi::lua_newthread(s);
            })?
        };
        if state.is_null() || vm.is_null() {
            return Err(mlua::Error::runtime("internal: a coroutine without a state"));
        }
        if hook::preempted_on_demand() {
            // SAFETY: the new coroutine is alive (held by `thread`) and
            // has not run; the watchdog sets the hook when it is needed.
            unsafe { ffi::lua_sethook(state, None, 0, 0) };
        }
        Ok(Self { lua: lua.clone(), _thread: thread, state, vm, limited: MemoryLimit::of(lua), idle: true })
    }

    /// The VM this coroutine belongs to.
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    #[cfg(test)]
    pub fn thread(&self) -> &Thread {
        &self._thread
    }

    /// Whether it can run something new: it returned (or is new) and its
    /// stack is empty, rather than died, is suspended or is running.
    ///
    /// Known from the last `finish_*` (which checked, or knew, that no call
    /// is active), without asking Lua again: only Lua code could change
    /// that since, and none runs between a `finish_*` and this check (the
    /// driver returns at once, and the pool checks as the loan ends).
    /// Values pushed since are seen by the stack's height.
    pub fn is_reusable(&self) -> bool {
        // SAFETY: the state is alive (see the type); this only reads.
        self.idle && unsafe { ffi::lua_gettop(self.state) } == 0
    }

    /// Status OK with no active call: neither suspended, nor running,
    /// nor dead.
    unsafe fn is_idle(&self) -> bool {
        let l = self.state;
        // SAFETY: the state is alive (see the type); `lua_getstack` only
        // reads, into a zeroed `lua_Debug` it may fill.
        unsafe {
            let mut ar = MaybeUninit::<ffi::lua_Debug>::zeroed();
            ffi::lua_status(l) == ffi::LUA_OK && ffi::lua_getstack(l, 0, ar.as_mut_ptr()) == 0
        }
    }

    /// Push the registry values `ids` (`RegistryKey::id`s): a function and
    /// its arguments, to run.
    pub fn push_registered(&self, ids: &[c_int]) -> mlua::Result<()> {
        let l = self.state;
        let n = c_int::try_from(ids.len()).map_err(|_| mlua::Error::StackError)?;
        // SAFETY: the state is alive; `lua_checkstack` makes room without
        // raising; reading the registry neither allocates nor raises.
        unsafe {
            if ffi::lua_checkstack(l, n) == 0 {
                return Err(mlua::Error::StackError);
            }
            for &id in ids {
                ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, ffi::lua_Integer::from(id));
            }
        }
        Ok(())
    }

    /// Push the tag that resumes a request whose caller wants no result
    /// (see `super::wanted`): its continuation then returns nothing.
    /// Returns how many values were pushed (1).
    pub fn push_discarded(&self) -> mlua::Result<c_int> {
        // SAFETY: the state is alive; `lua_checkstack` makes room without
        // running a collector step; a light userdata allocates nothing.
        unsafe {
            if ffi::lua_checkstack(self.state, 1) == 0 {
                return Err(mlua::Error::StackError);
            }
            ffi::lua_pushlightuserdata(self.state, super::requests::discarded());
        }
        Ok(1)
    }

    /// Push `args` (converted by mlua on the VM's running state, then
    /// moved across). Returns how many values were pushed.
    pub fn push_args(&self, args: impl IntoLuaMulti) -> mlua::Result<c_int> {
        let l = self.state;
        let mut moved = None;
        // SAFETY: a protected call whose closure holds only references;
        // `lua_xmove` only copies, after `lua_checkstack` made room.
        unsafe {
            self.lua.exec_raw::<()>(args, |s| {
                let n = ffi::lua_gettop(s);
                if ffi::lua_checkstack(l, n) != 0 {
                    ffi::lua_xmove(s, l, n);
                    moved = Some(n);
                }
            })?;
        }
        moved.ok_or(mlua::Error::StackError)
    }

    /// Resume it with the top `nargs` values of its stack (and, when it
    /// has not started, the function below them).
    pub fn resume(&mut self, nargs: c_int) -> Resumed {
        let l = self.state;
        // SAFETY: the state is alive; Lua requires the values to be on
        // the stack, which is checked first; `lua_resume` itself refuses
        // (with an error status) a coroutine that is dead or running.
        unsafe {
            let needed = nargs.saturating_add(c_int::from(ffi::lua_status(l) == ffi::LUA_OK));
            if nargs < 0 || ffi::lua_gettop(l) < needed {
                return Resumed::Refused;
            }
            self.idle = false;
            let mut nres: c_int = 0;
            let (status, paused) = hook::driving(l, || ffi::lua_resume(l, ptr::null_mut(), nargs, &mut nres));
            match status {
                ffi::LUA_OK => Resumed::Returned(nres),
                ffi::LUA_YIELD if paused => Resumed::Paused,
                ffi::LUA_YIELD => Resumed::Yielded(nres),
                _ => Resumed::Raised,
            }
        }
    }

    /// After [`Resumed::Returned`]: the first of the `nres` values (when
    /// `want` it), then an empty stack, so it can be reused.
    pub fn finish_returned(&mut self, nres: c_int, want: bool) -> mlua::Result<Value> {
        let l = self.state;
        // SAFETY: the state is alive; the index read is checked against
        // the top; the stack is emptied only when no call is active: known
        // when nothing ran since the resume returned (Lua's protocol: a
        // coroutine that returned has no call), else asked.
        unsafe {
            let ran_lua = want && nres > 0;
            let value = if ran_lua {
                let top = ffi::lua_gettop(l);
                let first = top - nres.clamp(0, top) + 1;
                // Reading the value may run a finalizer, which may resume it.
                if first <= top { self.value_at(first) } else { Ok(Value::Nil) }
            } else {
                Ok(Value::Nil)
            };
            self.idle = !ran_lua || self.is_idle();
            if self.idle {
                ffi::lua_settop(l, 0);
            }
            value
        }
    }

    /// After [`Resumed::Raised`]: the error object and the traceback at
    /// the point it was raised. A dead coroutine is then closed (its
    /// pending `<close>` variables closed, as `xpcall` would have on the
    /// way out) and emptied, so it can be reused.
    pub fn finish_raised(&mut self) -> (mlua::Result<Value>, String) {
        let l = self.state;
        // SAFETY: the state is alive; the error is read at the checked
        // top; the traceback is built on the running state (protected)
        // from the coroutine's debug information; only a dead coroutine
        // (error status) is closed, as `coroutine.close` would.
        unsafe {
            let top = ffi::lua_gettop(l);
            let error = if top >= 1 { self.value_at(top) } else { Ok(Value::Nil) };
            let traceback = self.lua.exec_raw::<mlua::String>((), |s| ffi::luaL_traceback(s, l, ptr::null(), 0));
            let status = ffi::lua_status(l);
            if status != ffi::LUA_OK && status != ffi::LUA_YIELD {
                // Its pending `__close` handlers run now, outside any
                // resume the watchdog sees: with the always-on hook, so an
                // endless one is stopped (the next resume takes it off).
                hook::hook_always(l);
                ffi::lua_closethread(l, ptr::null_mut());
            }
            self.idle = self.is_idle();
            if self.idle {
                ffi::lua_settop(l, 0);
            }
            (error, traceback.map(|t| t.to_string_lossy()).unwrap_or_default())
        }
    }

    /// After [`Resumed::Yielded`]: the `nres` yielded values.
    pub fn yielded(&mut self, nres: c_int) -> Yielded<'_> {
        // SAFETY: the state is alive; this only reads the top.
        let top = unsafe { ffi::lua_gettop(self.state) };
        let n = nres.clamp(0, top);
        Yielded { coroutine: self, base: top - n + 1, n, top, stale: false }
    }

    /// The value at `idx` (1 ≤ idx ≤ top) as an mlua value.
    ///
    /// # Safety
    /// None beyond the type's: the index is checked.
    pub(super) unsafe fn value_at(&self, idx: c_int) -> mlua::Result<Value> {
        let l = self.state;
        // SAFETY: a copy of the value is pushed (no allocation) and moved
        // to the running state inside a protected call, where mlua takes
        // a reference to it.
        unsafe {
            if idx < 1 || idx > ffi::lua_gettop(l) || ffi::lua_checkstack(l, 1) == 0 {
                return Err(mlua::Error::StackError);
            }
            let before = ffi::lua_gettop(l);
            ffi::lua_pushvalue(l, idx);
            let value = self.lua.exec_raw::<Value>((), |s| ffi::lua_xmove(l, s, 1));
            // Not moved (the call failed before the closure ran): drop the copy.
            if ffi::lua_gettop(l) == before + 1 {
                ffi::lua_settop(l, before);
            }
            value
        }
    }
}

/// The values a coroutine yielded, read in place. Indexes count from 0
/// (the first yielded value). It holds the coroutine mutably, so nothing
/// else resumes it meanwhile; but Lua code that [`Yielded::value`] runs (a
/// finalizer) may resume or close it, and then nothing more is read or
/// popped.
pub struct Yielded<'c> {
    coroutine: &'c mut Coroutine,
    base: c_int,
    n: c_int,
    top: c_int,
    /// Set when the stack changed during [`Yielded::value`] (only Lua code
    /// can change it, and only that method runs any).
    stale: bool,
}

impl Yielded<'_> {
    pub fn len(&self) -> c_int {
        self.n
    }

    /// The stack index of value `i`, if the stack is unchanged.
    fn index(&self, i: c_int) -> Option<c_int> {
        (i >= 0 && i < self.n && !self.stale).then_some(self.base + i)
    }

    pub fn kind(&self, i: c_int) -> Kind {
        match self.index(i) {
            // SAFETY: a valid index of a live state.
            Some(idx) => Kind::of(unsafe { ffi::lua_type(self.coroutine.state, idx) }),
            None => Kind::None,
        }
    }

    /// Value `i` if it is an integer, or a number or string convertible
    /// to one without loss (converted in place: nothing is allocated).
    pub fn integer(&self, i: c_int) -> Option<i64> {
        let idx = self.index(i)?;
        let mut is_integer = 0;
        // SAFETY: a valid index; `lua_tointegerx` converts without
        // allocating or raising.
        let n = unsafe { ffi::lua_tointegerx(self.coroutine.state, idx, &mut is_integer) };
        (is_integer != 0).then_some(n)
    }

    /// Value `i` if it is a number.
    pub fn number(&self, i: c_int) -> Option<f64> {
        let idx = self.index(i).filter(|_| self.kind(i) == Kind::Number)?;
        // SAFETY: a valid index holding a number.
        Some(unsafe { ffi::lua_tonumberx(self.coroutine.state, idx, ptr::null_mut()) })
    }

    /// A copy of value `i` if it is a string (a number is not converted:
    /// that would allocate on the suspended coroutine).
    pub fn string(&self, i: c_int) -> Option<Vec<u8>> {
        let idx = self.index(i).filter(|_| self.kind(i) == Kind::String)?;
        let mut len = 0;
        // SAFETY: a valid index holding a string, which `lua_tolstring`
        // returns in place; it is copied before anything else runs.
        unsafe {
            let data = ffi::lua_tolstring(self.coroutine.state, idx, &mut len);
            (!data.is_null()).then(|| std::slice::from_raw_parts(data as *const u8, len).to_vec())
        }
    }

    /// Value `i` if it is a light userdata: its pointer.
    pub(super) fn light_userdata(&self, i: c_int) -> Option<*mut c_void> {
        let idx = self.index(i).filter(|_| self.kind(i) == Kind::LightUserdata)?;
        // SAFETY: a valid index holding a light userdata.
        Some(unsafe { ffi::lua_touserdata(self.coroutine.state, idx) })
    }

    /// Value `i` as an mlua value (for tables). Runs Lua code (a
    /// collector step may run finalizers), hence `&mut`.
    pub fn value(&mut self, i: c_int) -> mlua::Result<Value> {
        let idx = self.index(i).ok_or(mlua::Error::StackError)?;
        // SAFETY: a checked index; then reading the top.
        unsafe {
            let value = self.coroutine.value_at(idx);
            self.stale |= ffi::lua_gettop(self.coroutine.state) != self.top;
            value
        }
    }

    /// Pop the yielded values (the coroutine can then be resumed with new
    /// ones), unless its stack changed under the driver.
    pub fn pop(self) {
        // SAFETY: popping exactly the values the resume left on top of an
        // unchanged stack, as Lua's protocol asks of a resumer.
        unsafe {
            if !self.stale && ffi::lua_gettop(self.coroutine.state) == self.top {
                ffi::lua_settop(self.coroutine.state, self.base - 1);
            }
        }
    }
}
