//! Locust's CSV files: the same file names, the same headers, the same
//! column order, so tools that read Locust's CSVs read Swarmer's.
//!
//! Rows end with CRLF like Python's `csv` module writes them. As in
//! Locust's, medians and percentiles are whole milliseconds (readers do
//! `int(row["95%"])`), rounded from the exact figures, which never exceed
//! the exact maximum (Locust's 100% can); average, min and max keep up to
//! three decimals, as Locust writes them unrounded. The exact percentiles
//! are in the JSON outputs. Unlike Locust, the files are written once
//! more at shutdown, so they hold the same totals as the final summary.

use std::fmt::Write;

use swarmer_stats::{PERCENTILES_TO_REPORT, RequestStats, StatsEntry};

use crate::console::percentile_label;
use crate::number::{ms, trimmed, whole_ms};

/// The four file names for a `--csv PREFIX`.
pub fn file_names(prefix: &str) -> [String; 4] {
    [
        format!("{prefix}_stats.csv"),
        format!("{prefix}_stats_history.csv"),
        format!("{prefix}_failures.csv"),
        format!("{prefix}_exceptions.csv"),
    ]
}

fn percentile_headers() -> Vec<String> {
    PERCENTILES_TO_REPORT.iter().map(|q| percentile_label(*q)).collect()
}

