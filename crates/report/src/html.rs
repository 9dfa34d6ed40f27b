//! The HTML report (`--html FILE`, `GET /stats/report`): one self-contained
//! file that opens offline. Tables are rendered here as HTML (readable
//! without scripts, searchable, and testable by parsing); the charts over
//! time are drawn in the browser by the vendored uPlot, inlined with its
//! licence notice, from the history embedded as JSON.

use std::fmt::Write;

use serde_json::Value;
use swarmer_engine::threshold::Judged;
use swarmer_engine::{ClassInfo, StatsStore};
use swarmer_stats::{PERCENTILES_TO_REPORT, StatsEntry};

use crate::console::percentile_label;
use crate::csv::utc_timestamp;
use crate::number::{ms, trimmed};

const TEMPLATE: &str = include_str!("../assets/report.html");
/// uPlot 1.6.32, MIT licence (assets/vendor/uplot/LICENSE).
pub const UPLOT_JS: &str = include_str!("../assets/vendor/uplot/uPlot.iife.min.js");
/// uPlot's stylesheet, same version as [`UPLOT_JS`]; inlined into the report.
pub const UPLOT_CSS: &str = include_str!("../assets/vendor/uplot/uPlot.min.css");
/// uPlot's MIT licence text; the web UI serves it as `uPlot-LICENSE.txt`.
pub const UPLOT_LICENSE: &str = include_str!("../assets/vendor/uplot/LICENSE");
/// The chart definitions shared by the report and the web UI.
pub const CHARTS_JS: &str = include_str!("../assets/charts.js");

/// What a report is about besides the statistics.
pub struct ReportMeta<'a> {
    /// The plan's name (a file name or a program's).
    pub plan: &'a str,
    /// The host given for the test (`--host` or the start form); `None` prints
    /// "(the plan's hosts)".
    pub host: Option<&'a str>,
    /// The plan's user classes, for the task ratio section.
    pub classes: &'a [ClassInfo],
    /// The run's `--threshold`s, judged in their own section.
    pub thresholds: &'a [Judged],
}

/// Escape text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that is safe inside a `<script>` element.
pub fn script_json(value: &Value) -> String {
    value.to_string().replace("</", "<\\/").replace("<!--", "<\\!--")
}

/// The report as one HTML document.
pub fn render(store: &StatsStore, meta: &ReportMeta<'_>, now: f64) -> String {
    let stats = &store.stats;
    // The period the tables and charts cover: from the test's start, or
    // from the latest reset of its statistics when that came later.
    let start = store.test_started.map_or(stats.start_time(), |t| t.max(stats.start_time()));
    let end = store.test_stopped.unwrap_or(now);
    let mut body = String::new();
    let title = format!("Swarmer report: {}", meta.plan);
    let _ = write!(
        body,
        "<h1>{}</h1>\n<p class=\"meta\">Target <b>{}</b> · plan <b>{}</b> · from <b>{}</b> to <b>{}</b> ({}) · \
         {} requests, {} failures</p>\n",
        escape(&title),
        escape(meta.host.unwrap_or("(the plan's hosts)")),
        escape(meta.plan),
        utc_timestamp(start),
        utc_timestamp(end),
        duration_text(end - start),
        stats.total().num_requests,
        stats.total().num_failures,
    );
    for note in &store.notes {
        let _ = writeln!(body, "<p class=\"note\" role=\"note\"><b>Note:</b> {}</p>", escape(note));
    }
    body.push_str("<h2>Request statistics</h2>\n");
    body.push_str(&request_table(store));
    body.push_str("<h2>Response time percentiles (ms)</h2>\n");
    body.push_str(&percentile_table("percentiles", stats.entries(), stats.total()));
    if let Some(arrival) = &store.arrival {
        let _ = writeln!(body, "<h2>Arrival rate</h2>\n<p class=\"meta\">{}</p>", escape(arrival));
    }
    let iterations = stats.iterations();
    if !iterations.is_empty() {
        let _ = writeln!(
            body,
            "<p class=\"meta\" id=\"iterations\">Iterations: <b>{}</b> started, <b>{}</b> dropped ({:.2}%)</p>",
            iterations.started,
            iterations.dropped,
            iterations.dropped_ratio() * 100.0
        );
    }
    if stats.has_corrected() {
        body.push_str(
            "<h2>Response time percentiles from the intended start (ms)</h2>\n<p class=\"meta\">Coordinated \
             omission corrected: each request's time counts from when its iteration was due. ITER dropped: how \
             long dropped iterations waited for a free user, at least.</p>\n",
        );
        body.push_str(&percentile_table("corrected", stats.corrected_entries(), stats.corrected_total()));
    }
    if !meta.thresholds.is_empty() {
        body.push_str("<h2>Thresholds</h2>\n");
        body.push_str(&thresholds_table(meta.thresholds));
    }
    if !store.step_marks.is_empty() {
        body.push_str("<h2>Phases</h2>\n");
        body.push_str(&phases_table(store));
    }
    body.push_str("<h2>Charts</h2>\n<div id=\"charts\"></div>\n");
    body.push_str("<h2>Failures</h2>\n");
    body.push_str(&failures_table(store));
    body.push_str("<h2>Exceptions</h2>\n");
    body.push_str(&exceptions_table(store));
    body.push_str("<h2>Task ratios</h2>\n");
    body.push_str(&task_ratios(store, meta.classes));
    let _ = write!(
        body,
        "<p class=\"meta\">Made by Swarmer {}. Charts drawn with uPlot (MIT licence, © Leon Sorokin).</p>",
        env!("CARGO_PKG_VERSION")
    );
    TEMPLATE
        .replace("{{TITLE}}", &escape(&title))
        .replace("{{UPLOT_CSS}}", UPLOT_CSS)
        .replace("{{HISTORY}}", &script_json(&crate::live::history_payload(store)))
        .replace("{{PHASES}}", &script_json(&crate::live::step_marks(store)))
        .replace("{{CHARTS_JS}}", CHARTS_JS)
        .replace("{{UPLOT_JS}}", UPLOT_JS)
        .replace("{{BODY}}", &body)
}

