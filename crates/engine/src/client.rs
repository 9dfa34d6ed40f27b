//! The HTTP client a task uses (`user.client`, Locust's `self.client`):
//! a [`Session`] that records every response into the shard's statistics.
//!
//! A `Client` is a cheap handle (`Clone`): front ends such as Lua keep a
//! copy in their own user object. If two coroutines of one user send at the
//! same time, the second gets a connection of its own for that request, as a
//! browser opens a second connection.
//!
//! HOT PATH: one recorder borrow per request, no lock, no channel.

use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use swarmer_http::{ClientConfig, ConnectionPool, Method, Request, Response, Session};
use swarmer_stats::RequestSample;

use crate::shard_context::{NO_SCHEDULE, ShardContext};

/// A user's HTTP client.
#[derive(Clone)]
pub struct Client {
    session: Rc<RefCell<Session>>,
    /// The session's settings, for a sibling session when it is busy.
    config: Arc<ClientConfig>,
    base_url: Rc<str>,
    shard: Rc<ShardContext>,
    /// Where connections come from when the class limits them.
    pool: Option<Rc<ConnectionPool>>,
    /// How late (µs) the user's current iteration began against its
    /// schedule (arrival rate, constant pacing); [`NO_SCHEDULE`] without one.
    schedule_lag: Rc<Cell<u64>>,
}

impl Client {
    pub(crate) fn new(config: Arc<ClientConfig>, base_url: String, shard: Rc<ShardContext>) -> Self {
        Self::pooled(config, base_url, shard, None)
    }

    /// A client whose sessions take connections from `pool`, if given.
    pub(crate) fn pooled(
        config: Arc<ClientConfig>,
        base_url: String,
        shard: Rc<ShardContext>,
        pool: Option<Rc<ConnectionPool>>,
    ) -> Self {
        let session = Self::session_for(&config, &base_url, &pool);
        Self {
            session: Rc::new(RefCell::new(session)),
            config,
            base_url: base_url.into(),
            shard,
            pool,
            schedule_lag: Rc::new(Cell::new(NO_SCHEDULE)),
        }
    }

    fn session_for(config: &Arc<ClientConfig>, base_url: &str, pool: &Option<Rc<ConnectionPool>>) -> Session {
        match pool {
            Some(pool) => Session::with_pool(config.clone(), base_url, pool.clone()),
            None => Session::new(config.clone(), base_url),
        }
    }

    /// `GET url` and record it under `url`.
    pub async fn get(&self, url: &str) -> Response {
        self.send(Request::get(url)).await
    }

    /// Send on the user's session, or on a sibling session (own connection,
    /// same host) when another coroutine of this user is mid-request.
    #[allow(clippy::await_holding_refcell_ref)] // Single-threaded; a concurrent borrow falls back to a sibling.
    async fn exchange(&self, request: &Request) -> Response {
        match self.session.try_borrow_mut() {
            Ok(mut session) => session.send(request).await,
            Err(_) => {
                let mut sibling = Self::session_for(&self.config, &self.base_url, &self.pool);
                sibling.send(request).await
            }
        }
    }

    /// Send and record: a failure if no response came or the status is not
    /// 2xx/3xx (Locust's default).
    pub async fn send(&self, request: Request) -> Response {
        let response = self.exchange(&request).await;
        let name = request.stats_name();
        let failure = response.default_failure(name);
        record(&self.shard, self.schedule_lag.get(), request.method.as_str(), name, &response, failure.as_deref());
        response
    }

    /// How late the current iteration began against its schedule; `None`
    /// when it has none. Requests recorded from now on also count from
    /// when they were due.
    pub(crate) fn set_schedule_lag(&self, lag: Option<std::time::Duration>) {
        self.schedule_lag.set(lag.map_or(NO_SCHEDULE, |l| (l.as_micros() as u64).min(NO_SCHEDULE - 1)));
    }

    /// Send, and let the task decide success or failure (Locust's
    /// `catch_response=True`). Recorded when the returned value is marked
    /// or dropped; unmarked, Locust's default verdict applies.
    pub async fn send_catch(&self, request: Request) -> CatchResponse {
        let response = self.exchange(&request).await;
        let name = request.name.unwrap_or(request.url);
        CatchResponse {
            response,
            method: request.method,
            name,
            shard: self.shard.clone(),
            lag: self.schedule_lag.get(),
            recorded: false,
        }
    }

