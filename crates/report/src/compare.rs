//! `--compare BASELINE.json`: this run against an earlier run's `--json`
//! (or `--json-file`) output, name by name, with a tolerance per metric
//! (`--compare-tolerance "p95 +10%"`). A metric that got worse beyond its
//! tolerance is a regression; the table shows both runs side by side.
//! Baselines written by Locust work too (percentiles then come from its
//! rounded `response_times` buckets).

use std::fmt::Write as _;

use serde_json::Value;
use swarmer_stats::{PERCENTILES_TO_REPORT, RequestStats, StatsEntry};

use crate::number::locust_buckets;

/// A metric compared between runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CompareMetric {
    /// A reported percentile (0.95 for `p95`), ms.
    Percentile(f64),
    /// Average response time, ms.
    Avg,
    /// Share of failed requests, 0 to 1.
    FailRatio,
    /// Requests per second over the run (worse when lower).
    Rps,
}

/// How much worse a metric may get.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Allowance {
    /// By this share of the baseline (0.1 for `+10%`).
    Relative(f64),
    /// By this much, in the metric's unit (ms, or a ratio for `fail_ratio`).
    Absolute(f64),
}

/// One `--compare-tolerance`, e.g. `p95 +10%`, `avg +5ms`, `rps -10%`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tolerance {
    /// As given, for the table.
    pub source: String,
    /// What is compared.
    pub metric: CompareMetric,
    /// How much worse it may get.
    pub allowance: Allowance,
}

/// A tolerance or a baseline that cannot be used; the message says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareError(String);

impl std::fmt::Display for CompareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompareError {}

const METRICS: &str = "p50, p66, p75, p80, p90, p95, p98, p99, p99.9, p99.99, p100, avg, fail_ratio, rps";

impl Tolerance {
    /// Parse `METRIC +N%`, `METRIC +Nms` / `+Ns` (times), `fail_ratio +N%`
    /// (percentage points), `rps -N%` (rates get worse going down).
    pub fn parse(text: &str) -> Result<Tolerance, CompareError> {
        let fail = |why: String| CompareError(format!("--compare-tolerance {text:?}: {why}"));
        let mut words = text.split_whitespace();
        let (Some(name), Some(change), None) = (words.next(), words.next(), words.next()) else {
            return Err(fail("expected METRIC and a change, e.g. \"p95 +10%\" or \"rps -5%\"".into()));
        };
        let metric = match name {
            "avg" => CompareMetric::Avg,
            "fail_ratio" => CompareMetric::FailRatio,
            "rps" => CompareMetric::Rps,
            _ => name
                .strip_prefix('p')
                .and_then(|p| p.parse::<f64>().ok())
                .and_then(|p| PERCENTILES_TO_REPORT.iter().find(|q| (*q * 100.0 - p).abs() < 1e-9))
                .map(|q| CompareMetric::Percentile(*q))
                .ok_or_else(|| fail(format!("unknown metric {name:?} (metrics: {METRICS})")))?,
        };
        let sign = if metric == CompareMetric::Rps { '-' } else { '+' };
        let amount = change.strip_prefix(sign).ok_or_else(|| {
            fail(format!(
                "{change:?}: {name} gets worse going {}, so write {sign}N",
                if sign == '+' { "up" } else { "down" }
            ))
        })?;
        let (number, unit) =
            amount.split_at(amount.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(amount.len()));
        let n: f64 = number
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| fail(format!("{change:?}: expected a number after {sign}")))?;
        let allowance = match (metric, unit) {
            (CompareMetric::FailRatio, "%") => Allowance::Absolute(n / 100.0),
            (_, "%") => Allowance::Relative(n / 100.0),
            (CompareMetric::Percentile(_) | CompareMetric::Avg, "ms") => Allowance::Absolute(n),
            (CompareMetric::Percentile(_) | CompareMetric::Avg, "s") => Allowance::Absolute(n * 1000.0),
            _ => return Err(fail(format!("{change:?}: use % (or ms / s for a time)"))),
        };
        Ok(Tolerance { source: text.trim().to_owned(), metric, allowance })
    }

    fn name(&self) -> &str {
        self.source.split_whitespace().next().unwrap_or_default()
    }
}

