//! Swarmer's text surfaces: console tables, CSV files and JSON, in Locust's
//! formats so that people and tools used to Locust read them unchanged.
//!
//! - [`console`]: the live stats table, the percentile table and the error
//!   report printed at the end of a headless run.
//! - [`csv`]: `PREFIX_stats.csv`, `PREFIX_stats_history.csv`,
//!   `PREFIX_failures.csv`, `PREFIX_exceptions.csv` (same names, same
//!   headers as Locust).
//! - [`json`]: the final statistics as Locust's `--json` prints them.
//! - [`live`]: the live statistics as Locust's web API serves them.
//! - [`html`]: the self-contained HTML report with its charts.
//! - [`junit`]: `--junit FILE`, the thresholds' verdicts as JUnit XML.
//! - [`task_ratio`]: `--show-task-ratio` and `--list`.
//!
//! Everything here is a pure function of [`swarmer_stats::RequestStats`] (and
//! the plan's class info): no I/O but the writer given, no clocks but the
//! `now` passed in, so the formats are unit-tested byte for byte.

pub mod compare;
pub mod console;
pub mod csv;
pub mod html;
pub mod json;
pub mod junit;
pub mod live;
pub mod number;
pub mod task_ratio;
