//! Lua test plans: the locustfile of Swarmer (`swarmer -f plan.lua`).
//!
//! A plan is an ordinary Lua 5.4 file that registers user classes with
//! `swarmer.user(name, definition)`. Each engine shard loads the plan into a
//! VM of its own ([`vm`]); every task call runs in a Lua coroutine, and the
//! calls that wait (`self.client:get`, `swarmer.sleep`) are async Rust
//! underneath, so the plan reads as blocking code while thousands of users
//! share one thread. This crate is a thin layer over the engine's public API:
//! it turns Lua definitions into [`swarmer_engine::UserClass`]es.
//!
//! Map:
//! - [`vm`]: creating a VM for a plan (`require` next to the plan, the
//!   `swarmer` module) and running the plan file.
//! - `module`: the `swarmer` module (wait times, registration, control flow, sleep).
//! - `classes`: Lua definitions → engine user classes, tasks and task sets.
//! - `driver`: the coroutine driver (requests and sleeps as async Rust).
//! - `raw`: every call into Lua's C API, behind safe functions, with the
//!   rules that keep them sound; the only module allowed `unsafe` (the
//!   workspace lints deny it elsewhere).
//! - `call`: running one Lua task for a user and mapping its errors.
//! - `threads`: the coroutines task calls run in, reused between calls.
//! - `client`: the users' clients, the requests they make, catch responses.
//! - `responses`: how a response reaches Lua (a userdata of plain values).
//! - `in_place`: boxing a future without copying it off the stack.
//! - `data`: CSV datasets shared by all shards, JSON files, random helpers.
//!
//! What it does not do: schedule users, record statistics, parse flags.

mod call;
mod classes;
mod client;
mod data;
mod driver;
mod in_place;
mod module;
#[allow(unsafe_code)]
mod raw;
mod responses;
mod threads;
pub(crate) mod vm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use swarmer_engine::OptionValues;
use swarmer_engine::{ClassOutline, Plan, ShardHooks, ShardPlan};

/// A plan that could not be loaded. The message names the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// A command-line option a plan declares with `swarmer.add_option`.
pub use swarmer_engine::{OptionKind, PlanOption};

/// Load the plan at `path` once to check it (syntax, definitions), then
/// return an engine [`Plan`] that loads it again on each shard. Questions
/// about the plan (class names, weights, tasks) are answered from what the
/// first load found: a plan's top level runs once per process plus once
/// per shard.
pub fn load_plan(path: &Path) -> Result<Plan, PlanError> {
    load_plan_with_options(path, HashMap::new())
}

/// [`load_plan`] with values for the plan's own options (`--my-option`).
/// The plan's top level sees them on the shards; the first load, which
/// finds the options (before the command line can be parsed), does not,
/// as with Locust.
pub fn load_plan_with_options(path: &Path, values: HashMap<String, String>) -> Result<Plan, PlanError> {
    let path: PathBuf = path.to_path_buf();
    let description = describe(&path)?;
    let values = OptionValues::new(values);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let outlines = description.outlines.clone();
    let shard_values = values.clone();
    let plan = Plan::per_shard(name, move |shard| {
        if shard.probe {
            let classes = outlines.iter().map(ClassOutline::to_class).collect();
            return Ok(ShardPlan { classes, hooks: ShardHooks::default() });
        }
        vm::load_shard_plan(&path, shard, &shard_values).map_err(swarmer_engine::PlanError::Load)
    });
    Ok(plan.with_options(description.options.clone(), values))
}

/// The files the plan at `path` loads besides itself (the Lua modules it
/// requires and the data files it reads while loading), for shipping it to
/// workers.
pub fn plan_files(path: &Path) -> Result<Vec<PathBuf>, PlanError> {
    Ok(describe(path)?.files.clone())
}

/// The options the plan at `path` declares, to add them to the command line.
pub fn declared_options(path: &Path) -> Result<Vec<PlanOption>, PlanError> {
    Ok(describe(path)?.options.clone())
}

/// What loading a plan once tells a process.
struct Description {
    /// The text it was loaded from: a plan file changed since is loaded again.
    source: String,
    options: Vec<PlanOption>,
    outlines: Vec<ClassOutline>,
    /// Modules and data files it loaded (what `-f -` workers need).
    files: Vec<PathBuf>,
}

/// The description of the plan at `path`: loaded the first time it is
/// asked for in this process (or when the file changed), then kept.
fn describe(path: &Path) -> Result<Arc<Description>, PlanError> {
    static DESCRIBED: Mutex<Vec<(PathBuf, Arc<Description>)>> = Mutex::new(Vec::new());
    if !path.is_file() {
        return Err(PlanError(format!("{}: no such plan file", path.display())));
    }
    let source = std::fs::read_to_string(path).map_err(|e| PlanError(format!("{}: {e}", path.display())))?;
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    // A poisoned lock only means another thread panicked while it held
    // the list; the list itself is always whole.
    let mut described = DESCRIBED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, found)) = described.iter().find(|(p, d)| *p == key && d.source == source) {
        return Ok(found.clone());
    }
    let vm::PlanDescription { options, outlines, files } = vm::describe_plan(path).map_err(PlanError)?;
    let description = Arc::new(Description { source, options, outlines, files });
    described.retain(|(p, _)| *p != key);
    described.push((key, description.clone()));
    Ok(description)
}