/// One name's figures from a run's JSON.
#[derive(Clone, Debug, PartialEq)]
struct Figures {
    method: String,
    name: String,
    requests: u64,
    avg_ms: f64,
    fail_ratio: f64,
    rps: f64,
    /// (quantile, ms).
    percentiles: Vec<(f64, f64)>,
    /// The percentiles come from Locust's rounded buckets.
    rounded: bool,
}

impl Figures {
    /// This run's figures of `e`, worked out as the baseline's were: its
    /// rate over its own first to last request (as a JSON entry gives
    /// it), its percentiles exact, or from Locust's rounded buckets when
    /// the baseline only had those (`rounded`).
    fn of_entry(e: &StatsEntry, rounded: bool) -> Self {
        let seconds = e.last_request_timestamp.map_or(0.0, |last| (last - e.start_time).max(0.0));
        let percentiles = if rounded {
            let buckets = locust_buckets(e).into_iter().map(|(ms, count)| (ms as f64, count)).collect();
            bucket_percentiles(buckets, e.histogram.count())
        } else {
            PERCENTILES_TO_REPORT.iter().map(|q| (*q, e.percentile_ms(*q))).collect()
        };
        Figures {
            method: e.method.clone(),
            name: e.name.clone(),
            requests: e.num_requests,
            avg_ms: e.avg_response_time_ms(),
            fail_ratio: e.fail_ratio(),
            rps: if seconds > 0.0 { e.num_requests as f64 / seconds } else { 0.0 },
            percentiles,
            rounded,
        }
    }

    fn metric(&self, metric: CompareMetric) -> f64 {
        match metric {
            CompareMetric::Avg => self.avg_ms,
            CompareMetric::FailRatio => self.fail_ratio,
            CompareMetric::Rps => self.rps,
            CompareMetric::Percentile(q) => {
                self.percentiles.iter().find(|(p, _)| (p - q).abs() < 1e-9).map_or(0.0, |(_, v)| *v)
            }
        }
    }
}

/// An earlier run's figures, by method and name.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// Where it was read from, for messages.
    pub path: String,
    entries: Vec<Figures>,
}

impl Baseline {
    /// Read a `--json` output (a list of entries with Locust's fields).
    pub fn parse(path: &str, text: &str) -> Result<Baseline, CompareError> {
        let fail = |why: String| CompareError(format!("--compare {path}: {why}"));
        let list: Value = serde_json::from_str(text).map_err(|e| fail(format!("not JSON: {e}")))?;
        let items = list.as_array().ok_or_else(|| fail("expected the list of entries `--json` writes".into()))?;
        let entries = items
            .iter()
            .enumerate()
            .map(|(i, item)| figures_of(item).map_err(|why| fail(format!("entry {}: {why}", i + 1))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Baseline { path: path.to_owned(), entries })
    }
}

fn figures_of(item: &Value) -> Result<Figures, String> {
    let text = |key: &str| item[key].as_str().map(str::to_owned).ok_or_else(|| format!("no {key:?}"));
    let number = |key: &str| item[key].as_f64().ok_or_else(|| format!("no number {key:?}"));
    let requests = number("num_requests")? as u64;
    let timed = requests.saturating_sub(item["num_none_requests"].as_f64().unwrap_or(0.0) as u64);
    let avg_ms = if timed == 0 { 0.0 } else { number("total_response_time")? / timed as f64 };
    let seconds = match (item["start_time"].as_f64(), item["last_request_timestamp"].as_f64()) {
        (Some(start), Some(last)) => (last - start).max(0.0),
        _ => 0.0,
    };
    let exact = item["percentiles_exact"].as_object();
    let percentiles = match exact {
        Some(exact) => PERCENTILES_TO_REPORT
            .iter()
            .map(|q| (*q, exact.get(&q.to_string()).and_then(Value::as_f64).unwrap_or(0.0)))
            .collect(),
        // Locust's own: percentiles from its rounded buckets.
        None => {
            let buckets = item["response_times"]
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?))).collect());
            bucket_percentiles(buckets.unwrap_or_default(), timed)
        }
    };
    Ok(Figures {
        method: text("method")?,
        name: text("name")?,
        requests,
        avg_ms,
        fail_ratio: if requests == 0 { 0.0 } else { number("num_failures")? / requests as f64 },
        rps: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
        percentiles,
        rounded: exact.is_none(),
    })
}

