//! The coroutine driver: what makes `self.client:get` look blocking.
//!
//! A task body, an event listener or a background function runs in a Lua
//! coroutine. When it calls something that waits, the coroutine yields an
//! operation, its operands first and its code last: an HTTP request (from
//! the C functions `client:get` ... `:options`, or the prelude's
//! `client:request`) or a sleep (the prelude's `swarmer.sleep`). [`drive`]
//! does the operation as async Rust, so the shard's other users run
//! meanwhile, and resumes the coroutine with the result.
//!
//! This is the hottest path of a Lua plan (two resumes per request); it
//! reaches Lua's C API only through [`crate::raw`], whose module doc
//! gives the rules that keep it sound.

use std::cell::Cell;
use std::ffi::c_int;
use std::time::{Duration, Instant};

use mlua::{Table, Value};
use swarmer_http::Method;

use crate::client::{self, Clients};
use crate::raw::{CheckedRequest, Coroutine, Kind, Operation, Piece, Resumed, Slot, Yielded};
use crate::responses::Responses;

/// What the driver needs of a VM: its users' clients, and how responses
/// reach Lua.
pub struct Bridge {
    pub clients: Clients,
    pub responses: Responses,
    /// Operations started from Rust, awaited by a yield (gRPC calls).
    pub pending: crate::pending::Pending,
}

/// The methods of `self.client:get` ... `:options`, by the number their C
/// functions (`raw::request_methods`) yield (1-based, in this order).
const METHODS: [Method; 7] =
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS];

/// What a request made other than on `self.client` is told.
const NOT_ON_A_CLIENT: &str = "request: call it on self.client (client:get(...))";
/// What a request whose URL is not text is told.
const URL_NOT_UTF8: &str = "request: the URL is not valid UTF-8";

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

/// Run `coroutine` (its function and `nargs` arguments are on its stack)
/// to its end, doing every operation it yields. A coroutine that returned
/// has an empty stack afterwards, so a pool can reuse it. With
/// `want_result` false, what its function returned is not converted
/// (`Ended::Returned(Nil)`). `busy_since` says since when it has run
/// without waiting, while it does (the hook pauses it now and then).
pub async fn drive(
    bridge: &Bridge,
    coroutine: &mut Coroutine,
    nargs: c_int,
    want_result: bool,
    busy_since: &Cell<Option<Instant>>,
) -> mlua::Result<Ended> {
    let mut nargs = nargs;
    loop {
        let nres = match coroutine.resume(nargs) {
            Resumed::Returned(nres) => return coroutine.finish_returned(nres, want_result).map(Ended::Returned),
            Resumed::Raised => {
                let (error, traceback) = coroutine.finish_raised();
                return Ok(Ended::Raised { error: error?, traceback });
            }
            Resumed::Refused => {
                return Err(mlua::Error::runtime(
                    "the coroutine of this call was resumed or closed by other code of the plan",
                ));
            }
            Resumed::Paused => {
                // The hook paused a coroutine that runs without waiting:
                // the shard's other tasks get a turn, then it goes on.
                // (Since the first pause: a thousand instructions after
                // the resume, not worth a clock read per request.)
                if busy_since.get().is_none() {
                    busy_since.set(Some(Instant::now()));
                }
                tokio::task::yield_now().await;
                nargs = 0;
                continue;
            }
            Resumed::Yielded(nres) => nres,
        };
        busy_since.set(None);
        let op = match coroutine.checked_request(nres) {
            Some(request) => request.map(checked_op),
            None => {
                let mut yielded = coroutine.yielded(nres);
                let op = read_op(&mut yielded);
                yielded.pop();
                op
            }
        };
        nargs = match op? {
            Op::Request { client, method, url, opts, discard } => {
                let performed = match bridge.clients.get(client) {
                    Ok(core) => {
                        let coroutine = &*coroutine;
                        let hand_over = |response: &_, seq: Option<u64>| match seq {
                            // A statement's response (not a catch one,
                            // which the plan may still settle) is not built.
                            None if discard => coroutine.push_discarded(),
                            _ => bridge.responses.push(coroutine, response, seq.map(|seq| (seq, client))),
                        };
                        client::perform(coroutine.lua(), &core, method, url, opts, hand_over).await
                    }
                    Err(e) => Err(e),
                };
                match performed.and_then(|pushed| pushed) {
                    Ok(pushed) => Ok(pushed),
                    Err(e) => push_error(coroutine, &crate::vm::clean(&e)),
                }
            }
            Op::Sleep(duration) => {
                tokio::time::sleep(duration).await;
                Ok(0)
            }
            Op::Await(id) => match bridge.pending.take(id) {
                Some(operation) => {
                    let finish = operation.await;
                    match finish(coroutine.lua())
                        .and_then(|value| Slot::new(coroutine.lua(), value).map_err(|e| crate::vm::clean(&e)))
                    {
                        Ok(slot) => coroutine.build(&[Piece::Slot(&slot)]),
                        Err(message) => push_error(coroutine, &message),
                    }
                }
                None => push_error(coroutine, "await: no such operation (started once, awaited once)"),
            },
            Op::Invalid(message) => push_error(coroutine, &message),
        }?;
    }
}

