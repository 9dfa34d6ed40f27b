//! How a response reaches Lua.
//!
//! The driver resumes a request's coroutine with a userdata without
//! payload whose user values are: 1 status code, 2 body, 3 headers as
//! `name: value` lines, 4 elapsed seconds, 5 final URL, 6 error, and for
//! a catch response 7 its number and 8 its client: one allocation per
//! response. Its metatable is the prelude's `RESPONSE`, through which
//! plans read `status_code`, `text`, `headers`, `json()`... It has no
//! `__gc` (no finalizer), and nothing of the Rust response stays behind in
//! Lua, so the garbage collector sees all the memory a response holds.
//!
//! Load tests ask for the same URLs again and again, and servers often send
//! the same body and headers each time, so the last string of each part
//! is kept: when the next response has the same bytes, that Lua string is
//! reused instead of making (and later collecting) a new one.

use std::cell::RefCell;
use std::ffi::{c_char, c_int};

use mlua::{Lua, RegistryKey, Table, ffi};
use swarmer_engine::Response;

use crate::driver::push_bytes;

/// Strings longer than this are not kept for reuse (the comparison stays
/// cheap and a large body is not held after its test needed it).
const MAX_KEPT: usize = 64 * 1024;

/// The parts whose last string is kept.
#[derive(Clone, Copy)]
enum Part {
    Body = 0,
    Head = 1,
    Url = 2,
}

/// Per VM: the response metatable and the kept strings (registry slots
/// whose values the driver replaces in place).
pub struct Responses {
    metatable: RegistryKey,
    kept: [RegistryKey; 3],
    /// A buffer reused to build the header lines.
    scratch: RefCell<Vec<u8>>,
}

impl Responses {
    pub fn new(lua: &Lua, metatable: Table) -> mlua::Result<Self> {
        let empty = || lua.create_registry_value(lua.create_string("")?);
        Ok(Self {
            metatable: lua.create_registry_value(metatable)?,
            kept: [empty()?, empty()?, empty()?],
            scratch: RefCell::default(),
        })
    }

    /// Push the response userdata for `response` onto `l` (see the module
    /// doc); `catch` is its catch number and client. Returns how many
    /// values were pushed (1, or 0 if the stack cannot grow).
    ///
    /// # Safety
    /// `l` is a live coroutine of this VM that is not running.
    pub unsafe fn push(&self, l: *mut ffi::lua_State, response: &Response, catch: Option<(u64, i64)>) -> c_int {
        unsafe {
            if ffi::lua_checkstack(l, 4) == 0 {
                return 0;
            }
            let values = match (&response.error, catch) {
                (_, Some(_)) => 8,
                (Some(_), None) => 6,
                (None, None) => 5,
            };
            ffi::lua_newuserdatauv(l, 0, values);
            ffi::lua_pushinteger(l, ffi::lua_Integer::from(response.status_code()));
            ffi::lua_setiuservalue(l, -2, 1);
            self.push_kept(l, Part::Body, &response.body);
            ffi::lua_setiuservalue(l, -2, 2);
            let mut head = self.scratch.borrow_mut();
            head.clear();
            for (name, value) in &response.headers {
                head.extend_from_slice(name.as_str().as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value.as_bytes());
                head.push(b'\n');
            }
            self.push_kept(l, Part::Head, &head);
            drop(head);
            ffi::lua_setiuservalue(l, -2, 3);
            ffi::lua_pushnumber(l, response.elapsed.as_secs_f64());
            ffi::lua_setiuservalue(l, -2, 4);
            self.push_kept(l, Part::Url, response.url.as_bytes());
            ffi::lua_setiuservalue(l, -2, 5);
            if let Some(e) = &response.error {
                push_bytes(l, e.to_string().as_bytes());
                ffi::lua_setiuservalue(l, -2, 6);
            }
            if let Some((seq, client)) = catch {
                ffi::lua_pushinteger(l, seq as ffi::lua_Integer);
                ffi::lua_setiuservalue(l, -2, 7);
                ffi::lua_pushinteger(l, client);
                ffi::lua_setiuservalue(l, -2, 8);
            }
            ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, ffi::lua_Integer::from(self.metatable.id()));
            ffi::lua_setmetatable(l, -2);
            1
        }
    }

    /// Push a string with `bytes`: the kept one for `part` if it has the
    /// same bytes, else a new one, which is then kept.
    unsafe fn push_kept(&self, l: *mut ffi::lua_State, part: Part, bytes: &[u8]) {
        unsafe {
            let slot = ffi::lua_Integer::from(self.kept[part as usize].id());
            ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, slot);
            let mut len = 0;
            let kept = ffi::lua_tolstring(l, -1, &mut len);
            if !kept.is_null() && std::slice::from_raw_parts(kept as *const u8, len) == bytes {
                return;
            }
            ffi::lua_settop(l, -2);
            ffi::lua_pushlstring(l, bytes.as_ptr() as *const c_char, bytes.len());
            if bytes.len() <= MAX_KEPT {
                ffi::lua_pushvalue(l, -1);
                ffi::lua_rawseti(l, ffi::LUA_REGISTRYINDEX, slot);
            }
        }
    }
}
