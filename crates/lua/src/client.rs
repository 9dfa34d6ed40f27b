//! `self.client`: the clients of a VM's users and the requests they make.
//!
//! `self.client:get(url, opts)` (and post, put, patch, delete, head,
//! options, request) take Locust's request options as a table: `name`,
//! `headers`, `params`, `data` (table → form, string → body), `json`,
//! `body`, `timeout` (seconds), `max_body` (bytes; `--max-body-size` for
//! one request), `allow_redirects`, `catch_response`.
//! The methods (C functions in [`crate::driver`], `request` in the prelude)
//! yield to the coroutine driver with the client's number in this VM's
//! [`Clients`];
//! the driver calls [`perform`] and resumes the coroutine with a response
//! object (`crate::responses`: `status_code`, `ok`, `text`, `content`,
//! `headers`, `url`, `elapsed`, `error`, `json()`, and with
//! `catch_response` also `success()` and `failure(msg)`).
//!
//! Catch responses wait in their client's list until the task of that
//! client's user ends (also those made by a background coroutine or a
//! listener with a kept client), then get Locust's default verdict.

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
    /// The number the next catch response gets (never reused within the
    /// client, so a response kept past its task cannot mark a later one;
    /// client numbers are not reused either).
    next_catch: Cell<u64>,
    /// The user's gRPC channels by host: one HTTP/2 connection each,
    /// opened on the first call, gone with the user.
    grpc: RefCell<Vec<(String, swarmer_grpc::GrpcUserClient)>>,
    /// The user's open WebSockets, event streams and TCP connections, by
    /// number: closed when the plan closes them, when their Lua object is
    /// garbage, or when the user goes.
    live: RefCell<Numbered<crate::realtime::Live>>,
    /// Set when the user goes: operations still waiting on its
    /// connections end at once (their connections close).
    gone: tokio::sync::watch::Sender<bool>,
}

impl ClientCore {
    /// The host of the user's requests (`--host`, or the class's).
    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    /// The user's gRPC client of `host`, made on first use.
    pub fn grpc_client(&self, host: &str) -> Result<swarmer_grpc::GrpcUserClient, swarmer_grpc::ProtoError> {
        if let Some((_, client)) = self.grpc.borrow().iter().find(|(h, _)| h == host) {
            return Ok(client.clone());
        }
        let client = swarmer_grpc::GrpcUserClient::new(&self.client, host)?;
        self.grpc.borrow_mut().push((host.to_owned(), client.clone()));
        Ok(client)
    }

    /// The user's engine client (for protocol clients that record samples).
    pub fn engine_client(&self) -> &Client {
        &self.client
    }

    /// Keep an open connection of the user's; its number, or `None` when
    /// the user has [`MOST_LIVE`] open already.
    pub fn keep_live(&self, live: crate::realtime::Live) -> Option<i64> {
        let mut kept = self.live.borrow_mut();
        (kept.slots.len() < MOST_LIVE).then(|| kept.add(live))
    }

    /// Resolves when the user goes.
    pub fn gone(&self) -> impl Future<Output = ()> + 'static {
        let mut gone = self.gone.subscribe();
        async move {
            // Sent, or the sender dropped: either way the user is gone.
            let _ = gone.wait_for(|gone| *gone).await;
        }
    }

    /// An open connection of the user's, by number.
    pub fn live(&self, id: i64) -> Option<crate::realtime::Live> {
        self.live.borrow().get(id).cloned()
    }

    /// Forget an open connection (it closes when no call holds it).
    pub fn drop_live(&self, id: i64) {
        // Also called by a Lua finalizer, which may run while this is
        // borrowed (an allocation inside a borrow): then the connection
        // stays until the user goes.
        if let Ok(mut live) = self.live.try_borrow_mut() {
            live.remove(id);
        }
    }

    /// Record an exception in this user's name (see `call::StuckReport`).
    pub fn record_exception(&self, message: &str, location: &str) {
        self.client.record_exception(message, location);
    }

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

