//! `self.client`: the clients of a VM's users and the requests they make.
//!
//! `self.client:get(url, opts)` (and post, put, patch, delete, head,
//! options, request) take Locust's request options as a table: `name`,
//! `headers`, `params`, `data` (table → form, string → body), `json`,
//! `body`, `timeout` (seconds), `allow_redirects`, `catch_response`.
//! The methods live in the Lua prelude: they yield to the coroutine driver
//! ([`crate::driver`]) with the client's number in this VM's [`Clients`];
//! the driver calls [`perform`] and resumes the coroutine with the
//! response as plain values, of which the prelude makes a response table
//! (`status_code`, `ok`, `text`, `content`, `headers`, `url`, `elapsed`,
//! `error`, `json()`, and with `catch_response` also `success()` and
//! `failure(msg)`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use slab::Slab;
use swarmer_engine::{CatchResponse, Client, Request, Response};
use swarmer_http::Method;

/// One user's client as the Lua side reaches it.
pub struct ClientCore {
    client: Client,
    /// Catch responses waiting for a verdict, by number; the task runner
    /// gives them Locust's default verdict when the task ends.
    pending: RefCell<Vec<(u64, CatchResponse)>>,
    /// The number the next catch response gets (never reused, so a
    /// response kept past its task cannot mark a later one).
    next_catch: Cell<u64>,
}

impl ClientCore {
    /// Give every catch response not yet marked Locust's default verdict.
    pub fn finish_pending(&self) {
        if self.pending.borrow().is_empty() {
            return;
        }
        let unmarked: Vec<_> = self.pending.borrow_mut().drain(..).collect();
        for (_, mut response) in unmarked {
            response.finish_default();
        }
    }
}

/// The clients of one VM's users, by number (the `_id` of a Lua
/// `self.client`). A user's entry goes when the user does.
#[derive(Default)]
pub struct Clients {
    slots: RefCell<Slab<Rc<ClientCore>>>,
}

impl Clients {
    pub fn add(&self, client: Client) -> (usize, Rc<ClientCore>) {
        let core = Rc::new(ClientCore { client, pending: RefCell::default(), next_catch: Cell::new(1) });
        (self.slots.borrow_mut().insert(core.clone()), core)
    }

    pub fn remove(&self, id: usize) {
        self.slots.borrow_mut().try_remove(id);
    }

    pub fn get(&self, id: i64) -> mlua::Result<Rc<ClientCore>> {
        usize::try_from(id)
            .ok()
            .and_then(|id| self.slots.borrow().get(id).cloned())
            .ok_or_else(|| mlua::Error::runtime("this client's user has stopped"))
    }
}

/// `swarmer._fire_request(client, t)`: record a sample of any type
/// (Locust's `events.request.fire`).
pub fn fire_request(clients: &Clients, id: i64, t: &Table) -> mlua::Result<()> {
    let core = clients.get(id)?;
    let request_type: String = t.get("request_type")?;
    let name: String = t.get("name")?;
    let ms: f64 = t.get::<Option<f64>>("response_time")?.unwrap_or(0.0);
    if !(ms.is_finite() && ms >= 0.0) {
        return Err(mlua::Error::runtime(format!("fire_request: response_time must be milliseconds >= 0, got {ms}")));
    }
    let length: u64 = t.get::<Option<u64>>("response_length")?.unwrap_or(0);
    let error: Option<String> = t.get::<Option<Value>>("exception")?.map(|v| display(&v));
    core.client.record_request(&request_type, &name, Duration::from_secs_f64(ms / 1000.0), length, error.as_deref());
    Ok(())
}

/// `swarmer._verdict(client, seq, failure)`: a catch response's verdict
/// (`r:success()`, `r:failure(msg)`). One whose task has ended was
/// already recorded, and is left so, as in Locust.
pub fn verdict(clients: &Clients, id: i64, seq: u64, failure: Option<String>) -> mlua::Result<()> {
    let core = clients.get(id)?;
    let mut pending = core.pending.borrow_mut();
    if let Some((_, response)) = pending.iter_mut().find(|(n, _)| *n == seq) {
        match failure {
            None => response.mark_success(),
            Some(message) => response.mark_failure(&message),
        }
    }
    Ok(())
}

/// What a request gives back to its coroutine. Lives on the stack for a
/// moment: boxing the response would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Plain(Response),
    /// A catch response, kept in the client's pending list under this number.
    Catch(u64),
}

