//! Statistics deltas to and from protocol messages (public for tools that
//! speak the protocol, like the simulated workers of bench/cluster.sh). The histogram travels
//! as HdrHistogram V2 bytes, so the master's merge is exact.

use swarmer_engine::TagFilter;
use swarmer_stats::{
    ExceptionEntry, FailureEntry, Iterations, LatencyHistogram, PerSecondCounts, StatsDelta, StatsEntry,
};

use crate::error::ReportError;
use crate::proto;

/// A delta as the `StatsReport` a worker sends, stamped with the statistics `epoch` it belongs to
/// (the master drops reports from before its latest reset).
pub fn delta_to_report(delta: &StatsDelta, epoch: u64, master_instance: u64) -> proto::StatsReport {
    proto::StatsReport {
        epoch,
        master_instance,
        assign_sequence: 0,
        entries: delta.entries.iter().map(entry_to_proto).collect(),
        corrected: delta.corrected.iter().map(entry_to_proto).collect(),
        iterations: (!delta.iterations.is_empty()).then(|| iterations_to_proto(&delta.iterations)),
        failures: delta
            .failures
            .iter()
            .map(|f| proto::Failure {
                method: f.method.clone(),
                name: f.name.clone(),
                error: f.error.clone(),
                occurrences: f.occurrences,
                first_seen: f.first_seen,
                last_seen: f.last_seen,
            })
            .collect(),
        exceptions: delta
            .exceptions
            .iter()
            .map(|e| proto::Exception {
                count: e.count,
                msg: e.msg.clone(),
                traceback: e.traceback.clone(),
                nodes: e.nodes.iter().cloned().collect(),
            })
            .collect(),
    }
}

fn iterations_to_proto(i: &Iterations) -> proto::Iterations {
    proto::Iterations { started: i.started, dropped: i.dropped, per_second: per_second_to_proto(&i.per_second) }
}

fn per_second_to_proto(counts: &PerSecondCounts) -> Vec<proto::SecondCount> {
    let failures: std::collections::HashMap<u64, u64> = counts.failures_by_second().collect();
    counts
        .requests_by_second()
        .map(|(second, requests)| proto::SecondCount {
            second,
            requests,
            failures: failures.get(&second).copied().unwrap_or(0),
        })
        .collect()
}

fn per_second_from_proto(seconds: &[proto::SecondCount]) -> PerSecondCounts {
    let mut counts = PerSecondCounts::default();
    for s in seconds {
        counts.add(s.second, s.requests, s.failures);
    }
    counts
}

fn entry_to_proto(e: &StatsEntry) -> proto::Entry {
    proto::Entry {
        method: e.method.clone(),
        name: e.name.clone(),
        num_requests: e.num_requests,
        num_none_requests: e.num_none_requests,
        num_failures: e.num_failures,
        total_response_time_us: e.total_response_time_us,
        min_response_time_us: e.min_response_time_us,
        max_response_time_us: e.max_response_time_us,
        total_content_length: e.total_content_length,
        total_ttfb_us: e.total_ttfb_us,
        histogram: e.histogram.to_bytes().unwrap_or_default(),
        per_second: per_second_to_proto(&e.per_second),
        start_time: e.start_time,
        last_request_timestamp: e.last_request_timestamp,
    }
}

/// The test scope a master tells its workers.
pub fn test_scope(classes: &[String], tags: &TagFilter) -> proto::TestScope {
    let sorted = |set: &std::collections::HashSet<String>| {
        let mut list: Vec<String> = set.iter().cloned().collect();
        list.sort();
        list
    };
    proto::TestScope {
        user_classes: classes.to_vec(),
        tags: tags.include.as_ref().map(|include| proto::TagList { tags: sorted(include) }),
        exclude_tags: sorted(&tags.exclude),
    }
}

/// The class selection and tag filter of a received scope.
pub fn scope_filters(scope: &proto::TestScope) -> (Vec<String>, TagFilter) {
    let include = scope.tags.as_ref().map(|list| list.tags.clone());
    (scope.user_classes.clone(), TagFilter::new(include, scope.exclude_tags.clone()))
}

