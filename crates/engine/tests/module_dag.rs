//! The engine's modules form a DAG (ARCHITECTURE.md draws it): no module
//! reaches, through `use crate::…` imports, back to itself. A cycle means a
//! concept sits in the wrong module; this test names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module name → the top-level modules its files import.
fn module_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut visit = vec![src.clone()];
    while let Some(dir) = visit.pop() {
        for entry in std::fs::read_dir(&dir).expect("engine src readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                visit.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            // A file's module is its first path component under src/.
            let relative = path.strip_prefix(&src).expect("under src");
            let first = relative.components().next().expect("a component").as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source readable");
            let deps = graph.entry(module.clone()).or_default();
            for line in text.lines().map(str::trim_start) {
                let Some(rest) = line.strip_prefix("use crate::").or_else(|| line.strip_prefix("pub use crate::"))
                else {
                    continue;
                };
                let target: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if target != module {
                    deps.insert(target);
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if any, as the list of modules on it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_engine_modules_import_each_other_without_cycles() {
    let graph = module_imports();
    assert!(graph.contains_key("runner") && graph.contains_key("shard"), "modules found: {graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles between engine modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("plan".into()).or_default().insert("runner".into());
    graph.entry("runner".into()).or_default().insert("plan".into());
    graph.entry("user".into()).or_default().insert("client".into());
    assert_eq!(cycle_from(&graph, "plan"), Some(vec!["plan".into(), "runner".into(), "plan".into()]));
    assert_eq!(cycle_from(&graph, "user"), None);
}
