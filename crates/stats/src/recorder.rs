//! The per-shard recorder: the only statistics code on the hot path.
//!
//! HOT PATH. Every request of every user on a shard passes through
//! [`ShardRecorder::record`]. It runs on the shard's own thread with no lock
//! and no channel; a known name costs one hash lookup with a borrowed key and
//! no allocation. Allocation happens only for a name seen for the first
//! time in the current delta and for failures (which carry an error text).
//! Once a second the shard calls [`ShardRecorder::take_delta`] and sends the
//! result to the aggregator.

use std::collections::{BTreeSet, HashMap};

use crate::delta::StatsDelta;
use crate::entry::StatsEntry;
use crate::errors::{ExceptionEntry, FailureEntry};
use crate::iterations::Iterations;

/// The method and name under which dropped iterations' waits are filed
/// among the corrected entries.
pub const DROPPED_METHOD: &str = "ITER";
/// See [`DROPPED_METHOD`].
pub const DROPPED_NAME: &str = "dropped";

type EntriesByName = HashMap<Box<str>, Vec<StatsEntry>>;

/// The entry of `method` and `name` in a map of entries, made if new. A
/// known name costs one lookup with a borrowed key. (A macro: as a function
/// returning the borrow, today's borrow checker refuses the lookup-then-insert.)
macro_rules! entry_mut {
    ($entries:expr, $method:expr, $name:expr, $now:expr) => {{
        let (method, name) = ($method, $name);
        let methods = match $entries.get_mut(name) {
            Some(methods) => methods,
            None => $entries.entry(name.into()).or_default(),
        };
        match methods.iter().position(|e| e.method == method) {
            Some(i) => &mut methods[i],
            None => {
                methods.push(StatsEntry::new(method, name, $now));
                methods.last_mut().expect("just pushed")
            }
        }
    }};
}
/// One measured request, as borrowed views so recording needs no copies.
#[derive(Clone, Copy, Debug)]
pub struct RequestSample<'a> {
    /// Request method or type, e.g. `GET`.
    pub method: &'a str,
    /// Request name the sample is filed under.
    pub name: &'a str,
    /// From sending the request to the last byte of the body; `None` when the
    /// sample carries no timing.
    pub response_time_us: Option<u64>,
    /// Time to first byte in microseconds; 0 when not measured.
    pub ttfb_us: u64,
    /// Size of the response body in bytes (for other request types, the length reported).
    pub content_length: u64,
    /// `Some(text)` when the request failed.
    pub error: Option<&'a str>,
}

/// Records samples of one shard between two deltas.
#[derive(Debug)]
pub struct ShardRecorder {
    node: String,
    entries: EntriesByName,
    corrected: EntriesByName,
    iterations: Iterations,
    failures: HashMap<(String, String, String), (u64, f64, f64)>,
    exceptions: HashMap<(String, String), u64>,
}

