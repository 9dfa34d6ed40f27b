//! The context a task runs with: Locust's `self` inside a user.

use std::any::Any;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;

use crate::client::Client;
use crate::shard_context::ShardContext;

/// One simulated user, as its tasks see it.
pub struct User {
    /// The user's own HTTP client (connections, cookies).
    pub client: Client,
    id: u64,
    class_name: Rc<str>,
    state: Option<Box<dyn Any>>,
    rng: SmallRng,
    pub(crate) shard: Rc<ShardContext>,
    /// When the current task started, for constant pacing.
    pub(crate) task_started: Instant,
}

impl User {
    pub(crate) fn new(
        id: u64,
        class_name: Rc<str>,
        client: Client,
        state: Option<Box<dyn Any>>,
        rng: SmallRng,
        shard: Rc<ShardContext>,
    ) -> Self {
        Self { client, id, class_name, state, rng, shard, task_started: Instant::now() }
    }

    /// A number unique to this user within the test run.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name of the user's class.
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// The user's state, as built by [`crate::UserClass::state`]. `None` if
    /// the class has no state or it is of another type.
    pub fn state<S: Any>(&mut self) -> Option<&mut S> {
        self.state.as_mut()?.downcast_mut()
    }

    /// Replace the user's state (front ends that manage their own).
    pub fn set_state(&mut self, state: Box<dyn Any>) {
        self.state = Some(state);
    }

    /// The user's own random number generator.
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// Sleep without blocking other users (Locust's `gevent.sleep`).
    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }

    /// Record a sample of any request type, as Locust's
    /// `events.request.fire` does: for protocols other than HTTP.
    pub fn record_request(
        &self,
        request_type: &str,
        name: &str,
        response_time: Duration,
        length: u64,
        error: Option<&str>,
    ) {
        self.client.record_request(request_type, name, response_time, length, error);
    }

    /// Time `work` and record it as a request of `request_type` and `name`;
    /// a failure if it returns `Err`.
    pub async fn measure<T, E: std::fmt::Display>(
        &self,
        request_type: &str,
        name: &str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = work.await;
        let error = result.as_ref().err().map(|e| e.to_string());
        self.record_request(request_type, name, started.elapsed(), 0, error.as_deref());
        result
    }

    /// Record an exception without leaving the task.
    pub fn record_exception(&self, message: &str, location: &str) {
        self.shard.record_exception(message, location);
    }
}
