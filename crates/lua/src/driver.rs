//! The coroutine driver: what makes `self.client:get` look blocking.
//!
//! A task body, an event listener or a background function runs in a Lua
//! coroutine. When it calls something that waits, the coroutine yields an
//! operation, its operands first and its code last: an HTTP request (from
//! the C functions `client:get` ... `:options` here, or the prelude's
//! `client:request`) or a sleep (the prelude's `swarmer.sleep`). [`drive`]
//! does the operation as async Rust, so the shard's other users run
//! meanwhile, and resumes the coroutine with the result.
//!
//! This is the hottest path of a Lua plan (two resumes per request), so it
//! talks to the coroutine through Lua's C API (`mlua::ffi`) rather than
//! through mlua's value conversions, which take a registry reference for
//! every string, table and userdata that crosses. The rules that keep it
//! sound:
//! - the coroutine is kept alive by its [`Thread`] handle for the whole
//!   drive; its stack is read afresh at every yield (a plan may itself
//!   resume or close a coroutine it got from `coroutine.running()`: that
//!   is memory-safe, only its own requests then go astray);
//! - strings read from the stack are copied into Rust before the values
//!   are popped;
//! - nothing that can allocate is ever called on a suspended coroutine: an
//!   allocation may run a step of the garbage collector, whose `__gc`
//!   finalizers run on the allocating thread, and Lua lets a finalizer
//!   resume the very coroutine it runs on, unwinding frames the driver
//!   still uses (a hostile plan crashed the process that way). Values for
//!   a suspended coroutine (responses, error messages, arguments) are
//!   built on the VM's main state inside a protected call
//!   ([`Lua::exec_raw`]) and moved across with `lua_xmove`, which only
//!   copies; on the coroutine itself the driver only reads values of
//!   known type (strings are read only when they are strings: converting
//!   a number would allocate), pops what was yielded, reads the registry
//!   and calls `lua_checkstack`, which may grow the stack but runs no
//!   collector step and reports failure instead of raising;
//! - so every call that may raise (allocation included, which raises
//!   once a memory limit is set) runs protected, or inside a C function
//!   Lua itself called; none of those frames holds a Rust value with a
//!   destructor, since an error unwinds them with `longjmp`;
//! - every push is preceded by `lua_checkstack`; the C functions below
//!   push at most four values, within the 20 free slots Lua gives every C
//!   function call;
//! - the count hook ([`install_hook`]) yields only the coroutine being
//!   driven, only where `lua_isyieldable` says Lua allows it, with no
//!   values, as Lua requires of hooks.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use mlua::{Function, IntoLuaMulti, LightUserData, Lua, Table, Thread, Value, ffi};
use swarmer_http::Method;

use crate::client::{self, Clients};
use crate::responses::Responses;

/// What the driver needs of a VM: its users' clients, and how responses
/// reach Lua.
pub struct Bridge {
    pub clients: Clients,
    pub responses: Responses,
}

/// The methods of `self.client:get` ... `:options`, by the number their C
/// functions ([`request_method`]) yield (1-based, in this order).
const METHODS: [Method; 7] =
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS];

/// Operation codes a coroutine yields with, last (see `prelude.lua`):
/// light userdata, which Lua code cannot make, so a plan's own
/// `coroutine.yield` is never taken for an operation.
static OP_REQUEST_TAG: u8 = 1;
static OP_SLEEP_TAG: u8 = 2;

fn op_request() -> *mut c_void {
    &OP_REQUEST_TAG as *const u8 as *mut c_void
}

fn op_sleep() -> *mut c_void {
    &OP_SLEEP_TAG as *const u8 as *mut c_void
}

/// The operation codes, as the prelude gets them (request, sleep).
pub fn operation_codes() -> (LightUserData, LightUserData) {
    (LightUserData(op_request()), LightUserData(op_sleep()))
}

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

/// Install the count hook on a new VM's main state (coroutines made
/// later inherit it). It makes Lua code interruptible: a task that runs
/// without waiting is yielded to the shard every [`HOOK_EVERY`]
/// instructions, so other users, timers and stop commands still run; code
/// that cannot yield is stopped after [`BUSY_LIMIT`] runs of the hook.
pub fn install_hook(lua: &Lua) -> mlua::Result<()> {
    // SAFETY: a protected call on the main state; setting a hook cannot fail.
    unsafe { lua.exec_raw::<()>((), |s| ffi::lua_sethook(s, Some(count_hook), ffi::LUA_MASKCOUNT, HOOK_EVERY)) }
}