/// Each threshold with what was measured and its verdict.
fn thresholds_table(judged: &[Judged]) -> String {
    let mut out = String::from(
        "<table class=\"thresholds\"><thead><tr><th>Threshold</th><th>Actual</th><th>Result</th></tr></thead>\
         <tbody>\n",
    );
    for j in judged {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&j.threshold.source),
            escape(&j.actual_text()),
            if j.verdict.passed { "passed" } else { "<b class=\"failed\">FAILED</b>" },
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

/// Each phase's own totals (from its start to the next one's).
fn phases_table(store: &StatsStore) -> String {
    let mut out = String::from(
        "<table class=\"phases\"><thead><tr><th>Phase</th><th>Start</th><th>Length</th><th>Requests</th>\
         <th>Fails</th><th>RPS</th><th>Average (ms)</th><th>Users by class at its end</th></tr></thead><tbody>\n",
    );
    if let Value::Array(rows) = crate::live::step_marks(store) {
        for row in rows {
            let number = |key: &str| row[key].as_f64().unwrap_or(0.0);
            let users: Vec<String> = row["class_counts"]
                .as_object()
                .map(|m| m.iter().map(|(class, n)| format!("{} {}", escape(class), n)).collect())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(row["name"].as_str().unwrap_or_default()),
                utc_timestamp(number("start")),
                duration_text(number("end") - number("start")),
                number("num_requests"),
                number("num_failures"),
                trimmed(number("requests_per_sec"), 2),
                ms(number("avg_response_time")),
                users.join(", "),
            );
        }
    }
    out.push_str("</tbody></table>\n");
    out
}

/// "1 minute and 5 seconds", as Locust words a test's length.
fn duration_text(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(plural(h, "hour"));
    }
    if m > 0 {
        parts.push(plural(m, "minute"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(plural(s, "second"));
    }
    match parts.len() {
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} and {last}", parts.join(", "))
        }
    }
}

