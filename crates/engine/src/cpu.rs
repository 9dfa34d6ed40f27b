//! The load generator's own CPU and memory, read from `/proc/self`.
//!
//! When the generator itself is saturated its numbers stop describing the
//! target, so the runner warns (once) above 90% of the cores it uses.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::memory::{CgroupMemory, cgroup_memory};

/// CPU time is counted in clock ticks (10 ms): over a shorter span one
/// tick more or less would read as hundreds of percent.
const SHORTEST_SPAN: Duration = Duration::from_millis(200);

/// CPU and memory of this process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    /// Percent of one core (200.0 = two cores fully busy).
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// The busiest shard thread's CPU, in percent of one core: a shard at
    /// 100% starves its users even while the process as a whole is not
    /// (users spread unevenly, one heavy class).
    pub busiest_shard_percent: f64,
    /// The memory cgroup's usage and limit (a container's), where it can
    /// be read.
    pub cgroup: Option<CgroupMemory>,
}

/// The name shard threads start with (`shard.rs`); Linux keeps 15 bytes
/// of a thread's name, so threads are told apart by id, not by name.
const SHARD_THREAD: &str = "swarmer-shard";

/// How many samples (about seconds) before threads found not to be shards
/// are looked at again.
const RECHECK_EVERY: u32 = 10;

/// Samples [`ProcessUsage`] between successive calls.
pub struct UsageMonitor {
    last: Option<(Instant, u64)>,
    /// The CPU figure of the latest span long enough to measure.
    last_percent: f64,
    /// The shard threads' CPU ticks at the last span's start, by thread id.
    shard_ticks: HashMap<u32, u64>,
    /// Threads found not to be shards, by id. A new thread takes its
    /// name from inside, just after it starts: one seen before that is
    /// looked at again after [`RECHECK_EVERY`] samples.
    not_shards: HashSet<u32>,
    /// Samples since `not_shards` was last emptied.
    since_recheck: u32,
    /// The busiest shard's figure of the latest span.
    last_busiest: f64,
    /// The memory cgroup, as read at the latest span's end.
    last_cgroup: Option<CgroupMemory>,
    ticks_per_second: f64,
    page_size: u64,
}

impl Default for UsageMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageMonitor {
    /// A monitor with no previous sample: the first [`Self::sample`] reports 0% CPU.
    // One of the two libc calls of the workspace (the clock tick and page
    // size have no std equivalent).
    #[allow(unsafe_code)]
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions; it only reads a constant.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        Self {
            last: None,
            last_percent: 0.0,
            shard_ticks: HashMap::new(),
            not_shards: HashSet::new(),
            since_recheck: 0,
            last_busiest: 0.0,
            last_cgroup: None,
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as u64 } else { 4096 },
        }
    }

    /// Usage since the previous call (CPU is 0 on the first call); `None`
    /// where `/proc` is not available. A call too soon after the previous
    /// one gives the previous CPU figure, and the span runs on.
    pub fn sample(&mut self) -> Option<ProcessUsage> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (ticks, rss_pages) = ticks_and_rss(&stat)?;
        let now = Instant::now();
        let rss_bytes = rss_pages * self.page_size;
        let usage = |this: &Self| ProcessUsage {
            cpu_percent: this.last_percent,
            rss_bytes,
            busiest_shard_percent: this.last_busiest,
            cgroup: this.last_cgroup,
        };
        if let Some((then, _)) = self.last
            && now.duration_since(then) < SHORTEST_SPAN
        {
            return Some(usage(self));
        }
        let shards = self.shard_thread_ticks();
        if let Some((then, last_ticks)) = self.last {
            let span = now.duration_since(then).as_secs_f64() * self.ticks_per_second / 100.0;
            self.last_percent = ticks.saturating_sub(last_ticks) as f64 / span;
            self.last_busiest = shards
                .iter()
                .filter_map(|(tid, ticks)| Some(ticks.saturating_sub(*self.shard_ticks.get(tid)?) as f64 / span))
                .fold(0.0, f64::max);
        }
        self.shard_ticks = shards;
        self.last_cgroup = cgroup_memory();
        self.last = Some((now, ticks));
        Some(usage(self))
    }

    /// The CPU ticks of each of this process's shard threads, by id.
    fn shard_thread_ticks(&mut self) -> HashMap<u32, u64> {
        self.since_recheck += 1;
        if self.since_recheck >= RECHECK_EVERY {
            self.since_recheck = 0;
            self.not_shards.clear();
        }
        let mut found = HashMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return found };
        let mut present = HashSet::new();
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            present.insert(tid);
            if self.not_shards.contains(&tid) {
                continue;
            }
            if !self.shard_ticks.contains_key(&tid) {
                let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if !name.starts_with(SHARD_THREAD) {
                    self.not_shards.insert(tid);
                    continue;
                }
            }
            if let Some((ticks, _)) =
                std::fs::read_to_string(task.path().join("stat")).ok().as_deref().and_then(ticks_and_rss)
            {
                found.insert(tid, ticks);
            }
        }
        // Ids of threads that ended may be reused by new ones.
        self.not_shards.retain(|tid| present.contains(tid));
        found
    }
}

