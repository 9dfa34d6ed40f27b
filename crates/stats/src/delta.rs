//! What a shard (or a worker) hands over: everything recorded since its
//! previous hand-over. Deltas are merged into [`crate::RequestStats`]; they
//! are serializable so a worker can send them to a master unchanged.

use serde::{Deserialize, Serialize};

use crate::entry::StatsEntry;
use crate::errors::{ExceptionEntry, FailureEntry};
use crate::iterations::Iterations;

/// Statistics recorded since the previous delta.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsDelta {
    /// Per-`(method, name)` statistics recorded since the previous delta.
    pub entries: Vec<StatsEntry>,
    /// Failures since the previous delta, one per `(method, name, error)`.
    pub failures: Vec<FailureEntry>,
    /// Exceptions raised by user code since the previous delta, one per `(message, location)`.
    pub exceptions: Vec<ExceptionEntry>,
    /// Response times from the intended start (measured time plus how late
    /// the iteration began), per `(method, name)`; only for requests that
    /// had a schedule (arrival rate, constant pacing).
    #[serde(default)]
    pub corrected: Vec<StatsEntry>,
    /// Arrival-rate iterations started and dropped.
    #[serde(default)]
    pub iterations: Iterations,
}

impl StatsDelta {
    /// True when nothing at all was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.failures.is_empty()
            && self.exceptions.is_empty()
            && self.corrected.is_empty()
            && self.iterations.is_empty()
    }

    /// Total requests in this delta.
    pub fn num_requests(&self) -> u64 {
        self.entries.iter().map(|e| e.num_requests).sum()
    }

    /// Add everything `later` recorded, as if both had been one delta: rows
    /// of the same key (method and name; method, name and error; message
    /// and location) are merged, new keys appended. A worker that reports
    /// less often sends one such delta instead of several.
    pub fn absorb(&mut self, later: StatsDelta) {
        fn fold<T, K: std::hash::Hash + Eq>(
            rows: &mut Vec<T>,
            more: Vec<T>,
            key: impl Fn(&T) -> K,
            merge: impl Fn(&mut T, &T),
        ) {
            if more.is_empty() {
                return;
            }
            let mut at: std::collections::HashMap<K, usize> =
                rows.iter().enumerate().map(|(i, row)| (key(row), i)).collect();
            for row in more {
                match at.get(&key(&row)) {
                    Some(&i) => merge(&mut rows[i], &row),
                    None => {
                        at.insert(key(&row), rows.len());
                        rows.push(row);
                    }
                }
            }
        }
        let entry_key = |e: &StatsEntry| (e.method.clone(), e.name.clone());
        fold(&mut self.entries, later.entries, entry_key, StatsEntry::merge);
        fold(&mut self.corrected, later.corrected, entry_key, StatsEntry::merge);
        let failure_key = |f: &FailureEntry| (f.method.clone(), f.name.clone(), f.error.clone());
        fold(&mut self.failures, later.failures, failure_key, FailureEntry::merge);
        let exception_key = |e: &ExceptionEntry| (e.msg.clone(), e.traceback.clone());
        fold(&mut self.exceptions, later.exceptions, exception_key, ExceptionEntry::merge);
        self.iterations.merge(&later.iterations);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, times: &[u64], now: f64) -> StatsEntry {
        let mut e = StatsEntry::new("GET", name, now);
        for &t in times {
            e.record(Some(t), 0, 10, t > 1_000, now);
        }
        e
    }

    #[test]
    fn absorbing_deltas_equals_recording_them_as_one() {
        let mut first = StatsDelta { entries: vec![entry("/a", &[100, 2_000], 10.0)], ..Default::default() };
        first.iterations.count_started(10.0);
        let mut second =
            StatsDelta { entries: vec![entry("/b", &[300], 11.0), entry("/a", &[50], 11.0)], ..Default::default() };
        second.iterations.count_dropped(11.0);
        first.absorb(second);

        let mut a = entry("/a", &[100, 2_000], 10.0);
        a.record(Some(50), 0, 10, false, 11.0);
        assert_eq!(first.entries, vec![a, entry("/b", &[300], 11.0)]);
        assert_eq!((first.iterations.started, first.iterations.dropped), (1, 1));
        assert_eq!(first.num_requests(), 4);
    }

    #[test]
    fn absorbing_merges_failures_and_exceptions_by_their_keys() {
        let failure = |error: &str, n| FailureEntry {
            method: "GET".into(),
            name: "/a".into(),
            error: error.into(),
            occurrences: n,
            first_seen: 1.0,
            last_seen: 2.0,
        };
        let exception = |msg: &str| ExceptionEntry {
            count: 1,
            msg: msg.into(),
            traceback: "plan.lua:3".into(),
            nodes: ["w1".to_owned()].into(),
        };
        let mut first =
            StatsDelta { failures: vec![failure("500", 2)], exceptions: vec![exception("boom")], ..Default::default() };
        first.absorb(StatsDelta {
            failures: vec![failure("500", 3), failure("503", 1)],
            exceptions: vec![exception("boom"), exception("bang")],
            ..Default::default()
        });
        let occurrences: Vec<_> = first.failures.iter().map(|f| (f.error.as_str(), f.occurrences)).collect();
        assert_eq!(occurrences, [("500", 5), ("503", 1)]);
        let counts: Vec<_> = first.exceptions.iter().map(|e| (e.msg.as_str(), e.count)).collect();
        assert_eq!(counts, [("boom", 2), ("bang", 1)]);
    }
}