/// Forget earlier hook runs (before code that may legitimately run long
/// on the main state starts afresh, such as the plan file).
pub fn reset_busy() {
    BUSY.set(0);
}

/// The count hook (see [`install_hook`]). It holds nothing with a
/// destructor: `luaL_error` unwinds it with `longjmp`.
unsafe extern "C-unwind" fn count_hook(l: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    // SAFETY: called by Lua on the running thread `l`; a hook may yield
    // (no values) where `lua_isyieldable` allows, and may raise.
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

/// A coroutine and its raw state (looked up once).
pub struct Coroutine {
    /// Keeps the coroutine alive (only the raw state is used).
    _thread: Thread,
    state: *mut ffi::lua_State,
}

impl Coroutine {
    /// A coroutine that will run `function`.
    pub fn new(lua: &Lua, function: Function) -> mlua::Result<Self> {
        let thread = lua.create_thread(function)?;
        let mut state = ptr::null_mut();
        // SAFETY: a protected call that only reads the thread pushed as its argument.
        unsafe { lua.exec_raw::<()>(thread.clone(), |s| state = ffi::lua_tothread(s, -1))? };
        if state.is_null() {
            return Err(mlua::Error::runtime("internal: a coroutine without a state"));
        }
        Ok(Self { _thread: thread, state })
    }

    pub fn state(&self) -> *mut ffi::lua_State {
        self.state
    }

    #[cfg(test)]
    pub fn thread(&self) -> &Thread {
        &self._thread
    }
}

/// Push `args` onto `coroutine` (for cold paths: listeners, background
/// functions). Returns how many values were pushed.
pub fn push_args(lua: &Lua, coroutine: &Coroutine, args: impl IntoLuaMulti) -> mlua::Result<c_int> {
    let l = coroutine.state();
    // SAFETY: the values are moved between two states of one Lua inside a
    // protected call; `l` is alive and not running.
    unsafe {
        let before = ffi::lua_gettop(l);
        let mut moved = false;
        lua.exec_raw::<()>(args, |state| {
            let n = ffi::lua_gettop(state);
            if ffi::lua_checkstack(l, n) != 0 {
                ffi::lua_xmove(state, l, n);
                moved = true;
            }
        })?;
        if !moved {
            return Err(mlua::Error::StackError);
        }
        Ok(ffi::lua_gettop(l) - before)
    }
}

/// How a coroutine ended.
pub enum Ended {
    /// Its function returned: the first value it returned.
    Returned(Value),
    /// It raised an error (or a control table such as `swarmer.stop_user`),
    /// with the coroutine's traceback at that point.
    Raised { error: Value, traceback: String },
}

impl Ended {
    /// The returned value, or an error whose message is the raised one.
    pub fn into_result(self) -> mlua::Result<Value> {
        match self {
            Ended::Returned(value) => Ok(value),
            Ended::Raised { error, traceback } => {
                Err(mlua::Error::runtime(format!("{}\n{traceback}", error_message(&error))))
            }
        }
    }
}

/// The text of an error object.
pub fn error_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.to_string_lossy(),
        Value::Error(e) => crate::vm::clean(e),
        other => other.to_string().unwrap_or_else(|_| format!("a {} error", other.type_name())),
    }
}

