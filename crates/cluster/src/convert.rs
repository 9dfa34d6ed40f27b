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

/// What a report's times are checked against, by the master's clock.
struct Bounds {
    /// The seconds a per-second count may be for.
    seconds: std::ops::RangeInclusive<u64>,
    /// The latest plausible Unix time.
    latest: f64,
    /// Per-second counts left out so far.
    left_out: usize,
}

impl Bounds {
    fn at(now: f64) -> Self {
        let now_sec = if now.is_finite() && now > 0.0 { now as u64 } else { 0 };
        Self {
            seconds: now_sec.saturating_sub(MOST_BEHIND)..=now_sec.saturating_add(MOST_AHEAD),
            // A clock set a day or a month wrong still counts; a time past a year is not one.
            latest: now + 366.0 * 86_400.0,
            left_out: 0,
        }
    }

    /// A Unix time that is a number, not before 2000 and not after `latest`.
    fn plausible(&self, t: f64) -> bool {
        t.is_finite() && (946_684_800.0..=self.latest).contains(&t)
    }

    /// Per-second counts from a report, leaving out (and counting) seconds
    /// outside `seconds`, which would otherwise prune the master's window
    /// (a second far ahead pins the current rate at 0).
    fn per_second(&mut self, seconds: &[proto::SecondCount]) -> PerSecondCounts {
        let mut counts = PerSecondCounts::default();
        for s in seconds {
            if self.seconds.contains(&s.second) && s.failures <= s.requests && s.requests <= MOST_PER_REPORT {
                counts.add(s.second, s.requests, s.failures);
            } else {
                self.left_out += 1;
            }
        }
        counts
    }
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

/// Most requests (or occurrences, iterations) one report may count: far
/// above what a worker records in the second between reports (the merged
/// sums saturate besides).
const MOST_PER_REPORT: u64 = 1_000_000_000_000;
/// What the histograms of one report may take once decoded (the master
/// decodes a whole report before merging it).
const MOST_DECODED_BYTES: usize = 256 << 20;
/// Seconds a worker's clock may run ahead of the master's.
const MOST_AHEAD: u64 = 60;
/// Seconds back a per-second count may be for (a day).
const MOST_BEHIND: u64 = 86_400;

/// A report checked and turned into a delta.
#[derive(Debug)]
pub struct CheckedReport {
    /// What the report counts.
    pub delta: StatsDelta,
    /// Per-second counts left out: implausible seconds (a clock far ahead
    /// of `now`, or a day behind) or counts; the totals keep them.
    pub seconds_left_out: usize,
}

/// A report back into a delta, checked against what a worker of ours can
/// send when the master's clock reads `now` (Unix seconds): counts that
/// hold together and cannot overflow, finite times, histograms of our own
/// precision and range. Errors name what was malformed; implausible
/// per-second counts are left out rather than refusing the report.
pub fn report_to_delta(report: &proto::StatsReport, now: f64) -> Result<CheckedReport, ReportError> {
    let mut bounds = Bounds::at(now);
    let whole = |what: &str, reason: String| ReportError { method: String::new(), name: what.into(), reason };
    let iterations = match &report.iterations {
        None => Iterations::default(),
        Some(i) => {
            if i.started > MOST_PER_REPORT || i.dropped > MOST_PER_REPORT {
                return Err(whole("(iterations)", format!("{} started, {} dropped: too many", i.started, i.dropped)));
            }
            Iterations { started: i.started, dropped: i.dropped, per_second: bounds.per_second(&i.per_second) }
        }
    };
    let decoded: usize = report
        .entries
        .iter()
        .chain(&report.corrected)
        .map(|e| LatencyHistogram::decoded_size(&e.histogram))
        .fold(0, usize::saturating_add);
    if decoded > MOST_DECODED_BYTES {
        let reason =
            format!("its histograms would take {} MiB decoded (at most {})", decoded >> 20, MOST_DECODED_BYTES >> 20);
        return Err(whole("(report)", reason));
    }
    let failures = report
        .failures
        .iter()
        .map(|f| {
            if f.occurrences > MOST_PER_REPORT || !bounds.plausible(f.first_seen) || !bounds.plausible(f.last_seen) {
                return Err(whole("(failures)", format!("{:?}: implausible count or times", f.error)));
            }
            Ok(FailureEntry {
                method: f.method.clone(),
                name: f.name.clone(),
                error: f.error.clone(),
                occurrences: f.occurrences,
                first_seen: f.first_seen,
                last_seen: f.last_seen,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let exceptions = report
        .exceptions
        .iter()
        .map(|e| {
            if e.count > MOST_PER_REPORT {
                return Err(whole("(exceptions)", format!("a count of {}", e.count)));
            }
            Ok(ExceptionEntry {
                count: e.count,
                msg: e.msg.clone(),
                traceback: e.traceback.clone(),
                nodes: e.nodes.iter().cloned().collect(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let delta = StatsDelta {
        entries: entries_from_proto(&report.entries, &mut bounds)?,
        corrected: entries_from_proto(&report.corrected, &mut bounds)?,
        iterations,
        failures,
        exceptions,
    };
    Ok(CheckedReport { delta, seconds_left_out: bounds.left_out })
}

fn entries_from_proto(list: &[proto::Entry], bounds: &mut Bounds) -> Result<Vec<StatsEntry>, ReportError> {
    let most_micros = swarmer_stats::MOST_MICROS;
    let mut entries = Vec::with_capacity(list.len());
    for e in list {
        if e.num_requests > MOST_PER_REPORT {
            return Err(bad(e, format!("{} requests in one report", e.num_requests)));
        }
        if e.num_failures > e.num_requests || e.num_none_requests > e.num_requests {
            return Err(bad(e, format!("{} failures of {} requests", e.num_failures, e.num_requests)));
        }
        let histogram =
            LatencyHistogram::received(&e.histogram).map_err(|err| bad(e, format!("bad histogram: {err}")))?;
        if histogram.count().checked_add(e.num_none_requests) != Some(e.num_requests) {
            return Err(bad(e, format!("{} requests but the histogram holds {}", e.num_requests, histogram.count())));
        }
        // Each time at most the largest kept, so a sum at most that many times it.
        let most_total = e.num_requests.saturating_mul(most_micros + most_micros / 1000 + 1).min(1 << 56);
        let times_fit = e.total_response_time_us <= most_total
            && e.total_ttfb_us <= most_total
            && e.max_response_time_us <= histogram.max().max(most_micros)
            && e.min_response_time_us.is_none_or(|min| min <= e.max_response_time_us);
        if !times_fit || e.total_content_length > e.num_requests.saturating_mul(swarmer_stats::MOST_CONTENT_LENGTH) {
            return Err(bad(e, "response times or sizes out of range".into()));
        }
        let start_ok = e.num_requests == 0 || bounds.plausible(e.start_time);
        if !start_ok || !e.last_request_timestamp.is_none_or(|t| bounds.plausible(t)) {
            return Err(bad(e, format!("implausible times ({}, {:?})", e.start_time, e.last_request_timestamp)));
        }
        let per_second = bounds.per_second(&e.per_second);
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

    /// A Unix time of this decade, as the master's clock.
    const NOW: f64 = 1_796_000_000.0;

    fn sample(rt: u64, error: Option<&'static str>) -> RequestSample<'static> {
        RequestSample { method: "GET", name: "/x", response_time_us: Some(rt), ttfb_us: 3, content_length: 7, error }
    }

    #[test]
    fn a_delta_survives_the_wire_exactly() {
        let mut r = ShardRecorder::new("w1");
        for (i, rt) in [1_200u64, 3_400, 98_000, 15].iter().enumerate() {
            r.record(&sample(*rt, (i == 2).then_some("boom")), NOW - 3.0 + i as f64);
        }
        r.record_exception("oops", "plan.lua:3");
        let delta = r.take_delta();
        let back = report_to_delta(&delta_to_report(&delta, 4, 7), NOW).unwrap();
        assert_eq!(back.delta, delta);
        assert_eq!(back.seconds_left_out, 0);
    }

    fn one_request() -> proto::StatsReport {
        let mut r = ShardRecorder::new("w1");
        r.record(&sample(5, None), NOW);
        delta_to_report(&r.take_delta(), 0, 7)
    }

    fn refused(report: &proto::StatsReport) -> String {
        report_to_delta(report, NOW).unwrap_err().to_string()
    }

    #[test]
    fn a_report_whose_counts_disagree_is_refused() {
        let mut report = one_request();
        report.entries[0].num_requests = 99;
        assert!(refused(&report).contains("99 requests"));
        report.entries[0].histogram = vec![1, 2, 3];
        assert!(refused(&report).contains("bad histogram"));
    }

    /// What a worker holding the token could send to corrupt the master:
    /// counts that wrap, more failures than requests, times that are not
    /// numbers or far away, a histogram of another precision and range.
    #[test]
    fn hostile_reports_are_refused_and_far_seconds_left_out() {
        let mut wraps = one_request();
        wraps.entries[0].num_none_requests = u64::MAX;
        wraps.entries[0].num_requests = u64::MAX;
        assert!(refused(&wraps).contains("requests in one report"));
        let mut wraps = one_request();
        wraps.entries[0].num_none_requests = u64::MAX;
        assert!(refused(&wraps).contains("failures of"), "{}", refused(&wraps));

        let mut failures = one_request();
        failures.entries[0].num_failures = 2;
        assert!(refused(&failures).contains("2 failures of 1 requests"));

        for bad_time in [f64::NAN, f64::INFINITY, 1.0, NOW + 400.0 * 86_400.0] {
            let mut times = one_request();
            times.entries[0].last_request_timestamp = Some(bad_time);
            assert!(refused(&times).contains("implausible times"), "{bad_time}");
        }
        let mut total = one_request();
        total.entries[0].total_response_time_us = u64::MAX;
        assert!(refused(&total).contains("out of range"));
        // Many untimed requests do not lift the bound on the sums past 2^56.
        let mut untimed = one_request();
        untimed.entries[0].histogram = LatencyHistogram::new().to_bytes().unwrap();
        (untimed.entries[0].num_requests, untimed.entries[0].num_none_requests) = (1 << 25, 1 << 25);
        untimed.entries[0].total_ttfb_us = u64::MAX;
        assert!(refused(&untimed).contains("out of range"));
        // Histograms that would take more than 256 MiB decoded, refused
        // from their headers before any is decoded.
        let mut wide = one_request();
        let mut header = wide.entries[0].histogram.clone();
        header[24..32].copy_from_slice(&(1u64 << 42).to_be_bytes());
        let entry = wide.entries[0].clone();
        wide.entries = (0..1_000)
            .map(|i| proto::Entry { name: format!("/{i}"), histogram: header.clone(), ..entry.clone() })
            .collect();
        assert!(refused(&wide).contains("MiB decoded"), "{}", refused(&wide));

        // Five significant digits announced: refused before decoding.
        let mut precise = one_request();
        precise.entries[0].histogram[12..16].copy_from_slice(&5u32.to_be_bytes());
        assert!(refused(&precise).contains("5 significant digits"), "{}", refused(&precise));

        // A second at u64::MAX would prune every real second from the
        // master's window: it is left out, the totals kept.
        let mut far = one_request();
        far.entries[0].per_second.push(proto::SecondCount { second: u64::MAX, requests: 1, failures: 0 });
        far.entries[0].per_second.push(proto::SecondCount { second: NOW as u64 + 3_600, requests: 1, failures: 0 });
        let checked = report_to_delta(&far, NOW).unwrap();
        assert_eq!(checked.seconds_left_out, 2);
        assert_eq!(checked.delta.entries[0].num_requests, 1);
        assert_eq!(checked.delta.entries[0].per_second.requests_by_second().collect::<Vec<_>>(), [(NOW as u64, 1)]);
    }
}
