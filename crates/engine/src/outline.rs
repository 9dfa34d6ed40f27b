//! A user class without its code: names, weights, counts, host and the
//! task tree with tags. A front end that loads a plan once per process to
//! describe it (the Lua front end) keeps outlines, which are `Send`, and
//! answers the runner's questions about the plan from them instead of
//! loading the plan again; only shards build real classes.

use crate::error::PlanError;
use crate::task::TaskKind;
use crate::{Task, TaskError, TaskSet, UserClass};

/// A class as [`crate::Plan::info`] needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassOutline {
    name: String,
    weight: u32,
    fixed_count: Option<u32>,
    host: Option<String>,
    tasks: SetOutline,
}

#[derive(Clone, Debug, PartialEq)]
struct SetOutline {
    name: String,
    sequential: bool,
    tasks: Vec<TaskOutline>,
}

#[derive(Clone, Debug, PartialEq)]
struct TaskOutline {
    name: String,
    weight: u32,
    tags: Vec<String>,
    /// A nested task set, or `None` for a task body.
    set: Option<SetOutline>,
}

impl ClassOutline {
    /// The outline of `class`. Its wait time is checked here, as a build
    /// of the plan would (the outline does not keep it).
    pub fn of(class: &UserClass) -> Result<Self, PlanError> {
        class.wait_time.validate().map_err(|reason| PlanError::WaitTime { class: class.name.clone(), reason })?;
        Ok(Self {
            name: class.name.clone(),
            weight: class.weight,
            fixed_count: class.fixed_count,
            host: class.host.clone(),
            tasks: SetOutline::of(&class.tasks),
        })
    }

    /// A class with this outline whose tasks cannot run (they raise an
    /// exception saying so): for describing a plan, never for users.
    pub fn to_class(&self) -> UserClass {
        let mut class = UserClass::new(self.name.clone()).weight(self.weight);
        class.fixed_count = self.fixed_count;
        class.host = self.host.clone();
        class.tasks = self.tasks.to_set();
        class
    }
}

impl SetOutline {
    fn of(set: &TaskSet) -> Self {
        let tasks = set
            .tasks
            .iter()
            .map(|task| TaskOutline {
                name: task.name.clone(),
                weight: task.weight,
                tags: task.tags.clone(),
                set: match &task.kind {
                    TaskKind::Set(inner) => Some(SetOutline::of(inner)),
                    TaskKind::Function(_) => None,
                },
            })
            .collect();
        Self { name: set.name.clone(), sequential: set.sequential, tasks }
    }

    fn to_set(&self) -> TaskSet {
        let empty =
            if self.sequential { TaskSet::sequential(self.name.clone()) } else { TaskSet::new(self.name.clone()) };
        self.tasks.iter().fold(empty, |set, outline| set.task(outline.to_task()))
    }
}

impl TaskOutline {
    fn to_task(&self) -> Task {
        let task = match &self.set {
            Some(inner) => Task::set(inner.to_set()),
            None => Task::new(self.name.clone(), |_| {
                Box::pin(async { Err(TaskError::exception_at("internal: a task of a plan's outline cannot run", "")) })
            }),
        };
        let mut task = task.weight(self.weight);
        task.name = self.name.clone();
        task.tags = self.tags.clone();
        task
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Plan, TagFilter, between};

    fn noop(_: &mut crate::User) -> crate::LocalBoxFuture<'_, crate::TaskResult> {
        Box::pin(async { Ok(()) })
    }

    fn classes() -> Vec<UserClass> {
        let inner =
            TaskSet::sequential("checkout").task(Task::new("pay", noop).tag("money")).task(Task::new("ship", noop));
        vec![
            UserClass::new("Shopper")
                .weight(3)
                .wait_time(between(1.0, 2.0))
                .task(Task::new("browse", noop).weight(5).tag("read"))
                .task(Task::set(inner).weight(2).tag("write")),
            UserClass::new("Admin").fixed_count(1).host("http://127.0.0.1:1").task(Task::new("audit", noop)),
        ]
    }

    #[test]
    fn a_plan_described_from_outlines_answers_as_the_plan_itself() {
        let real = Plan::new("real", classes);
        let outlines: Vec<ClassOutline> = classes().iter().map(|c| ClassOutline::of(c).unwrap()).collect();
        let outlined = Plan::new("outlined", move || outlines.iter().map(ClassOutline::to_class).collect());
        for (selected, tags) in [
            (vec![], TagFilter::default()),
            (vec!["Shopper".to_owned()], TagFilter::new(Some(vec!["money".into()]), vec![])),
            (vec![], TagFilter::new(None, vec!["write".into()])),
        ] {
            assert_eq!(outlined.info(&selected, &tags).unwrap(), real.info(&selected, &tags).unwrap());
        }
    }

    #[test]
    fn an_outline_checks_the_wait_time_as_a_build_would() {
        let bad = UserClass::new("Bad").wait_time(between(2.0, 1.0)).task(Task::new("t", noop));
        let error = ClassOutline::of(&bad).unwrap_err();
        assert!(error.to_string().starts_with("user class Bad: wait_time between(2, 1)"), "{error}");
    }
}
