//! Statistics of one `(method, name)` pair, or of all of them ("Aggregated").
//!
//! One type serves three roles: what a shard records during one second,
//! what workers will ship, and the merged totals. That keeps merging in one
//! place and makes "master total = sum of shard totals" true by construction.

use serde::{Deserialize, Serialize};

use crate::histogram::LatencyHistogram;
use crate::window::PerSecondCounts;

/// Counts, times and a histogram for one request name and method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsEntry {
    /// Request method or type, e.g. `GET` (Locust's `method`); empty for the "Aggregated" row.
    pub method: String,
    /// Request name: the URL unless the task named it; "Aggregated" for the total row.
    pub name: String,
    /// Requests recorded, failed ones included.
    pub num_requests: u64,
    /// Requests recorded without a response time (Locust's `num_none_requests`).
    pub num_none_requests: u64,
    /// Requests that failed (a subset of `num_requests`).
    pub num_failures: u64,
    /// Sum of response times in microseconds, for the average.
    pub total_response_time_us: u64,
    /// Shortest response time in microseconds; `None` until a timed request is recorded.
    pub min_response_time_us: Option<u64>,
    /// Longest response time in microseconds; 0 until a timed request is recorded.
    pub max_response_time_us: u64,
    /// Sum of response body sizes in bytes, for the average.
    pub total_content_length: u64,
    /// Sum of times to first byte, for the average TTFB.
    pub total_ttfb_us: u64,
    /// Response times in microseconds, for percentiles.
    pub histogram: LatencyHistogram,
    /// Requests and failures per Unix second, for current rates and per-second JSON.
    pub per_second: PerSecondCounts,
    /// Unix time of the first sample (or of the last reset).
    pub start_time: f64,
    /// Unix time of the latest sample; `None` until one is recorded.
    pub last_request_timestamp: Option<f64>,
}

impl StatsEntry {
    /// An empty entry for `method` and `name` whose statistics start at Unix time `start_time`.
    pub fn new(method: &str, name: &str, start_time: f64) -> Self {
        Self { method: method.to_owned(), name: name.to_owned(), start_time, ..Self::default() }
    }

    /// Record one sample. `response_time_us` is `None` for samples that
    /// carry no timing (counted, not put in the histogram).
    #[inline]
    pub fn record(&mut self, response_time_us: Option<u64>, ttfb_us: u64, content_length: u64, failed: bool, now: f64) {
        self.num_requests += 1;
        // Times beyond the histogram's range, and sizes beyond a terabyte,
        // are kept at those (what a master accepts from a worker).
        match response_time_us.map(|rt| rt.min(crate::MOST_MICROS)) {
            Some(rt) => {
                self.total_response_time_us += rt;
                self.min_response_time_us = Some(self.min_response_time_us.map_or(rt, |m| m.min(rt)));
                self.max_response_time_us = self.max_response_time_us.max(rt);
                self.histogram.record(rt);
            }
            None => self.num_none_requests += 1,
        }
        self.total_ttfb_us += ttfb_us.min(crate::MOST_MICROS);
        self.total_content_length += content_length.min(crate::MOST_CONTENT_LENGTH);
        if failed {
            self.num_failures += 1;
        }
        self.per_second.add(now as u64, 1, failed as u64);
        self.last_request_timestamp = Some(now);
    }