/// CPU ticks (user and system) and resident pages from a `stat` file's text.
fn ticks_and_rss(stat: &str) -> Option<(u64, u64)> {
    // Fields after the command name, which is in parentheses and may
    // itself contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some((utime + stime, rss_pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)] // libc's thread CPU clock, for the test only
    fn thread_cpu_seconds() -> f64 {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `t` is a valid timespec for the call to write.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }

    #[test]
    fn busy_process_shows_cpu_and_memory() {
        let mut m = UsageMonitor::new();
        let first = m.sample().expect("/proc is available on Linux");
        assert!(first.rss_bytes > 0);
        // At once again (the runner's first second ticks at its start): not
        // a span to measure, whatever tick the process just crossed.
        assert_eq!(m.sample().unwrap().cpu_percent, 0.0);
        // Spin until this thread has used 200 ms of CPU, however long a
        // busy machine takes to give it that; the process used at least as
        // much (less the 10 ms granularity of /proc's ticks).
        let start = Instant::now();
        let mut x = 0u64;
        while thread_cpu_seconds() < 0.2 && start.elapsed().as_secs() < 10 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = thread_cpu_seconds();
        let second = m.sample().unwrap();
        let least = (used - 0.03) / start.elapsed().as_secs_f64() * 100.0;
        assert!(second.cpu_percent >= least, "{second:?}, this thread alone used {used} s");
    }

    #[test]
    fn the_busiest_shard_thread_is_measured_on_its_own() {
        let mut m = UsageMonitor::new();
        let (go_tx, go) = std::sync::mpsc::channel::<()>();
        let (spun_tx, spun) = std::sync::mpsc::channel::<f64>();
        let (end_tx, end) = std::sync::mpsc::channel::<()>();
        let shard = std::thread::Builder::new()
            .name("swarmer-shard-7".into())
            .spawn(move || {
                go.recv().unwrap();
                let before = thread_cpu_seconds();
                // 300 ms of this thread's CPU, however long that takes.
                let start = Instant::now();
                let mut x = 0u64;
                while thread_cpu_seconds() - before < 0.3 && start.elapsed().as_secs() < 10 {
                    x = x.wrapping_mul(31).wrapping_add(7);
                }
                std::hint::black_box(x);
                spun_tx.send(thread_cpu_seconds() - before).unwrap();
                // Alive (idle) until the second sample has seen it.
                end.recv().unwrap();
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        m.sample().unwrap();
        let start = Instant::now();
        go_tx.send(()).unwrap();
        let used = spun.recv().unwrap();
        let usage = m.sample().unwrap();
        let span = start.elapsed().as_secs_f64();
        end_tx.send(()).unwrap();
        shard.join().unwrap();
        // What it used in the span, within /proc's 10 ms ticks at each end.
        let (least, most) = ((used - 0.025) / span * 100.0, (used + 0.025) / span * 100.0);
        assert!(
            (least..=most).contains(&usage.busiest_shard_percent),
            "{usage:?}, the shard used {used} s of {span} s"
        );
    }
}
