//! The live statistics as JSON in the shape of Locust's `GET
//! /stats/requests` (same field names and meanings), so scripts and
//! exporters written for Locust read Swarmer unchanged. The web API, its
//! push stream and the HTML report all render through here.
//!
//! Times are milliseconds. Unlike Locust, which rounds percentiles to two
//! significant digits, values come from the HdrHistogram at microsecond
//! resolution and are given to the microsecond (three decimals).

use serde_json::{Value, json};
use swarmer_engine::{StatsStore, WorkerState, WorkerStatus};
use swarmer_stats::{HistoryPoint, RequestStats, StatsEntry};

use crate::number::whole_ms;

/// Percentiles of the `stats[]` rows (Locust's `PERCENTILES_TO_STATISTICS`).
pub const ROW_PERCENTILES: [f64; 2] = [0.95, 0.99];
/// Percentiles of `current_response_time_percentiles` (Locust charts 0.5
/// and 0.95; Swarmer adds 0.99).
pub const CHART_PERCENTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Round to the microsecond when the value is in milliseconds.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Locust's key for a percentile: `response_time_percentile_0.95`.
pub fn percentile_key(q: f64) -> String {
    format!("response_time_percentile_{q}")
}

/// One row of `stats[]`.
pub fn request_row(e: &StatsEntry, run_seconds: f64, now: f64) -> Value {
    let (current_rps, current_fail_per_sec) = e.current_rates(now);
    let (min, max) = (e.min_response_time_ms().unwrap_or(0.0), e.max_response_time_ms());
    let median = e.median_response_time_ms();
    // Locust's fields have Locust's types (whole milliseconds for min, max,
    // median and percentiles); `exact` holds the same figures to the
    // microsecond, which the UI shows.
    let mut exact = json!({
        "min_response_time": round3(min),
        "max_response_time": round3(max),
        "median_response_time": round3(median),
    });
    let mut row = json!({
        "method": e.method,
        "name": e.name,
        "num_requests": e.num_requests,
        "num_failures": e.num_failures,
        "min_response_time": whole_ms(min),
        "max_response_time": whole_ms(max),
        "avg_response_time": round3(e.avg_response_time_ms()),
        "median_response_time": whole_ms(median),
        "current_rps": current_rps,
        "current_fail_per_sec": current_fail_per_sec,
        "total_rps": e.total_rps(run_seconds),
        "total_fail_per_sec": e.total_fail_per_sec(run_seconds),
        "avg_content_length": e.avg_content_length(),
    });
    for q in ROW_PERCENTILES {
        let value = e.percentile_ms(q);
        row[percentile_key(q)] = json!(whole_ms(value));
        exact[percentile_key(q)] = json!(round3(value));
    }
    row["exact"] = exact;
    row
}

/// Every row, sorted by name then method, then the "Aggregated" row.
pub fn request_rows(stats: &RequestStats, now: f64) -> Vec<Value> {
    let run_seconds = stats.run_seconds();
    // `entries()` is already in (name, method) order.
    let mut rows: Vec<Value> = stats.entries().map(|e| request_row(e, run_seconds, now)).collect();
    let mut total = request_row(stats.total(), run_seconds, now);
    total["method"] = json!("");
    total["name"] = json!("Aggregated");
    rows.push(total);
    rows
}

