//! `GET /metrics`: the live statistics in Prometheus's text format, so a
//! Prometheus server scrapes Swarmer without an exporter in between.
//!
//! Written by hand rather than with a metrics crate: the values already
//! exist (exact, merged) in the runner's store, and are rendered from it as
//! a snapshot at scrape time; a registry would hold a second copy.
//!
//! Per request name: request and failure counters, and the response time
//! as a summary (quantiles from the HdrHistogram, sum and count). Per run:
//! users, state, current RPS, failure ratio, CPU and memory, and the
//! memory cgroup's usage and limit where they can be read.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use swarmer_engine::{LockExt, RunnerState, StatsStore};

use crate::state::AppState;

const QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 1.0];

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = render(&state.runner.stats().lock_or_recover(), swarmer_engine::unix_now());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// Escape a label value (backslash, quote, newline).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition text for one store.
pub fn render(store: &StatsStore, now: f64) -> String {
    let mut out = String::new();
    let stats = &store.stats;
    let entries: Vec<_> = stats.entries().collect();
    let labels = |e: &swarmer_stats::StatsEntry| format!("method=\"{}\",name=\"{}\"", label(&e.method), label(&e.name));

    family(&mut out, "swarmer_requests_total", "counter", "Requests made, failed ones included.");
    for e in &entries {
        let _ = writeln!(out, "swarmer_requests_total{{{}}} {}", labels(e), e.num_requests);
    }
    family(&mut out, "swarmer_failures_total", "counter", "Requests that failed.");
    for e in &entries {
        let _ = writeln!(out, "swarmer_failures_total{{{}}} {}", labels(e), e.num_failures);
    }
    family(&mut out, "swarmer_response_time_seconds", "summary", "Response times since the start or last reset.");
    for e in &entries {
        let l = labels(e);
        for q in QUANTILES {
            let _ =
                writeln!(out, "swarmer_response_time_seconds{{{l},quantile=\"{q}\"}} {}", e.percentile_ms(q) / 1000.0);
        }
        let _ = writeln!(out, "swarmer_response_time_seconds_sum{{{l}}} {}", e.total_response_time_us as f64 / 1e6);
        let timed = e.num_requests.saturating_sub(e.num_none_requests);
        let _ = writeln!(out, "swarmer_response_time_seconds_count{{{l}}} {timed}");
    }
    family(&mut out, "swarmer_content_length_bytes_total", "counter", "Bytes of response bodies received.");
    for e in &entries {
        let _ = writeln!(out, "swarmer_content_length_bytes_total{{{}}} {}", labels(e), e.total_content_length);
    }
    let total = stats.total();
    let (rps, fps) = total.current_rates(now);
    family(&mut out, "swarmer_users", "gauge", "Users running now.");
    let _ = writeln!(out, "swarmer_users {}", store.user_count);
    family(&mut out, "swarmer_target_users", "gauge", "Users the test is ramping to.");
    let _ = writeln!(out, "swarmer_target_users {}", store.target_user_count);
    family(&mut out, "swarmer_current_rps", "gauge", "Requests per second over the last seconds.");
    let _ = writeln!(out, "swarmer_current_rps {rps}");
    family(&mut out, "swarmer_current_fail_per_sec", "gauge", "Failures per second over the last seconds.");
    let _ = writeln!(out, "swarmer_current_fail_per_sec {fps}");
    family(&mut out, "swarmer_fail_ratio", "gauge", "Failed requests over all requests.");
    let _ = writeln!(out, "swarmer_fail_ratio {}", total.fail_ratio());
    family(&mut out, "swarmer_state", "gauge", "1 for the runner's current state.");
    for s in
        [RunnerState::Ready, RunnerState::Spawning, RunnerState::Running, RunnerState::Stopping, RunnerState::Stopped]
    {
        let _ = writeln!(out, "swarmer_state{{state=\"{}\"}} {}", s.as_str(), u8::from(store.state == s));
    }
    family(&mut out, "swarmer_cpu_percent", "gauge", "CPU of this process, percent of one core.");
    let _ = writeln!(out, "swarmer_cpu_percent {}", store.usage.cpu_percent);
    family(&mut out, "swarmer_memory_bytes", "gauge", "Resident memory of this process.");
    let _ = writeln!(out, "swarmer_memory_bytes {}", store.usage.rss_bytes);
    if let Some(cgroup) = store.usage.cgroup {
        family(
            &mut out,
            "swarmer_cgroup_memory_bytes",
            "gauge",
            "Memory used by this process's cgroup (a container's: all its processes, page cache included).",
        );
        let _ = writeln!(out, "swarmer_cgroup_memory_bytes {}", cgroup.usage_bytes);
        if let Some(limit) = cgroup.limit_bytes {
            family(
                &mut out,
                "swarmer_cgroup_memory_limit_bytes",
                "gauge",
                "The memory limit of this process's cgroup.",
            );
            let _ = writeln!(out, "swarmer_cgroup_memory_limit_bytes {limit}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_memory_is_shown_when_it_can_be_read() {
        use swarmer_engine::memory::CgroupMemory;
        use swarmer_stats::{History, RequestStats};
        let mut store = StatsStore::new(RunnerState::Running, RequestStats::new(0.0), History::default());
        store.usage.rss_bytes = 5 << 20;
        let without = render(&store, 1.0);
        assert!(without.contains("swarmer_memory_bytes 5242880") && !without.contains("cgroup"), "{without}");
        store.usage.cgroup = Some(CgroupMemory { usage_bytes: 7 << 20, limit_bytes: Some(1 << 30) });
        let with = render(&store, 1.0);
        assert!(with.contains("\nswarmer_cgroup_memory_bytes 7340032\n"), "{with}");
        assert!(with.contains("\nswarmer_cgroup_memory_limit_bytes 1073741824\n"), "{with}");
        store.usage.cgroup = Some(CgroupMemory { usage_bytes: 7 << 20, limit_bytes: None });
        assert!(!render(&store, 1.0).contains("limit_bytes"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