/// Header of `PREFIX_stats.csv`.
pub fn stats_header() -> String {
    let mut cols: Vec<String> = [
        "Type",
        "Name",
        "Request Count",
        "Failure Count",
        "Median Response Time",
        "Average Response Time",
        "Min Response Time",
        "Max Response Time",
        "Average Content Size",
        "Requests/s",
        "Failures/s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cols.extend(percentile_headers());
    cols.join(",")
}

/// Header of `PREFIX_stats_history.csv`.
pub fn history_header() -> String {
    let mut cols: Vec<String> =
        ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s"].iter().map(|s| s.to_string()).collect();
    cols.extend(percentile_headers());
    cols.extend(
        [
            "Total Request Count",
            "Total Failure Count",
            "Total Median Response Time",
            "Total Average Response Time",
            "Total Min Response Time",
            "Total Max Response Time",
            "Total Average Content Size",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    cols.join(",")
}

/// Header of `PREFIX_failures.csv`.
pub const FAILURES_HEADER: &str = "Method,Name,Error,Occurrences,First Seen,Last Seen";
/// Header of `PREFIX_exceptions.csv`.
pub const EXCEPTIONS_HEADER: &str = "Count,Message,Traceback,Nodes";

/// Quote a field when it needs it (RFC 4180, as Python's csv module does).
pub fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

fn percentiles(e: &StatsEntry) -> Vec<String> {
    PERCENTILES_TO_REPORT
        .iter()
        .map(|q| if e.num_requests > 0 { whole_ms(e.percentile_ms(*q)).to_string() } else { "N/A".into() })
        .collect()
}

/// Request and failure counts, median, average, min and max response time,
/// average content size: the same seven columns in both files.
fn counts_and_times(e: &StatsEntry) -> [String; 7] {
    [
        e.num_requests.to_string(),
        e.num_failures.to_string(),
        whole_ms(e.median_response_time_ms()).to_string(),
        ms(e.avg_response_time_ms()),
        ms(e.min_response_time_ms().unwrap_or(0.0)),
        ms(e.max_response_time_ms()),
        trimmed(e.avg_content_length(), 3),
    ]
}

fn stats_row(e: &StatsEntry, run_seconds: f64) -> String {
    let mut cols = vec![field(&e.method), field(&e.name)];
    cols.extend(counts_and_times(e));
    cols.extend([trimmed(e.total_rps(run_seconds), 6), trimmed(e.total_fail_per_sec(run_seconds), 6)]);
    cols.extend(percentiles(e));
    cols.join(",")
}

/// The whole of `PREFIX_stats.csv`: one row per entry, then Aggregated.
pub fn stats_csv(stats: &RequestStats) -> String {
    let mut out = String::new();
    let _ = write!(out, "{}\r\n", stats_header());
    for e in stats.entries() {
        let _ = write!(out, "{}\r\n", stats_row(e, stats.run_seconds()));
    }
    let _ = write!(out, "{}\r\n", stats_row(stats.total(), stats.run_seconds()));
    out
}

/// `PREFIX_corrected_stats.csv`: the columns of `PREFIX_stats.csv` for
/// response times counted from the intended start (arrival rate, pacing);
/// `ITER dropped` rows are how long dropped iterations waited, at least.
pub fn corrected_stats_csv(stats: &RequestStats) -> String {
    let mut out = String::new();
    let _ = write!(out, "{}\r\n", stats_header());
    let run_seconds = stats.run_seconds();
    for e in stats.corrected_entries() {
        let _ = write!(out, "{}\r\n", stats_row(e, run_seconds));
    }
    let _ = write!(out, "{}\r\n", stats_row(stats.corrected_total(), run_seconds));
    out
}

/// The header of `PREFIX_iterations_history.csv`.
pub fn iterations_header() -> &'static str {
    "Timestamp,User Count,Iterations/s,Dropped/s,Total Iterations,Total Dropped"
}

/// This second's row of `PREFIX_iterations_history.csv`: arrival-rate
/// iterations started and dropped (current rates, then totals).
pub fn iterations_row(stats: &RequestStats, user_count: usize, now: f64) -> String {
    let iterations = stats.iterations();
    let (started, dropped) = iterations.current_rates(now, stats.start_time());
    format!(
        "{},{user_count},{},{},{},{}\r\n",
        now as u64,
        trimmed(started, 6),
        trimmed(dropped, 6),
        iterations.started,
        iterations.dropped
    )
}

/// Rows of `PREFIX_stats_history.csv` for this second: the Aggregated row,
/// preceded by every entry's row with `full_history`. As in Locust, the
/// Aggregated row's percentiles are over the whole run, or over the last ten
/// seconds with `full_history`; entry rows use the whole run.
pub fn history_rows(stats: &RequestStats, user_count: usize, now: f64, full_history: bool) -> String {
    let mut out = String::new();
    let timestamp = now as u64;
    let mut row = |e: &StatsEntry, current_percentiles: Vec<String>| {
        let (rps, fps) = e.current_rates(now);
        let mut cols = vec![
            timestamp.to_string(),
            user_count.to_string(),
            field(&e.method),
            field(&e.name),
            format!("{rps:.6}"),
            format!("{fps:.6}"),
        ];
        cols.extend(current_percentiles);
        cols.extend(counts_and_times(e));
        let _ = write!(out, "{}\r\n", cols.join(","));
    };
    if full_history {
        for e in stats.entries() {
            row(e, percentiles(e));
        }
    }
    let total = stats.total();
    let total_percentiles = if full_history && total.num_requests > 0 {
        PERCENTILES_TO_REPORT.iter().map(|q| whole_ms(stats.current_percentile_ms(*q, now)).to_string()).collect()
    } else {
        percentiles(total)
    };
    row(total, total_percentiles);
    out
}

/// The whole of `PREFIX_failures.csv`.
pub fn failures_csv(stats: &RequestStats) -> String {
    let mut out = String::new();
    let _ = write!(out, "{FAILURES_HEADER}\r\n");
    for f in stats.failures() {
        let _ = write!(
            out,
            "{},{},{},{},{},{}\r\n",
            field(&f.method),
            field(&f.name),
            field(&f.error),
            f.occurrences,
            utc_timestamp(f.first_seen),
            utc_timestamp(f.last_seen)
        );
    }
    out
}

/// The whole of `PREFIX_exceptions.csv`.
pub fn exceptions_csv(stats: &RequestStats) -> String {
    let mut out = String::new();
    let _ = write!(out, "{EXCEPTIONS_HEADER}\r\n");
    for e in stats.exceptions() {
        let nodes: Vec<&str> = e.nodes.iter().map(String::as_str).collect();
        let _ = write!(out, "{},{},{},{}\r\n", e.count, field(&e.msg), field(&e.traceback), field(&nodes.join(", ")));
    }
    out
}

pub use swarmer_stats::utc_timestamp;

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    #[test]
    fn headers_match_locust_byte_for_byte() {
        assert_eq!(
            stats_header(),
            "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
             Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,\
             99.99%,100%"
        );
        assert_eq!(
            history_header(),
            "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,\
             100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,\
             Total Min Response Time,Total Max Response Time,Total Average Content Size"
        );
        assert_eq!(FAILURES_HEADER, "Method,Name,Error,Occurrences,First Seen,Last Seen");
        assert_eq!(EXCEPTIONS_HEADER, "Count,Message,Traceback,Nodes");
    }

    #[test]
    fn rows_quote_fields_and_end_with_aggregated() {
        let mut r = ShardRecorder::new("local");
        let sample = RequestSample {
            method: "GET",
            name: "/a,b",
            response_time_us: Some(12_500),
            ttfb_us: 0,
            content_length: 100,
            error: Some("said \"no\""),
        };
        r.record(&sample, 100.0);
        r.record_exception("bad, thing", "plan.rs:3");
        let mut s = RequestStats::new(100.0);
        s.apply(&r.take_delta(), 100.0);
        let csv = stats_csv(&s);
        let rows: Vec<&str> = csv.lines().collect();
        // Median and percentiles in whole ms (12.5 rounds to 13), the
        // average, min and max exact, as Locust writes them.
        assert!(rows[1].starts_with("GET,\"/a,b\",1,1,13,12.5,12.5,12.5,100,"), "{}", rows[1]);
        assert!(rows[1].ends_with(",13,13"), "whole ms: {}", rows[1]);
        assert!(rows[2].starts_with(",Aggregated,1,1,"), "{}", rows[2]);
        assert_eq!(rows[1].split(',').count(), rows[0].split(',').count() + 1, "one quoted comma");
        assert_eq!(
            failures_csv(&s).lines().nth(1).unwrap(),
            "GET,\"/a,b\",\"said \"\"no\"\"\",1,1970-01-01T00:01:40Z,1970-01-01T00:01:40Z"
        );
        assert_eq!(exceptions_csv(&s).lines().nth(1).unwrap(), "1,\"bad, thing\",plan.rs:3,local");
        assert!(csv.ends_with("\r\n") && !csv.contains("\n\n"));
    }

    #[test]
    fn utc_timestamps_like_locust() {
        assert_eq!(utc_timestamp(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_387_292.7), "2026-11-22T22:41:32Z");
        assert_eq!(utc_timestamp(951_782_400.0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn empty_entries_have_na_percentiles() {
        let s = RequestStats::new(0.0);
        let csv = stats_csv(&s);
        assert!(csv.lines().nth(1).unwrap().ends_with(",N/A,N/A,N/A"));
        let history = history_rows(&s, 3, 10.0, false);
        assert!(history.starts_with("10,3,,Aggregated,0.000000,0.000000,N/A,"), "{history}");
    }
}
