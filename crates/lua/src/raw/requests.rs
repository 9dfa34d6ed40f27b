//! The request methods of `self.client` as C functions, and the codes
//! operations are yielded with.

use std::ffi::{c_int, c_void};

use mlua::{LightUserData, Lua, Table, ffi};

use super::Yielded;

/// Operation codes a coroutine yields with, last (see `prelude.lua`):
/// light userdata, which Lua code cannot make, so a plan's own
/// `coroutine.yield` is never taken for an operation.
static OP_REQUEST_TAG: u8 = 1;
static OP_SLEEP_TAG: u8 = 2;
static OP_AWAIT_TAG: u8 = 3;
/// What the driver resumes a request with when its caller wants no
/// result (`self.client:get(url)` as a statement).
static DISCARDED_TAG: u8 = 4;

fn op_request() -> *mut c_void {
    &OP_REQUEST_TAG as *const u8 as *mut c_void
}

fn op_sleep() -> *mut c_void {
    &OP_SLEEP_TAG as *const u8 as *mut c_void
}

fn op_await() -> *mut c_void {
    &OP_AWAIT_TAG as *const u8 as *mut c_void
}

pub(super) fn discarded() -> *mut c_void {
    &DISCARDED_TAG as *const u8 as *mut c_void
}

/// The operation codes, as the prelude gets them (request, sleep, await).
pub fn operation_codes() -> (LightUserData, LightUserData, LightUserData) {
    (LightUserData(op_request()), LightUserData(op_sleep()), LightUserData(op_await()))
}

/// Which operation a yield is (by its last value).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Operation {
    Request,
    Sleep,
    /// Wait for an operation started from Rust (`crate::pending`).
    Await,
}

impl Yielded<'_> {
    /// The operation yielded, if the last value is one of the codes.
    pub fn operation(&self) -> Option<Operation> {
        let code = self.light_userdata(self.len() - 1)?;
        if code == op_request() {
            Some(Operation::Request)
        } else if code == op_sleep() {
            Some(Operation::Sleep)
        } else if code == op_await() {
            Some(Operation::Await)
        } else {
            None
        }
    }
}

/// The request methods of `self.client` (`get` ... `options`, numbered 1
/// to 7 in that order), as a sequence: C functions, so that a request is
/// one call from the task into a yield, with no Lua function and no
/// `coroutine.yield` in between.
pub fn request_methods(lua: &Lua) -> mlua::Result<Table> {
    let functions: [ffi::lua_CFunction; 7] = [
        request_method::<1>,
        request_method::<2>,
        request_method::<3>,
        request_method::<4>,
        request_method::<5>,
        request_method::<6>,
        request_method::<7>,
    ];
    let methods = lua.create_table()?;
    for (i, function) in functions.into_iter().enumerate() {
        // SAFETY: each follows Lua's protocol for C functions (below).
        methods.raw_set(i + 1, unsafe { lua.create_c_function(function)? })?;
    }
    Ok(methods)
}

/// `client:<method>(url, opts)`: yields its arguments then `(client[1],
/// CODE, OP_REQUEST)` to the driver (the prelude's `request` yields the
/// same with a method name; `client[1]` is the client's number), which
/// resumes it with the response, or with `(nil, message)`, raised here at
/// the caller's line. When the caller wants no result (a statement), the
/// code is negated and the driver may resume it with the
/// [`discarded`] tag instead of a response (`super::wanted`).
///
/// Only `lua_yieldk` can raise (where a yield is not allowed), which
/// longjmps out of this frame: it holds nothing that needs dropping.
unsafe extern "C-unwind" fn request_method<const CODE: ffi::lua_Integer>(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls this on the running `l` with its arguments on the
    // stack and 20 free slots beyond them (at most four are pushed);
    // `lua_rawgeti` on a table runs no metamethod.
    unsafe {
        let mut n = ffi::lua_gettop(l);
        if n == 0 {
            ffi::lua_pushnil(l); // no client: the driver explains how to call it
            n = 1;
        }
        if ffi::lua_type(l, 1) == ffi::LUA_TTABLE {
            ffi::lua_rawgeti(l, 1, 1);
        } else {
            ffi::lua_pushnil(l);
        }
        let code = if super::wanted::wanted_results(l) == Some(0) { -CODE } else { CODE };
        ffi::lua_pushinteger(l, code);
        ffi::lua_pushlightuserdata(l, op_request());
        ffi::lua_yieldk(l, n + 3, 0, Some(request_resumed))
    }
}

/// The continuation of [`request_method`]: its stack holds what the driver
/// resumed it with: a response, the [`discarded`] tag (nothing is
/// returned), `(nil, message)`, or (when a plan resumed a coroutine of
/// its own that made a request) anything else.
unsafe extern "C-unwind" fn request_resumed(l: *mut ffi::lua_State, _: c_int, _: ffi::lua_KContext) -> c_int {
    // SAFETY: Lua calls this on the running `l`; it keeps at most two of
    // the values it was resumed with and pushes at most two more, within
    // the 20 free slots of a C function call; it allocates and raises as
    // any C function may (it holds nothing that needs dropping).
    unsafe {
        match ffi::lua_type(l, 1) {
            ffi::LUA_TUSERDATA => {
                ffi::lua_settop(l, 1);
                return 1;
            }
            ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(l, 1) == discarded() => {
                ffi::lua_settop(l, 0);
                return 0;
            }
            _ => {}
        }
        let failed = ffi::lua_type(l, 1) == ffi::LUA_TNIL && ffi::lua_type(l, 2) == ffi::LUA_TSTRING;
        ffi::lua_settop(l, 2);
        if !failed {
            ffi::lua_pushstring(
                l,
                c"a request was resumed without a response (requests cannot be made inside a coroutine of the plan's own)"
                    .as_ptr(),
            );
            ffi::lua_replace(l, 2);
        }
        ffi::luaL_where(l, 1);
        ffi::lua_pushvalue(l, 2);
        ffi::lua_concat(l, 2);
        ffi::lua_error(l);
    }
}