impl ShardRecorder {
    /// `node` names this process in exception reports (`local`, a worker id).
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            entries: HashMap::new(),
            corrected: HashMap::new(),
            iterations: Iterations::default(),
            failures: HashMap::new(),
            exceptions: HashMap::new(),
        }
    }

    /// Record one request sample at Unix time `now`.
    #[inline]
    pub fn record(&mut self, sample: &RequestSample<'_>, now: f64) {
        let failed = sample.error.is_some();
        let entry = entry_mut!(self.entries, sample.method, sample.name, now);
        entry.record(sample.response_time_us, sample.ttfb_us, sample.content_length, failed, now);
        if let Some(error) = sample.error {
            let seen = self
                .failures
                .entry((sample.method.to_owned(), sample.name.to_owned(), error.to_owned()))
                .or_insert((0, now, now));
            seen.0 += 1;
            seen.2 = now;
        }
    }

    /// Record `sample` as also due `lag_us` before it was sent: its
    /// corrected response time is the measured one plus the lag.
    #[inline]
    pub fn record_corrected(&mut self, sample: &RequestSample<'_>, lag_us: u64, now: f64) {
        let failed = sample.error.is_some();
        let corrected = sample.response_time_us.map(|rt| rt.saturating_add(lag_us));
        let entry = entry_mut!(self.corrected, sample.method, sample.name, now);
        entry.record(corrected, sample.ttfb_us, sample.content_length, failed, now);
    }

    /// An arrival-rate iteration began.
    #[inline]
    pub fn count_iteration_started(&mut self, now: f64) {
        self.iterations.count_started(now);
    }

    /// An arrival-rate iteration was dropped (no free user).
    pub fn count_iteration_dropped(&mut self, now: f64) {
        self.iterations.count_dropped(now);
    }

    /// A dropped iteration would have waited at least `wait_us` for a user
    /// (from when it was due until one came free): filed among the
    /// corrected entries as [`DROPPED_METHOD`] [`DROPPED_NAME`].
    pub fn record_dropped_wait(&mut self, wait_us: u64, now: f64) {
        let entry = entry_mut!(self.corrected, DROPPED_METHOD, DROPPED_NAME, now);
        entry.record(Some(wait_us), 0, 0, false, now);
    }

    /// Record an error raised by user code inside a task.
    pub fn record_exception(&mut self, msg: &str, location: &str) {
        *self.exceptions.entry((msg.to_owned(), location.to_owned())).or_default() += 1;
    }

    /// Hand over everything recorded so far and start empty.
    pub fn take_delta(&mut self) -> StatsDelta {
        let entries = std::mem::take(&mut self.entries).into_values().flatten().collect();
        let failures = std::mem::take(&mut self.failures)
            .into_iter()
            .map(|((method, name, error), (occurrences, first_seen, last_seen))| FailureEntry {
                method,
                name,
                error,
                occurrences,
                first_seen,
                last_seen,
            })
            .collect();
        let exceptions = std::mem::take(&mut self.exceptions)
            .into_iter()
            .map(|((msg, traceback), count)| ExceptionEntry {
                count,
                msg,
                traceback,
                nodes: BTreeSet::from([self.node.clone()]),
            })
            .collect();
        let corrected = std::mem::take(&mut self.corrected).into_values().flatten().collect();
        let iterations = std::mem::take(&mut self.iterations);
        StatsDelta { entries, failures, exceptions, corrected, iterations }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(method: &'a str, name: &'a str, error: Option<&'a str>) -> RequestSample<'a> {
        RequestSample { method, name, response_time_us: Some(1_000), ttfb_us: 10, content_length: 5, error }
    }

    #[test]
    fn entries_are_keyed_by_method_and_name() {
        let mut r = ShardRecorder::new("local");
        r.record(&sample("GET", "/a", None), 1.0);
        r.record(&sample("GET", "/a", None), 1.0);
        r.record(&sample("POST", "/a", None), 1.0);
        r.record(&sample("GET", "/b", None), 1.0);
        let mut d = r.take_delta();
        d.entries.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        let keys: Vec<_> = d.entries.iter().map(|e| (e.method.as_str(), e.name.as_str(), e.num_requests)).collect();
        assert_eq!(keys, [("GET", "/a", 2), ("POST", "/a", 1), ("GET", "/b", 1)]);
        assert!(r.take_delta().is_empty(), "a delta empties the recorder");
    }

    #[test]
    fn failures_group_by_method_name_and_error() {
        let mut r = ShardRecorder::new("local");
        r.record(&sample("GET", "/a", Some("boom")), 1.0);
        r.record(&sample("GET", "/a", Some("boom")), 1.0);
        r.record(&sample("GET", "/a", Some("bang")), 1.0);
        r.record(&sample("POST", "/a", Some("boom")), 1.0);
        let mut f = r.take_delta().failures;
        f.sort_by(|a, b| (&a.method, &a.error).cmp(&(&b.method, &b.error)));
        let got: Vec<_> = f.iter().map(|f| (f.method.as_str(), f.error.as_str(), f.occurrences)).collect();
        assert_eq!(got, [("GET", "bang", 1), ("GET", "boom", 2), ("POST", "boom", 1)]);
    }

    #[test]
    fn corrected_times_add_the_lag_and_keep_their_own_entries() {
        let mut r = ShardRecorder::new("local");
        let s = sample("GET", "/a", None);
        r.record(&s, 1.0);
        r.record_corrected(&s, 2_000, 1.0);
        r.record_dropped_wait(500_000, 1.0);
        r.count_iteration_started(1.0);
        r.count_iteration_dropped(1.0);
        let d = r.take_delta();
        assert_eq!(d.entries[0].max_response_time_us, 1_000);
        let mut corrected = d.corrected.clone();
        corrected.sort_by(|a, b| a.method.cmp(&b.method));
        assert_eq!((corrected[0].method.as_str(), corrected[0].max_response_time_us), ("GET", 3_000));
        assert_eq!((corrected[1].method.as_str(), corrected[1].name.as_str()), (DROPPED_METHOD, DROPPED_NAME));
        assert_eq!((d.iterations.started, d.iterations.dropped), (1, 1));
        assert!(r.take_delta().is_empty());
    }

    #[test]
    fn exceptions_group_by_message_and_location() {
        let mut r = ShardRecorder::new("w1");
        r.record_exception("division by zero", "plan.rs:10");
        r.record_exception("division by zero", "plan.rs:10");
        r.record_exception("division by zero", "plan.rs:20");
        let mut e = r.take_delta().exceptions;
        e.sort_by(|a, b| a.traceback.cmp(&b.traceback));
        assert_eq!(e[0].count, 2);
        assert_eq!(e[1].count, 1);
        assert!(e[0].nodes.contains("w1"));
    }
}
