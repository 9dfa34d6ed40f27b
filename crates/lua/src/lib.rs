//! Lua test plans: the locustfile of Swarmer (`swarmer -f plan.lua`).
//!
//! A plan is an ordinary Lua 5.4 file that registers user classes with
//! `swarmer.user(name, definition)`. Each engine shard loads the plan into a
//! VM of its own ([`vm`]), and one more VM, on the plan's own thread, runs
//! what Locust runs once per process (`process`); every task call runs in a Lua coroutine, and the
//! calls that wait (`self.client:get`, `swarmer.sleep`) are async Rust
//! underneath, so the plan reads as blocking code while thousands of users
//! share one thread. This crate is a thin layer over the engine's public API:
//! it turns Lua definitions into [`swarmer_engine::UserClass`]es.
//!
//! Map:
//! - [`vm`]: creating a VM for a plan (`require` next to the plan, the
//!   `swarmer` module), running the plan file, which hooks run where.
//! - `process`: the plan's thread, where it is first loaded and where that
//!   VM stays as the process VM.
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
//! - `shared`: `swarmer.shared` and `swarmer.queue`, data every VM of a plan shares.
//!
//! What it does not do: schedule users, record statistics, parse flags.

mod call;
mod classes;
mod client;
mod data;
mod driver;
mod grpc;
mod grpc_stream;
mod in_place;
mod load_request;
pub mod memory_limit;
mod module;
mod pending;
mod process;
#[allow(unsafe_code)]
mod raw;
mod realtime;
mod responses;
mod shared;
mod threads;
pub mod trust;
pub(crate) mod vm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use swarmer_engine::OptionValues;
use swarmer_engine::{ClassOutline, NodeRole, Plan, ShardHooks, ShardInfo, ShardPlan, SharedData};

/// A plan that could not be loaded. The message names the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// A command-line option a plan declares with `swarmer.add_option`.
pub use swarmer_engine::{OptionKind, PlanOption};

/// Load the plan at `path` (its top level runs once, in what becomes the
/// process VM) to check it, then return an engine [`Plan`] that loads it
/// again on each shard. Questions about the plan (class names, weights,
/// tasks) are answered from what that first load found: a plan's top level
/// runs once per shard plus once per process.
pub fn load_plan(path: &Path) -> Result<Plan, PlanError> {
    load_plan_with_options(path, HashMap::new())
}

/// [`load_plan`] with values for the plan's own options (`--my-option`).
/// The plan's top level sees them on the shards; the first load, which
/// finds the options (before the command line can be parsed), does not,
/// as with Locust: `init` listeners and tasks see them everywhere.
pub fn load_plan_with_options(path: &Path, values: HashMap<String, String>) -> Result<Plan, PlanError> {
    load_plan_as(path, values, NodeRole::Local)
}

/// [`load_plan_with_options`] for a process of the given role: the plan's
/// first load sees it in `swarmer.runner.role` (a first load made in
/// another role, to find the plan's options, is not reused).
pub fn load_plan_as(path: &Path, values: HashMap<String, String>, role: NodeRole) -> Result<Plan, PlanError> {
    let path: PathBuf = path.to_path_buf();
    let (description, Loaded { thread, shared, .. }) = claim(&path, &role)?;
    let context = vm::PlanContext { path: path.clone(), options: OptionValues::new(values), shared };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let outlines = description.outlines.clone();
    let shard_context = context.clone();
    let plan = Plan::per_shard(name, move |shard| {
        let loaded = if shard.probe {
            let classes = outlines.iter().map(ClassOutline::to_class).collect();
            Ok(ShardPlan { classes, hooks: ShardHooks::default() })
        } else if shard.process {
            vm::load_process_part(&shard_context, shard)
        } else {
            vm::load_users_shard(&shard_context, shard)
        };
        loaded.map_err(swarmer_engine::PlanError::Load)
    });
    Ok(plan
        .with_options(description.options.clone(), context.options)
        .with_thresholds(description.thresholds.clone())
        .with_process_host(thread))
}

/// The files the plan at `path` loads besides itself (the Lua modules it
/// requires, the data and `.proto` files it reads while loading), for shipping it to
/// workers.
pub fn plan_files(path: &Path) -> Result<Vec<PathBuf>, PlanError> {
    Ok(describe(path, &NodeRole::Master)?.files.clone())
}

