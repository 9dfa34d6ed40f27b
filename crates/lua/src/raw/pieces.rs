//! Building values for a suspended coroutine.
//!
//! Code outside this module describes what to push as [`Piece`]s; the
//! interpreter here pushes them on the VM's running state inside one
//! protected call and moves the results onto the coroutine. An allocation
//! that fails under a memory limit raises a Lua error, which unwinds the
//! interpreter's frames with `longjmp`: they hold only references and
//! plain values, so nothing is skipped that needed dropping.

use std::ffi::{c_char, c_int, c_void};

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

impl Piece<'_> {
    /// The stack slots pushing it takes at most, if every slot it names
    /// belongs to `vm` and it is not nested too deeply.
    fn room(&self, vm: *const c_void, nesting: usize) -> Option<c_int> {
        if nesting > MAX_NESTING {
            return None;
        }
        let items =
            |items: &[Piece]| items.iter().try_fold(0, |most, item| Some(most.max(item.room(vm, nesting + 1)?)));
        match self {
            Piece::Nil | Piece::Integer(_) | Piece::Number(_) | Piece::Bytes(_) => Some(1),
            Piece::Kept(_, slot) => (slot.vm == vm).then_some(2),
            Piece::Slot(slot) => (slot.vm == vm).then_some(1),
            Piece::Table(list, keep) => {
                let ours = keep.is_none_or(|slot| slot.vm == vm);
                Some(1 + items(list)?.max(1)).filter(|_| ours)
            }
            Piece::Userdata(list, meta) => Some(1 + items(list)?.max(1)).filter(|_| meta.vm == vm),
        }
    }
}

impl Coroutine {
    /// Push `pieces` onto this coroutine (which must not be running; see
    /// the module doc). Returns how many values were pushed.
    pub fn build(&self, pieces: &[Piece]) -> mlua::Result<c_int> {
        let refused = || mlua::Error::runtime("internal: a value to build names another VM or nests too deeply");
        let n = c_int::try_from(pieces.len()).map_err(|_| mlua::Error::StackError)?;
        let room = pieces.iter().try_fold(0, |most: c_int, piece| Some(most.max(piece.room(self.vm, 0)?)));
        let room = room.ok_or_else(refused)?;
        let l = self.state;
        let (mut built, mut moved) = (true, false);
        // SAFETY: a protected call on the VM's running state (never this
        // suspended coroutine); the closure and the interpreter hold only
        // references and plain values (see the module doc); room is made
        // before pushing; `lua_xmove` only copies, after `lua_checkstack`
        // made room on the coroutine.
        unsafe {
            self.lua.exec_raw::<()>((), |s| {
                if ffi::lua_checkstack(s, n + room) == 0 {
                    built = false;
                    return;
                }
                for piece in pieces {
                    if !push(s, piece) {
                        built = false;
                        return;
                    }
                }
                if ffi::lua_checkstack(l, n) != 0 {
                    ffi::lua_xmove(s, l, n);
                    moved = true;
                }
            })?;
        }
        if !built {
            return Err(mlua::Error::runtime("internal: a registry slot holds a value of the wrong type"));
        }
        if moved { Ok(n) } else { Err(mlua::Error::StackError) }
    }
}

/// Push `piece` on `s`. False when a metatable slot does not hold a
/// table (then what was pushed is left for the caller's stack guard).
///
/// # Safety
/// `s` is running (inside a protected call) with the room [`Piece::room`]
/// computed, and every slot named belongs to its VM.
unsafe fn push(s: *mut ffi::lua_State, piece: &Piece) -> bool {
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
                    if !push(s, item) {
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
                    if !push(s, value) {
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
        lua.set_memory_limit(lua.used_memory() + 256 * 1024).unwrap();
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
        lua.set_memory_limit(0).unwrap();
        coroutine.push_args(identity).unwrap();
        let n = coroutine.build(&[Piece::Bytes(&big)]).unwrap();
        let value = run(&mut coroutine, n).unwrap();
        assert_eq!(value.as_string().map(|s| s.as_bytes().len()), Some(big.len()));
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
