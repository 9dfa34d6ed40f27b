//! Failures and exceptions, grouped the way Locust groups them.
//!
//! A *failure* is a request that failed (status, connection error, timeout,
//! or marked failed by the plan), grouped by `(method, name, error)`.
//! An *exception* is an error raised by user code inside a task, grouped by
//! `(message, location)`; the same user carries on afterwards.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One row of the failures report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureEntry {
    /// Method or request type of the failed request, e.g. `GET`.
    pub method: String,
    /// Request name of the failed request.
    pub name: String,
    /// The error text, as shown in the report.
    pub error: String,
    /// How many times this failure happened.
    pub occurrences: u64,
    /// Unix time of the first and the latest occurrence.
    pub first_seen: f64,
    /// Unix time of the latest occurrence.
    pub last_seen: f64,
}

impl FailureEntry {
    /// Fold another occurrence group of the same failure into this one.
    pub fn merge(&mut self, other: &FailureEntry) {
        self.occurrences = self.occurrences.saturating_add(other.occurrences);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// One row of the exceptions report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionEntry {
    /// How many times this exception was raised.
    pub count: u64,
    /// The error message.
    pub msg: String,
    /// Where it happened: `file:line` for Rust tasks, a traceback for plans.
    pub traceback: String,
    /// Which processes saw it (`local`, or worker ids once distributed).
    pub nodes: BTreeSet<String>,
}

impl ExceptionEntry {
    /// Fold another occurrence group of the same exception into this one.
    pub fn merge(&mut self, other: &ExceptionEntry) {
        self.count = self.count.saturating_add(other.count);
        self.nodes.extend(other.nodes.iter().cloned());
    }
}
