//! Thresholds: pass/fail conditions over a run's statistics (k6's
//! thresholds, for CI verdicts), parsed from `--threshold` expressions and
//! evaluated on the merged statistics.
//!
//! An expression is `[SCOPE] METRIC OP VALUE`, optionally followed by
//! `over DURATION` (judged on every trailing window of that length while
//! the test runs, see [`crate::threshold_watch`]), `abort` (the test stops
//! once it is crossed) and `after DURATION` (not before the test has run
//! that long), e.g. `p95<300ms`, `[GET /login] p99.9<1s`, `fail_ratio<1%`,
//! `rps>=500 abort`, `p99<1s over 30s abort after 1m`. Without a scope it
//! is about every request (the Aggregated row); `[NAME]` is about every
//! request of that name, `[METHOD NAME]` about one row.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use swarmer_stats::{RequestStats, StatsEntry};
use thiserror::Error;

use crate::timespan::parse_timespan;

/// What a threshold measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// A response-time percentile, by its percent (95 for `p95`), in ms.
    Percentile(f64),
    /// Average response time, ms.
    Avg,
    /// Median response time, ms.
    Median,
    /// Shortest response time, ms.
    Min,
    /// Longest response time, ms.
    Max,
    /// Share of requests that failed, 0 to 1.
    FailRatio,
    /// Requests per second over the run.
    Rps,
    /// Number of failed requests.
    Failures,
    /// Number of requests.
    Requests,
    /// Share of an arrival-rate test's due iterations that were dropped,
    /// 0 to 1 (the whole test: no scope, no window).
    Dropped,
}

impl Metric {
    fn is_time(self) -> bool {
        matches!(self, Metric::Percentile(_) | Metric::Avg | Metric::Median | Metric::Min | Metric::Max)
    }

    /// This metric of `entry`, over a run of `run_seconds`.
    fn of(self, entry: &StatsEntry, run_seconds: f64) -> f64 {
        match self {
            Metric::Percentile(percent) => entry.percentile_ms(percent / 100.0),
            Metric::Avg => entry.avg_response_time_ms(),
            Metric::Median => entry.median_response_time_ms(),
            Metric::Min => entry.min_response_time_ms().unwrap_or(0.0),
            Metric::Max => entry.max_response_time_ms(),
            Metric::FailRatio => entry.fail_ratio(),
            Metric::Rps => entry.total_rps(run_seconds),
            Metric::Failures => entry.num_failures as f64,
            Metric::Requests => entry.num_requests as f64,
            // Not a property of requests: judged on the iterations (see `Threshold::evaluate`).
            Metric::Dropped => 0.0,
        }
    }
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

impl Comparison {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Comparison::Less => actual < limit,
            Comparison::LessOrEqual => actual <= limit,
            Comparison::Greater => actual > limit,
            Comparison::GreaterOrEqual => actual >= limit,
        }
    }
}

/// Which requests a threshold is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every request (the Aggregated row).
    All,
    /// Every request of this name, whatever its method.
    Name(String),
    /// The requests of this method and name.
    MethodName(String, String),
}

/// One threshold, as parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The expression as given, for tables and reports.
    pub source: String,
    /// Which requests.
    pub scope: Scope,
    /// What is measured.
    pub metric: Metric,
    /// How it compares.
    pub comparison: Comparison,
    /// The limit, in the metric's unit (ms for times, 0–1 for ratios).
    pub limit: f64,
    /// Stop the test once crossed.
    pub abort: bool,
    /// How long into the test a crossing does not abort it yet (k6's
    /// `delayAbortEval`).
    pub abort_grace: Duration,
    /// Judged over each trailing window of this length while the test runs
    /// (it fails if any window crossed it), not over the whole run.
    pub window: Option<Duration>,
    /// About response times from the intended start (`corrected_p99`):
    /// the coordinated-omission-corrected figures of an arrival-rate or
    /// paced test.
    pub corrected: bool,
}

/// A threshold with its verdict.
#[derive(Clone, Debug)]
pub struct Judged {
    /// The threshold.
    pub threshold: Threshold,
    /// How it came out.
    pub verdict: Verdict,
}

impl Judged {
    /// What was measured, for tables: the value as the expression writes
    /// it, or "no requests".
    pub fn actual_text(&self) -> String {
        self.threshold.actual_text(&self.verdict)
    }
}

