//! Tasks and task sets: what a user does, with weights and tags.
//!
//! A [`TaskSet`] holds weighted [`Task`]s; a task is either a function or a
//! nested task set (which runs until one of its tasks interrupts it).
//! A sequential task set runs its tasks in the order given, round and round.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use rand::Rng;

use crate::control::TaskResult;
use crate::user::User;
use crate::wait_time::WaitTime;

/// A boxed future that need not be `Send`: user code lives on one shard.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The body of a task (or of `on_start` / `on_stop`).
pub type TaskFn = Rc<dyn for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult>>;

/// Give a closure the signature of a task body. Closures passed straight to
/// [`Task::new`] get it from there; a closure built elsewhere (returned by
/// a helper, stored in a variable) needs this to be accepted.
pub fn task_fn<F>(body: F) -> F
where
    F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
{
    body
}

/// What a task runs.
#[derive(Clone)]
pub enum TaskKind {
    Function(TaskFn),
    Set(Rc<TaskSet>),
}

/// A task with its weight and tags.
#[derive(Clone)]
pub struct Task {
    /// Shown in the task list and ratios; a nested set's task takes the set's name.
    pub name: String,
    /// Relative chance of being picked among its set's tasks (0: never picked).
    pub weight: u32,
    /// Tags for `--tags` / `--exclude-tags`; a nested set's tags apply to its tasks.
    pub tags: Vec<String>,
    /// The function to run or the nested set to enter.
    pub kind: TaskKind,
}

impl Task {
    /// A task running `body`, weight 1.
    pub fn new<F>(name: impl Into<String>, body: F) -> Self
    where
        F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
    {
        Self { name: name.into(), weight: 1, tags: Vec::new(), kind: TaskKind::Function(Rc::new(body)) }
    }

    /// A task that enters a nested task set.
    pub fn set(set: TaskSet) -> Self {
        Self { name: set.name.clone(), weight: 1, tags: Vec::new(), kind: TaskKind::Set(Rc::new(set)) }
    }

    /// A task from an already shared body (front ends that build closures).
    pub fn from_fn(name: impl Into<String>, body: TaskFn) -> Self {
        Self { name: name.into(), weight: 1, tags: Vec::new(), kind: TaskKind::Function(body) }
    }

    /// Set the task's weight: its relative chance of being picked (default 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Add a tag, for `--tags` / `--exclude-tags`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// A group of tasks (Locust's `TaskSet` / `SequentialTaskSet`).
#[derive(Clone)]
pub struct TaskSet {
    /// The set's name, also that of the task entering it.
    pub name: String,
    /// The tasks to pick from, in the order given.
    pub tasks: Vec<Task>,
    /// True: tasks run in the order given, round and round, ignoring weights;
    /// false: picked by weight.
    pub sequential: bool,
    /// Overrides the user's wait time inside this set.
    pub wait_time: Option<WaitTime>,
    /// Runs each time a user enters this set as a nested task, before its first task.
    pub on_start: Option<TaskFn>,
    /// Runs each time a user leaves this set as a nested task (also on a requested
    /// stop, not a forced one).
    pub on_stop: Option<TaskFn>,
    cumulative: Vec<u32>,
}

impl TaskSet {
    /// An empty set of weighted tasks, with the user's wait time and no hooks.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            tasks: Vec::new(),
            sequential: false,
            wait_time: None,
            on_start: None,
            on_stop: None,
            cumulative: Vec::new(),
        }
    }

    /// A set whose tasks run in order (Locust's `SequentialTaskSet`).
    pub fn sequential(name: impl Into<String>) -> Self {
        Self { sequential: true, ..Self::new(name) }
    }

    /// Add a task.
    pub fn task(mut self, task: Task) -> Self {
        self.tasks.push(task);
        self.reindex();
        self
    }

    /// Wait `wait` between the tasks of this set instead of the user's wait time.
    pub fn wait_time(mut self, wait: WaitTime) -> Self {
        self.wait_time = Some(wait);
        self
    }

    /// Run `body` each time a user enters this set (Locust's `TaskSet.on_start`).
    pub fn on_start<F>(mut self, body: F) -> Self
    where
        F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
    {
        self.on_start = Some(Rc::new(body));
        self
    }

    /// Run `body` each time a user leaves this set (Locust's `TaskSet.on_stop`).
    pub fn on_stop<F>(mut self, body: F) -> Self
    where
        F: for<'a> Fn(&'a mut User) -> LocalBoxFuture<'a, TaskResult> + 'static,
    {
        self.on_stop = Some(Rc::new(body));
        self
    }

    /// Replace the tasks (used by tag filtering).
    pub(crate) fn set_tasks(&mut self, tasks: Vec<Task>) {
        self.tasks = tasks;
        self.reindex();
    }

    fn reindex(&mut self) {
        let mut sum = 0;
        self.cumulative = self
            .tasks
            .iter()
            .map(|t| {
                sum += t.weight;
                sum
            })
            .collect();
    }

    /// Sum of the weights of the tasks.
    pub fn total_weight(&self) -> u32 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Pick a task by weight; `None` if the set has no task of weight > 0.
    pub fn pick(&self, rng: &mut impl Rng) -> Option<&Task> {
        let total = self.total_weight();
        if total == 0 {
            return None;
        }
        let ticket = rng.gen_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= ticket);
        self.tasks.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn noop() -> Task {
        Task::new("t", |_u: &mut User| -> LocalBoxFuture<'_, TaskResult> { Box::pin(async { Ok(()) }) })
    }

    #[test]
    fn tasks_are_picked_in_proportion_to_their_weights() {
        let set = TaskSet::new("s")
            .task(Task { name: "a".into(), ..noop() }.weight(2))
            .task(Task { name: "b".into(), ..noop() }.weight(1))
            .task(Task { name: "never".into(), ..noop() }.weight(0));
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..30_000 {
            *counts.entry(set.pick(&mut rng).unwrap().name.clone()).or_insert(0) += 1;
        }
        let a = counts["a"] as f64;
        let b = counts["b"] as f64;
        assert!((a / b - 2.0).abs() < 0.1, "a={a} b={b}");
        assert!(!counts.contains_key("never"));
    }

    #[test]
    fn an_empty_set_picks_nothing() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        assert!(TaskSet::new("s").pick(&mut rng).is_none());
    }
}