/// The clients of one VM's users, by number (slot 1 of a Lua
/// `self.client`). A user's entry goes when the user does.
#[derive(Default)]
pub struct Clients {
    numbered: RefCell<Numbered<Rc<ClientCore>>>,
}

impl Clients {
    /// Add a user's client; returns its number.
    pub fn add(&self, client: Client) -> (i64, Rc<ClientCore>) {
        let core = Rc::new(ClientCore {
            client,
            pending: RefCell::default(),
            next_catch: Cell::new(1),
            grpc: RefCell::default(),
            live: RefCell::default(),
            gone: tokio::sync::watch::Sender::new(false),
        });
        (self.numbered.borrow_mut().add(core.clone()), core)
    }

    pub fn remove(&self, id: i64) {
        // A finalizer may call this at any allocation: if the list is being
        // changed just then, the entry stays until the VM goes.
        let Ok(mut numbered) = self.numbered.try_borrow_mut() else { return };
        let removed = numbered.take(id);
        drop(numbered);
        if let Some(core) = removed {
            // Its connections close, and operations waiting on them end.
            core.gone.send_replace(true);
            if let Ok(mut live) = core.live.try_borrow_mut() {
                drop(std::mem::take(&mut *live));
            }
        }
    }

    /// Client `id`, if it is there and the list is not being changed
    /// (for finalizers, which may run at any allocation).
    pub fn find(&self, id: i64) -> Option<Rc<ClientCore>> {
        self.numbered.try_borrow().ok()?.get(id).cloned()
    }

    pub fn get(&self, id: i64) -> mlua::Result<Rc<ClientCore>> {
        self.numbered.borrow().get(id).cloned().ok_or_else(|| mlua::Error::runtime("this client's user has stopped"))
    }
}

/// Most connections one user may hold open at once.
pub const MOST_LIVE: usize = 256;

/// Values by number. A number is a slot and a generation, so a number kept
/// after its value was removed is refused rather than reaching the value
/// now in that slot.
struct Numbered<T> {
    slots: Slab<(u32, T)>,
    generation: u32,
}

impl<T> Default for Numbered<T> {
    fn default() -> Self {
        Self { slots: Slab::new(), generation: 0 }
    }
}

impl<T> Numbered<T> {
    fn add(&mut self, value: T) -> i64 {
        // 31 bits of generation keep the number a positive Lua integer.
        self.generation = self.generation.wrapping_add(1) & 0x7fff_ffff;
        let slot = self.slots.insert((self.generation, value));
        (i64::from(self.generation) << 32) | slot as i64
    }

    fn slot(&self, id: i64) -> Option<usize> {
        let slot = (id & 0xffff_ffff) as usize;
        self.slots.get(slot).filter(|(generation, _)| i64::from(*generation) == id >> 32).map(|_| slot)
    }

    fn get(&self, id: i64) -> Option<&T> {
        self.slot(id).map(|slot| &self.slots[slot].1)
    }

    fn remove(&mut self, id: i64) {
        self.take(id);
    }

    fn take(&mut self, id: i64) -> Option<T> {
        let slot = self.slot(id)?;
        Some(self.slots.remove(slot).1)
    }
}

/// `swarmer._fire_request(client, t)`: record a sample of any type
/// (Locust's `events.request.fire`).
pub fn fire_request(clients: &Clients, id: i64, t: &Table) -> mlua::Result<()> {
    let core = clients.get(id)?;
    let request_type: String = t.get("request_type")?;
    let name: String = t.get("name")?;
    let ms: f64 = t.get::<Option<f64>>("response_time")?.unwrap_or(0.0);
    let Some(elapsed) = Duration::try_from_secs_f64(ms / 1000.0).ok().filter(|_| ms.is_finite()) else {
        return Err(mlua::Error::runtime(format!("fire_request: response_time must be milliseconds >= 0, got {ms}")));
    };
    let length: u64 = t.get::<Option<u64>>("response_length")?.unwrap_or(0);
    let error: Option<String> = t.get::<Option<Value>>("exception")?.map(|v| display(&v));
    core.client.record_request(&request_type, &name, elapsed, length, error.as_deref());
    Ok(())
}