/// A threshold that does not parse; the message names the part.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("--threshold {expression:?}: {problem}")]
pub struct ThresholdError {
    /// The expression given.
    pub expression: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A threshold's verdict on some statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The measured value; `None` when no request is in its scope.
    pub actual: Option<f64>,
    /// Whether the condition holds (never without requests in scope).
    pub passed: bool,
}

const METRICS: &str = "pNN (e.g. p95, p99.9), avg, med, min, max, fail_ratio, rps, failures, requests, dropped, \
                       or a time metric from the intended start (corrected_p99, corrected_avg...)";

impl Threshold {
    /// Parse an expression (see the module's documentation).
    pub fn parse(text: &str) -> Result<Threshold, ThresholdError> {
        let fail = |problem: String| ThresholdError { expression: text.to_owned(), problem };
        let mut rest = text.trim();
        let scope = match rest.strip_prefix('[') {
            Some(after) => {
                // The last `]`: a name may hold brackets (`/item?id=[id]`); metrics and values never do.
                let end = after.rfind(']').ok_or_else(|| fail("the scope [NAME] has no closing ]".into()))?;
                let inside = after[..end].trim();
                rest = after[end + 1..].trim_start();
                scope_of(inside).ok_or_else(|| fail("the scope [] names no request".into()))?
            }
            None => Scope::All,
        };
        // Optional words after the value: `over DURATION`, then `abort`,
        // then `after DURATION` (the abort's grace period).
        let mut words: Vec<&str> = rest.split_whitespace().collect();
        let duration_after = |words: &mut Vec<&str>, keyword: &str| -> Result<Option<Duration>, ThresholdError> {
            if words.len() >= 2 && words[words.len() - 2] == keyword {
                let text = words.pop().unwrap_or_default();
                words.pop();
                let duration =
                    parse_timespan(text).map_err(|e| fail(format!("{keyword} {text}: {e}")))?.max(Duration::ZERO);
                return Ok(Some(duration));
            }
            Ok(None)
        };
        let grace = duration_after(&mut words, "after")?;
        let abort = words.last() == Some(&"abort");
        if abort {
            words.pop();
        } else if grace.is_some() {
            return Err(fail("after: a grace period belongs to `abort` (`... abort after 30s`)".into()));
        }
        let window = duration_after(&mut words, "over")?;
        if window.is_some_and(|w| w < Duration::from_secs(1)) {
            return Err(fail("over: a window is at least 1s".into()));
        }
        let kept = words.join(" ");
        rest = &kept;
        let at = rest
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| fail("expected METRIC<VALUE, METRIC<=VALUE, METRIC>VALUE or METRIC>=VALUE".into()))?;
        let (name, tail) = (rest[..at].trim(), &rest[at..]);
        let (comparison, value) = if let Some(v) = tail.strip_prefix("<=") {
            (Comparison::LessOrEqual, v)
        } else if let Some(v) = tail.strip_prefix(">=") {
            (Comparison::GreaterOrEqual, v)
        } else if let Some(v) = tail.strip_prefix('<') {
            (Comparison::Less, v)
        } else if let Some(v) = tail.strip_prefix('>') {
            (Comparison::Greater, v)
        } else {
            return Err(fail(format!("{:?}: the comparison must be <, <=, > or >=", &tail[..tail.len().min(2)])));
        };
        let (corrected, name) = match name.strip_prefix("corrected_") {
            Some(time) => (true, time),
            None => (false, name),
        };
        let metric = metric_of(name).ok_or_else(|| match name {
            "" => fail(format!("no metric before the comparison (metrics: {METRICS})")),
            _ => fail(format!("unknown metric {name:?} (metrics: {METRICS})")),
        })?;
        let value = value.trim();
        if value.split_whitespace().nth(1).is_some() {
            return Err(fail(format!(
                "{value:?}: expected one value, then optionally `over DURATION`, `abort`, `after DURATION`"
            )));
        }
        if corrected && !metric.is_time() {
            return Err(fail(format!("corrected_{name}: only times are corrected (corrected_p99, corrected_avg...)")));
        }
        if metric == Metric::Dropped && (scope != Scope::All || window.is_some()) {
            return Err(fail("dropped is about the whole test's iterations: no [scope], no `over`".into()));
        }
        let limit = limit_of(metric, value).map_err(fail)?;
        Ok(Threshold {
            source: text.trim().to_owned(),
            scope,
            metric,
            comparison,
            limit,
            abort,
            abort_grace: grace.unwrap_or(Duration::ZERO),
            window,
            corrected,
        })
    }

    /// Whether `stats` meet this threshold, over the whole run.
    pub fn evaluate(&self, stats: &RequestStats) -> Verdict {
        if self.metric == Metric::Dropped {
            let iterations = stats.iterations();
            // No iteration was due: not an arrival-rate test, which must not pass.
            if iterations.due() == 0 {
                return Verdict { actual: None, passed: false };
            }
            let actual = iterations.dropped_ratio();
            return Verdict { actual: Some(actual), passed: self.holds(actual) };
        }
        self.judge(self.entry(stats).as_deref(), stats.run_seconds())
    }

    /// This threshold's metric of `entry` (the requests in its scope over
    /// `seconds`), compared with its limit.
    fn judge(&self, entry: Option<&StatsEntry>, seconds: f64) -> Verdict {
        match entry.filter(|e| e.num_requests > 0) {
            Some(entry) => {
                let actual = self.metric.of(entry, seconds);
                Verdict { actual: Some(actual), passed: self.comparison.holds(actual, self.limit) }
            }
            // A typo in a name must not pass a pipeline.
            None => Verdict { actual: None, passed: false },
        }
    }

    /// Whether `value` of this threshold's metric meets it.
    pub fn holds(&self, value: f64) -> bool {
        self.comparison.holds(value, self.limit)
    }

    /// The worse of two values of this threshold's metric (the one
    /// further on the failing side).
    pub fn worse(&self, a: f64, b: f64) -> f64 {
        match self.comparison {
            Comparison::Less | Comparison::LessOrEqual => a.max(b),
            Comparison::Greater | Comparison::GreaterOrEqual => a.min(b),
        }
    }

    /// The requests in this threshold's scope, as one entry of its own.
    pub(crate) fn entry_of(&self, stats: &RequestStats) -> Option<StatsEntry> {
        self.entry(stats).map(Cow::into_owned)
    }

    /// The verdict on `recent`, the requests of a window of `seconds`; none
    /// for a window without requests, unless the metric counts them (a
    /// quiet window has no response times, but its `rps` is 0).
    pub(crate) fn judge_window(&self, recent: &StatsEntry, seconds: f64) -> Option<Verdict> {
        if recent.num_requests == 0 {
            return matches!(self.metric, Metric::Rps | Metric::Requests | Metric::Failures)
                .then(|| Verdict { actual: Some(0.0), passed: self.holds(0.0) });
        }
        Some(self.judge(Some(recent), seconds))
    }

    /// The requests in this threshold's scope.
    fn entry<'a>(&self, stats: &'a RequestStats) -> Option<Cow<'a, StatsEntry>> {
        // Borrowed where one row answers; only a name over several methods is merged.
        let (total, mut entries): (&StatsEntry, Box<dyn Iterator<Item = &'a StatsEntry>>) = if self.corrected {
            (stats.corrected_total(), Box::new(stats.corrected_entries()))
        } else {
            (stats.total(), Box::new(stats.entries()))
        };
        if self.corrected && !stats.has_corrected() {
            return None;
        }
        match &self.scope {
            Scope::All => Some(Cow::Borrowed(total)),
            Scope::Name(name) => entries.filter(|e| e.name == *name).fold(None, |sum, e| match sum {
                None => Some(Cow::Borrowed(e)),
                Some(mut sum) => {
                    sum.to_mut().merge(e);
                    Some(sum)
                }
            }),
            Scope::MethodName(method, name) => {
                entries.find(|e| e.method == *method && e.name == *name).map(Cow::Borrowed)
            }
        }
    }

    /// What `verdict` measured, for tables: the value as the expression
    /// writes it, or "no requests".
    pub fn actual_text(&self, verdict: &Verdict) -> String {
        verdict.actual.map_or_else(|| "no requests".to_owned(), |v| self.format_value(v))
    }

    /// The measured value as the expression writes it (`312.5ms`, `0.8%`).
    pub fn format_value(&self, value: f64) -> String {
        match self.metric {
            m if m.is_time() => format!("{}ms", trim(value)),
            Metric::FailRatio | Metric::Dropped => format!("{}%", trim(value * 100.0)),
            _ => trim(value),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Parse every expression; the first bad one is the error.
pub fn parse_all(texts: &[String]) -> Result<Vec<Threshold>, ThresholdError> {
    texts.iter().map(|t| Threshold::parse(t)).collect()
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn scope_of(inside: &str) -> Option<Scope> {
    if inside.is_empty() {
        return None;
    }
    const METHODS: [&str; 9] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    Some(match inside.split_once(' ') {
        Some((method, name)) if METHODS.contains(&method) => {
            Scope::MethodName(method.to_owned(), name.trim().to_owned())
        }
        _ => Scope::Name(inside.to_owned()),
    })
}

fn metric_of(name: &str) -> Option<Metric> {
    Some(match name {
        "avg" => Metric::Avg,
        "med" | "median" => Metric::Median,
        "min" => Metric::Min,
        "max" => Metric::Max,
        "fail_ratio" => Metric::FailRatio,
        "rps" => Metric::Rps,
        "failures" => Metric::Failures,
        "requests" => Metric::Requests,
        "dropped" => Metric::Dropped,
        _ => {
            let percent: f64 = name.strip_prefix('p')?.parse().ok()?;
            if !(0.0..=100.0).contains(&percent) {
                return None;
            }
            Metric::Percentile(percent)
        }
    })
}

fn limit_of(metric: Metric, value: &str) -> Result<f64, String> {
    let (number, unit) = match value.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{value:?}: expected a number from 0, with a unit where it has one"))?;
    match (metric, unit) {
        (m, "ms" | "") if m.is_time() => Ok(n),
        (m, "s") if m.is_time() => Ok(n * 1000.0),
        (m, _) if m.is_time() => Err(format!("{value:?}: a time is in ms (the default) or s")),
        (Metric::FailRatio | Metric::Dropped, "%") => Ok(n / 100.0),
        (Metric::FailRatio | Metric::Dropped, "") if n <= 1.0 => Ok(n),
        (Metric::FailRatio, _) => Err(format!("{value:?}: fail_ratio is from 0 to 1, or a percentage (1%)")),
        (Metric::Dropped, _) => Err(format!("{value:?}: dropped is from 0 to 1, or a percentage (1%)")),
        (_, "") => Ok(n),
        (_, unit) => Err(format!("{value:?}: this metric has no unit {unit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    fn parse(text: &str) -> Threshold {
        Threshold::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn dropped_and_corrected_thresholds_judge_an_arrival_rate_test() {
        let mut r = ShardRecorder::new("local");
        let sample = RequestSample {
            method: "GET",
            name: "/",
            response_time_us: Some(2_000),
            ttfb_us: 0,
            content_length: 0,
            error: None,
        };
        let mut stats = RequestStats::new(0.0);
        assert!(!parse("dropped<1%").evaluate(&stats).passed, "no iteration was due: not a pass");
        assert!(!parse("corrected_p99<1s").evaluate(&stats).passed, "no corrected figures: not a pass");
        for _ in 0..98 {
            r.record(&sample, 1.0);
            r.record_corrected(&sample, 500_000, 1.0);
            r.count_iteration_started(1.0);
        }
        r.count_iteration_dropped(1.0);
        r.count_iteration_dropped(1.0);
        stats.apply(&r.take_delta(), 1.0);
        let dropped = parse("dropped<1%");
        let verdict = dropped.evaluate(&stats);
        assert_eq!((verdict.actual, verdict.passed), (Some(0.02), false));
        assert_eq!(dropped.actual_text(&verdict), "2%");
        assert!(parse("dropped<=0.02").evaluate(&stats).passed);
        assert!(parse("p99<10ms").evaluate(&stats).passed, "measured: 2 ms");
        assert!(!parse("corrected_p99<10ms").evaluate(&stats).passed, "corrected: 502 ms");
        assert!(parse("[GET /] corrected_max<1s").evaluate(&stats).passed);
        for (text, part) in [
            ("[/] dropped<1%", "no [scope]"),
            ("dropped<1% over 10s", "no [scope], no `over`"),
            ("corrected_rps>1", "only times are corrected"),
            ("dropped<2", "dropped is from 0 to 1"),
        ] {
            let error = Threshold::parse(text).unwrap_err().to_string();
            assert!(error.contains(part), "{text}: {error}");
        }
    }

    #[test]
    fn expressions_parse_with_scope_units_and_abort() {
        let t = parse("p95<300ms");
        assert_eq!(
            (t.scope.clone(), t.metric, t.comparison, t.limit, t.abort),
            (Scope::All, Metric::Percentile(95.0), Comparison::Less, 300.0, false)
        );
        assert_eq!(parse("p99.9 < 1s").limit, 1000.0);
        assert_eq!(parse("p99.9<1s").metric, Metric::Percentile(99.9));
        assert_eq!(parse("fail_ratio<1%").limit, 0.01);
        assert_eq!(parse("fail_ratio<=0.05").comparison, Comparison::LessOrEqual);
        let t = parse("[GET /login] avg<100 abort");
        assert_eq!(t.scope, Scope::MethodName("GET".into(), "/login".into()));
        assert!(t.abort);
        assert_eq!(parse("[/item?id=[id]] rps>=500").scope, Scope::Name("/item?id=[id]".into()));
        assert_eq!(parse("[checkout] rps>=500").scope, Scope::Name("checkout".into()));
    }

    #[test]
    fn windows_and_grace_periods_parse() {
        let t = parse("p99<1s over 30s abort after 1m");
        assert_eq!(
            (t.limit, t.window, t.abort, t.abort_grace),
            (1000.0, Some(Duration::from_secs(30)), true, Duration::from_secs(60))
        );
        let t = parse("[GET /a] avg < 20ms over 1m30s");
        assert_eq!((t.window, t.abort), (Some(Duration::from_secs(90)), false));
        assert_eq!(t.scope, Scope::MethodName("GET".into(), "/a".into()));
        assert_eq!(parse("rps>5 abort").abort_grace, Duration::ZERO);
    }

    #[test]
    fn a_bad_expression_names_the_wrong_part() {
        for (text, expected) in [
            ("p95", "expected METRIC<VALUE"),
            ("p959<3", "unknown metric \"p959\""),
            ("latency<3", "unknown metric \"latency\""),
            ("<3", "no metric before the comparison"),
            ("p95=<3", "\"=<\": the comparison must be"),
            ("p95<fast", "\"fast\": expected a number"),
            ("p95<3h", "\"3h\": a time is in ms (the default) or s"),
            ("fail_ratio<5", "fail_ratio is from 0 to 1"),
            ("rps>5ms", "this metric has no unit \"ms\""),
            ("[GET /x p95<3", "no closing ]"),
            ("p95<3 over soon", "over soon: "),
            ("p95<3 over 0s", "over: a window is at least 1s"),
            ("p95<3 after 10s", "after: a grace period belongs to `abort`"),
            ("p95<3 abort after never", "after never: "),
            ("p95<3 soon", "\"3 soon\": expected one value, then optionally `over DURATION`"),
            ("p95<3 abort over 30s", "expected one value"),
        ] {
            let err = Threshold::parse(text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--threshold {text:?}: ")) && err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn verdicts_follow_the_statistics_of_their_scope() {
        let mut recorder = ShardRecorder::new("local");
        for (method, name, ms, ok) in [("GET", "/a", 10, true), ("GET", "/a", 30, true), ("POST", "/a", 500, false)] {
            let error = if ok { None } else { Some("boom") };
            let sample =
                RequestSample { method, name, response_time_us: Some(ms * 1000), ttfb_us: 0, content_length: 0, error };
            recorder.record(&sample, 1.0);
        }
        let mut stats = RequestStats::new(0.0);
        stats.apply(&recorder.take_delta(), 1.0);
        let verdict = |text: &str| parse(text).evaluate(&stats);
        assert_eq!(verdict("max<600"), Verdict { actual: Some(500.0), passed: true });
        assert!(!verdict("[GET /a] max>100").passed);
        assert_eq!(verdict("[GET /a] max<100").actual, Some(30.0));
        assert_eq!(verdict("[/a] requests>=3").actual, Some(3.0), "every method of the name");
        let ratio = verdict("fail_ratio<10%");
        assert!(!ratio.passed && (ratio.actual.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(verdict("[/typo] p95<1s"), Verdict { actual: None, passed: false });
        assert_eq!(parse("fail_ratio<10%").format_value(1.0 / 3.0), "33.333%");
        assert_eq!(parse("p95<1s").format_value(12.5), "12.5ms");
    }
}
