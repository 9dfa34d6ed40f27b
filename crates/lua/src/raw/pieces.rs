//! Building values for a suspended coroutine.
//!
//! Code outside this module describes what to push as [`Piece`]s; the
//! interpreter here pushes them on the VM's running state inside one
//! protected call and moves the results onto the coroutine. An allocation
//! that fails under a memory limit raises a Lua error, which unwinds the
//! interpreter's frames with `longjmp`: they hold only references and
//! plain values, so nothing is skipped that needed dropping.

use std::ffi::{c_char, c_int, c_void};
use std::mem::MaybeUninit;

use mlua::{IntoLua, Lua, RegistryKey, Value, ffi};

use super::Coroutine;
use super::coroutine::vm_of;

/// A registry slot holding a table or a string, which [`Piece::Slot`]
/// pushes and [`Piece::Kept`] and [`Piece::Table`] may replace. It is
/// tied to the VM it was made in; pieces naming it are refused elsewhere.
pub struct Slot {
    key: RegistryKey,
    vm: *const c_void,
}

impl Slot {
    pub fn new(lua: &Lua, value: impl IntoLua) -> mlua::Result<Self> {
        let value = value.into_lua(lua)?;
        if !matches!(value, Value::Table(_) | Value::String(_)) {
            return Err(mlua::Error::runtime("internal: a slot holds a table or a string"));
        }
        let key = lua.create_registry_value(value)?;
        if key.id() <= 0 {
            return Err(mlua::Error::runtime("internal: a slot without a registry index"));
        }
        Ok(Self { key, vm: vm_of(lua)? })
    }

    fn index(&self) -> ffi::lua_Integer {
        ffi::lua_Integer::from(self.key.id())
    }
}

/// A value to build.
#[derive(Clone, Copy)]
pub enum Piece<'a> {
    Nil,
    Integer(i64),
    Number(f64),
    Bytes(&'a [u8]),
    /// A new string, also stored in the slot.
    Kept(&'a [u8], &'a Slot),
    /// The value in the slot.
    Slot(&'a Slot),
    /// A sequence of the items, stored in the slot too if one is given.
    Table(&'a [Piece<'a>], Option<&'a Slot>),
    /// A userdata without payload whose user values are the items (nil
    /// ones left unset), with the table in the slot as its metatable.
    Userdata(&'a [Piece<'a>], &'a Slot),
}

/// Deeper descriptions are refused (ours are three levels deep).
const MAX_NESTING: usize = 8;

/// Stack slots pushing a piece takes beyond the pieces before it: each
/// of its levels (0 to [`MAX_NESTING`]) holds one value (its table or
/// userdata), and the deepest pushes at most two more (an item and a copy
/// to keep).
const ROOM: c_int = MAX_NESTING as c_int + 3;

/// One build, as the protected call sees it (through a light userdata).
struct Build<'p, 'a> {
    pieces: &'p [Piece<'a>],
    /// The VM every slot named must belong to.
    vm: *const c_void,
    /// The coroutine the values go to.
    to: *mut ffi::lua_State,
    built: bool,
    moved: bool,
}

impl Coroutine {
    /// Push `pieces` onto this coroutine (which must not be running; see
    /// the module doc). Returns how many values were pushed.
    pub fn build(&self, pieces: &[Piece]) -> mlua::Result<c_int> {
        let n = c_int::try_from(pieces.len()).map_err(|_| mlua::Error::StackError)?;
        let mut build = Build { pieces, vm: self.vm, to: self.state, built: true, moved: false };
        let main = self.vm as *mut ffi::lua_State;
        // SAFETY: `main` is this VM's main thread, alive while `self.lua`
        // is. When it runs nothing (no active call), the build runs there:
        // directly when the VM has no memory limit (nothing it does can
        // raise, see the module doc), else in a protected call of our own
        // (`run_build` follows Lua's protocol for C functions). When Lua
        // code is running (and called back into Rust), inside mlua's
        // protected call on the running state. Never on this suspended
        // coroutine, and the frames an error unwinds hold no destructor.
        unsafe {
            let mut ar = MaybeUninit::<ffi::lua_Debug>::zeroed();
            if ffi::lua_getstack(main, 0, ar.as_mut_ptr()) == 0 {
                if self.limited.get() {
                    protected_build(main, &mut build)?;
                } else {
                    let top = ffi::lua_gettop(main);
                    build_on(main, &mut build);
                    ffi::lua_settop(main, top);
                }
            } else {
                self.lua.exec_raw::<()>((), |s| build_on(s, &mut build))?;
            }
        }
        if !build.built {
            return Err(mlua::Error::runtime(
                "internal: no stack room, a registry slot of another VM or of the wrong type, or pieces nested too deeply",
            ));
        }
        if build.moved { Ok(n) } else { Err(mlua::Error::StackError) }
    }
}

