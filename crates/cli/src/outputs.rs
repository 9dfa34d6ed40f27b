//! Files and streams a headless run writes: the CSV files (refreshed every
//! second, one set of history rows per second, the snapshots written once
//! more at the end), `--json`, `--json-file`, and the console tables.
//!
//! Console output never panics (as `println!` does when its stream is
//! closed): after a hang-up the terminal is gone, and the run must still
//! write its report files and exit.

use std::fs::File;
use std::io::Write;

use swarmer_engine::StatsStore;
use swarmer_engine::threshold::Judged;
use swarmer_report::compare::{self, Baseline, Tolerance};
use swarmer_report::console::{self, Rates};
use swarmer_report::{csv, json};
use swarmer_stats::RequestStats;

/// `--csv PREFIX` files.
pub struct CsvOutput {
    prefix: String,
    full_history: bool,
    history: File,
    /// The Unix second of the latest history rows: one set per second.
    last_second: Option<u64>,
    /// `PREFIX_stats_history_phases.csv`: the step of the load shape (the
    /// phase) at each history second, made when a shape first marks one
    /// (Locust's history columns stay as they are).
    phases: Option<File>,
    /// `PREFIX_iterations_history.csv`, made when an arrival-rate test
    /// first counts an iteration.
    iterations: Option<File>,
}

impl CsvOutput {
    /// Create the files now so a bad prefix fails before the test starts.
    pub fn create(prefix: &str, full_history: bool) -> Result<Self, String> {
        let [_, history_name, _, _] = csv::file_names(prefix);
        let mut history = File::create(&history_name).map_err(|e| format!("--csv {prefix}: {history_name}: {e}"))?;
        write!(history, "{}\r\n", csv::history_header()).map_err(|e| format!("{history_name}: {e}"))?;
        let out = Self {
            prefix: prefix.to_owned(),
            full_history,
            history,
            last_second: None,
            phases: None,
            iterations: None,
        };
        Ok(out)
    }

    /// Append this second's history rows (unless this second has them
    /// already) and rewrite the other three files.
    pub fn tick(&mut self, store: &StatsStore, now: f64) -> Result<(), String> {
        let second = now as u64;
        if self.last_second != Some(second) {
            self.last_second = Some(second);
            let rows = csv::history_rows(&store.stats, store.user_count, now, self.full_history);
            self.history.write_all(rows.as_bytes()).map_err(|e| format!("{}_stats_history.csv: {e}", self.prefix))?;
            if let Some(step) = store.step_marks.last() {
                self.phase_row(second, &step.label)?;
            }
            if !store.stats.iterations().is_empty() {
                self.iterations_row(store, now)?;
            }
        }
        self.write_snapshots(store)
    }