    /// Add everything `other` recorded. Names are not compared: the caller
    /// decides which entries belong together (e.g. all of them for the total).
    /// Sums saturate rather than wrap (a master merges what workers send).
    pub fn merge(&mut self, other: &StatsEntry) {
        self.num_requests = self.num_requests.saturating_add(other.num_requests);
        self.num_none_requests = self.num_none_requests.saturating_add(other.num_none_requests);
        self.num_failures = self.num_failures.saturating_add(other.num_failures);
        self.total_response_time_us = self.total_response_time_us.saturating_add(other.total_response_time_us);
        self.min_response_time_us = match (self.min_response_time_us, other.min_response_time_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_response_time_us = self.max_response_time_us.max(other.max_response_time_us);
        self.total_content_length = self.total_content_length.saturating_add(other.total_content_length);
        self.total_ttfb_us = self.total_ttfb_us.saturating_add(other.total_ttfb_us);
        self.histogram.merge(&other.histogram);
        self.per_second.merge(&other.per_second);
        self.last_request_timestamp = match (self.last_request_timestamp, other.last_request_timestamp) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if self.start_time == 0.0 || (other.start_time > 0.0 && other.start_time < self.start_time) {
            self.start_time = other.start_time;
        }
    }

    /// What was recorded after `earlier`, a snapshot of this entry taken
    /// at Unix time `at` (for statistics over a window of time). Minimum
    /// and maximum are the window's own, to the histogram's 3 digits.
    pub fn since(&self, earlier: &StatsEntry, at: f64) -> StatsEntry {
        let mut histogram = self.histogram.clone();
        histogram.subtract(&earlier.histogram);
        let timed = !histogram.is_empty();
        StatsEntry {
            method: self.method.clone(),
            name: self.name.clone(),
            num_requests: self.num_requests.saturating_sub(earlier.num_requests),
            num_none_requests: self.num_none_requests.saturating_sub(earlier.num_none_requests),
            num_failures: self.num_failures.saturating_sub(earlier.num_failures),
            total_response_time_us: self.total_response_time_us.saturating_sub(earlier.total_response_time_us),
            min_response_time_us: timed.then(|| histogram.min()),
            max_response_time_us: if timed { histogram.max().min(self.max_response_time_us) } else { 0 },
            total_content_length: self.total_content_length.saturating_sub(earlier.total_content_length),
            total_ttfb_us: self.total_ttfb_us.saturating_sub(earlier.total_ttfb_us),
            histogram,
            per_second: PerSecondCounts::default(),
            start_time: at,
            last_request_timestamp: self.last_request_timestamp.filter(|last| *last > at),
        }
    }

    fn timed_requests(&self) -> u64 {
        self.num_requests - self.num_none_requests
    }

    /// Average response time in milliseconds.
    pub fn avg_response_time_ms(&self) -> f64 {
        match self.timed_requests() {
            0 => 0.0,
            n => self.total_response_time_us as f64 / n as f64 / 1000.0,
        }
    }

    /// Shortest response time in milliseconds; `None` if no timed request was recorded.
    pub fn min_response_time_ms(&self) -> Option<f64> {
        self.min_response_time_us.map(|us| us as f64 / 1000.0)
    }

    /// Longest response time in milliseconds; 0 if no timed request was recorded.
    pub fn max_response_time_ms(&self) -> f64 {
        self.max_response_time_us as f64 / 1000.0
    }

    /// Response time at `quantile` in milliseconds (exact to 3 significant
    /// digits). Bucket values are clamped to the exact minimum and maximum,
    /// so a percentile never lies outside what was observed.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        let v = self.histogram.value_at_quantile(quantile);
        let v = match self.min_response_time_us {
            Some(min) => v.clamp(min, self.max_response_time_us.max(min)),
            None => v,
        };
        v as f64 / 1000.0
    }

    /// Median response time in milliseconds ([`Self::percentile_ms`] at 0.5).
    pub fn median_response_time_ms(&self) -> f64 {
        self.percentile_ms(0.5)
    }

    /// Average time to first byte in milliseconds.
    pub fn avg_ttfb_ms(&self) -> f64 {
        match self.timed_requests() {
            0 => 0.0,
            n => self.total_ttfb_us as f64 / n as f64 / 1000.0,
        }
    }

    /// Average response body size in bytes over all requests; 0 when there are none.
    pub fn avg_content_length(&self) -> f64 {
        match self.num_requests {
            0 => 0.0,
            n => self.total_content_length as f64 / n as f64,
        }
    }

    /// Share of requests that failed, from 0.0 to 1.0; 0 when there are none.
    pub fn fail_ratio(&self) -> f64 {
        match self.num_requests {
            0 => 0.0,
            n => self.num_failures as f64 / n as f64,
        }
    }

