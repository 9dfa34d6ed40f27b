//! Iterations of an arrival-rate test (an open model): how many started on
//! schedule and how many were dropped because no user of the pool was free
//! (k6's `iterations` and `dropped_iterations`). Counted per shard, shipped
//! in [`crate::StatsDelta`] and merged like every other count.

use serde::{Deserialize, Serialize};

use crate::window::PerSecondCounts;

/// Started and dropped iterations, in total and per Unix second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Iterations {
    /// Iterations a user of the pool began.
    pub started: u64,
    /// Iterations that were due while every user of the pool was busy.
    pub dropped: u64,
    /// Per second: started as the first count, dropped as the second.
    pub per_second: PerSecondCounts,
}

impl Iterations {
    /// One iteration began at Unix time `now`.
    #[inline]
    pub fn count_started(&mut self, now: f64) {
        self.started += 1;
        self.per_second.add(now as u64, 1, 0);
    }

    /// One iteration was dropped at Unix time `now`.
    pub fn count_dropped(&mut self, now: f64) {
        self.dropped += 1;
        self.per_second.add(now as u64, 0, 1);
    }

    /// Add what `other` counted.
    pub fn merge(&mut self, other: &Iterations) {
        self.started = self.started.saturating_add(other.started);
        self.dropped = self.dropped.saturating_add(other.dropped);
        self.per_second.merge(&other.per_second);
    }

    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        self.started == 0 && self.dropped == 0
    }

    /// Iterations that were due: started and dropped.
    pub fn due(&self) -> u64 {
        self.started + self.dropped
    }

    /// Share of the due iterations that were dropped, 0 to 1.
    pub fn dropped_ratio(&self) -> f64 {
        match self.due() {
            0 => 0.0,
            due => self.dropped as f64 / due as f64,
        }
    }

    /// Started and dropped per second over Locust's current-rate window.
    pub fn current_rates(&self, now: f64, start_time: f64) -> (f64, f64) {
        self.per_second.current_rates(now as u64, start_time as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_give_a_ratio() {
        let mut a = Iterations::default();
        for _ in 0..99 {
            a.count_started(10.0);
        }
        let mut b = Iterations::default();
        b.count_dropped(10.5);
        a.merge(&b);
        assert_eq!((a.started, a.dropped, a.due()), (99, 1, 100));
        assert!((a.dropped_ratio() - 0.01).abs() < 1e-12);
        assert_eq!(Iterations::default().dropped_ratio(), 0.0);
    }
}
