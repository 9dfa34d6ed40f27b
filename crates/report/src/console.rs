//! Console tables, laid out as Locust lays them out.
//!
//! The live table (every 2 s) and the final one share one format; the
//! percentile table and the error report are printed at the end.

use std::fmt::Write;

use swarmer_stats::{PERCENTILES_TO_REPORT, RequestStats, StatsEntry};

use crate::number::ms_column;

const TYPE_WIDTH: usize = 8;
/// Locust's `STATS_NAME_WIDTH` when standard output is not a terminal.
pub const NAME_WIDTH: usize = 80;
/// The main table's name column: Locust's `(STATS_NAME_WIDTH - 8) + 4`.
const TABLE_NAME_WIDTH: usize = NAME_WIDTH - TYPE_WIDTH + 4;

/// Which rates the table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rates {
    /// The sliding-window rates (while running).
    Current,
    /// Rates over the whole run (final summary).
    Total,
}

fn name_cell(name: &str, width: usize) -> String {
    if name.chars().count() > width {
        let cut: String = name.chars().take(width.saturating_sub(3)).collect();
        format!("{cut}...")
    } else {
        name.to_owned()
    }
}

fn method_cell(method: &str) -> String {
    if method.is_empty() { String::new() } else { format!("{method} ") }
}

/// The stats table: one row per `(method, name)` and the Aggregated row,
/// with Locust's column layout (including its missing space before `Med`).
pub fn stats_table(stats: &RequestStats, rates: Rates, now: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<TYPE_WIDTH$} {:<TABLE_NAME_WIDTH$} {:>7} {:>12} |{:>7} {:>7} {:>7}{:>7} | {:>7} {:>11}",
        "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s",
    );
    let separator = [TYPE_WIDTH, TABLE_NAME_WIDTH, 7, 13, 7, 7, 7, 7, 8, 11].map(|w| "-".repeat(w)).join("|");
    let _ = writeln!(out, "{separator}");
    for entry in stats.entries() {
        let _ = writeln!(out, "{}", stats_row(entry, rates, now, stats.run_seconds()));
    }
    let _ = writeln!(out, "{separator}");
    let _ = writeln!(out, "{}", stats_row(stats.total(), rates, now, stats.run_seconds()));
    out
}

fn stats_row(e: &StatsEntry, rates: Rates, now: f64, run_seconds: f64) -> String {
    let (rps, fps) = match rates {
        Rates::Current => e.current_rates(now),
        Rates::Total => (e.total_rps(run_seconds), e.total_fail_per_sec(run_seconds)),
    };
    let fails = format!("{}({:.2}%)", e.num_failures, e.fail_ratio() * 100.0);
    format!(
        "{:<TYPE_WIDTH$} {:<TABLE_NAME_WIDTH$} {:>7} {:>12} |{:>7} {:>7} {:>7}{:>7} | {:>7.2} {:>11.2}",
        method_cell(&e.method),
        name_cell(&e.name, TABLE_NAME_WIDTH),
        e.num_requests,
        fails,
        ms_column(e.avg_response_time_ms()),
        ms_column(e.min_response_time_ms().unwrap_or(0.0)),
        ms_column(e.max_response_time_ms()),
        ms_column(e.median_response_time_ms()),
        rps,
        fps,
    )
}

/// Column titles of the percentiles: `50%`, `66%`, …, `99.9%`, `100%`.
pub fn percentile_label(q: f64) -> String {
    let pct = q * 100.0;
    let text = format!("{pct:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// The percentile table printed at the end (Locust's layout: the first
/// percentile 8 wide, the others and `# reqs` 6 wide).
pub fn percentile_table(stats: &RequestStats) -> String {
    percentile_table_of(
        "Response time percentiles (HdrHistogram, 3 significant digits)",
        stats.entries(),
        stats.total(),
    )
}

/// The same table for response times counted from when each request was
/// due (arrival rate, pacing); empty when no request had a schedule.
pub fn corrected_percentile_table(stats: &RequestStats) -> String {
    if !stats.has_corrected() {
        return String::new();
    }
    percentile_table_of(
        "Response time percentiles from the intended start (coordinated omission corrected; ITER dropped: how long \
         dropped iterations waited for a free user, at least)",
        stats.corrected_entries(),
        stats.corrected_total(),
    )
}

/// One line on the arrival-rate iterations (empty without any): started,
/// dropped and their share, and the current rates when `now` is given.
pub fn iterations_line(stats: &RequestStats, now: Option<f64>) -> String {
    let iterations = stats.iterations();
    if iterations.is_empty() {
        return String::new();
    }
    let mut line = format!(
        "Iterations: {} started, {} dropped ({:.2}%)",
        iterations.started,
        iterations.dropped,
        iterations.dropped_ratio() * 100.0
    );
    if let Some(now) = now {
        let (started, dropped) = iterations.current_rates(now, stats.start_time());
        let _ = write!(line, " | now {started:.1} started/s, {dropped:.1} dropped/s");
    }
    line.push('\n');
    line
}

fn percentile_table_of<'a>(title: &str, entries: impl Iterator<Item = &'a StatsEntry>, total: &StatsEntry) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let labels: Vec<String> = PERCENTILES_TO_REPORT.iter().map(|q| percentile_label(*q)).collect();
    let _ = writeln!(out, "{}", percentile_line("Type", "Name", &labels, "# reqs"));
    let mut separator = format!("{}|{}|{}", "-".repeat(TYPE_WIDTH), "-".repeat(NAME_WIDTH), "-".repeat(8));
    for _ in 1..=PERCENTILES_TO_REPORT.len() {
        separator.push('|');
        separator.push_str(&"-".repeat(6));
    }
    let _ = writeln!(out, "{separator}");
    let row = |e: &StatsEntry| {
        let values: Vec<String> = PERCENTILES_TO_REPORT.iter().map(|q| ms_column(e.percentile_ms(*q))).collect();
        percentile_line(&e.method, &name_cell(&e.name, NAME_WIDTH), &values, &e.num_requests.to_string())
    };
    for entry in entries.filter(|e| !e.histogram.is_empty()) {
        let _ = writeln!(out, "{}", row(entry));
    }
    let _ = writeln!(out, "{separator}");
    if !total.histogram.is_empty() {
        let _ = writeln!(out, "{}", row(total));
    }
    out
}

