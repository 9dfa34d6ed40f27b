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
}
