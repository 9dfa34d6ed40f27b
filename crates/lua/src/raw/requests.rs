//! The request methods of `self.client` as C functions, and the codes
//! operations are yielded with.

use std::ffi::{c_int, c_void};
use std::ptr;

use mlua::{LightUserData, Lua, Table, Value, ffi};

use super::{Coroutine, Yielded};

/// Operation codes a coroutine yields with, last (see `prelude.lua`):
/// light userdata, which Lua code cannot make, so a plan's own
/// `coroutine.yield` is never taken for an operation.
static OP_REQUEST_TAG: u8 = 1;
static OP_SLEEP_TAG: u8 = 2;
static OP_AWAIT_TAG: u8 = 3;
/// What the driver resumes a request with when its caller wants no
/// result (`self.client:get(url)` as a statement).
static DISCARDED_TAG: u8 = 4;
/// A request whose operands [`request_method`] checked: the tag is yielded
/// alone and the operands stay in the method's frame ([`CHECKED_FRAME`]),
/// where the driver reads them at known places.
static OP_CHECKED_REQUEST_TAG: u8 = 5;

/// The frame of a suspended checked request, below its tag: the client
/// table, the URL string, the options (a table or nil), the client's
/// number (`client[1]`) and the method's code.
pub(super) const CHECKED_FRAME: c_int = 5;

fn op_request() -> *mut c_void {
    &OP_REQUEST_TAG as *const u8 as *mut c_void
}

fn op_sleep() -> *mut c_void {
    &OP_SLEEP_TAG as *const u8 as *mut c_void
}

fn op_await() -> *mut c_void {
    &OP_AWAIT_TAG as *const u8 as *mut c_void
}