/// The options the plan at `path` declares, to add them to the command
/// line. `role` is the role the process will most likely have: the load
/// made to find them is kept for the run if it has that role.
pub fn declared_options(path: &Path, role: NodeRole) -> Result<Vec<PlanOption>, PlanError> {
    Ok(describe(path, &role)?.options.clone())
}

/// What loading a plan once tells a process.
struct Description {
    /// The text it was loaded from: a plan file changed since is loaded again.
    source: String,
    options: Vec<PlanOption>,
    outlines: Vec<ClassOutline>,
    /// Modules and data files it loaded (what `-f -` workers need).
    files: Vec<PathBuf>,
    /// Its `swarmer.threshold`s.
    thresholds: Vec<swarmer_engine::threshold::Threshold>,
}

/// A load of a plan: its thread, holding the VM of that load until a
/// process shard adopts it, and the data its VMs share.
struct Loaded {
    thread: Arc<process::PlanThread>,
    shared: SharedData,
    /// The role the load ran in.
    role: &'static str,
}

/// A plan described in this process, and its load no plan has claimed yet.
struct Described {
    key: PathBuf,
    description: Arc<Description>,
    unclaimed: Option<Loaded>,
}

/// The plans described in this process (a poisoned lock only means another
/// thread panicked while it held the list; the list itself is always whole).
static DESCRIBED: Mutex<Vec<Described>> = Mutex::new(Vec::new());

/// The description of the plan at `path`: loaded the first time it is
/// asked for in this process (or when the file changed), then kept.
fn describe(path: &Path, role: &NodeRole) -> Result<Arc<Description>, PlanError> {
    let (key, source) = read_plan(path)?;
    let mut described = DESCRIBED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = described.iter().find(|d| d.key == key && d.description.source == source) {
        return Ok(found.description.clone());
    }
    let (description, loaded) = load_on_new_thread(path, source, role)?;
    described.retain(|d| d.key != key);
    described.push(Described { key, description: description.clone(), unclaimed: Some(loaded) });
    Ok(description)
}

/// The description of the plan at `path` and a load of it for a runner:
/// the one describing it left, or a new one.
fn claim(path: &Path, role: &NodeRole) -> Result<(Arc<Description>, Loaded), PlanError> {
    let (key, source) = read_plan(path)?;
    let mut described = DESCRIBED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = described.iter_mut().find(|d| d.key == key && d.description.source == source)
        && found.unclaimed.as_ref().is_some_and(|loaded| loaded.role == role.as_str())
        && let Some(loaded) = found.unclaimed.take()
    {
        return Ok((found.description.clone(), loaded));
    }
    let (description, loaded) = load_on_new_thread(path, source, role)?;
    described.retain(|d| d.key != key);
    described.push(Described { key, description: description.clone(), unclaimed: None });
    Ok((description, loaded))
}

/// The canonical path (the cache key) and text of the plan at `path`.
fn read_plan(path: &Path) -> Result<(PathBuf, String), PlanError> {
    if !path.is_file() {
        return Err(PlanError(format!("{}: no such plan file", path.display())));
    }
    let source = std::fs::read_to_string(path).map_err(|e| PlanError(format!("{}: {e}", path.display())))?;
    Ok((path.canonicalize().unwrap_or_else(|_| path.to_path_buf()), source))
}

/// Load the plan on a new plan thread, keeping its VM there.
fn load_on_new_thread(path: &Path, source: String, role: &NodeRole) -> Result<(Arc<Description>, Loaded), PlanError> {
    let thread = process::PlanThread::start().map_err(PlanError)?;
    let shared = SharedData::default();
    let context =
        vm::PlanContext { path: path.to_path_buf(), options: OptionValues::default(), shared: shared.clone() };
    let probe = ShardInfo::probe_as(role.clone()).for_process();
    let found = thread
        .call(move || {
            vm::describe(&context, &probe).map(|(lua, description)| {
                process::keep_for_adoption(lua);
                description
            })
        })
        .map_err(PlanError)?
        .map_err(PlanError)?;
    let vm::PlanDescription { options, outlines, files, thresholds } = found;
    let description = Arc::new(Description { source, options, outlines, files, thresholds });
    Ok((description, Loaded { thread, shared, role: role.as_str() }))
}