/// One request a coroutine asked for. Bad options are an `Err` naming the
/// option. The HTTP future is boxed here, on its own: the task's future
/// then stays small, and the whole costs fewer instructions per request
/// (one large box built in place rather than a 3 KB task future copied
/// into its box).
pub async fn perform(
    lua: &Lua,
    core: &ClientCore,
    method: Method,
    url: String,
    opts: Option<Table>,
) -> mlua::Result<Outcome> {
    let (request, catch) = build_request(lua, method, url, opts)?;
    if catch {
        let seq = core.next_catch.get();
        core.next_catch.set(seq + 1);
        let response = Box::pin(core.client.send_catch(request)).await;
        core.pending.borrow_mut().push((seq, response));
        Ok(Outcome::Catch(seq))
    } else {
        Ok(Outcome::Plain(Box::pin(core.client.send(request)).await))
    }
}

/// Call `f` with the response behind `outcome` (for a catch response, the
/// one in `core`'s pending list, there until its task ends).
pub fn with_response<R>(
    core: &ClientCore,
    outcome: &Outcome,
    f: impl FnOnce(&Response, Option<u64>) -> R,
) -> Option<R> {
    match outcome {
        Outcome::Plain(response) => Some(f(response, None)),
        Outcome::Catch(seq) => {
            let pending = core.pending.borrow();
            let (_, response) = pending.iter().find(|(n, _)| n == seq)?;
            Some(f(response.response(), Some(*seq)))
        }
    }
}

fn build_request(lua: &Lua, method: Method, url: String, opts: Option<Table>) -> mlua::Result<(Request, bool)> {
    let mut request = Request::new(method, url);
    let Some(opts) = opts else {
        return Ok((request, false));
    };
    for pair in opts.clone().pairs::<String, Value>() {
        let (key, _) = pair?;
        if !KNOWN_OPTIONS.contains(&key.as_str()) {
            return Err(mlua::Error::runtime(format!(
                "unknown request option '{key}' (known: {})",
                KNOWN_OPTIONS.join(", ")
            )));
        }
    }
    if let Some(name) = opts.get::<Option<String>>("name")? {
        request = request.name(name);
    }
    if let Some(headers) = opts.get::<Option<Table>>("headers")? {
        for (k, v) in sorted_pairs(&headers)? {
            request = request.header(&k, &v);
        }
    }
    if let Some(params) = opts.get::<Option<Table>>("params")? {
        for (k, v) in sorted_pairs(&params)? {
            request = request.query(k, v);
        }
    }
    match opts.get::<Value>("data")? {
        Value::Nil => {}
        Value::Table(t) => request = request.form(&sorted_pairs(&t)?),
        Value::String(s) => request = request.body(s.as_bytes().to_vec()),
        other => {
            return Err(mlua::Error::runtime(format!("data must be a table or a string, got {}", other.type_name())));
        }
    }
    let json: Value = opts.get("json")?;
    if !json.is_nil() {
        let value: serde_json::Value = lua.from_value(json)?;
        request = request.json(&value);
    }
    if let Some(body) = opts.get::<Option<mlua::String>>("body")? {
        request = request.body(body.as_bytes().to_vec());
    }
    if let Some(seconds) = opts.get::<Option<f64>>("timeout")? {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(mlua::Error::runtime(format!("timeout must be a positive number of seconds, got {seconds}")));
        }
        request = request.timeout(Duration::from_secs_f64(seconds));
    }
    if let Some(allow) = opts.get::<Option<bool>>("allow_redirects")? {
        request = request.allow_redirects(allow);
    }
    let catch = opts.get::<Option<bool>>("catch_response")?.unwrap_or(false);
    Ok((request, catch))
}

const KNOWN_OPTIONS: [&str; 9] =
    ["name", "headers", "params", "data", "json", "body", "timeout", "allow_redirects", "catch_response"];

/// A table's string pairs sorted by key (Lua's own order is unspecified).
fn sorted_pairs(t: &Table) -> mlua::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair?;
        pairs.push((scalar(k)?, scalar(v)?));
    }
    pairs.sort();
    Ok(pairs)
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string_lossy(),
        other => other.to_string().unwrap_or_else(|_| other.type_name().to_owned()),
    }
}

fn scalar(v: Value) -> mlua::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_str()?.to_string()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => Err(mlua::Error::runtime(format!("expected a string or number, got {}", other.type_name()))),
    }
}
