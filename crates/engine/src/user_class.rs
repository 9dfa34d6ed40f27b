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
    /// The class's name, shown in reports and used by the class picker.
    pub name: String,
    /// Relative share of the weighted users (ignored with `fixed_count`).
    pub weight: u32,
    /// Exactly this many users of the class, placed before weighted ones.
    pub fixed_count: Option<u32>,
    /// Default host when `--host` is not given.
    pub host: Option<String>,
    /// How long a user waits between tasks (default: no wait).
    pub wait_time: WaitTime,
    /// The tasks a user of this class picks from.
    pub tasks: TaskSet,
    /// Runs once when a user starts, before its first task (Locust's `on_start`).
    pub on_start: Option<TaskFn>,
    /// Runs once when a user stops, even after a forced stop (Locust's `on_stop`).
    pub on_stop: Option<TaskFn>,
    /// Builds each user's own state; `None`: users have none.
    pub state: Option<StateFactory>,
    /// How users get connections (default: each its own, one per origin).
    pub connections: Connections,
}

/// How a class's users get their HTTP connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Connections {
    /// Each user keeps its own connection per origin; a user's concurrent
    /// requests (coroutines of one user) each open one more.
    #[default]
    PerUser,
    /// Each user has at most `max` connections open; more concurrent
    /// requests wait for one (FastHttpUser's `concurrency`).
    UserLimit {
        /// Connections per user.
        max: usize,
    },
    /// The class's users share a pool of at most `max` connections per
    /// process, split over its shards (at least one each); requests wait
    /// for a free one (Locust's `pool_manager = PoolManager(maxsize=max, block=True)`).
    Shared {
        /// Connections per process.
        max: usize,
    },
}

impl Connections {
    /// The share of a `Shared` pool's connections shard `index` of `count` holds.
    pub fn shard_share(max: usize, index: usize, count: usize) -> usize {
        let count = count.max(1);
        (max / count + usize::from(index < max % count)).max(1)
    }
}

impl UserClass {
    /// A class named `name` with weight 1, no wait, no tasks and no hooks.
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
            connections: Connections::PerUser,
        }
    }

    /// Set the class's relative share of the weighted users (default 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Run exactly `count` users of this class, placed before weighted ones
    /// (Locust's `fixed_count`).
    pub fn fixed_count(mut self, count: u32) -> Self {
        self.fixed_count = Some(count);
        self
    }

    /// The host this class's users target when `--host` is not given.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Set how long a user waits between tasks.
    pub fn wait_time(mut self, wait: WaitTime) -> Self {
        self.wait_time = wait;
        self
    }

    /// Add a task to the user's own task list.
    pub fn task(mut self, task: Task) -> Self {
        self.tasks = self.tasks.task(task);
        self
    }

    /// Run a task set as the user's behaviour (Locust's `tasks = [MySet]`).
    pub fn task_set(self, set: TaskSet) -> Self {
        self.task(Task::set(set))
    }

    /// Run `body` once when each user starts, before its first task.
    pub fn on_start<F>(mut self, body: F) -> Self
    where
        F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
    {
        self.on_start = Some(Rc::new(body));
        self
    }

    /// Run `body` once when each user stops, even when its task was cut short.
    pub fn on_stop<F>(mut self, body: F) -> Self
    where
        F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
    {
        self.on_stop = Some(Rc::new(body));
        self
    }

    /// Choose how the class's users get connections (see [`Connections`]).
    pub fn connections(mut self, connections: Connections) -> Self {
        self.connections = connections;
        self
    }

    /// Give every user of this class its own state, built by `make`, and
    /// reachable from tasks with [`User::state`].
    pub fn state<S: Any, F: Fn() -> S + 'static>(mut self, make: F) -> Self {
        self.state = Some(Rc::new(move || Box::new(make()) as Box<dyn Any>));
        self
    }
}