    fn iterations_row(&mut self, store: &StatsStore, now: f64) -> Result<(), String> {
        let name = format!("{}_iterations_history.csv", self.prefix);
        if self.iterations.is_none() {
            let mut file = File::create(&name).map_err(|e| format!("{name}: {e}"))?;
            write!(file, "{}\r\n", csv::iterations_header()).map_err(|e| format!("{name}: {e}"))?;
            self.iterations = Some(file);
        }
        if let Some(file) = &mut self.iterations {
            let row = csv::iterations_row(&store.stats, store.user_count, now);
            file.write_all(row.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    fn phase_row(&mut self, second: u64, label: &str) -> Result<(), String> {
        let name = format!("{}_stats_history_phases.csv", self.prefix);
        if self.phases.is_none() {
            let mut file = File::create(&name).map_err(|e| format!("{name}: {e}"))?;
            write!(file, "Timestamp,Phase\r\n").map_err(|e| format!("{name}: {e}"))?;
            self.phases = Some(file);
        }
        if let Some(file) = &mut self.phases {
            write!(file, "{second},\"{}\"\r\n", label.replace('"', "\"\"")).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// Rewrite `_stats.csv`, `_failures.csv` and `_exceptions.csv`.
    pub fn write_snapshots(&mut self, store: &StatsStore) -> Result<(), String> {
        let [stats_name, _, failures_name, exceptions_name] = csv::file_names(&self.prefix);
        for (name, body) in [
            (stats_name, csv::stats_csv(&store.stats)),
            (failures_name, csv::failures_csv(&store.stats)),
            (exceptions_name, csv::exceptions_csv(&store.stats)),
        ] {
            std::fs::write(&name, body).map_err(|e| format!("{name}: {e}"))?;
        }
        if store.stats.has_corrected() {
            let name = format!("{}_corrected_stats.csv", self.prefix);
            std::fs::write(&name, csv::corrected_stats_csv(&store.stats)).map_err(|e| format!("{name}: {e}"))?;
        }
        if let Some(file) = &mut self.iterations {
            file.flush().map_err(|e| format!("{}_iterations_history.csv: {e}", self.prefix))?;
        }
        if let Some(file) = &mut self.phases {
            file.flush().map_err(|e| format!("{}_stats_history_phases.csv: {e}", self.prefix))?;
        }
        self.history.flush().map_err(|e| format!("{}_stats_history.csv: {e}", self.prefix))
    }
}

/// The live table, on standard error like Locust's stats logger.
pub fn print_live(store: &StatsStore, now: f64) {
    to_stderr(&format!(
        "{}\n{}",
        console::stats_table(&store.stats, Rates::Current, now),
        console::iterations_line(&store.stats, Some(now))
    ));
}

/// The final summary: stats table with whole-run rates, percentiles, errors.
pub fn print_summary(store: &StatsStore, now: f64) {
    let corrected = console::corrected_percentile_table(&store.stats);
    let mut text = format!(
        "{}\n{}{}\n{}{}\n{}",
        console::stats_table(&store.stats, Rates::Total, now),
        console::iterations_line(&store.stats, None),
        console::percentile_table(&store.stats),
        corrected,
        if corrected.is_empty() { "" } else { "\n" },
        console::error_report(&store.stats)
    );
    for note in &store.notes {
        text.push_str(&format!("Note: {note}\n"));
    }
    to_stderr(&text);
}

/// The thresholds' verdicts, as a table after the summary; returns how
/// many failed.
pub fn print_thresholds(judged: &[Judged]) -> usize {
    if judged.is_empty() {
        return 0;
    }
    let width = judged.iter().map(|j| j.threshold.source.chars().count()).max().unwrap_or(0).max(10);
    let mut text = format!("{:<width$}  {:>14}  Result\n", "Threshold", "Actual");
    let mut failed = 0;
    for j in judged {
        if !j.verdict.passed {
            failed += 1;
        }
        let result = if j.verdict.passed { "passed" } else { "FAILED" };
        text.push_str(&format!("{:<width$}  {:>14}  {result}\n", j.threshold.source, j.actual_text()));
    }
    text.push_str(&format!("{} of {} thresholds passed\n", judged.len() - failed, judged.len()));
    to_stderr(&text);
    failed
}

/// This run against the `--compare` baseline, as a table after the
/// thresholds; returns how many regressions it found (one when nothing
/// could be compared).
pub fn print_comparison(baseline: &Baseline, stats: &RequestStats, tolerances: &[Tolerance]) -> usize {
    let rows = compare::compare(baseline, stats, tolerances);
    to_stderr(&compare::render(baseline, stats, tolerances, &rows));
    // A comparison that compared nothing must not pass a pipeline.
    rows.iter().filter(|r| r.regressed).count().max(usize::from(rows.is_empty()))
}

/// Standard error is for people watching; if it is gone (a closed
/// terminal), the text is dropped.
fn to_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `--json` to standard output. Unlike the console tables this is a
/// report, so failing to write it is an error.
pub fn print_json(store: &StatsStore) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", json::stats_json(&store.stats))
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("--json: standard output: {e}"))
}

/// `--json-file NAME` writes `NAME.json` (Locust's list) and
/// `NAME_run.json` (the arrival rate, iterations, corrected figures and
/// thresholds' verdicts).
pub fn write_json_file(store: &StatsStore, name: &str, judged: &[Judged]) -> Result<(), String> {
    let path = format!("{name}.json");
    std::fs::write(&path, json::stats_json(&store.stats)).map_err(|e| format!("--json-file {path}: {e}"))?;
    let path = format!("{name}_run.json");
    let run = json::run_json(&store.stats, store.arrival.as_deref(), judged);
    std::fs::write(&path, run).map_err(|e| format!("--json-file {path}: {e}"))
}