fn bad(entry: &proto::Entry, reason: String) -> ReportError {
    ReportError { method: entry.method.clone(), name: entry.name.clone(), reason }
}

/// A report back into a delta; errors name what was malformed.
pub fn report_to_delta(report: &proto::StatsReport) -> Result<StatsDelta, ReportError> {
    let iterations = report.iterations.as_ref().map_or_else(Iterations::default, |i| Iterations {
        started: i.started,
        dropped: i.dropped,
        per_second: per_second_from_proto(&i.per_second),
    });
    Ok(StatsDelta {
        entries: entries_from_proto(&report.entries)?,
        corrected: entries_from_proto(&report.corrected)?,
        iterations,
        failures: report
            .failures
            .iter()
            .map(|f| FailureEntry {
                method: f.method.clone(),
                name: f.name.clone(),
                error: f.error.clone(),
                occurrences: f.occurrences,
                first_seen: f.first_seen,
                last_seen: f.last_seen,
            })
            .collect(),
        exceptions: report
            .exceptions
            .iter()
            .map(|e| ExceptionEntry {
                count: e.count,
                msg: e.msg.clone(),
                traceback: e.traceback.clone(),
                nodes: e.nodes.iter().cloned().collect(),
            })
            .collect(),
    })
}

fn entries_from_proto(list: &[proto::Entry]) -> Result<Vec<StatsEntry>, ReportError> {
    let mut entries = Vec::with_capacity(list.len());
    for e in list {
        let histogram =
            LatencyHistogram::from_bytes(&e.histogram).map_err(|err| bad(e, format!("bad histogram: {err}")))?;
        if histogram.count() + e.num_none_requests != e.num_requests {
            return Err(bad(e, format!("{} requests but the histogram holds {}", e.num_requests, histogram.count())));
        }
        let per_second = per_second_from_proto(&e.per_second);
        entries.push(StatsEntry {
            method: e.method.clone(),
            name: e.name.clone(),
            num_requests: e.num_requests,
            num_none_requests: e.num_none_requests,
            num_failures: e.num_failures,
            total_response_time_us: e.total_response_time_us,
            min_response_time_us: e.min_response_time_us,
            max_response_time_us: e.max_response_time_us,
            total_content_length: e.total_content_length,
            total_ttfb_us: e.total_ttfb_us,
            histogram,
            per_second,
            start_time: e.start_time,
            last_request_timestamp: e.last_request_timestamp,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    #[test]
    fn a_delta_survives_the_wire_exactly() {
        let mut r = ShardRecorder::new("w1");
        for (i, rt) in [1_200u64, 3_400, 98_000, 15].iter().enumerate() {
            let error = (i == 2).then_some("boom");
            let sample = RequestSample {
                method: "GET",
                name: "/x",
                response_time_us: Some(*rt),
                ttfb_us: 3,
                content_length: 7,
                error,
            };
            r.record(&sample, 1_000.0 + i as f64);
        }
        r.record_exception("oops", "plan.lua:3");
        let delta = r.take_delta();
        let back = report_to_delta(&delta_to_report(&delta, 4, 7)).unwrap();
        assert_eq!(back, delta);
    }

    #[test]
    fn a_report_whose_counts_disagree_is_refused() {
        let mut r = ShardRecorder::new("w1");
        let sample = RequestSample {
            method: "GET",
            name: "/x",
            response_time_us: Some(5),
            ttfb_us: 0,
            content_length: 0,
            error: None,
        };
        r.record(&sample, 1.0);
        let mut report = delta_to_report(&r.take_delta(), 0, 7);
        report.entries[0].num_requests = 99;
        assert!(report_to_delta(&report).unwrap_err().to_string().contains("99 requests"));
        report.entries[0].histogram = vec![1, 2, 3];
        assert!(report_to_delta(&report).unwrap_err().to_string().contains("bad histogram"));
    }
}