/// The whole `/stats/requests` answer, with `workers` and `worker_count`
/// when `workers` is given (a cluster master's roster).
pub fn requests_payload(store: &StatsStore, workers: Option<&[WorkerStatus]>, now: f64) -> Value {
    let stats = &store.stats;
    let rows = request_rows(stats, now);
    let total = rows.last().cloned().unwrap_or(Value::Null);
    let errors: Vec<Value> = stats
        .failures()
        .map(|f| {
            json!({
                "method": f.method,
                "name": f.name,
                "error": f.error,
                "occurrences": f.occurrences,
                "first_seen": f.first_seen,
                "last_seen": f.last_seen,
            })
        })
        .collect();
    let mut current = serde_json::Map::new();
    for q in CHART_PERCENTILES {
        current.insert(percentile_key(q), json!(whole_ms(stats.current_percentile_ms(q, now))));
    }
    let mut payload = json!({
        "stats": rows,
        "errors": errors,
        "current_rps": total["current_rps"],
        "current_fail_per_sec": total["current_fail_per_sec"],
        "total_rps": total["total_rps"],
        "total_fail_per_sec": total["total_fail_per_sec"],
        "total_avg_response_time": total["avg_response_time"],
        "fail_ratio": stats.total().fail_ratio(),
        "current_response_time_percentiles": current,
        "state": store.state.as_str(),
        "user_count": store.user_count,
        "target_user_count": store.target_user_count,
        "class_counts": store.class_counts,
        "cpu_usage": store.usage.cpu_percent,
        "memory_usage": store.usage.rss_bytes,
        "cgroup_memory_usage": store.usage.cgroup.map(|c| c.usage_bytes),
        "cgroup_memory_limit": store.usage.cgroup.and_then(|c| c.limit_bytes),
        "notes": store.notes,
        "shape": store.shape,
        "step_marks": step_marks(store),
        "thresholds": thresholds(store),
        "arrival": store.arrival,
        "iterations": iterations(stats, now),
        "corrected": corrected_rows(stats, now),
    });
    if let Some(workers) = workers {
        payload["workers"] = json!(workers);
        payload["worker_count"] = json!(workers.iter().filter(|w| w.state != WorkerState::Missing).count());
    }
    payload
}

/// Arrival-rate iterations: totals, dropped share and current rates;
/// `null` when none was due.
fn iterations(stats: &RequestStats, now: f64) -> Value {
    let iterations = stats.iterations();
    if iterations.is_empty() {
        return Value::Null;
    }
    let (started, dropped) = iterations.current_rates(now, stats.start_time());
    json!({
        "started": iterations.started,
        "dropped": iterations.dropped,
        "dropped_ratio": iterations.dropped_ratio(),
        "current_started_per_sec": round3(started),
        "current_dropped_per_sec": round3(dropped),
    })
}

/// Rows of response times from the intended start (the stats rows'
/// fields), Aggregated last; empty unless requests had a schedule.
fn corrected_rows(stats: &RequestStats, now: f64) -> Vec<Value> {
    if !stats.has_corrected() {
        return Vec::new();
    }
    let seconds = stats.run_seconds();
    stats
        .corrected_entries()
        .chain(std::iter::once(stats.corrected_total()))
        .map(|e| request_row(e, seconds, now))
        .collect()
}

/// The thresholds' verdicts so far: `[{threshold, actual, value, passed}]`
/// (`actual` as the expression writes it, `value` in its unit, `null`
/// without requests in scope).
fn thresholds(store: &StatsStore) -> Vec<Value> {
    store
        .thresholds
        .iter()
        .map(|j| {
            json!({
                "threshold": j.threshold.source,
                "actual": j.actual_text(),
                "value": j.verdict.actual,
                "passed": j.verdict.passed,
            })
        })
        .collect()
}

/// One chart point: `[unix seconds, users, rps, fail/s, p50, p95, p99, avg,
/// dropped/s, corrected p95, corrected p99, workers' CPU % lowest, mean,
/// highest, workers' memory MiB lowest, mean, highest]` (arrays keep a day
/// of points small; dropped/s is `null` unless the test is an arrival-rate
/// one, the corrected percentiles unless requests had a schedule, the
/// workers' figures unless a master ran the test).
pub fn history_point(p: &HistoryPoint) -> Value {
    let node = |pick: fn(&swarmer_stats::NodeUsage) -> [f64; 3], i: usize| p.nodes.as_ref().map(|n| round3(pick(n)[i]));
    let cpu = |n: &swarmer_stats::NodeUsage| n.cpu_percent;
    let memory = |n: &swarmer_stats::NodeUsage| n.memory_mib;
    json!([
        p.timestamp,
        p.user_count,
        p.current_rps,
        p.current_fail_per_sec,
        round3(p.response_time_percentile_50),
        round3(p.response_time_percentile_95),
        round3(p.response_time_percentile_99),
        round3(p.total_avg_response_time),
        p.current_dropped_per_sec.map(round3),
        p.corrected_percentile_95.map(round3),
        p.corrected_percentile_99.map(round3),
        node(cpu, 0),
        node(cpu, 1),
        node(cpu, 2),
        node(memory, 0),
        node(memory, 1),
        node(memory, 2),
    ])
}