fn op_checked_request() -> *mut c_void {
    &OP_CHECKED_REQUEST_TAG as *const u8 as *mut c_void
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

/// The operands of a checked request (see [`request_method`]).
pub struct CheckedRequest {
    /// The client's number, if `client[1]` is an integer.
    pub client: Option<i64>,
    /// The method's number (1 to 7), negated when the caller wants no result.
    pub code: i64,
    /// The URL, or `None` if it is not valid UTF-8.
    pub url: Option<String>,
    /// The options table, if given.
    pub opts: Option<Table>,
}

impl Coroutine {
    /// After [`super::Resumed::Yielded`] with `nres` values: the request,
    /// if they are a checked request's tag (which is then popped, leaving
    /// the frame below it for the resume); `None`, with nothing popped,
    /// for any other yield. An `Err` if reading the options ran Lua code
    /// that resumed or closed this coroutine.
    pub fn checked_request(&mut self, nres: c_int) -> Option<mlua::Result<CheckedRequest>> {
        let l = self.state;
        let top = CHECKED_FRAME + 1;
        // SAFETY: the state is alive. Only `request_method` leaves one
        // yielded value over a frame of this height (a plan's
        // `coroutine.yield` yields its whole frame), and the tag is a
        // light userdata no Lua code can make (`lua_touserdata` gives
        // null for any other value); the reads below convert nothing in
        // place whatever the values are (the URL's type is checked, as
        // `lua_tolstring` would convert a number). The URL string is read
        // in place and copied at once; the options are converted as
        // `Yielded::value` does, and the top checked again after it.
        unsafe {
            if nres != 1
                || ffi::lua_gettop(l) != top
                || ffi::lua_touserdata(l, top) != op_checked_request()
                || ffi::lua_type(l, 2) != ffi::LUA_TSTRING
            {
                return None;
            }
            let mut len = 0;
            let data = ffi::lua_tolstring(l, 2, &mut len);
            let url = (!data.is_null())
                .then(|| std::slice::from_raw_parts(data.cast::<u8>(), len))
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .map(str::to_owned);
            let mut is_integer = 0;
            let client = ffi::lua_tointegerx(l, 4, &mut is_integer);
            let client = (is_integer != 0).then_some(client);
            // (Not a number: 0, which no method has.)
            let code = ffi::lua_tointegerx(l, 5, ptr::null_mut());
            let opts = match ffi::lua_type(l, 3) {
                ffi::LUA_TTABLE => match self.value_at(3) {
                    Ok(Value::Table(t)) if ffi::lua_gettop(l) == top => Some(t),
                    Ok(_) => {
                        return Some(Err(mlua::Error::runtime(
                            "the coroutine of this call was resumed or closed by other code of the plan",
                        )));
                    }
                    Err(e) => return Some(Err(e)),
                },
                _ => None,
            };
            ffi::lua_settop(l, CHECKED_FRAME);
            Some(Ok(CheckedRequest { client, code, url, opts }))
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

/// `client:<method>(url, opts)`: yields to the driver, which resumes it
/// with the response, or with `(nil, message)`, raised here at the
/// caller's line. The usual call (a client table, a URL string, options
/// that are a table or absent) keeps its operands in this frame, adds
/// `client[1]` (the client's number) and the method's code, and yields
/// the checked-request tag alone; any other call yields its arguments
/// then `(client[1], CODE, OP_REQUEST)`, as the prelude's `request` does
/// with a method name, for the driver to explain what is wrong. When the
/// caller wants no result (a statement), the code is negated and the
/// driver may resume it with the [`discarded`] tag instead of a response
/// (`super::wanted`).
///
/// Only `lua_yieldk` can raise (where a yield is not allowed), which
/// longjmps out of this frame: it holds nothing that needs dropping.
unsafe extern "C-unwind" fn request_method<const CODE: ffi::lua_Integer>(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls this on the running `l` with its arguments on the
    // stack and 20 free slots beyond them (at most four are pushed);
    // `lua_rawgeti` on a table runs no metamethod.
    unsafe {
        let mut n = ffi::lua_gettop(l);
        let code = if super::wanted::wanted_results(l) == Some(0) { -CODE } else { CODE };
        let usual = (n == 2 || (n == 3 && matches!(ffi::lua_type(l, 3), ffi::LUA_TNIL | ffi::LUA_TTABLE)))
            && ffi::lua_type(l, 1) == ffi::LUA_TTABLE
            && ffi::lua_type(l, 2) == ffi::LUA_TSTRING;
        if usual {
            // The usual call, `client:get(url[, opts])`: its operands
            // stay where they are (the driver reads them in this frame).
            if n == 2 {
                ffi::lua_pushnil(l);
            }
            ffi::lua_rawgeti(l, 1, 1);
            ffi::lua_pushinteger(l, code);
            ffi::lua_pushlightuserdata(l, op_checked_request());
            return ffi::lua_yieldk(l, 1, CHECKED_FRAME as ffi::lua_KContext, Some(request_resumed));
        }
        if n == 0 {
            ffi::lua_pushnil(l); // no client: the driver explains how to call it
            n = 1;
        }
        if ffi::lua_type(l, 1) == ffi::LUA_TTABLE {
            ffi::lua_rawgeti(l, 1, 1);
        } else {
            ffi::lua_pushnil(l);
        }
        ffi::lua_pushinteger(l, code);
        ffi::lua_pushlightuserdata(l, op_request());
        ffi::lua_yieldk(l, n + 3, 0, Some(request_resumed))
    }
}

/// The continuation of [`request_method`]: its stack holds, above the
/// `base` values the method kept in its frame (its context: 0, or
/// [`CHECKED_FRAME`]), what the driver resumed it with: a response, the
/// [`discarded`] tag (nothing is returned), `(nil, message)`, or (when a
/// plan resumed a coroutine of its own that made a request) anything else.
unsafe extern "C-unwind" fn request_resumed(l: *mut ffi::lua_State, _: c_int, base: ffi::lua_KContext) -> c_int {
    let first = c_int::try_from(base).unwrap_or(0) + 1;
    // SAFETY: Lua calls this on the running `l`; it keeps at most two of
    // the values it was resumed with and pushes at most two more, within
    // the 20 free slots of a C function call; it allocates and raises as
    // any C function may (it holds nothing that needs dropping).
    unsafe {
        match ffi::lua_type(l, first) {
            ffi::LUA_TUSERDATA => {
                ffi::lua_settop(l, first);
                return 1;
            }
            ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(l, first) == discarded() => {
                ffi::lua_settop(l, 0);
                return 0;
            }
            _ => {}
        }
        let failed = ffi::lua_type(l, first) == ffi::LUA_TNIL && ffi::lua_type(l, first + 1) == ffi::LUA_TSTRING;
        ffi::lua_settop(l, first + 1);
        if !failed {
            ffi::lua_pushstring(
                l,
                c"a request was resumed without a response (requests cannot be made inside a coroutine of the plan's own)"
                    .as_ptr(),
            );
            ffi::lua_replace(l, first + 1);
        }
        ffi::luaL_where(l, 1);
        ffi::lua_pushvalue(l, first + 1);
        ffi::lua_concat(l, 2);
        ffi::lua_error(l);
    }
}