    /// The host requests without a scheme and host go to (`--host` or the
    /// class's `host`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The HTTP client settings the test runs with (TLS trust included).
    pub fn http_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Record a sample of any request type (Locust's `events.request.fire`),
    /// for protocols other than HTTP and for timed blocks of plan code.
    pub fn record_request(
        &self,
        request_type: &str,
        name: &str,
        response_time: std::time::Duration,
        length: u64,
        error: Option<&str>,
    ) {
        let sample = RequestSample {
            method: request_type,
            name,
            response_time_us: Some(response_time.as_micros() as u64),
            ttfb_us: 0,
            content_length: length,
            error,
        };
        self.shard.record_scheduled(&sample, self.schedule_lag.get());
    }

    /// Record an exception (an error in user code) in the shard's
    /// statistics, for front ends that notice one outside a task's result.
    pub fn record_exception(&self, message: &str, location: &str) {
        self.shard.record_exception(message, location);
    }

    /// The underlying session (cookies, connections). Panics if called
    /// while a request of this user is in flight.
    pub fn session(&self) -> std::cell::RefMut<'_, Session> {
        self.session.borrow_mut()
    }
}

#[inline]
fn record(shard: &ShardContext, lag_us: u64, method: &str, name: &str, response: &Response, error: Option<&str>) {
    let sample = RequestSample {
        method,
        name,
        response_time_us: Some(response.elapsed.as_micros() as u64),
        ttfb_us: response.ttfb.as_micros() as u64,
        content_length: response.body.len() as u64,
        error,
    };
    shard.record_scheduled(&sample, lag_us);
}

/// Makes clients outside users, for a front end's listeners and
/// background work on one shard (test data set up at `test_start`, say).
/// Their requests are recorded in the shard's statistics, or not at all.
#[derive(Clone)]
pub struct ClientMaker {
    config: Arc<ClientConfig>,
    recorded: Rc<ShardContext>,
    /// A context whose statistics nobody reads.
    unrecorded: Rc<ShardContext>,
    /// The test's host: `--host`, then each test's.
    host: Rc<RefCell<Option<String>>>,
}

impl ClientMaker {
    pub(crate) fn new(config: Arc<ClientConfig>, shard: Rc<ShardContext>, host: Option<String>) -> Self {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let unrecorded = Rc::new(ShardContext::new("unrecorded", events));
        Self { config, recorded: shard, unrecorded, host: Rc::new(RefCell::new(host)) }
    }

    /// The host a test started with (clients made without one use it).
    pub(crate) fn set_host(&self, host: Option<String>) {
        if host.is_some() {
            *self.host.borrow_mut() = host;
        }
    }

    /// A client for `host` (else the test's host), whose requests are
    /// recorded if `record`. `None` when no host is known.
    pub fn client(&self, host: Option<String>, record: bool) -> Option<Client> {
        let host = host.or_else(|| self.host.borrow().clone())?;
        let context = if record { &self.recorded } else { &self.unrecorded };
        Some(Client::new(self.config.clone(), host, context.clone()))
    }
}

/// A response whose verdict the task gives.
pub struct CatchResponse {
    response: Response,
    method: Method,
    name: String,
    shard: Rc<ShardContext>,
    /// The user's schedule lag when the request was sent.
    lag: u64,
    recorded: bool,
}

impl CatchResponse {
    /// Record as a success, whatever the status.
    pub fn success(mut self) {
        self.finish(None);
    }

    /// Record as a failure with `message`, which reads as Locust's
    /// `CatchResponseError('message')` in the failures table.
    pub fn failure(mut self, message: impl AsRef<str>) {
        self.mark_failure(message.as_ref());
    }

    /// The response, keeping the verdict open.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// Record as a success now (later marks are ignored). For front ends
    /// that hold the response in a shared cell.
    pub fn mark_success(&mut self) {
        self.finish(None);
    }

    /// Record as a failure now (later marks are ignored), as
    /// `CatchResponseError('message')`.
    pub fn mark_failure(&mut self, message: &str) {
        if !self.recorded {
            self.finish(Some(&format!("CatchResponseError({})", python_repr(message))));
        }
    }

    /// Record with Locust's default verdict unless already marked.
    pub fn finish_default(&mut self) {
        if !self.recorded {
            let failure = self.response.default_failure(&self.name);
            self.finish(failure.as_deref());
        }
    }

    /// Whether a verdict has been recorded.
    pub fn is_recorded(&self) -> bool {
        self.recorded
    }

    fn finish(&mut self, error: Option<&str>) {
        if !self.recorded {
            self.recorded = true;
            record(&self.shard, self.lag, self.method.as_str(), &self.name, &self.response, error);
        }
    }
}

impl Deref for CatchResponse {
    type Target = Response;
    fn deref(&self) -> &Response {
        &self.response
    }
}

impl Drop for CatchResponse {
    fn drop(&mut self) {
        self.finish_default();
    }
}

/// A string as Python's `repr` writes it, the way Locust's failures table
/// shows a `CatchResponseError`: single quotes unless the text has one and
/// no double quote, with backslashes, the quote and control characters
/// escaped.
fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::python_repr;

    #[test]
    fn strings_read_as_pythons_repr() {
        assert_eq!(python_repr("No data"), "'No data'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("say \"it's\""), "'say \"it\\'s\"'");
        assert_eq!(python_repr("a\\b\nc\u{1}"), "'a\\\\b\\nc\\x01'");
    }
}
