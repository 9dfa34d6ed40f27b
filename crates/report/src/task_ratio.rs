//! `--list` and `--show-task-ratio`: the plan's classes and how often each
//! task runs, in Locust's layout.

use std::fmt::Write;

use serde_json::{Map, Value, json};
use swarmer_engine::{ClassInfo, TaskInfo};

/// Class names, one per line (`--list`).
pub fn class_list(classes: &[ClassInfo]) -> String {
    let mut out = String::from("Available Users:\n");
    for c in classes {
        let _ = writeln!(out, "    {}", c.name);
    }
    out
}

fn class_ratios(classes: &[ClassInfo]) -> Vec<f64> {
    let total: f64 = classes.iter().filter(|c| c.fixed_count.is_none()).map(|c| c.weight as f64).sum();
    classes
        .iter()
        .map(|c| if c.fixed_count.is_some() || total == 0.0 { 0.0 } else { c.weight as f64 / total })
        .collect()
}

fn write_tasks(out: &mut String, tasks: &[TaskInfo], ratio: f64, indent: usize) {
    let total: f64 = tasks.iter().map(|t| t.weight as f64).sum();
    for t in tasks {
        let r = if total > 0.0 { ratio * t.weight as f64 / total } else { 0.0 };
        let _ = writeln!(out, "{:indent$}- {}: {:.1}%", "", t.name, r * 100.0, indent = indent);
        write_tasks(out, &t.children, r, indent + 4);
    }
}

/// The `--show-task-ratio` report: per class (tasks relative to the class),
/// then overall (tasks relative to all users).
pub fn task_ratio_text(classes: &[ClassInfo]) -> String {
    let mut out = String::from("\n Task ratio per User class\n");
    for c in classes {
        let _ = writeln!(out, " - {}: {}", c.name, class_share(c, classes));
        write_tasks(&mut out, &c.tasks, 1.0, 4);
    }
    out.push_str("\n Total task ratio\n");
    for (c, ratio) in classes.iter().zip(class_ratios(classes)) {
        let _ = writeln!(out, " - {}: {}", c.name, class_share(c, classes));
        write_tasks(&mut out, &c.tasks, ratio, 4);
    }
    out
}

fn class_share(c: &ClassInfo, classes: &[ClassInfo]) -> String {
    match c.fixed_count {
        Some(n) => format!("fixed {n}"),
        None => {
            let ratios = class_ratios(classes);
            let i = classes.iter().position(|x| x.name == c.name).unwrap_or(0);
            format!("{:.1}%", ratios[i] * 100.0)
        }
    }
}

fn tasks_json(tasks: &[TaskInfo], ratio: f64) -> Value {
    let total: f64 = tasks.iter().map(|t| t.weight as f64).sum();
    let map: Map<String, Value> = tasks
        .iter()
        .map(|t| {
            let r = if total > 0.0 { ratio * t.weight as f64 / total } else { 0.0 };
            let mut v = json!({ "ratio": r });
            if !t.children.is_empty() {
                v["tasks"] = tasks_json(&t.children, r);
            }
            (t.name.clone(), v)
        })
        .collect();
    Value::Object(map)
}

/// `--show-task-ratio-json`: `{"per_class": {...}, "total": {...}}`.
pub fn task_ratio_json(classes: &[ClassInfo]) -> Value {
    let ratios = class_ratios(classes);
    let per_class: Map<String, Value> =
        classes.iter().map(|c| (c.name.clone(), json!({ "ratio": 1.0, "tasks": tasks_json(&c.tasks, 1.0) }))).collect();
    let total: Map<String, Value> = classes
        .iter()
        .zip(ratios)
        .map(|(c, r)| (c.name.clone(), json!({ "ratio": r, "tasks": tasks_json(&c.tasks, r) })))
        .collect();
    json!({ "per_class": per_class, "total": total })
}

/// `GET /tasks` (Locust's "Current ratio"): like [`task_ratio_json`], but
/// a class's ratio is its share of the users running now; with no users
/// running, the share its weight gives it.
pub fn current_ratio_json(classes: &[ClassInfo], counts: &std::collections::BTreeMap<String, usize>) -> Value {
    let running: usize = classes.iter().map(|c| counts.get(&c.name).copied().unwrap_or(0)).sum();
    let ratios: Vec<f64> = if running == 0 {
        class_ratios(classes)
    } else {
        classes.iter().map(|c| counts.get(&c.name).copied().unwrap_or(0) as f64 / running as f64).collect()
    };
    let per_class: Map<String, Value> = classes
        .iter()
        .zip(&ratios)
        .map(|(c, r)| (c.name.clone(), json!({ "ratio": r, "tasks": tasks_json(&c.tasks, 1.0) })))
        .collect();
    let total: Map<String, Value> = classes
        .iter()
        .zip(&ratios)
        .map(|(c, r)| (c.name.clone(), json!({ "ratio": r, "tasks": tasks_json(&c.tasks, *r) })))
        .collect();
    json!({ "per_class": per_class, "total": total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str, weight: u32) -> TaskInfo {
        TaskInfo { name: name.into(), weight, children: vec![] }
    }

    #[test]
    fn ratios_follow_weights() {
        let classes = vec![
            ClassInfo {
                name: "Web".into(),
                weight: 3,
                fixed_count: None,
                host: None,
                tasks: vec![task("index", 2), task("profile", 1)],
            },
            ClassInfo { name: "Api".into(), weight: 1, fixed_count: None, host: None, tasks: vec![task("list", 1)] },
        ];
        let text = task_ratio_text(&classes);
        assert!(text.contains(" - Web: 75.0%\n    - index: 66.7%\n    - profile: 33.3%"), "{text}");
        assert!(text.contains("Total task ratio\n - Web: 75.0%\n    - index: 50.0%\n    - profile: 25.0%"), "{text}");
        let v = task_ratio_json(&classes);
        assert_eq!(v["total"]["Api"]["tasks"]["list"]["ratio"], 0.25);
        assert_eq!(class_list(&classes), "Available Users:\n    Web\n    Api\n");
        let counts = [("Web".to_string(), 1), ("Api".to_string(), 3)].into_iter().collect();
        let current = current_ratio_json(&classes, &counts);
        assert_eq!(current["total"]["Api"]["ratio"], 0.75);
        assert_eq!(current["total"]["Web"]["tasks"]["profile"]["ratio"], 0.25 / 3.0);
        assert_eq!(current["per_class"]["Web"]["tasks"]["index"]["ratio"], 2.0 / 3.0);
    }
}