fn request_table(store: &StatsStore) -> String {
    let run_seconds = store.stats.run_seconds();
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"requests\"><thead><tr><th class=\"text\">Type</th><th class=\"text\">Name</th>\
         <th># Requests</th><th># Fails</th><th>Average (ms)</th><th>Min (ms)</th><th>Max (ms)</th><th>Median (ms)</th>\
         <th>95%ile (ms)</th><th>99%ile (ms)</th><th>Average size (bytes)</th><th>RPS</th><th>Failures/s</th></tr></thead><tbody>\n",
    );
    let total = store.stats.total();
    for (e, is_total) in store.stats.entries().map(|e| (e, false)).chain([(total, true)]) {
        let _ = writeln!(
            out,
            "<tr{}><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if is_total { " class=\"total\"" } else { "" },
            if is_total { String::new() } else { escape(&e.method) },
            if is_total { "Aggregated".to_string() } else { escape(&e.name) },
            e.num_requests,
            e.num_failures,
            ms(e.avg_response_time_ms()),
            ms(e.min_response_time_ms().unwrap_or(0.0)),
            ms(e.max_response_time_ms()),
            ms(e.median_response_time_ms()),
            ms(e.percentile_ms(0.95)),
            ms(e.percentile_ms(0.99)),
            trimmed(e.avg_content_length(), 2),
            trimmed(e.total_rps(run_seconds), 2),
            trimmed(e.total_fail_per_sec(run_seconds), 2),
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn percentile_table<'a>(id: &str, entries: impl Iterator<Item = &'a StatsEntry>, total: &'a StatsEntry) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table id=\"{id}\"><thead><tr><th class=\"text\">Type</th><th class=\"text\">Name</th>"
    );
    for q in PERCENTILES_TO_REPORT {
        let _ = write!(out, "<th>{}</th>", percentile_label(q));
    }
    out.push_str("<th># Requests</th></tr></thead><tbody>\n");
    for (e, is_total) in entries.map(|e| (e, false)).chain([(total, true)]) {
        let _ = write!(
            out,
            "<tr{}><td class=\"text\">{}</td><td class=\"text\">{}</td>",
            if is_total { " class=\"total\"" } else { "" },
            if is_total { String::new() } else { escape(&e.method) },
            if is_total { "Aggregated".to_string() } else { escape(&e.name) },
        );
        for q in PERCENTILES_TO_REPORT {
            let _ = write!(out, "<td>{}</td>", if e.num_requests == 0 { "N/A".into() } else { ms(e.percentile_ms(q)) });
        }
        let _ = writeln!(out, "<td>{}</td></tr>", e.num_requests);
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn failures_table(store: &StatsStore) -> String {
    let mut failures: Vec<_> = store.stats.failures().collect();
    if failures.is_empty() {
        return "<p class=\"meta\">No failures.</p>\n".into();
    }
    failures.sort_by_key(|f| std::cmp::Reverse(f.occurrences));
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"failures\"><thead><tr><th># Occurrences</th><th class=\"text\">Method</th>\
         <th class=\"text\">Name</th><th class=\"text\">Error</th><th class=\"text\">First seen</th><th class=\"text\">Last seen</th></tr></thead><tbody>\n",
    );
    for f in failures {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
            f.occurrences,
            escape(&f.method),
            escape(&f.name),
            escape(&f.error),
            utc_timestamp(f.first_seen),
            utc_timestamp(f.last_seen),
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn exceptions_table(store: &StatsStore) -> String {
    let mut exceptions: Vec<_> = store.stats.exceptions().collect();
    if exceptions.is_empty() {
        return "<p class=\"meta\">No exceptions.</p>\n".into();
    }
    exceptions.sort_by_key(|e| std::cmp::Reverse(e.count));
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"exceptions\"><thead><tr><th>Count</th><th class=\"text\">Message</th>\
         <th class=\"text\">Traceback</th><th class=\"text\">Nodes</th></tr></thead><tbody>\n",
    );
    for e in exceptions {
        let nodes: Vec<&str> = e.nodes.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\"><pre>{}</pre></td><td class=\"text\">{}</td></tr>",
            e.count,
            escape(&e.msg),
            escape(&e.traceback),
            escape(&nodes.join(", ")),
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn task_ratios(store: &StatsStore, classes: &[ClassInfo]) -> String {
    let ratios = crate::task_ratio::current_ratio_json(classes, &store.class_counts);
    let mut out = String::from("<div id=\"task-ratios\">");
    if let Some(total) = ratios["total"].as_object() {
        out.push_str("<ul class=\"tasks\">");
        for (class, v) in total {
            let _ = write!(out, "<li>{} {}%", escape(class), trimmed(v["ratio"].as_f64().unwrap_or(0.0) * 100.0, 1));
            write_task_list(&mut out, &v["tasks"]);
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>\n");
    out
}

fn write_task_list(out: &mut String, tasks: &Value) {
    let Some(tasks) = tasks.as_object() else { return };
    if tasks.is_empty() {
        return;
    }
    out.push_str("<ul class=\"tasks\">");
    for (name, v) in tasks {
        let _ = write!(out, "<li>{} {}%", escape(name), trimmed(v["ratio"].as_f64().unwrap_or(0.0) * 100.0, 1));
        write_task_list(out, &v["tasks"]);
        out.push_str("</li>");
    }
    out.push_str("</ul>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_locusts() {
        assert_eq!(duration_text(0.2), "0 seconds");
        assert_eq!(duration_text(65.0), "1 minute and 5 seconds");
        assert_eq!(duration_text(3600.0 + 120.0 + 1.0), "1 hour, 2 minutes and 1 second");
    }

    #[test]
    fn the_period_starts_at_a_reset_during_the_test() {
        use swarmer_engine::RunnerState;
        use swarmer_stats::{History, RequestStats};
        let mut store = StatsStore::new(RunnerState::Running, RequestStats::new(1000.0), History::default());
        store.test_started = Some(1000.0);
        store.stats.reset(1060.0);
        let meta = ReportMeta { plan: "p", host: None, classes: &[], thresholds: &[] };
        let html = render(&store, &meta, 1090.0);
        assert!(
            html.contains("from <b>1970-01-01T00:17:40Z</b> to <b>1970-01-01T00:18:10Z</b> (30 seconds)"),
            "{html}"
        );
    }

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(script_json(&serde_json::json!(["</script>"])), "[\"<\\/script>\"]");
    }
}
