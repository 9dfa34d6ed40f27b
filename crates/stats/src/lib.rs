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
//! - [`Iterations`] and the *corrected* entries of an arrival-rate or paced
//!   test: response times counted from when a request should have been
//!   sent (coordinated omission corrected), kept beside the measured ones.
//!
//! What it does not do: timing, HTTP, threads, I/O. Callers give it numbers.

mod delta;
mod entry;
mod errors;
mod histogram;
mod history;
mod iterations;
mod recorder;
mod request_stats;
mod window;

pub use delta::StatsDelta;
pub use entry::StatsEntry;
pub use errors::{ExceptionEntry, FailureEntry};
pub use histogram::{HistogramError, LatencyHistogram, MOST_CONTENT_LENGTH, MOST_MICROS};
pub use history::{History, HistoryPoint, NodeUsage};
pub use iterations::Iterations;
pub use recorder::{RequestSample, ShardRecorder};
pub use request_stats::{
    FOLDED_ERROR, FOLDED_METHOD, FOLDED_NAME, MOST_ERRORS, MOST_NAMES, RequestStats, TOO_MANY_NAMES,
};
pub use window::PerSecondCounts;

/// The percentiles Locust prints and writes to CSV, in order.
pub const PERCENTILES_TO_REPORT: [f64; 11] = [0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0];

/// Seconds since the Unix epoch as a float, the way Locust stamps its stats.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// How long until the wall clock is `fraction` (0 ≤ fraction < 1) of a
/// second past a whole second: workers report at whole seconds and a master
/// writes its history half a second later, so each of its rows holds every
/// worker's second once, whatever their clocks' phase.
pub fn until_second_fraction(fraction: f64) -> std::time::Duration {
    let wait = (fraction - unix_now().fract()).rem_euclid(1.0);
    std::time::Duration::from_secs_f64(if wait < 1e-3 { wait + 1.0 } else { wait })
}

/// Unix time as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as Locust writes it.
pub fn utc_timestamp(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_for_a_second_fraction_ends_there() {
        for fraction in [0.0, 0.5, 0.999] {
            let wait = until_second_fraction(fraction);
            // Up to a second, or just over one when the fraction was a hair away.
            assert!(wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_millis(1001), "{wait:?}");
            let at = (unix_now() + wait.as_secs_f64()).fract();
            let off = (at - fraction).rem_euclid(1.0).min((fraction - at).rem_euclid(1.0));
            assert!(off < 0.01, "{fraction}: lands at {at}");
        }
    }
}
