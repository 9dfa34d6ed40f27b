//! The HTTP client a task uses (`user.client`, Locust's `self.client`):
//! a [`Session`] that records every response into the shard's statistics.
//!
//! HOT PATH: one recorder borrow per request, no lock, no channel.

use std::ops::Deref;
use std::rc::Rc;

use swarmer_http::{Method, Request, Response, Session};
use swarmer_stats::RequestSample;

use crate::user::ShardContext;

/// A user's HTTP client.
pub struct Client {
    session: Session,
    shard: Rc<ShardContext>,
}

impl Client {
    pub(crate) fn new(session: Session, shard: Rc<ShardContext>) -> Self {
        Self { session, shard }
    }

    /// `GET url` and record it under `url`.
    pub async fn get(&mut self, url: &str) -> Response {
        self.send(Request::get(url)).await
    }

    /// Send and record: a failure if no response came or the status is not
    /// 2xx/3xx (Locust's default).
    pub async fn send(&mut self, request: Request) -> Response {
        let response = self.session.send(&request).await;
        let name = request.stats_name();
        let failure = response.default_failure(name);
        record(&self.shard, request.method.as_str(), name, &response, failure.as_deref());
        response
    }

    /// Send, and let the task decide success or failure (Locust's
    /// `catch_response=True`). Recorded when the returned value is marked
    /// or dropped; unmarked, Locust's default verdict applies.
    pub async fn send_catch(&mut self, request: Request) -> CatchResponse {
        let response = self.session.send(&request).await;
        let name = request.name.unwrap_or(request.url);
        CatchResponse { response, method: request.method, name, shard: self.shard.clone(), recorded: false }
    }

    /// The underlying session (cookies, connections).
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }
}

#[inline]
fn record(shard: &ShardContext, method: &str, name: &str, response: &Response, error: Option<&str>) {
    shard.record(&RequestSample {
        method,
        name,
        response_time_us: Some(response.elapsed.as_micros() as u64),
        ttfb_us: response.ttfb.as_micros() as u64,
        content_length: response.body.len() as u64,
        error,
    });
}

/// A response whose verdict the task gives.
pub struct CatchResponse {
    response: Response,
    method: Method,
    name: String,
    shard: Rc<ShardContext>,
    recorded: bool,
}

impl CatchResponse {
    /// Record as a success, whatever the status.
    pub fn success(mut self) {
        self.finish(None);
    }

    /// Record as a failure with `message`.
    pub fn failure(mut self, message: impl AsRef<str>) {
        self.finish(Some(message.as_ref()));
    }

    /// The response, keeping the verdict open.
    pub fn response(&self) -> &Response {
        &self.response
    }

    fn finish(&mut self, error: Option<&str>) {
        if !self.recorded {
            self.recorded = true;
            record(&self.shard, self.method.as_str(), &self.name, &self.response, error);
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
        if !self.recorded {
            let failure = self.response.default_failure(&self.name);
            self.finish(failure.as_deref());
        }
    }
}