/// Run `thread` (its function and `nargs` arguments are on its stack) to
/// its end, doing every operation it yields. A coroutine that returned
/// has an empty stack afterwards, so a pool can reuse it. With
/// `want_result` false, what its function returned is not converted
/// (`Ended::Returned(Nil)`).
pub async fn drive(
    lua: &Lua,
    bridge: &Bridge,
    coroutine: &Coroutine,
    nargs: c_int,
    want_result: bool,
    busy_since: &Cell<Option<Instant>>,
) -> mlua::Result<Ended> {
    let l = coroutine.state();
    let mut nargs = nargs;
    let mut resumed_at = Instant::now();
    loop {
        let mut nres: c_int = 0;
        let previous = DRIVEN.replace(l);
        // SAFETY: `l` is alive and suspended (or new), its arguments pushed.
        let status = unsafe { ffi::lua_resume(l, ptr::null_mut(), nargs, &mut nres) };
        DRIVEN.set(previous);
        BUSY.set(0);
        let paused = PAUSED.replace(false);
        match status {
            ffi::LUA_OK => return unsafe { returned(lua, l, if want_result { nres } else { 0 }) },
            ffi::LUA_YIELD if paused => {
                // The hook yielded a coroutine that runs without waiting:
                // the shard's other tasks get a turn, then it goes on.
                if busy_since.get().is_none() {
                    busy_since.set(Some(resumed_at));
                }
                tokio::task::yield_now().await;
                nargs = 0;
                continue;
            }
            ffi::LUA_YIELD => busy_since.set(None),
            _ => return unsafe { raised(lua, l) },
        }
        // SAFETY: the `nres` yielded values are on top of `l`'s stack.
        let op = unsafe { read_op(lua, l, nres) };
        unsafe { ffi::lua_settop(l, -nres - 1) };
        nargs = match op? {
            Op::Request { client, method, url, opts } => {
                let performed = match bridge.clients.get(client) {
                    Ok(core) => {
                        let push = |response: &_, seq: Option<u64>| unsafe {
                            bridge.responses.push(lua, l, response, seq.map(|seq| (seq, client)))
                        };
                        client::perform(lua, &core, method, url, opts, push).await
                    }
                    Err(e) => Err(e),
                };
                match performed {
                    Ok(pushed) => pushed,
                    Err(e) => push_error(lua, l, &crate::vm::clean(&e)),
                }
            }
            Op::Sleep(duration) => {
                tokio::time::sleep(duration).await;
                Ok(0)
            }
            Op::Invalid(message) => push_error(lua, l, &message),
        }?;
        resumed_at = Instant::now();
    }
}

/// The request methods of `self.client` (`get` ... `options`, in the order
/// of [`METHODS`]), as a sequence: C functions, so that a request is one
/// call from the task into a yield, with no Lua function and no
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
/// CODE, OP_REQUEST)` to [`drive`] (the prelude's `request` yields the
/// same with a method name; `client[1]` is the client's number), which
/// resumes it with the response, or with `(nil, message)`, raised here at
/// the caller's line.
///
/// Only `lua_yieldk` can raise (where a yield is not allowed), which
/// longjmps out of this frame: it holds nothing that needs dropping.
unsafe extern "C-unwind" fn request_method<const CODE: ffi::lua_Integer>(l: *mut ffi::lua_State) -> c_int {
    unsafe {
        // Lua gives a C function 20 free slots beyond its arguments.
        let mut n = ffi::lua_gettop(l);
        if n == 0 {
            ffi::lua_pushnil(l); // no client: read_op explains how to call it
            n = 1;
        }
        if ffi::lua_type(l, 1) == ffi::LUA_TTABLE {
            ffi::lua_rawgeti(l, 1, 1);
        } else {
            ffi::lua_pushnil(l);
        }
        ffi::lua_pushinteger(l, CODE);
        ffi::lua_pushlightuserdata(l, op_request());
        ffi::lua_yieldk(l, n + 3, 0, Some(request_resumed))
    }
}

