//! Requests and failures counted per wall-clock second.
//!
//! Used for "current" rates (Locust's sliding window: the ten whole seconds
//! ending two seconds ago, so that late-arriving samples are not missed) and
//! for the per-second maps in the JSON output. Bounded: only the most recent
//! [`PerSecondCounts::KEEP_SECONDS`] seconds are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts of requests and failures keyed by Unix second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerSecondCounts {
    seconds: BTreeMap<u64, (u64, u64)>,
    /// Seconds the current-rate window ends earlier than usual: a master
    /// whose workers report every few seconds has the last ones late.
    #[serde(skip)]
    lag: u64,
}

impl PerSecondCounts {
    /// How many seconds of history are kept; enough for the current-rate window.
    pub const KEEP_SECONDS: u64 = 20;
    /// Width of the window averaged by [`PerSecondCounts::current_rates`].
    pub const WINDOW_SECONDS: u64 = 10;

    /// Count one request (and a failure if `failed`) in second `sec`.
    #[inline]
    pub fn add(&mut self, sec: u64, requests: u64, failures: u64) {
        // The newest second is almost always the last one: check it first
        // to avoid a tree search on the hot path.
        if let Some((_, counts)) = self.seconds.iter_mut().next_back().filter(|(last, _)| **last == sec) {
            counts.0 += requests;
            counts.1 += failures;
            return;
        }
        let counts = self.seconds.entry(sec).or_insert((0, 0));
        counts.0 += requests;
        counts.1 += failures;
        if self.seconds.len() as u64 > Self::KEEP_SECONDS * 2 {
            self.prune(sec);
        }
    }

    /// Add every second of `other`.
    pub fn merge(&mut self, other: &PerSecondCounts) {
        let mut newest = 0;
        for (&sec, &(r, f)) in &other.seconds {
            let c = self.seconds.entry(sec).or_insert((0, 0));
            c.0 = c.0.saturating_add(r);
            c.1 = c.1.saturating_add(f);
            newest = newest.max(sec);
        }
        self.prune(newest.max(self.newest()));
    }

    /// End the current-rate window `seconds` earlier (at most
    /// `KEEP_SECONDS - WINDOW_SECONDS - 2`, so the window stays kept).
    pub fn set_lag(&mut self, seconds: u64) {
        self.lag = seconds.min(Self::KEEP_SECONDS - Self::WINDOW_SECONDS - 2);
    }

    fn newest(&self) -> u64 {
        self.seconds.keys().next_back().copied().unwrap_or(0)
    }

    fn prune(&mut self, now_sec: u64) {
        let oldest_kept = now_sec.saturating_sub(Self::KEEP_SECONDS);
        self.seconds = self.seconds.split_off(&oldest_kept);
    }

    /// Average requests/s and failures/s over the ten seconds ending two
    /// seconds before `now_sec`, starting no earlier than `start_sec`
    /// (Locust's `current_rps`).
    pub fn current_rates(&self, now_sec: u64, start_sec: u64) -> (f64, f64) {
        let end = now_sec.saturating_sub(2 + self.lag);
        let begin = end.saturating_sub(Self::WINDOW_SECONDS).max(start_sec);
        if end <= begin {
            return (0.0, 0.0);
        }
        let (mut r, mut f) = (0u64, 0u64);
        for (_, &(reqs, fails)) in self.seconds.range(begin..end) {
            r += reqs;
            f += fails;
        }
        let width = (end - begin) as f64;
        (r as f64 / width, f as f64 / width)
    }

    /// Requests per second, for Locust's `num_reqs_per_sec` JSON map.
    pub fn requests_by_second(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.seconds.iter().map(|(&s, &(r, _))| (s, r))
    }

    /// Failures per second, for Locust's `num_fail_per_sec` JSON map.
    pub fn failures_by_second(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.seconds.iter().filter(|(_, c)| c.1 > 0).map(|(&s, &(_, f))| (s, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_rate_averages_ten_seconds_ending_two_seconds_ago() {
        let mut w = PerSecondCounts::default();
        for sec in 100..120 {
            w.add(sec, 5, 1);
        }
        // Window is [108, 118): 10 seconds of 5 requests.
        assert_eq!(w.current_rates(120, 0), (5.0, 1.0));
        // Seconds newer than now-2 are not counted yet.
        w.add(119, 1000, 0);
        assert_eq!(w.current_rates(120, 0), (5.0, 1.0));
    }

    #[test]
    fn a_lag_ends_the_window_earlier() {
        let mut w = PerSecondCounts::default();
        for sec in 100..112 {
            w.add(sec, 5, 0);
        }
        // Seconds 112 to 119 have not been reported yet (reports every 8 s).
        assert_eq!(w.current_rates(120, 0), (2.0, 0.0));
        w.set_lag(6);
        // Window [102, 112): every second reported.
        assert_eq!(w.current_rates(120, 0), (5.0, 0.0));
    }

    #[test]
    fn current_rate_window_starts_at_test_start() {
        let mut w = PerSecondCounts::default();
        w.add(100, 10, 0);
        w.add(101, 10, 0);
        // Started at 100, now 104: window [100, 102) = 2 seconds.
        assert_eq!(w.current_rates(104, 100), (10.0, 0.0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut w = PerSecondCounts::default();
        for sec in 0..10_000 {
            w.add(sec, 1, 0);
        }
        assert!(w.seconds.len() as u64 <= PerSecondCounts::KEEP_SECONDS * 2 + 1);
    }
}
