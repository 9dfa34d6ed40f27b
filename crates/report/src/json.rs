//! The final statistics as JSON, in the shape of Locust's `--json`: a list
//! of entries with Locust's field names. Times are milliseconds;
//! `response_times` maps response times rounded as Locust rounds them
//! (whole ms below 100, then two significant digits) to counts,
//! `num_reqs_per_sec` maps Unix seconds to counts (the most recent seconds
//! only). Swarmer adds `percentiles_exact`: each reported percentile, to the
//! microsecond.

use serde_json::{Map, Value, json};
use swarmer_stats::{PERCENTILES_TO_REPORT, RequestStats, StatsEntry};

use crate::number::locust_buckets;

/// One entry as Locust serializes it.
pub fn entry_json(e: &StatsEntry) -> Value {
    // Locust's buckets (whole ms below 100, then two significant digits),
    // so readers that turn the keys into integers work.
    let response_times: Map<String, Value> =
        locust_buckets(e).into_iter().map(|(k, c)| (k.to_string(), json!(c))).collect();
    // Swarmer's own: the exact percentiles (ms, to the microsecond).
    let exact: Map<String, Value> = PERCENTILES_TO_REPORT
        .iter()
        .filter(|_| e.num_requests > 0)
        .map(|q| (q.to_string(), json!(crate::live::round3(e.percentile_ms(*q)))))
        .collect();
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

/// Every entry that saw a request, as a pretty-printed JSON list.
pub fn stats_json(stats: &RequestStats) -> String {
    let list: Vec<Value> =
        stats.entries().filter(|e| e.num_requests > 0 || e.num_failures > 0).map(entry_json).collect();
    serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into())
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