/// The continuation of [`request_method`]: its stack holds what the driver
/// resumed it with: a response, `(nil, message)`, or (when a plan resumed
/// a coroutine of its own that made a request) anything else.
unsafe extern "C-unwind" fn request_resumed(l: *mut ffi::lua_State, _: c_int, _: ffi::lua_KContext) -> c_int {
    unsafe {
        if ffi::lua_type(l, 1) == ffi::LUA_TUSERDATA {
            ffi::lua_settop(l, 1);
            return 1;
        }
        let failed = ffi::lua_type(l, 1) == ffi::LUA_TNIL && ffi::lua_type(l, 2) == ffi::LUA_TSTRING;
        // Room for two values: the call had 20 free slots, and at most two
        // values stay.
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

/// An operation a coroutine yielded.
enum Op {
    Request {
        client: i64,
        method: Method,
        url: String,
        opts: Option<Table>,
    },
    Sleep(Duration),
    /// Bad operands: the coroutine is resumed with `(nil, message)`.
    Invalid(String),
}

/// Which operation a yield is.
enum Code {
    Request,
    Sleep,
    /// Not one of ours.
    Other,
}

/// Read the operation the coroutine yielded (`nres` values on top of `l`).
/// An `Err` ends the drive (a yield that is not one of ours).
unsafe fn read_op(lua: &Lua, l: *mut ffi::lua_State, nres: c_int) -> mlua::Result<Op> {
    unsafe {
        let top = ffi::lua_gettop(l);
        let base = top - nres + 1;
        let arg = |i: c_int| base + i;
        // One call per operand on this path (lua_tointegerx says whether
        // the value was an integer).
        let integer_at = |idx: c_int| {
            let mut is_integer = 0;
            let n = ffi::lua_tointegerx(l, idx, &mut is_integer);
            (is_integer != 0).then_some(n)
        };
        // The operands, then the code: (client, url, opts..., id, method,
        // request) or (seconds, sleep).
        let tag = if nres > 0 && ffi::lua_type(l, top) == ffi::LUA_TLIGHTUSERDATA {
            ffi::lua_touserdata(l, top)
        } else {
            ptr::null_mut()
        };
        let op = match tag {
            t if t == op_request() && nres >= 4 => Code::Request,
            t if t == op_sleep() && nres == 2 => Code::Sleep,
            _ => Code::Other,
        };
        match op {
            Code::Request => {
                // After the client: the URL and the options, if given.
                let given = nres - 3;
                let url_at = (given >= 2).then(|| arg(1));
                let opts_at = (given >= 3).then(|| arg(2));
                let (id_at, method_at) = (top - 2, top - 1);
                let Some(client) = integer_at(id_at) else {
                    return Ok(Op::Invalid("request: call it on self.client (client:get(...))".into()));
                };
                let numbered = ffi::lua_type(l, method_at) == ffi::LUA_TNUMBER;
                let method = if let Some(code) = integer_at(method_at).filter(|_| numbered) {
                    match usize::try_from(code).ok().and_then(|c| METHODS.get(c.wrapping_sub(1))) {
                        Some(method) => method.clone(),
                        None => return Ok(Op::Invalid(format!("request: no method numbered {code}"))),
                    }
                } else {
                    let Some(name) = string_at(l, method_at) else {
                        return Ok(Op::Invalid("request: the method must be a string".into()));
                    };
                    match Method::from_bytes(name) {
                        Ok(method) => method,
                        Err(_) => {
                            let shown = String::from_utf8_lossy(name).into_owned();
                            return Ok(Op::Invalid(format!("request: invalid method {shown:?}")));
                        }
                    }
                };
                let url = match url_at.and_then(|at| string_at(l, at)).map(std::str::from_utf8) {
                    Some(Ok(url)) => url.to_owned(),
                    Some(Err(_)) => return Ok(Op::Invalid("request: the URL is not valid UTF-8".into())),
                    None => {
                        let kind = url_at.map_or_else(|| "no value".into(), |at| type_name(l, at));
                        return Ok(Op::Invalid(format!("expected a URL string, got {kind}")));
                    }
                };
                let opts = match opts_at.map(|at| (at, ffi::lua_type(l, at))) {
                    None | Some((_, ffi::LUA_TNIL)) => None,
                    Some((at, ffi::LUA_TTABLE)) => match value_at(lua, l, at)? {
                        Value::Table(t) => Some(t),
                        _ => None,
                    },
                    Some((at, _)) => {
                        let kind = type_name(l, at);
                        return Ok(Op::Invalid(format!("expected an options table, got {kind}")));
                    }
                };
                Ok(Op::Request { client, method, url, opts })
            }
            Code::Sleep => {
                let seconds = if ffi::lua_type(l, base) == ffi::LUA_TNUMBER {
                    ffi::lua_tonumberx(l, base, ptr::null_mut())
                } else {
                    f64::NAN
                };
                if let Ok(duration) = Duration::try_from_secs_f64(seconds) {
                    Ok(Op::Sleep(duration))
                } else {
                    let shown = if ffi::lua_type(l, base) == ffi::LUA_TNUMBER {
                        seconds.to_string()
                    } else {
                        format!("a {}", type_name(l, base))
                    };
                    Ok(Op::Invalid(format!("sleep: expected non-negative seconds, got {shown}")))
                }
            }
            Code::Other => Err(mlua::Error::runtime(
                "coroutine.yield from a task, hook or background coroutine is not supported; use coroutine.wrap \
                 inside your own code, or swarmer.sleep",
            )),
        }
    }
}

/// The bytes of the string at `idx`; anything else is `None` (a number is
/// not converted: that would allocate on a suspended coroutine).
unsafe fn string_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a [u8]> {
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
            return None;
        }
        let mut len = 0;
        let data = ffi::lua_tolstring(l, idx, &mut len);
        (!data.is_null()).then(|| std::slice::from_raw_parts(data as *const u8, len))
    }
}

