//! `--tags` / `--exclude-tags`: keep tasks with any included tag, drop tasks
//! with any excluded tag (exclusion wins). Tags on a nested task set apply
//! to every task inside it; a nested set left empty is dropped.

use std::collections::HashSet;
use std::rc::Rc;

use crate::task::{Task, TaskKind, TaskSet};

/// The tag selection of a run.
#[derive(Clone, Debug, Default)]
pub struct TagFilter {
    /// `Some`: only tasks carrying at least one of these tags run.
    pub include: Option<HashSet<String>>,
    /// Tasks carrying any of these tags never run, even if included.
    pub exclude: HashSet<String>,
}

impl TagFilter {
    /// A filter keeping tasks with any tag in `include` (`None`: every task) and
    /// dropping those with any tag in `exclude`.
    pub fn new(include: Option<Vec<String>>, exclude: Vec<String>) -> Self {
        Self { include: include.map(|v| v.into_iter().collect()), exclude: exclude.into_iter().collect() }
    }

    /// True when the filter keeps every task (no tags included or excluded).
    pub fn is_noop(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }

    /// A copy of `set` holding only the tasks that pass.
    pub fn apply(&self, set: &TaskSet) -> TaskSet {
        self.filter_set(set, &[])
    }

    fn filter_set(&self, set: &TaskSet, inherited: &[String]) -> TaskSet {
        let mut kept = Vec::new();
        for task in &set.tasks {
            let tags: Vec<String> = inherited.iter().chain(&task.tags).cloned().collect();
            match &task.kind {
                TaskKind::Set(inner) => {
                    let filtered = self.filter_set(inner, &tags);
                    if filtered.total_weight() > 0 {
                        kept.push(Task { kind: TaskKind::Set(Rc::new(filtered)), ..task.clone() });
                    }
                }
                TaskKind::Function(_) => {
                    if self.passes(&tags) {
                        kept.push(task.clone());
                    }
                }
            }
        }
        let mut out = set.clone();
        out.set_tasks(kept);
        out
    }

    fn passes(&self, tags: &[String]) -> bool {
        let included = match &self.include {
            Some(include) => tags.iter().any(|t| include.contains(t)),
            None => true,
        };
        included && !tags.iter().any(|t| self.exclude.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::TaskResult;
    use crate::task::LocalBoxFuture;
    use crate::user::User;

    fn t(name: &str, tags: &[&str]) -> Task {
        let mut task =
            Task::new(name, |_u: &mut User| -> LocalBoxFuture<'_, TaskResult> { Box::pin(async { Ok(()) }) });
        for tag in tags {
            task = task.tag(*tag);
        }
        task
    }

    fn names(set: &TaskSet) -> Vec<String> {
        set.tasks
            .iter()
            .flat_map(|task| match &task.kind {
                TaskKind::Set(inner) => names(inner).into_iter().map(|n| format!("{}/{n}", task.name)).collect(),
                TaskKind::Function(_) => vec![task.name.clone()],
            })
            .collect()
    }

    fn sample() -> TaskSet {
        let nested = TaskSet::new("browse").task(t("list", &[])).task(t("detail", &["slow"]));
        TaskSet::new("root")
            .task(t("home", &["web"]))
            .task(t("api", &["api"]))
            .task(t("both", &["web", "slow"]))
            .task(t("untagged", &[]))
            .task(Task::set(nested).tag("web"))
    }

    #[test]
    fn include_keeps_tasks_with_any_tag_including_inherited_ones() {
        let f = TagFilter::new(Some(vec!["web".into()]), vec![]);
        assert_eq!(names(&f.apply(&sample())), ["home", "both", "browse/list", "browse/detail"]);
    }

    #[test]
    fn exclusion_wins_over_inclusion() {
        let f = TagFilter::new(Some(vec!["web".into()]), vec!["slow".into()]);
        assert_eq!(names(&f.apply(&sample())), ["home", "browse/list"]);
    }

    #[test]
    fn exclude_only_keeps_untagged_tasks() {
        let f = TagFilter::new(None, vec!["web".into()]);
        assert_eq!(names(&f.apply(&sample())), ["api", "untagged"]);
    }

    #[test]
    fn emptied_nested_sets_are_dropped() {
        let f = TagFilter::new(Some(vec!["api".into()]), vec![]);
        assert_eq!(names(&f.apply(&sample())), ["api"]);
    }
}
