//! Swarmer's statistics: exact, mergeable, serializable.
//!
//! What this crate owns:
//! - [`LatencyHistogram`]: an HdrHistogram of response times in microseconds
//!   (3 significant digits), mergeable and serializable so that shards and,
//!   later, workers can ship their histograms and be merged without
//!   approximation.
//! - [`StatsEntry`]: everything known about one `(method, name)` pair, and the
//!   "Aggregated" total. The same type is used for a shard's one-second delta
//!   and for the merged totals, so merging is one function ([`StatsEntry::merge`]).
//! - [`ShardRecorder`]: the per-shard, single-threaded recorder on the hot path.
//!   It is never shared between threads; its contents leave as a [`StatsDelta`].
//! - [`RequestStats`]: the merged view that every surface (console, CSV, JSON,
//!   web) reads: entries, total, failures, exceptions, windows, history.
//!
//! What it does not do: timing, HTTP, threads, I/O. Callers give it numbers.

mod delta;
mod entry;
mod errors;
mod histogram;
mod history;
mod recorder;
mod request_stats;
mod window;

pub use delta::StatsDelta;
pub use entry::StatsEntry;
pub use errors::{ExceptionEntry, FailureEntry};
pub use histogram::{HistogramError, LatencyHistogram};
pub use history::{History, HistoryPoint};
pub use recorder::{RequestSample, ShardRecorder};
pub use request_stats::{RequestStats, TOO_MANY_NAMES};
pub use window::PerSecondCounts;

/// The percentiles Locust prints and writes to CSV, in order.
pub const PERCENTILES_TO_REPORT: [f64; 11] = [0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0];

/// Seconds since the Unix epoch as a float, the way Locust stamps its stats.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