/// An operation a coroutine yielded.
enum Op {
    Request {
        client: i64,
        method: Method,
        url: String,
        opts: Option<Table>,
        /// The caller wants no result (a negated method number).
        discard: bool,
    },
    Sleep(Duration),
    /// An operation filed in `Bridge::pending`, by number.
    Await(i64),
    /// Bad operands: the coroutine is resumed with `(nil, message)`.
    Invalid(String),
}

/// Read the operation a coroutine yielded. An `Err` ends the drive (a
/// yield that is not one of ours).
fn read_op(yielded: &mut Yielded) -> mlua::Result<Op> {
    let n = yielded.len();
    // The operands, then the code: (client, url, opts..., id, method,
    // request) or (seconds, sleep).
    match yielded.operation() {
        Some(Operation::Request) if n >= 4 => read_request(yielded),
        Some(Operation::Sleep) if n == 2 => Ok(read_sleep(yielded)),
        Some(Operation::Await) if n == 2 => {
            Ok(yielded.integer(0).map_or_else(|| Op::Invalid("await: expected an operation number".into()), Op::Await))
        }
        _ => Err(mlua::Error::runtime(
            "coroutine.yield from a task, hook or background coroutine is not supported; use coroutine.wrap \
             inside your own code, or swarmer.sleep",
        )),
    }
}

fn read_request(yielded: &mut Yielded) -> mlua::Result<Op> {
    let n = yielded.len();
    // After the client: the URL and the options, if given.
    let given = n - 3;
    let url_at = (given >= 2).then_some(1);
    let opts_at = (given >= 3).then_some(2);
    let (id_at, method_at) = (n - 3, n - 2);
    let Some(client) = yielded.integer(id_at) else {
        return Ok(Op::Invalid(NOT_ON_A_CLIENT.into()));
    };
    let mut discard = false;
    let method = if yielded.kind(method_at) == Kind::Number {
        match numbered_method(yielded.integer(method_at)) {
            Ok((method, discarded)) => {
                discard = discarded;
                method
            }
            Err(invalid) => return Ok(invalid),
        }
    } else {
        let Some(name) = yielded.string(method_at) else {
            return Ok(Op::Invalid("request: the method must be a string".into()));
        };
        match Method::from_bytes(&name) {
            Ok(method) => method,
            Err(_) => {
                let shown = String::from_utf8_lossy(&name).into_owned();
                return Ok(Op::Invalid(format!("request: invalid method {shown:?}")));
            }
        }
    };
    let url = match url_at.and_then(|at| yielded.string(at)).map(String::from_utf8) {
        Some(Ok(url)) => url,
        Some(Err(_)) => return Ok(Op::Invalid(URL_NOT_UTF8.into())),
        None => {
            let kind = url_at.map_or(Kind::None, |at| yielded.kind(at));
            return Ok(Op::Invalid(format!("expected a URL string, got {}", kind.name())));
        }
    };
    let opts = match opts_at.map(|at| (at, yielded.kind(at))) {
        None | Some((_, Kind::Nil)) => None,
        Some((at, Kind::Table)) => match yielded.value(at)? {
            Value::Table(t) => Some(t),
            _ => None,
        },
        Some((_, kind)) => return Ok(Op::Invalid(format!("expected an options table, got {}", kind.name()))),
    };
    Ok(Op::Request { client, method, url, opts, discard })
}

/// The method of a request method's code (1-based in [`METHODS`],
/// negated when the caller wants no result), and whether it is negated.
fn numbered_method(code: Option<i64>) -> Result<(Method, bool), Op> {
    let number = code.and_then(|c| usize::try_from(c.unsigned_abs()).ok());
    match number.and_then(|c| METHODS.get(c.wrapping_sub(1))) {
        Some(method) => Ok((method.clone(), code.is_some_and(|c| c < 0))),
        None => Err(Op::Invalid(format!("request: no method numbered {}", code.unwrap_or_default()))),
    }
}

/// The operation of a request whose operands its C function checked.
fn checked_op(request: CheckedRequest) -> Op {
    let CheckedRequest { client, code, url, opts } = request;
    let Some(client) = client else {
        return Op::Invalid(NOT_ON_A_CLIENT.into());
    };
    let Some(url) = url else {
        return Op::Invalid(URL_NOT_UTF8.into());
    };
    match numbered_method(Some(code)) {
        Ok((method, discard)) => Op::Request { client, method, url, opts, discard },
        Err(invalid) => invalid,
    }
}

fn read_sleep(yielded: &Yielded) -> Op {
    let seconds = yielded.number(0).unwrap_or(f64::NAN);
    if let Ok(duration) = Duration::try_from_secs_f64(seconds) {
        return Op::Sleep(duration);
    }
    let shown = match yielded.kind(0) {
        Kind::Number => seconds.to_string(),
        kind => format!("a {}", kind.name()),
    };
    Op::Invalid(format!("sleep: expected non-negative seconds, got {shown}"))
}

/// Resume values for a failed operation: `nil, message`.
fn push_error(coroutine: &Coroutine, message: &str) -> mlua::Result<c_int> {
    coroutine.build(&[Piece::Nil, Piece::Bytes(message.as_bytes())])
}