/// Where each step of the load shape (each phase) began, with its totals
/// (the next step's start, or now, ends it): the charts' marks and the
/// reports' per-phase table.
pub fn step_marks(store: &StatsStore) -> Value {
    let total = store.stats.total();
    let marks = &store.step_marks;
    let rows: Vec<Value> = marks
        .iter()
        .enumerate()
        .map(|(i, mark)| {
            let next = marks.get(i + 1);
            let end = next.map_or(store.test_stopped.unwrap_or_else(swarmer_stats::unix_now), |n| n.time);
            let requests = next.map_or(total.num_requests, |n| n.requests).saturating_sub(mark.requests);
            let failures = next.map_or(total.num_failures, |n| n.failures).saturating_sub(mark.failures);
            let time_us = next
                .map_or(total.total_response_time_us, |n| n.total_response_time_us)
                .saturating_sub(mark.total_response_time_us);
            let by_name: serde_json::Map<String, Value> = match next {
                Some(n) => n
                    .requests_by_name
                    .iter()
                    .map(|(k, v)| {
                        (k.clone(), json!(v.saturating_sub(mark.requests_by_name.get(k).copied().unwrap_or(0))))
                    })
                    .collect(),
                None => store
                    .stats
                    .entries()
                    .map(|e| {
                        let key = format!("{} {}", e.method, e.name);
                        let before = mark.requests_by_name.get(&key).copied().unwrap_or(0);
                        (key, json!(e.num_requests.saturating_sub(before)))
                    })
                    .collect(),
            };
            let seconds = (end - mark.time).max(0.0);
            json!({
                "name": mark.label,
                "start": mark.time,
                "end": end,
                "num_requests": requests,
                "num_failures": failures,
                "requests_per_sec": if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
                "avg_response_time": if requests > 0 { time_us as f64 / 1000.0 / requests as f64 } else { 0.0 },
                "class_counts": mark.class_counts,
                "requests_by_name": by_name,
            })
        })
        .collect();
    Value::Array(rows)
}

/// The chart history as a list of [`history_point`]s.
pub fn history_payload(store: &StatsStore) -> Value {
    Value::Array(store.history.points().iter().map(history_point).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    #[test]
    fn a_containers_memory_is_in_the_payload_when_it_can_be_read() {
        use swarmer_engine::RunnerState;
        use swarmer_engine::memory::CgroupMemory;
        use swarmer_stats::History;
        let mut store = StatsStore::new(RunnerState::Running, RequestStats::new(0.0), History::default());
        let payload = requests_payload(&store, None, 1.0);
        assert!(payload["cgroup_memory_usage"].is_null() && payload["cgroup_memory_limit"].is_null(), "{payload}");
        store.usage.cgroup = Some(CgroupMemory { usage_bytes: 7 << 20, limit_bytes: Some(1 << 30) });
        let payload = requests_payload(&store, None, 1.0);
        assert_eq!(payload["cgroup_memory_usage"], 7 << 20);
        assert_eq!(payload["cgroup_memory_limit"], 1u64 << 30);
    }

    #[test]
    fn rows_carry_locusts_field_names_and_end_with_aggregated() {
        let mut r = ShardRecorder::new("local");
        for (name, rt) in [("/b", 1_500), ("/a", 2_000), ("/a", 4_000)] {
            let sample = RequestSample {
                method: "GET",
                name,
                response_time_us: Some(rt),
                ttfb_us: 0,
                content_length: 10,
                error: None,
            };
            r.record(&sample, 100.0);
        }
        let mut stats = RequestStats::new(99.0);
        stats.apply(&r.take_delta(), 100.0);
        let rows = request_rows(&stats, 101.0);
        let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["/a", "/b", "Aggregated"]);
        let a = &rows[0];
        for key in [
            "method",
            "num_requests",
            "num_failures",
            "min_response_time",
            "max_response_time",
            "current_rps",
            "current_fail_per_sec",
            "avg_response_time",
            "median_response_time",
            "total_rps",
            "total_fail_per_sec",
            "response_time_percentile_0.95",
            "response_time_percentile_0.99",
            "avg_content_length",
        ] {
            assert!(a.get(key).is_some(), "missing {key} in {a}");
        }
        assert_eq!(a["num_requests"], 2);
        assert_eq!(a["min_response_time"], 2.0);
        assert_eq!(a["max_response_time"], 4.0);
        assert_eq!(rows[2]["method"], "");
        assert_eq!(rows[2]["num_requests"], 3);
    }
}