/// `swarmer._verdict(client, seq, failure)`: a catch response's verdict
/// (`r:success()`, `r:failure(msg)`). One whose task has ended (or whose
/// user has stopped) was already recorded, and is left so, as in Locust.
pub fn verdict(clients: &Clients, id: i64, seq: u64, failure: Option<String>) -> mlua::Result<()> {
    let Ok(core) = clients.get(id) else { return Ok(()) };
    // Out of the list before recording: recording runs `request`
    // listeners, which may give other responses of this client theirs.
    let taken = {
        let mut pending = core.pending.borrow_mut();
        let position = pending.iter().position(|(n, _)| *n == seq);
        position.map(|i| pending.remove(i).1)
    };
    if let Some(mut response) = taken {
        match failure {
            None => response.mark_success(),
            Some(message) => response.mark_failure(&message),
        }
    }
    Ok(())
}

/// One request a coroutine asked for: `hand_over` gets the response (and
/// for a catch response its number) before it is dropped or, for a catch
/// response, kept in the client's pending list. Bad options are an `Err`
/// naming the option. The HTTP future is boxed here, on its own: the
/// task's future then stays small, and the whole costs fewer instructions
/// per request (one large box built in place rather than a 3 KB task
/// future copied into its box).
pub async fn perform<R>(
    lua: &Lua,
    core: &ClientCore,
    method: Method,
    url: String,
    opts: Option<Table>,
    hand_over: impl FnOnce(&Response, Option<u64>) -> R,
) -> mlua::Result<R> {
    let (request, catch) = build_request(lua, method, url, opts)?;
    if catch {
        let seq = core.next_catch.get();
        core.next_catch.set(seq + 1);
        let response = crate::in_place::boxed(|| core.client.send_catch(request)).await;
        let handed = hand_over(response.response(), Some(seq));
        core.pending.borrow_mut().push((seq, response));
        Ok(handed)
    } else {
        let response = crate::in_place::boxed(|| core.client.send(request)).await;
        Ok(hand_over(&response, None))
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
        match Duration::try_from_secs_f64(seconds) {
            Ok(timeout) if seconds > 0.0 => request = request.timeout(timeout),
            _ => {
                return Err(mlua::Error::runtime(format!(
                    "timeout must be a positive number of seconds, got {seconds}"
                )));
            }
        }
    }
    if let Some(bytes) = opts.get::<Option<usize>>("max_body")? {
        request = request.max_body(bytes);
    }
    if let Some(allow) = opts.get::<Option<bool>>("allow_redirects")? {
        request = request.allow_redirects(allow);
    }
    let catch = opts.get::<Option<bool>>("catch_response")?.unwrap_or(false);
    Ok((request, catch))
}

const KNOWN_OPTIONS: [&str; 10] =
    ["name", "headers", "params", "data", "json", "body", "timeout", "max_body", "allow_redirects", "catch_response"];

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

#[cfg(test)]
mod tests {
    use super::Numbered;

    #[test]
    fn a_number_kept_after_removal_does_not_reach_the_next_value_in_its_slot() {
        let mut numbered = Numbered::default();
        let first = numbered.add("first user");
        numbered.remove(first);
        let second = numbered.add("second user");
        assert_eq!(first & 0xffff_ffff, second & 0xffff_ffff, "the slot is reused");
        assert_eq!(numbered.get(first), None);
        assert_eq!(numbered.get(second), Some(&"second user"));
        numbered.remove(first);
        assert_eq!(numbered.get(second), Some(&"second user"), "a stale number removes nothing");
        assert!(second > 0 && numbered.get(-1).is_none() && numbered.get(i64::MAX).is_none());
    }
}