fn percentile_line(method: &str, name: &str, cells: &[String], last: &str) -> String {
    let mut line = format!("{method:<TYPE_WIDTH$} {name:<NAME_WIDTH$}");
    for (i, cell) in cells.iter().enumerate() {
        let width = if i == 0 { 8 } else { 6 };
        let _ = write!(line, " {cell:>width$}");
    }
    let _ = write!(line, " {last:>6}");
    line
}

/// Failures grouped by error (Locust's error report), then exceptions.
pub fn error_report(stats: &RequestStats) -> String {
    let mut out = String::new();
    let separator = format!("{}|{}", "-".repeat(18), "-".repeat(NAME_WIDTH + 80 - 19));
    let failures: Vec<_> = stats.failures().collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "Error report");
        let _ = writeln!(out, "{:<18} {:<100}", "# occurrences", "Error");
        let _ = writeln!(out, "{separator}");
        for f in failures {
            let _ = writeln!(out, "{:<18} {:<100}", f.occurrences, format!("{} {}: {}", f.method, f.name, f.error));
        }
        let _ = writeln!(out, "{separator}");
        let _ = writeln!(out);
    }
    let exceptions: Vec<_> = stats.exceptions().collect();
    if !exceptions.is_empty() {
        let _ = writeln!(out, "Exceptions");
        let _ = writeln!(out, "{:<18} {:<100}", "# occurrences", "Exception (location)");
        let _ = writeln!(out, "{separator}");
        for e in exceptions {
            let _ = writeln!(out, "{:<18} {} ({})", e.count, e.msg, e.traceback.lines().next().unwrap_or(""));
        }
        let _ = writeln!(out, "{separator}");
        let _ = writeln!(out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    fn stats() -> RequestStats {
        let mut r = ShardRecorder::new("local");
        for (name, rt, err) in [("/", 1_500, None), ("/", 2_500, Some("boom")), ("/profile", 120_000, None)] {
            r.record(
                &RequestSample {
                    method: "GET",
                    name,
                    response_time_us: Some(rt),
                    ttfb_us: 0,
                    content_length: 10,
                    error: err,
                },
                100.0,
            );
        }
        let mut s = RequestStats::new(99.0);
        s.apply(&r.take_delta(), 100.0);
        s
    }

    #[test]
    fn stats_table_has_locust_columns_and_an_aggregated_row() {
        let t = stats_table(&stats(), Rates::Total, 101.0);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("Type     Name "));
        assert!(lines[0].ends_with("# reqs      # fails |    Avg     Min     Max    Med |   req/s  failures/s"));
        assert_eq!(lines[0].find("# reqs"), Some(8 + 1 + 76 + 1 + 1));
        assert_eq!(
            lines[1],
            format!(
                "--------|{}|-------|-------------|-------|-------|-------|-------|--------|-----------",
                "-".repeat(76)
            )
        );
        assert!(lines[2].starts_with("GET      /  "), "{}", lines[2]);
        assert!(
            lines[2].contains("      2    1(50.00%) |   2.00    1.50    2.50   1.50 |    2.00        1.00"),
            "{}",
            lines[2]
        );
        assert!(lines[3].starts_with("GET      /profile "));
        assert!(lines[5].starts_with("         Aggregated "));
        assert!(lines[5].contains("      3    1(33.33%) |"), "{}", lines[5]);
        assert_eq!(lines[0].len(), lines[2].len());
    }

    #[test]
    fn percentile_table_lists_every_reported_percentile() {
        let t = percentile_table(&stats());
        let header = t.lines().nth(1).unwrap();
        assert!(
            header.ends_with("     50%    66%    75%    80%    90%    95%    98%    99%  99.9% 99.99%   100% # reqs"),
            "{header}"
        );
        for label in ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "# reqs"] {
            assert!(header.contains(label), "{label} missing in {header}");
        }
        assert!(t.contains("Aggregated"));
        let profile = t.lines().find(|l| l.contains("/profile")).unwrap();
        assert!(
            profile.ends_with("    120    120    120    120    120    120    120    120    120    120    120      1"),
            "{profile}"
        );
    }

    #[test]
    fn error_report_groups_failures() {
        let r = error_report(&stats());
        assert!(r.starts_with("Error report\n# occurrences      Error"));
        assert!(r.contains("\n1                  GET /: boom"));
        assert!(r.contains(&format!("{}|{}", "-".repeat(18), "-".repeat(141))));
    }
}
