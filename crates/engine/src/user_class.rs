//! A user class: Locust's `User` / `HttpUser` subclass, as data.

use std::any::Any;
use std::rc::Rc;

use crate::control::TaskResult;
use crate::task::{LocalBoxFuture, Task, TaskFn, TaskSet};
use crate::user::User;
use crate::wait_time::WaitTime;

/// Builds the per-user state a class wants (`self.something` in Locust).
pub type StateFactory = Rc<dyn Fn() -> Box<dyn Any>>;

/// One kind of simulated user.
#[derive(Clone)]
pub struct UserClass {
    pub name: String,
    /// Relative share of the weighted users (ignored with `fixed_count`).
    pub weight: u32,
    /// Exactly this many users of the class, placed before weighted ones.
    pub fixed_count: Option<u32>,
    /// Default host when `--host` is not given.
    pub host: Option<String>,
    pub wait_time: WaitTime,
    pub tasks: TaskSet,
    pub on_start: Option<TaskFn>,
    pub on_stop: Option<TaskFn>,
    pub state: Option<StateFactory>,
}

impl UserClass {
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            tasks: TaskSet::new(name.clone()),
            name,
            weight: 1,
            fixed_count: None,
            host: None,
            wait_time: WaitTime::None,
            on_start: None,
            on_stop: None,
            state: None,
        }
    }

    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn fixed_count(mut self, count: u32) -> Self {
        self.fixed_count = Some(count);
        self
    }

    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    pub fn wait_time(mut self, wait: WaitTime) -> Self {
        self.wait_time = wait;
        self
    }

    pub fn task(mut self, task: Task) -> Self {
        self.tasks = self.tasks.task(task);
        self
    }

    /// Run a task set as the user's behaviour (Locust's `tasks = [MySet]`).
    pub fn task_set(self, set: TaskSet) -> Self {
        self.task(Task::set(set))
    }

    pub fn on_start<F>(mut self, body: F) -> Self
    where
        F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
    {
        self.on_start = Some(Rc::new(body));
        self
    }

    pub fn on_stop<F>(mut self, body: F) -> Self
    where
        F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
    {
        self.on_stop = Some(Rc::new(body));
        self
    }

    /// Give every user of this class its own state, built by `make`, and
    /// reachable from tasks with [`User::state`].
    pub fn state<S: Any, F: Fn() -> S + 'static>(mut self, make: F) -> Self {
        self.state = Some(Rc::new(move || Box::new(make()) as Box<dyn Any>));
        self
    }
}