/// Percentiles as Locust computes them from `(ms, count)` buckets.
fn bucket_percentiles(mut sorted: Vec<(f64, u64)>, total: u64) -> Vec<(f64, f64)> {
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    PERCENTILES_TO_REPORT
        .iter()
        .map(|q| {
            // Locust walks down from the slowest until what is left is
            // within the percentile's share of the requests.
            let within = (total as f64 * q) as u64;
            let mut seen = 0u64;
            let value = sorted
                .iter()
                .find(|(_, count)| {
                    seen += count;
                    total.saturating_sub(seen) <= within
                })
                .map_or(0.0, |(ms, _)| *ms);
            (*q, value)
        })
        .collect()
}

/// One metric of one name in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareRow {
    /// `GET /login`, or `Aggregated`-less names as written.
    pub request: String,
    /// The tolerance it was judged by.
    pub tolerance: String,
    /// The baseline's value.
    pub before: f64,
    /// This run's value.
    pub after: f64,
    /// Worse beyond the tolerance.
    pub regressed: bool,
}

/// This run (`stats`) against `baseline`, each name both have by each
/// tolerance. Names in only one of the runs are listed by [`render`] as
/// such. No rows at all is a failure for the caller: nothing was checked.
pub fn compare(baseline: &Baseline, stats: &RequestStats, tolerances: &[Tolerance]) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    for before in &baseline.entries {
        let Some(entry) = stats.entry(&before.method, &before.name).filter(|e| e.num_requests > 0) else { continue };
        let after = Figures::of_entry(entry, before.rounded);
        for t in tolerances {
            let (b, a) = (before.metric(t.metric), after.metric(t.metric));
            let limit = match (t.metric, t.allowance) {
                (CompareMetric::Rps, Allowance::Relative(share)) => b * (1.0 - share),
                (CompareMetric::Rps, Allowance::Absolute(n)) => b - n,
                (_, Allowance::Relative(share)) => b * (1.0 + share),
                (_, Allowance::Absolute(n)) => b + n,
            };
            let regressed = if t.metric == CompareMetric::Rps { a < limit } else { a > limit };
            rows.push(CompareRow {
                request: format!("{} {}", before.method, before.name).trim().to_owned(),
                tolerance: t.source.clone(),
                before: b,
                after: a,
                regressed,
            });
        }
    }
    rows
}

