//! How much memory this process may use: the machine's, or its
//! container's (the cgroup's limit) when that is lower; and sizes as
//! people write them (`512MiB`, `2G`, `25%`). Read by the Lua VMs'
//! default memory limit and the memory flags.

use std::path::{Path, PathBuf};

/// Bytes of memory this process may count on: the machine's total, or its
/// cgroup's limit when lower (v2 `memory.max`, v1
/// `memory.limit_in_bytes`); `None` where neither can be read.
pub fn memory_budget() -> Option<u64> {
    let total = machine_total();
    match (total, cgroup_limit()) {
        (Some(total), Some(limit)) => Some(total.min(limit)),
        (total, limit) => total.or(limit),
    }
}

/// Why [`memory_budget`] may be too high, when that can be told: the
/// process's memory group is the root of what it sees (a container with
/// its own cgroup namespace) and has no limit, so a limit set on a group
/// above it (a Kubernetes pod's, when its container has none of its
/// own) is hidden by the kernel, and the budget is the machine's.
pub fn hidden_limit_note() -> Option<String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    if !at_namespace_root(&own) || cgroup_limit_under(Path::new("/sys/fs/cgroup"), &own).is_some() {
        return None;
    }
    let total = machine_total()?;
    Some(format!(
        "this process's memory cgroup is the root of its cgroup namespace and has no limit of its own; a limit \
         set on a group above it (such as a Kubernetes pod's) is hidden from it, so shares of memory are of the \
         machine's {}: give a size to be sure",
        show_size(total)
    ))
}

/// Whether the group that governs memory (v1's `memory` line, else the v2
/// line) is `/` in the text of `/proc/self/cgroup`.
fn at_namespace_root(own: &str) -> bool {
    let lines: Vec<_> = memory_lines(own).collect();
    let governing = lines.iter().find(|(version, _)| *version == 1).or_else(|| lines.first());
    governing.is_some_and(|(_, path)| *path == "/")
}

/// The lines of `/proc/self/cgroup`'s text that can hold memory: the v2
/// line and v1's `memory` line, as (cgroup version, the group's path).
fn memory_lines(own: &str) -> impl Iterator<Item = (u8, &str)> {
    own.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next()?, parts.next()?.trim());
        if controllers.is_empty() {
            Some((2, path))
        } else if controllers.split(',').any(|c| c == "memory") {
            Some((1, path))
        } else {
            None
        }
    })
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn machine_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What this process's memory cgroup (in a container, the container's)
/// uses, and its limit: the lowest of its own and its ancestors' that can
/// be seen, `None` for none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupMemory {
    /// `memory.current` (v2) or `memory.usage_in_bytes` (v1), in bytes:
    /// every process of the group, page cache included.
    pub usage_bytes: u64,
    /// The limit, in bytes.
    pub limit_bytes: Option<u64>,
}

/// This process's [`CgroupMemory`], or `None` where its group's usage
/// cannot be read (no cgroup, or the host's root group, which has none).
pub fn cgroup_memory() -> Option<CgroupMemory> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_memory_under(Path::new("/sys/fs/cgroup"), &own)
}

/// [`cgroup_memory`] for the hierarchy mounted at `root`.
fn cgroup_memory_under(root: &Path, own: &str) -> Option<CgroupMemory> {
    let usage_bytes = memory_groups(root, own)
        .iter()
        .find_map(|(group, version)| {
            let file = if *version == 2 { "memory.current" } else { "memory.usage_in_bytes" };
            std::fs::read_to_string(group.join(file)).ok()
        })?
        .trim()
        .parse()
        .ok()?;
    Some(CgroupMemory { usage_bytes, limit_bytes: cgroup_limit_under(root, own) })
}

/// The folders of this process's memory groups, each group's before its
/// ancestors', with the cgroup version of each (from the text of
/// `/proc/self/cgroup`).
fn memory_groups(root: &Path, own: &str) -> Vec<(PathBuf, u8)> {
    let mut groups = Vec::new();
    for (version, path) in memory_lines(own) {
        let dir = if version == 2 { root.to_path_buf() } else { root.join("memory") };
        // The group and every ancestor up to the mount point (inside a
        // container the hierarchy is often mounted at the group itself,
        // so the path's own folders may not exist: the root is read too).
        let mut at = dir.join(path.trim_start_matches('/'));
        loop {
            groups.push((at.clone(), version));
            if at == dir || !at.pop() || !at.starts_with(&dir) {
                break;
            }
        }
    }
    groups
}

/// The limit of this process's memory cgroup, when it has one (`max` and
/// v1's "no limit" sentinel, near `i64::MAX`, are none): the lowest of
/// its own and its ancestors' (a pod's limit is often set on a parent of
/// the container's group).
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroup_limit_under(Path::new("/sys/fs/cgroup"), &own)
}

/// [`cgroup_limit`] for the hierarchy mounted at `root`, given the text of
/// `/proc/self/cgroup`.
fn cgroup_limit_under(root: &Path, own: &str) -> Option<u64> {
    memory_groups(root, own)
        .iter()
        .map(|(group, version)| group.join(if *version == 2 { "memory.max" } else { "memory.limit_in_bytes" }))
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .filter(|&limit| limit < (1 << 60))
        .min()
}

