//! The memory limit of each Lua VM (`--lua-memory-limit`): a plan that
//! allocates without bound meets Lua's memory error in its own VM, with a
//! message naming the plan and the limit, instead of taking the process
//! (and the run's statistics) down. A task that meets it stops its user,
//! whose memory the VM can then take back; the others go on.
//!
//! One limit per process, set before the VMs are made ([`set`]); until it
//! is, VMs get [`default_limit`]. The process VM of the plan's first load
//! (made before the command line is parsed) gets the set limit when a
//! shard adopts it.

use std::sync::atomic::{AtomicU64, Ordering};

use mlua::Lua;
use swarmer_engine::memory::{memory_budget, show_size};

/// Bytes per VM; `UNSET` until [`set`].
static LIMIT: AtomicU64 = AtomicU64::new(UNSET);
const UNSET: u64 = u64::MAX;

/// The message Lua raises when an allocation fails.
const LUA_MEMORY_ERROR: &str = "not enough memory";

/// The limit for `vms` VMs by default: four fifths of the memory this
/// process may use (the machine's or its container's), shared among
/// them, so that together they stop before the kernel kills the process.
/// `None` (no limit) where the memory cannot be read.
pub fn default_limit(vms: usize) -> Option<u64> {
    memory_budget().map(|budget| budget / 5 * 4 / vms.max(1) as u64)
}

/// Set the limit of the VMs made from now on (`None`: no limit).
pub fn set(bytes: Option<u64>) {
    LIMIT.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// The limit VMs get now (`None`: no limit).
pub fn current() -> Option<u64> {
    let limit = match LIMIT.load(Ordering::Relaxed) {
        // Before the command line set one: a default for the cores' shards
        // and the process VM.
        UNSET => default_limit(std::thread::available_parallelism().map_or(1, |n| n.get()) + 1).unwrap_or(0),
        set => set,
    };
    (limit > 0).then_some(limit)
}

/// Give `lua` the current limit (or lift its limit).
pub fn apply(lua: &Lua) -> mlua::Result<()> {
    let bytes = current().map_or(0, |b| usize::try_from(b).unwrap_or(usize::MAX));
    crate::raw::set_memory_limit(lua, bytes).map(|_| ())
}

/// Whether `message` (a Lua error's text) is the memory error of a VM
/// with a limit (Lua raises it bare, with no position).
pub fn is_limit_error(message: &str) -> bool {
    current().is_some() && message == LUA_MEMORY_ERROR
}

/// What a plan is told when its VM met the limit.
pub fn explain(plan: &str) -> String {
    let limit = current().map_or_else(|| "its limit".to_owned(), show_size);
    format!(
        "{plan}: out of memory: this Lua VM reached its limit of {limit} (--lua-memory-limit); the plan keeps \
         more than it frees"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_shares_four_fifths_of_the_budget() {
        let budget = memory_budget().unwrap();
        let two = default_limit(2).unwrap();
        assert!(two <= budget * 2 / 5 && two > budget / 3, "{two} of {budget}");
        assert_eq!(default_limit(0), default_limit(1));
    }
}
