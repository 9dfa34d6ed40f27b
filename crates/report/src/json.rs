//! The final statistics as JSON, in the shape of Locust's `--json`: a list
//! of entries with Locust's field names. Times are milliseconds;
//! `response_times` maps response times rounded as Locust rounds them
//! (whole ms below 100, then two significant digits) to counts,
//! `num_reqs_per_sec` maps Unix seconds to counts (the most recent seconds
//! only). Swarmer adds `percentiles_exact`: each reported percentile, to the
//! microsecond, and for requests that had a schedule (arrival rate,
//! pacing) `corrected`: the same figures counted from the intended start.
//!
//! What is about the whole run rather than one entry (the arrival rate,
//! its iterations, the corrected entries, the thresholds' verdicts) is
//! [`run_json`], an object of its own (`--json-file NAME` writes it to
//! `NAME_run.json`), so Locust's list stays as Locust's readers expect.

use serde_json::{Map, Value, json};
use swarmer_engine::threshold::Judged;
use swarmer_stats::{Iterations, PERCENTILES_TO_REPORT, RequestStats, StatsEntry};

use crate::number::locust_buckets;

/// One entry as Locust serializes it.
pub fn entry_json(e: &StatsEntry) -> Value {
    // Locust's buckets (whole ms below 100, then two significant digits),
    // so readers that turn the keys into integers work.
    let response_times: Map<String, Value> =
        locust_buckets(e).into_iter().map(|(k, c)| (k.to_string(), json!(c))).collect();
    let exact = exact_percentiles(e);
    let per_sec = |it: &mut dyn Iterator<Item = (u64, u64)>| -> Map<String, Value> {
        it.map(|(s, c)| (s.to_string(), json!(c))).collect()
    };
    json!({
        "name": e.name,
        "method": e.method,
        "last_request_timestamp": e.last_request_timestamp,
        "start_time": e.start_time,
        "num_requests": e.num_requests,
        "num_none_requests": e.num_none_requests,
        "num_failures": e.num_failures,
        "total_response_time": e.total_response_time_us as f64 / 1000.0,
        "max_response_time": e.max_response_time_ms(),
        "min_response_time": e.min_response_time_ms(),
        "total_content_length": e.total_content_length,
        "response_times": response_times,
        "num_reqs_per_sec": per_sec(&mut e.per_second.requests_by_second()),
        "num_fail_per_sec": per_sec(&mut e.per_second.failures_by_second()),
        "percentiles_exact": exact,
    })
}

/// Swarmer's own: the exact percentiles (ms, to the microsecond).
fn exact_percentiles(e: &StatsEntry) -> Map<String, Value> {
    PERCENTILES_TO_REPORT
        .iter()
        .filter(|_| e.num_requests > 0)
        .map(|q| (q.to_string(), json!(crate::live::round3(e.percentile_ms(*q)))))
        .collect()
}

/// The corrected figures of an entry (from the intended start).
fn corrected_json(e: &StatsEntry) -> Value {
    json!({
        "name": e.name,
        "method": e.method,
        "num_requests": e.num_requests,
        "avg_response_time": crate::live::round3(e.avg_response_time_ms()),
        "min_response_time": e.min_response_time_ms(),
        "max_response_time": e.max_response_time_ms(),
        "percentiles_exact": exact_percentiles(e),
    })
}

/// Every entry that saw a request, as a pretty-printed JSON list.
pub fn stats_json(stats: &RequestStats) -> String {
    let list: Vec<Value> = stats
        .entries()
        .filter(|e| e.num_requests > 0 || e.num_failures > 0)
        .map(|e| {
            let mut value = entry_json(e);
            if let (Some(corrected), Value::Object(map)) = (stats.corrected_entry(&e.method, &e.name), &mut value) {
                map.insert("corrected".into(), corrected_json(corrected));
            }
            value
        })
        .collect();
    serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into())
}

/// Iterations as JSON: totals, the dropped share and per-second counts.
pub fn iterations_json(iterations: &Iterations) -> Value {
    let started: Map<String, Value> =
        iterations.per_second.requests_by_second().map(|(s, c)| (s.to_string(), json!(c))).collect();
    let dropped: Map<String, Value> =
        iterations.per_second.failures_by_second().map(|(s, c)| (s.to_string(), json!(c))).collect();
    json!({
        "started": iterations.started,
        "dropped": iterations.dropped,
        "dropped_ratio": iterations.dropped_ratio(),
        "started_per_sec": started,
        "dropped_per_sec": dropped,
    })
}

/// The run as a whole: its arrival rate (described) and iterations, the
/// corrected entries with their Aggregated row, and the thresholds'
/// verdicts (`expression`, `actual`, `passed`).
pub fn run_json(stats: &RequestStats, arrival: Option<&str>, judged: &[Judged]) -> String {
    let mut corrected: Vec<Value> = stats.corrected_entries().map(corrected_json).collect();
    if stats.has_corrected() {
        corrected.push(corrected_json(stats.corrected_total()));
    }
    let thresholds: Vec<Value> = judged
        .iter()
        .map(|j| {
            json!({
                "expression": j.threshold.source,
                "actual": j.verdict.actual,
                "actual_text": j.actual_text(),
                "passed": j.verdict.passed,
            })
        })
        .collect();
    let run = json!({
        "arrival_rate": arrival,
        "iterations": (!stats.iterations().is_empty()).then(|| iterations_json(stats.iterations())),
        "corrected": corrected,
        "thresholds": thresholds,
    });
    serde_json::to_string_pretty(&run).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    #[test]
    fn entries_use_locust_field_names() {
        let mut r = ShardRecorder::new("local");
        for rt in [1_000, 1_000, 2_000] {
            let sample = RequestSample {
                method: "GET",
                name: "/",
                response_time_us: Some(rt),
                ttfb_us: 0,
                content_length: 5,
                error: None,
            };
            r.record(&sample, 100.0);
        }
        let mut s = RequestStats::new(100.0);
        s.apply(&r.take_delta(), 100.0);
        let v: Value = serde_json::from_str(&stats_json(&s)).unwrap();
        let e = &v[0];
        assert_eq!(e["name"], "/");
        assert_eq!(e["method"], "GET");
        assert_eq!(e["num_requests"], 3);
        assert_eq!(e["num_failures"], 0);
        assert_eq!(e["total_response_time"], 4.0);
        assert_eq!(e["max_response_time"], 2.0);
        assert_eq!(e["min_response_time"], 1.0);
        assert_eq!(e["total_content_length"], 15);
        assert_eq!(e["response_times"]["1"], 2);
        assert_eq!(e["response_times"]["2"], 1);
        assert_eq!(e["num_reqs_per_sec"]["100"], 3);
        for key in ["last_request_timestamp", "start_time", "num_none_requests", "num_fail_per_sec"] {
            assert!(e.get(key).is_some(), "{key}");
        }
    }
}