    /// Requests/s over `run_seconds` (Locust's `total_rps`). Pass the run's
    /// duration ([`crate::RequestStats::run_seconds`]) so that a name used only
    /// at the start (a login) does not show an inflated rate.
    pub fn total_rps(&self, run_seconds: f64) -> f64 {
        rate(self.num_requests, run_seconds)
    }

    /// Failures/s over `run_seconds` (Locust's `total_fail_per_sec`).
    pub fn total_fail_per_sec(&self, run_seconds: f64) -> f64 {
        rate(self.num_failures, run_seconds)
    }

    /// Current requests/s and failures/s over the sliding window.
    pub fn current_rates(&self, now: f64) -> (f64, f64) {
        self.per_second.current_rates(now as u64, self.start_time as u64)
    }
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_as_requests_too() {
        let mut e = StatsEntry::new("GET", "/", 100.0);
        e.record(Some(1_000), 500, 10, false, 100.5);
        e.record(Some(3_000), 600, 20, true, 101.0);
        assert_eq!(e.num_requests, 2);
        assert_eq!(e.num_failures, 1);
        assert_eq!(e.avg_response_time_ms(), 2.0);
        assert_eq!(e.min_response_time_ms(), Some(1.0));
        assert_eq!(e.max_response_time_ms(), 3.0);
        assert_eq!(e.avg_content_length(), 15.0);
        assert_eq!(e.fail_ratio(), 0.5);
        assert_eq!(e.total_rps(0.5), 4.0);
        assert_eq!(e.total_fail_per_sec(0.0), 0.0);
        assert_eq!(e.avg_ttfb_ms(), 0.55);
    }

    #[test]
    fn an_entry_since_a_snapshot_holds_only_what_came_after() {
        let mut e = StatsEntry::new("GET", "/", 100.0);
        for _ in 0..100 {
            e.record(Some(900_000), 0, 1, false, 100.5);
        }
        let snapshot = e.clone();
        e.record(Some(2_000), 0, 1, false, 102.0);
        e.record(Some(4_000), 0, 1, true, 102.5);
        let window = e.since(&snapshot, 101.0);
        assert_eq!((window.num_requests, window.num_failures), (2, 1));
        assert_eq!(window.avg_response_time_ms(), 3.0);
        assert!((window.max_response_time_ms() - 4.0).abs() < 0.01, "not the earlier 900 ms");
        assert_eq!(window.min_response_time_ms(), Some(2.0));
        assert_eq!(window.percentile_ms(0.5), 2.0);
        assert_eq!(window.fail_ratio(), 0.5);
        let empty = e.since(&e, 103.0);
        assert_eq!((empty.num_requests, empty.min_response_time_us, empty.last_request_timestamp), (0, None, None));
    }

    #[test]
    fn merged_entries_equal_one_entry_that_saw_everything() {
        let mut a = StatsEntry::new("GET", "/", 10.0);
        let mut b = StatsEntry::new("GET", "/", 11.0);
        let mut all = StatsEntry::new("GET", "/", 10.0);
        for i in 0..1000u64 {
            let rt = Some(i * 13 % 977 + 1);
            let failed = i % 7 == 0;
            let now = 10.0 + (i as f64) / 100.0;
            if i % 2 == 0 {
                a.record(rt, 1, i, failed, now)
            } else {
                b.record(rt, 1, i, failed, now)
            }
            all.record(rt, 1, i, failed, now);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn samples_without_timing_count_but_do_not_skew_the_average() {
        let mut e = StatsEntry::new("GET", "/", 0.0);
        e.record(Some(2_000), 0, 0, false, 1.0);
        e.record(None, 0, 0, false, 1.0);
        assert_eq!(e.num_requests, 2);
        assert_eq!(e.avg_response_time_ms(), 2.0);
    }

    #[test]
    fn merged_sums_saturate_instead_of_wrapping() {
        let mut a = StatsEntry::new("GET", "/", 0.0);
        a.num_requests = u64::MAX - 1;
        a.total_content_length = u64::MAX;
        let mut b = StatsEntry::new("GET", "/", 0.0);
        b.num_requests = 5;
        b.total_content_length = 5;
        a.merge(&b);
        assert_eq!((a.num_requests, a.total_content_length), (u64::MAX, u64::MAX));
    }
}