/// Run `build` in a protected call on `main`, an idle main thread, and
/// leave its stack as it was.
///
/// # Safety
/// `main` is a live main thread with no active call.
unsafe fn protected_build(main: *mut ffi::lua_State, build: &mut Build) -> mlua::Result<()> {
    // SAFETY: per the contract above: two slots are made before pushing the
    // function and its argument, `lua_pcall` catches what the build raises,
    // and the stack is set back to its old top afterwards.
    unsafe {
        let top = ffi::lua_gettop(main);
        if ffi::lua_checkstack(main, 2) == 0 {
            return Err(mlua::Error::StackError);
        }
        ffi::lua_pushcfunction(main, run_build);
        ffi::lua_pushlightuserdata(main, build as *mut Build as *mut c_void);
        let status = ffi::lua_pcall(main, 1, 0, 0);
        let outcome = match status {
            ffi::LUA_OK => Ok(()),
            ffi::LUA_ERRMEM => Err(mlua::Error::MemoryError("not enough memory".into())),
            _ => {
                // Only a string is read: converting a number would allocate,
                // unprotected.
                let mut len = 0;
                let text = if ffi::lua_type(main, -1) == ffi::LUA_TSTRING {
                    ffi::lua_tolstring(main, -1, &mut len)
                } else {
                    std::ptr::null()
                };
                let message = if text.is_null() {
                    "an error while building a value".into()
                } else {
                    String::from_utf8_lossy(std::slice::from_raw_parts(text as *const u8, len)).into_owned()
                };
                Err(mlua::Error::runtime(message))
            }
        };
        ffi::lua_settop(main, top);
        outcome
    }
}

/// The C function [`protected_build`] calls: its argument is the build.
unsafe extern "C-unwind" fn run_build(s: *mut ffi::lua_State) -> c_int {
    // SAFETY: the light userdata is the `Build` that `protected_build`
    // passed, borrowed for this call only.
    unsafe {
        let build = &mut *(ffi::lua_touserdata(s, 1) as *mut Build);
        ffi::lua_settop(s, 0);
        build_on(s, build);
    }
    0
}

/// Push the pieces on `s` and move them onto the coroutine.
///
/// # Safety
/// `s` is a state of the coroutine's VM, not the coroutine: running inside
/// a protected call, or idle when the VM has no memory limit.
unsafe fn build_on(s: *mut ffi::lua_State, build: &mut Build) {
    // SAFETY: per the contract above: room is made on `s` before pushing,
    // and on the coroutine before `lua_xmove` copies the values across.
    unsafe {
        let n = build.pieces.len() as c_int;
        if ffi::lua_checkstack(s, n + ROOM) == 0 {
            build.built = false;
            return;
        }
        for piece in build.pieces {
            if !push(s, piece, build.vm, 0) {
                build.built = false;
                return;
            }
        }
        if ffi::lua_checkstack(build.to, n) != 0 {
            ffi::lua_xmove(s, build.to, n);
            build.moved = true;
        }
    }
}

/// Push `piece`, at depth `nesting`, on `s`. False when it names a slot
/// of another VM than `vm`, nests deeper than [`MAX_NESTING`], or a
/// metatable slot does not hold a table (then what was pushed is left for
/// the caller's stack guard).
///
/// # Safety
/// `s` is a state of the VM `vm`, which [`build_on`] may push on, with
/// [`ROOM`] free slots.
unsafe fn push(s: *mut ffi::lua_State, piece: &Piece, vm: *const c_void, nesting: usize) -> bool {
    let fits = nesting <= MAX_NESTING
        && match piece {
            Piece::Nil | Piece::Integer(_) | Piece::Number(_) | Piece::Bytes(_) => true,
            Piece::Kept(_, slot) | Piece::Slot(slot) | Piece::Userdata(_, slot) => slot.vm == vm,
            Piece::Table(_, keep) => keep.is_none_or(|slot| slot.vm == vm),
        };
    if !fits {
        return false;
    }
    // SAFETY: per the contract above; each nesting level uses one slot and
    // the deepest two more, within ROOM (the depth is checked above);
    // every slot is this VM's (checked above); `lua_setmetatable` gets a
    // table (checked), the others get the types they are given here.
    unsafe {
        match *piece {
            Piece::Nil => ffi::lua_pushnil(s),
            Piece::Integer(n) => ffi::lua_pushinteger(s, n),
            Piece::Number(x) => ffi::lua_pushnumber(s, x),
            Piece::Bytes(bytes) => push_bytes(s, bytes),
            Piece::Kept(bytes, slot) => {
                push_bytes(s, bytes);
                ffi::lua_pushvalue(s, -1);
                ffi::lua_rawseti(s, ffi::LUA_REGISTRYINDEX, slot.index());
            }
            Piece::Slot(slot) => {
                ffi::lua_rawgeti(s, ffi::LUA_REGISTRYINDEX, slot.index());
            }
            Piece::Table(items, keep) => {
                ffi::lua_createtable(s, c_int::try_from(items.len()).unwrap_or(0), 0);
                for (i, item) in (1..).zip(items) {
                    if !push(s, item, vm, nesting + 1) {
                        return false;
                    }
                    ffi::lua_rawseti(s, -2, i);
                }
                if let Some(slot) = keep {
                    ffi::lua_pushvalue(s, -1);
                    ffi::lua_rawseti(s, ffi::LUA_REGISTRYINDEX, slot.index());
                }
            }
            Piece::Userdata(values, meta) => {
                let Ok(count) = c_int::try_from(values.len()) else { return false };
                ffi::lua_newuserdatauv(s, 0, count);
                for (i, value) in (1..).zip(values) {
                    if matches!(value, Piece::Nil) {
                        continue;
                    }
                    if !push(s, value, vm, nesting + 1) {
                        return false;
                    }
                    ffi::lua_setiuservalue(s, -2, i);
                }
                if ffi::lua_rawgeti(s, ffi::LUA_REGISTRYINDEX, meta.index()) != ffi::LUA_TTABLE {
                    return false;
                }
                ffi::lua_setmetatable(s, -2);
            }
        }
        true
    }
}

