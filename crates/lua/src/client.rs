//! `self.client` and the responses it returns.
//!
//! `self.client:get(url, opts)` (and post, put, patch, delete, head,
//! options, request) take Locust's request options as a table: `name`,
//! `headers`, `params`, `data` (table → form, string → body), `json`,
//! `body`, `timeout` (seconds), `allow_redirects`, `catch_response`.
//! The methods live in the Lua prelude: they yield to the coroutine driver
//! ([`crate::call::drive`]), which calls [`perform`] and resumes the
//! coroutine with the response. A response offers `status_code`, `ok`, `text`, `content`,
//! `headers`, `url`, `elapsed`, `error`, `json()`, and with
//! `catch_response` also `success()` and `failure(msg)`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataFields, UserDataMethods, Value};
use swarmer_engine::{CatchResponse, Client, Request, Response};
use swarmer_http::Method;

/// Catch responses of a user waiting for a verdict; the task runner gives
/// them Locust's default verdict when the task ends.
pub type Pending = Rc<RefCell<Vec<Rc<RefCell<CatchResponse>>>>>;

/// The `self.client` userdata.
pub struct LuaClient {
    client: Client,
    pending: Pending,
}

impl LuaClient {
    pub fn new(client: Client, pending: Pending) -> Self {
        Self { client, pending }
    }
}

impl UserData for LuaClient {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // Record a sample of any type (Locust's events.request.fire). The
        // requests themselves go through the coroutine driver (`perform`).
        methods.add_method("fire_request", |_, this, t: Table| {
            let request_type: String = t.get("request_type")?;
            let name: String = t.get("name")?;
            let ms: f64 = t.get::<Option<f64>>("response_time")?.unwrap_or(0.0);
            if !(ms.is_finite() && ms >= 0.0) {
                return Err(mlua::Error::runtime(format!(
                    "fire_request: response_time must be milliseconds >= 0, got {ms}"
                )));
            }
            let length: u64 = t.get::<Option<u64>>("response_length")?.unwrap_or(0);
            let error: Option<String> = t.get::<Option<Value>>("exception")?.map(|v| display(&v));
            this.client.record_request(
                &request_type,
                &name,
                Duration::from_secs_f64(ms / 1000.0),
                length,
                error.as_deref(),
            );
            Ok(())
        });
    }
}

/// One request a user's coroutine asked for: `client` is its `self.client`
/// userdata. Bad options are an `Err` naming the option.
pub async fn perform(
    lua: &Lua,
    client: &mlua::AnyUserData,
    method: &str,
    url: String,
    opts: Option<Table>,
) -> mlua::Result<LuaResponse> {
    let (client, pending) = {
        let this = client.borrow::<LuaClient>()?;
        (this.client.clone(), this.pending.clone())
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| mlua::Error::runtime(format!("request: invalid method {method:?}")))?;
    let (request, catch) = build_request(lua, method, url, opts)?;
    if catch {
        let response = Rc::new(RefCell::new(client.send_catch(request).await));
        pending.borrow_mut().push(response.clone());
        Ok(LuaResponse::Catch(response))
    } else {
        Ok(LuaResponse::Plain(Rc::new(client.send(request).await)))
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

/// A response as Lua sees it.
pub enum LuaResponse {
    Plain(Rc<Response>),
    Catch(Rc<RefCell<CatchResponse>>),
}

impl LuaResponse {
    fn with<R>(&self, f: impl FnOnce(&Response) -> R) -> R {
        match self {
            LuaResponse::Plain(r) => f(r),
            LuaResponse::Catch(c) => f(c.borrow().response()),
        }
    }
}

impl UserData for LuaResponse {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("status_code", |_, this| Ok(this.with(|r| r.status_code())));
        fields.add_field_method_get("ok", |_, this| {
            Ok(this
                .with(|r| r.error.is_none() && r.status.is_some_and(|s| !s.is_client_error() && !s.is_server_error())))
        });
        fields.add_field_method_get("text", |lua, this| this.with(|r| lua.create_string(&r.body)));
        fields.add_field_method_get("content", |lua, this| this.with(|r| lua.create_string(&r.body)));
        fields.add_field_method_get("url", |_, this| Ok(this.with(|r| r.url.clone())));
        fields.add_field_method_get("elapsed", |_, this| Ok(this.with(|r| r.elapsed.as_secs_f64())));
        fields.add_field_method_get("error", |_, this| Ok(this.with(|r| r.error.as_ref().map(|e| e.to_string()))));
        fields.add_field_method_get("headers", |lua, this| {
            this.with(|r| {
                let t = lua.create_table()?;
                for (name, value) in &r.headers {
                    t.set(name.as_str(), String::from_utf8_lossy(value.as_bytes()).into_owned())?;
                }
                Ok(t)
            })
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("json", |lua, this, ()| {
            let value: serde_json::Value = this
                .with(|r| serde_json::from_slice(&r.body))
                .map_err(|e| mlua::Error::runtime(format!("response body is not JSON: {e}")))?;
            lua.to_value(&value)
        });
        methods.add_method("success", |_, this, ()| match this {
            LuaResponse::Catch(c) => {
                c.borrow_mut().mark_success();
                Ok(())
            }
            LuaResponse::Plain(_) => Err(mlua::Error::runtime("success() needs catch_response = true")),
        });
        methods.add_method("failure", |_, this, message: String| match this {
            LuaResponse::Catch(c) => {
                c.borrow_mut().mark_failure(&message);
                Ok(())
            }
            LuaResponse::Plain(_) => Err(mlua::Error::runtime("failure() needs catch_response = true")),
        });
    }
}