/// A size as people write it: bytes (`1048576`), with a unit (`512k`,
/// `512KiB`, `64M`, `64MB`, `2G`, `2GiB`, `1T`; powers of 1024, as memory
/// is counted; a fraction such as `1.5G` is taken), or a share of
/// `budget` (`25%`).
pub fn parse_size(text: &str, budget: Option<u64>) -> Result<u64, String> {
    let text = text.trim();
    if let Some(share) = text.strip_suffix('%') {
        let share: f64 = share.trim().parse().map_err(|_| format!("{text:?}: expected a percentage such as 25%"))?;
        if !(share > 0.0 && share <= 100.0) {
            return Err(format!("{text:?}: the percentage must be above 0 and at most 100"));
        }
        let budget = budget.ok_or_else(|| format!("{text:?}: this machine's memory cannot be read; give a size"))?;
        return Ok((budget as f64 * share / 100.0) as u64);
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?}: expected a size such as 512MiB or 2G"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use k, M, G or T, or a percentage)")),
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?}: too large"));
    }
    Ok(bytes as u64)
}

/// `bytes` in MiB or GiB, for messages.
pub fn show_size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_that_governs_memory_tells_a_namespace_root() {
        // A container of its own under cgroup v2.
        assert!(at_namespace_root("0::/\n"));
        // A service on a host.
        assert!(!at_namespace_root("0::/system.slice/swarmer.service\n"));
        // v1 memory controller beside a v2 root (as on hybrid hosts): v1 governs.
        assert!(!at_namespace_root("4:memory:/process_api/0604\n0::/\n"));
        assert!(at_namespace_root("4:memory:/\n0::/\n"));
        assert!(!at_namespace_root(""));
    }

    #[test]
    fn sizes_read_as_written() {
        assert_eq!(parse_size("1048576", None), Ok(1 << 20));
        assert_eq!(parse_size("512k", None), Ok(512 << 10));
        assert_eq!(parse_size("64MiB", None), Ok(64 << 20));
        assert_eq!(parse_size("2G", None), Ok(2 << 30));
        assert_eq!(parse_size("1.5g", None), Ok(3 << 29));
        assert_eq!(parse_size("25%", Some(4 << 30)), Ok(1 << 30));
        assert!(parse_size("25%", None).unwrap_err().contains("give a size"));
        assert!(parse_size("0%", Some(1)).unwrap_err().contains("above 0"));
        assert!(parse_size("12 parsecs", None).unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots", None).unwrap_err().contains("expected a size"));
        assert!(parse_size("1e30T", None).is_err());
    }

    /// Write `text` to `path` under `root`, making its folders.
    fn write_under(root: &Path, path: &str, text: &str) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    #[test]
    fn a_limit_set_on_a_parent_group_counts() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| write_under(root.path(), path, text);
        // v2: the container's group has no limit, its pod's has 1 GiB.
        write("memory.max", "max\n");
        write("kubepods/pod1/memory.max", "1073741824\n");
        write("kubepods/pod1/c1/memory.max", "max\n");
        assert_eq!(cgroup_limit_under(root.path(), "0::/kubepods/pod1/c1\n"), Some(1 << 30));
        // Its own lower limit wins.
        write("kubepods/pod1/c1/memory.max", "536870912\n");
        assert_eq!(cgroup_limit_under(root.path(), "0::/kubepods/pod1/c1\n"), Some(1 << 29));
        // v1, mounted at the group itself inside a container: the root's file.
        write("memory/memory.limit_in_bytes", "268435456\n");
        assert_eq!(cgroup_limit_under(root.path(), "9:memory:/docker/abc\n"), Some(1 << 28));
        // v1's "no limit" sentinel is none.
        write("memory/memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup_limit_under(root.path(), "9:memory:/docker/abc\n"), None);
    }

    #[test]
    fn a_groups_usage_is_read_with_its_limit() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| write_under(root.path(), path, text);
        // A host's root group has no usage file: nothing to show.
        write("memory.max", "max\n");
        assert_eq!(cgroup_memory_under(root.path(), "0::/\n"), None);
        // v2: the container's own usage, the pod's limit.
        write("kubepods/pod1/memory.max", "1073741824\n");
        write("kubepods/pod1/memory.current", "999999999\n");
        write("kubepods/pod1/c1/memory.current", "12345678\n");
        assert_eq!(
            cgroup_memory_under(root.path(), "0::/kubepods/pod1/c1\n"),
            Some(CgroupMemory { usage_bytes: 12345678, limit_bytes: Some(1 << 30) })
        );
        // v1, mounted at the group itself inside a container, no limit.
        write("memory/memory.usage_in_bytes", "4096\n");
        write("memory/memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(
            cgroup_memory_under(root.path(), "9:memory:/docker/abc\n"),
            Some(CgroupMemory { usage_bytes: 4096, limit_bytes: None })
        );
    }

    #[test]
    fn the_budget_is_known_here_and_shown_in_units() {
        assert!(memory_budget().is_some_and(|b| b > 1 << 20));
        assert_eq!(show_size(512 << 20), "512 MiB");
        assert_eq!(show_size(3 << 29), "1.5 GiB");
    }
}