/// The side-by-side table, with the names only one run has.
pub fn render(baseline: &Baseline, stats: &RequestStats, tolerances: &[Tolerance], rows: &[CompareRow]) -> String {
    let width = rows.iter().map(|r| r.request.chars().count()).max().unwrap_or(0).max(7);
    let mut out = format!("Compared with {}\n", baseline.path);
    let _ = writeln!(
        out,
        "{:<width$}  {:<14}  {:>12}  {:>12}  {:>8}  Result",
        "Request", "Tolerance", "Baseline", "Now", "Change"
    );
    for r in rows {
        let unit = |v: f64| match tolerances.iter().find(|t| t.source == r.tolerance).map(|t| t.metric) {
            Some(CompareMetric::FailRatio) => format!("{:.2}%", v * 100.0),
            Some(CompareMetric::Rps) => format!("{v:.1}/s"),
            _ => format!("{v:.3}ms"),
        };
        let change = if r.before > 0.0 { format!("{:+.1}%", (r.after / r.before - 1.0) * 100.0) } else { "–".into() };
        let _ = writeln!(
            out,
            "{:<width$}  {:<14}  {:>12}  {:>12}  {change:>8}  {}",
            r.request,
            r.tolerance,
            unit(r.before),
            unit(r.after),
            if r.regressed { "REGRESSED" } else { "ok" }
        );
    }
    let new: Vec<String> = stats
        .entries()
        .filter(|e| e.num_requests > 0 && !baseline.entries.iter().any(|b| b.method == e.method && b.name == e.name))
        .map(|e| format!("{} {}", e.method, e.name))
        .collect();
    let gone: Vec<String> = baseline
        .entries
        .iter()
        .filter(|b| stats.entry(&b.method, &b.name).is_none_or(|e| e.num_requests == 0))
        .map(|b| format!("{} {}", b.method, b.name))
        .collect();
    if !new.is_empty() {
        let _ = writeln!(out, "Only in this run: {}", new.join(", "));
    }
    if !gone.is_empty() {
        let _ = writeln!(out, "Only in the baseline: {}", gone.join(", "));
    }
    let regressions = rows.iter().filter(|r| r.regressed).count();
    let metrics: Vec<&str> = tolerances.iter().map(Tolerance::name).collect();
    let _ = writeln!(out, "{regressions} regression(s) in {} comparison(s) of {}", rows.len(), metrics.join(", "));
    if rows.is_empty() {
        out.push_str(
            "Nothing to compare: no request name is in both runs (a renamed endpoint, or the wrong baseline?)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    /// Statistics from `(method, name, µs, failed, at)` samples, started at `start`.
    fn recorded(samples: &[(&'static str, &'static str, u64, bool, f64)], start: f64) -> RequestStats {
        let mut recorder = ShardRecorder::new("local");
        let mut last = start;
        for &(method, name, micros, failed, at) in samples {
            let error = failed.then_some("boom");
            let sample =
                RequestSample { method, name, response_time_us: Some(micros), ttfb_us: 0, content_length: 0, error };
            recorder.record(&sample, at);
            last = last.max(at);
        }
        let mut stats = RequestStats::new(start);
        stats.apply(&recorder.take_delta(), last);
        stats
    }

    /// GET requests of `(name, ms, failed)`, all at `at`.
    fn stats(samples: &[(&'static str, u64, bool)], at: f64) -> RequestStats {
        let all: Vec<_> = samples.iter().map(|&(name, ms, failed)| ("GET", name, ms * 1000, failed, at)).collect();
        recorded(&all, at - 10.0)
    }

    fn tolerances(texts: &[&str]) -> Vec<Tolerance> {
        texts.iter().map(|t| Tolerance::parse(t).unwrap_or_else(|e| panic!("{e}"))).collect()
    }

    #[test]
    fn tolerances_parse_and_bad_ones_say_why() {
        assert_eq!(Tolerance::parse("p95 +10%").unwrap().allowance, Allowance::Relative(0.1));
        assert_eq!(Tolerance::parse("p99.9 +5ms").unwrap().metric, CompareMetric::Percentile(0.999));
        assert_eq!(Tolerance::parse("avg +1s").unwrap().allowance, Allowance::Absolute(1000.0));
        assert_eq!(Tolerance::parse("fail_ratio +1%").unwrap().allowance, Allowance::Absolute(0.01));
        assert_eq!(Tolerance::parse("rps -10%").unwrap().allowance, Allowance::Relative(0.1));
        for (text, why) in [
            ("p95", "expected METRIC and a change"),
            ("p97 +10%", "unknown metric \"p97\""),
            ("p95 -10%", "gets worse going up, so write +N"),
            ("rps +10%", "gets worse going down, so write -N"),
            ("p95 +lots", "expected a number after +"),
            ("rps -5ms", "use % (or ms / s for a time)"),
        ] {
            let err = Tolerance::parse(text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--compare-tolerance {text:?}: ")) && err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn a_slower_name_regresses_and_an_unchanged_one_does_not() {
        let before = stats(&[("/a", 100, false), ("/a", 100, false), ("/b", 50, false), ("/gone", 5, false)], 100.0);
        let json = crate::json::stats_json(&before);
        let baseline = Baseline::parse("base.json", &json).unwrap();
        let now = stats(&[("/a", 130, false), ("/a", 130, false), ("/b", 52, false), ("/new", 5, false)], 200.0);
        let t = tolerances(&["p95 +10%", "fail_ratio +1%"]);
        let rows = compare(&baseline, &now, &t);
        let regressed: Vec<(&str, &str)> =
            rows.iter().filter(|r| r.regressed).map(|r| (r.request.as_str(), r.tolerance.as_str())).collect();
        assert_eq!(regressed, [("GET /a", "p95 +10%")]);
        assert_eq!(rows.len(), 4, "two names in both runs, two tolerances: {rows:?}");
        let table = render(&baseline, &now, &t, &rows);
        assert!(table.contains("Only in this run: GET /new"), "{table}");
        assert!(table.contains("Only in the baseline: GET /gone"), "{table}");
        assert!(table.contains("+30.0%") && table.contains("REGRESSED"), "{table}");
        assert!(table.contains("1 regression(s) in 4 comparison(s) of p95, fail_ratio"), "{table}");
    }

    #[test]
    fn rates_are_worked_out_alike_in_both_runs() {
        // A name only on_start calls: 10 requests in its first 0.1 s.
        let run = |offset: f64| {
            let mut samples: Vec<_> =
                (0..10).map(|i| ("POST", "/login", 1_000, false, offset + 0.01 * i as f64)).collect();
            // The run goes on for a minute after them.
            samples.push(("GET", "/", 1_000, false, offset + 60.0));
            recorded(&samples, offset)
        };
        let baseline = Baseline::parse("base.json", &crate::json::stats_json(&run(100.0))).unwrap();
        let rows = compare(&baseline, &run(500.0), &tolerances(&["rps -10%"]));
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|r| !r.regressed), "the same run is no regression: {rows:?}");
        let nothing = compare(&baseline, &stats(&[("/other", 1, false)], 10.0), &tolerances(&["rps -10%"]));
        assert!(nothing.is_empty());
        let table = render(&baseline, &stats(&[("/other", 1, false)], 10.0), &tolerances(&["rps -10%"]), &nothing);
        assert!(table.contains("Nothing to compare: no request name is in both runs"), "{table}");
    }

    #[test]
    fn a_locust_baseline_is_read_from_its_buckets() {
        let locust = r#"[{"name": "/x", "method": "GET", "num_requests": 100, "num_none_requests": 0,
            "num_failures": 2, "total_response_time": 2000.0, "start_time": 10.0, "last_request_timestamp": 20.0,
            "response_times": {"10": 90, "100": 10}}]"#;
        let baseline = Baseline::parse("locust.json", locust).unwrap();
        let f = &baseline.entries[0];
        assert_eq!((f.avg_ms, f.fail_ratio, f.rps), (20.0, 0.02, 10.0));
        assert_eq!(f.metric(CompareMetric::Percentile(0.5)), 10.0);
        assert_eq!(f.metric(CompareMetric::Percentile(0.95)), 100.0);
        assert!(f.rounded);
        // This run's percentiles are rounded the same way against it: 1.45 ms
        // is Locust's 1 ms, not a 45% regression of it.
        let locust = r#"[{"name": "/x", "method": "GET", "num_requests": 2, "num_none_requests": 0,
            "num_failures": 0, "total_response_time": 2.8, "start_time": 10.0, "last_request_timestamp": 20.0,
            "response_times": {"1": 2}}]"#;
        let baseline = Baseline::parse("locust.json", locust).unwrap();
        let now_stats = recorded(&[("GET", "/x", 1_450, false, 100.0), ("GET", "/x", 1_450, false, 100.0)], 90.0);
        let rows = compare(&baseline, &now_stats, &tolerances(&["p95 +10%"]));
        assert_eq!((rows[0].before, rows[0].after, rows[0].regressed), (1.0, 1.0, false), "{rows:?}");
        let err = Baseline::parse("bad.json", r#"{"stats": []}"#).unwrap_err().to_string();
        assert_eq!(err, "--compare bad.json: expected the list of entries `--json` writes");
        let err = Baseline::parse("bad.json", r#"[{"name": "/x"}]"#).unwrap_err().to_string();
        assert!(err.starts_with("--compare bad.json: entry 1: no number"), "{err}");
    }
}
