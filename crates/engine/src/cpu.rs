//! The load generator's own CPU and memory, read from `/proc/self`.
//!
//! When the generator itself is saturated its numbers stop describing the
//! target, so the runner warns (once) above 90% of the cores it uses.

use std::time::{Duration, Instant};

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
}

/// Samples [`ProcessUsage`] between successive calls.
pub struct UsageMonitor {
    last: Option<(Instant, u64)>,
    /// The CPU figure of the latest span long enough to measure.
    last_percent: f64,
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
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as u64 } else { 4096 },
        }
    }

    /// Usage since the previous call (CPU is 0 on the first call); `None`
    /// where `/proc` is not available. A call too soon after the previous
    /// one gives the previous CPU figure, and the span runs on.
    pub fn sample(&mut self) -> Option<ProcessUsage> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may
        // itself contain spaces.
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let rss_pages: u64 = fields.get(21)?.parse().ok()?;
        let ticks = utime + stime;
        let now = Instant::now();
        let rss_bytes = rss_pages * self.page_size;
        match self.last {
            Some((then, _)) if now.duration_since(then) < SHORTEST_SPAN => {
                return Some(ProcessUsage { cpu_percent: self.last_percent, rss_bytes });
            }
            Some((then, last_ticks)) => {
                let wall = now.duration_since(then).as_secs_f64();
                self.last_percent = ticks.saturating_sub(last_ticks) as f64 / self.ticks_per_second / wall * 100.0;
            }
            None => {}
        }
        self.last = Some((now, ticks));
        Some(ProcessUsage { cpu_percent: self.last_percent, rss_bytes })
    }
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
}
