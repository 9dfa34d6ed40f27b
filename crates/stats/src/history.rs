//! One point per second of the test's aggregated numbers, for charts and
//! `PREFIX_stats_history.csv`.
//!
//! Bounded: when the buffer fills, every other point is dropped and the
//! sampling stride doubles, so a day-long run keeps its whole shape in a
//! fixed amount of memory.

use serde::{Deserialize, Serialize};

/// The aggregated state of the test at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Unix time of the point, in seconds.
    pub timestamp: f64,
    /// Users running at that moment.
    pub user_count: u64,
    /// Requests per second over the current window (Locust's `current_rps`).
    pub current_rps: f64,
    /// Failures per second over the current window (Locust's `current_fail_per_sec`).
    pub current_fail_per_sec: f64,
    /// Current (ten-second window) percentiles in ms.
    pub response_time_percentile_50: f64,
    /// Current 95th percentile response time in milliseconds.
    pub response_time_percentile_95: f64,
    /// Current 99th percentile response time in milliseconds.
    pub response_time_percentile_99: f64,
    /// Average response time of the whole run so far in milliseconds, all names.
    pub total_avg_response_time: f64,
    /// Arrival-rate iterations dropped per second over the current window;
    /// `None` when the test is not an arrival-rate one.
    #[serde(default)]
    pub current_dropped_per_sec: Option<f64>,
    /// Current 95th percentile (ms) of the response times from the
    /// intended start (coordinated omission corrected); `None` unless
    /// requests had a schedule (arrival rate, pacing).
    #[serde(default)]
    pub corrected_percentile_95: Option<f64>,
    /// The same at the 99th percentile.
    #[serde(default)]
    pub corrected_percentile_99: Option<f64>,
    /// The nodes' CPU and memory at that moment (a master's workers);
    /// `None` in a single process.
    #[serde(default)]
    pub nodes: Option<NodeUsage>,
}

/// CPU and memory over several nodes at one moment: the lowest, the mean
/// and the highest of each.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// Percent of one core: lowest, mean, highest.
    pub cpu_percent: [f64; 3],
    /// Resident memory in MiB: lowest, mean, highest.
    pub memory_mib: [f64; 3],
}

impl NodeUsage {
    /// Of `(cpu percent, resident bytes)` per node; `None` without nodes.
    pub fn of(nodes: impl IntoIterator<Item = (f64, u64)>) -> Option<Self> {
        let mut cpu = [f64::INFINITY, 0.0, f64::NEG_INFINITY];
        let mut memory = cpu;
        let mut n = 0usize;
        for (percent, bytes) in nodes {
            let mib = bytes as f64 / 1_048_576.0;
            for (summary, value) in [(&mut cpu, percent), (&mut memory, mib)] {
                summary[0] = summary[0].min(value);
                summary[1] += value;
                summary[2] = summary[2].max(value);
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        cpu[1] /= n as f64;
        memory[1] /= n as f64;
        Some(Self { cpu_percent: cpu, memory_mib: memory })
    }
}

/// A bounded, decimating series of [`HistoryPoint`]s.
#[derive(Clone, Debug)]
pub struct History {
    points: Vec<HistoryPoint>,
    capacity: usize,
    stride: u64,
    offered: u64,
}

impl Default for History {
    fn default() -> Self {
        // Two days at one point a second before the first decimation.
        Self::with_capacity(2 * 86_400)
    }
}

impl History {
    /// An empty history that keeps at most `capacity` points (at least 2) before decimating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { points: Vec::new(), capacity: capacity.max(2), stride: 1, offered: 0 }
    }

    /// Offer the point of this second; kept if it falls on the current stride.
    pub fn push(&mut self, point: HistoryPoint) {
        let keep = self.offered.is_multiple_of(self.stride);
        self.offered += 1;
        if !keep {
            return;
        }
        if self.points.len() == self.capacity {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
        self.points.push(point);
    }

    /// The kept points, oldest first.
    pub fn points(&self) -> &[HistoryPoint] {
        &self.points
    }

    /// Drop every point and start again at one point a second, keeping the capacity.
    pub fn clear(&mut self) {
        *self = Self::with_capacity(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_usage_is_the_lowest_mean_and_highest_of_each() {
        let usage = super::NodeUsage::of([(10.0, 100 << 20), (30.0, 300 << 20), (20.0, 200 << 20)]).unwrap();
        assert_eq!(usage.cpu_percent, [10.0, 20.0, 30.0]);
        assert_eq!(usage.memory_mib, [100.0, 200.0, 300.0]);
        assert_eq!(super::NodeUsage::of([]), None);
    }

    use super::*;

    fn point(t: f64) -> HistoryPoint {
        HistoryPoint {
            current_dropped_per_sec: None,
            corrected_percentile_95: None,
            corrected_percentile_99: None,
            nodes: None,
            timestamp: t,
            user_count: 0,
            current_rps: 0.0,
            current_fail_per_sec: 0.0,
            response_time_percentile_50: 0.0,
            response_time_percentile_95: 0.0,
            response_time_percentile_99: 0.0,
            total_avg_response_time: 0.0,
        }
    }

    #[test]
    fn long_runs_stay_bounded_and_keep_first_and_recent_points() {
        let mut h = History::with_capacity(100);
        for t in 0..10_000 {
            h.push(point(t as f64));
        }
        assert!(h.points().len() <= 100);
        assert_eq!(h.points()[0].timestamp, 0.0);
        assert!(h.points().last().unwrap().timestamp > 9_000.0);
        let ts: Vec<f64> = h.points().iter().map(|p| p.timestamp).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
    }
}