/// Push a string with `bytes`.
///
/// # Safety
/// `s` is running with a free slot.
unsafe fn push_bytes(s: *mut ffi::lua_State, bytes: &[u8]) {
    // SAFETY: per the contract above; Lua copies the bytes.
    unsafe {
        ffi::lua_pushlstring(s, bytes.as_ptr() as *const c_char, bytes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{Resumed, new_lua};

    /// Resume `coroutine` (its function and `nargs` arguments pushed) and
    /// return what it returned, or the error it raised as text.
    fn run(coroutine: &mut Coroutine, nargs: c_int) -> Result<Value, String> {
        match coroutine.resume(nargs) {
            Resumed::Returned(n) => coroutine.finish_returned(n, true).map_err(|e| e.to_string()),
            Resumed::Raised => {
                let (error, _) = coroutine.finish_raised();
                Err(error.map(|e| crate::driver::error_message(&e)).unwrap_or_else(|e| e.to_string()))
            }
            _ => Err("yielded".into()),
        }
    }

    #[test]
    fn allocation_failures_under_a_memory_limit_are_errors_and_the_vm_goes_on() {
        let (lua, _) = new_lua().unwrap();
        let identity: mlua::Function = lua.load("return function(...) return ... end").eval().unwrap();
        let mut coroutine = Coroutine::new(&lua).unwrap();
        crate::raw::set_memory_limit(&lua, lua.used_memory() + 256 * 1024).unwrap();
        // Building a value larger than the limit allows fails cleanly.
        let big = vec![b'x'; 4 << 20];
        let error = coroutine.build(&[Piece::Bytes(&big)]).unwrap_err();
        assert!(error.to_string().contains("memory"), "{error}");
        // So does Lua code that allocates without bound, in a coroutine.
        let hungry: mlua::Function =
            lua.load("return function() local t = {} for i = 1, 1e9 do t[i] = {} end end").eval().unwrap();
        coroutine.push_args(hungry).unwrap();
        let raised = run(&mut coroutine, 0).unwrap_err();
        assert!(raised.contains("not enough memory"), "{raised}");
        // The coroutine was closed and emptied; with the limit lifted the
        // same coroutine and VM work again.
        assert!(coroutine.is_reusable());
        crate::raw::set_memory_limit(&lua, 0).unwrap();
        coroutine.push_args(identity).unwrap();
        let n = coroutine.build(&[Piece::Bytes(&big)]).unwrap();
        let value = run(&mut coroutine, n).unwrap();
        assert_eq!(value.as_string().map(|s| s.as_bytes().len()), Some(big.len()));
    }

    #[test]
    fn values_are_built_from_inside_a_lua_call_too() {
        // Lua code running on the main state calls back into Rust, which
        // builds for a coroutine: the main state is busy, so the build runs
        // in mlua's protected call on the running state instead.
        let (lua, _) = new_lua().unwrap();
        let identity: mlua::Function = lua.load("return function(...) return ... end").eval().unwrap();
        let built = lua
            .create_function(move |lua, ()| {
                let mut coroutine = Coroutine::new(lua)?;
                coroutine.push_args(identity.clone())?;
                let n = coroutine.build(&[Piece::Bytes(b"from a callback")])?;
                run(&mut coroutine, n).map_err(mlua::Error::runtime)
            })
            .unwrap();
        lua.globals().set("built", built).unwrap();
        let value: String = lua.load("return (built())").eval().unwrap();
        assert_eq!(value, "from a callback");
    }

    #[test]
    fn pieces_naming_a_slot_of_another_vm_are_refused() {
        let (lua, _) = new_lua().unwrap();
        let (other, _) = new_lua().unwrap();
        let foreign = Slot::new(&other, other.create_table().unwrap()).unwrap();
        let coroutine = Coroutine::new(&lua).unwrap();
        assert!(coroutine.build(&[Piece::Slot(&foreign)]).is_err());
        let items = [Piece::Integer(1)];
        assert!(coroutine.build(&[Piece::Table(&items, Some(&foreign))]).is_err());
        // A metatable slot that holds a string is refused, not used.
        let string_slot = Slot::new(&lua, "not a table").unwrap();
        assert!(coroutine.build(&[Piece::Userdata(&items, &string_slot)]).is_err());
        assert!(coroutine.is_reusable(), "nothing was left on its stack");
    }
}