unsafe fn type_name(l: *mut ffi::lua_State, idx: c_int) -> String {
    unsafe {
        let name = ffi::lua_typename(l, ffi::lua_type(l, idx));
        std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

/// The value at `idx` as an mlua value (protected; for tables and errors).
unsafe fn value_at(lua: &Lua, l: *mut ffi::lua_State, idx: c_int) -> mlua::Result<Value> {
    unsafe {
        if ffi::lua_checkstack(l, 1) == 0 {
            return Err(mlua::Error::StackError);
        }
        ffi::lua_pushvalue(l, idx);
        lua.exec_raw::<Value>((), |state| ffi::lua_xmove(l, state, 1))
    }
}

/// The coroutine returned: its first result, and an empty stack.
unsafe fn returned(lua: &Lua, l: *mut ffi::lua_State, nres: c_int) -> mlua::Result<Ended> {
    unsafe {
        let first = ffi::lua_gettop(l) - nres + 1; // with nres 0: not read
        let value = if nres == 0 || ffi::lua_type(l, first) == ffi::LUA_TNIL {
            Ok(Value::Nil)
        } else {
            value_at(lua, l, first)
        };
        ffi::lua_settop(l, 0);
        value.map(Ended::Returned)
    }
}

/// The coroutine died with an error (its object on top of its stack, which
/// is kept as it was when the error was raised, for the traceback). Then
/// it is closed: its pending `<close>` variables are closed (as `xpcall`
/// would have on the way out) and it can be reused.
unsafe fn raised(lua: &Lua, l: *mut ffi::lua_State) -> mlua::Result<Ended> {
    unsafe {
        let error = value_at(lua, l, -1);
        let traceback = lua.exec_raw::<mlua::String>((), |state| ffi::luaL_traceback(state, l, ptr::null(), 0));
        // Protected inside; with a dead coroutine it returns the original
        // error status, its object left on the stack, which is emptied.
        ffi::lua_closethread(l, ptr::null_mut());
        ffi::lua_settop(l, 0);
        let traceback = traceback.map(|t| t.to_string_lossy()).unwrap_or_default();
        Ok(Ended::Raised { error: error?, traceback })
    }
}

/// Resume values for a failed operation: `nil, message`, built on the
/// main state and moved onto the suspended coroutine `l` (see the module
/// doc).
fn push_error(lua: &Lua, l: *mut ffi::lua_State, message: &str) -> mlua::Result<c_int> {
    let mut moved = false;
    // SAFETY: a protected call on the main state whose closure holds only
    // references; `l` is alive (its `Coroutine` is borrowed by `drive`)
    // and not running; `lua_xmove` copies after `lua_checkstack`.
    unsafe {
        lua.exec_raw::<()>((), |s| {
            ffi::lua_pushnil(s);
            push_bytes(s, message.as_bytes());
            if ffi::lua_checkstack(l, 2) != 0 {
                ffi::lua_xmove(s, l, 2);
                moved = true;
            }
        })?;
    }
    if moved { Ok(2) } else { Err(mlua::Error::StackError) }
}

pub(crate) unsafe fn push_bytes(l: *mut ffi::lua_State, bytes: &[u8]) {
    unsafe {
        ffi::lua_pushlstring(l, bytes.as_ptr() as *const c_char, bytes.len());
    }
}
