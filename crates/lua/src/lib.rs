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
//!   rules that keep them sound; the rest of the crate denies `unsafe`.
//! - `call`: running one Lua task for a user and mapping its errors.
//! - `threads`: the coroutines task calls run in, reused between calls.
//! - `client`: the users' clients, the requests they make, catch responses.
//! - `responses`: how a response reaches Lua (a userdata of plain values).
//! - `in_place`: boxing a future without copying it off the stack.
//! - `data`: CSV datasets shared by all shards, JSON files, random helpers.
//!
//! What it does not do: schedule users, record statistics, parse flags.

#![deny(unsafe_code)]

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
pub mod vm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use swarmer_engine::OptionValues;
use swarmer_engine::{Plan, ShardInfo};

/// A plan that could not be loaded. The message names the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// A command-line option a plan declares with `swarmer.add_option`.
pub use swarmer_engine::{OptionKind, PlanOption};

/// Load the plan at `path` once to check it (syntax, definitions), then
/// return an engine [`Plan`] that loads it again on each shard.
pub fn load_plan(path: &Path) -> Result<Plan, PlanError> {
    load_plan_with_options(path, HashMap::new())
}

/// [`load_plan`] with values for the plan's own options (`--my-option`).
pub fn load_plan_with_options(path: &Path, values: HashMap<String, String>) -> Result<Plan, PlanError> {
    let path: PathBuf = path.to_path_buf();
    if !path.is_file() {
        return Err(PlanError(format!("{}: no such plan file", path.display())));
    }
    let values = OptionValues::new(values);
    // Load once here so errors are reported before any shard starts.
    vm::load_shard_plan(&path, &ShardInfo::probe(), &values).map_err(PlanError)?;
    let declared = vm::declared_options(&path).map_err(PlanError)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let shard_values = values.clone();
    Ok(Plan::per_shard(name, move |shard| vm::load_shard_plan(&path, shard, &shard_values))
        .with_options(declared, values))
}

/// The options the plan at `path` declares, to add them to the command line.
pub fn declared_options(path: &Path) -> Result<Vec<PlanOption>, PlanError> {
    vm::declared_options(path).map_err(PlanError)
}
