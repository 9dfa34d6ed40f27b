//! `--junit FILE`: the thresholds' verdicts as JUnit XML, one test case per
//! threshold, so CI dashboards (GitLab, Jenkins, GitHub test reporters)
//! show each one as passed or failed.

use swarmer_engine::StatsStore;
use swarmer_engine::threshold::Judged;
use swarmer_stats::utc_timestamp;

use crate::html::escape;

/// The XML document for the `judged` thresholds of the test in `store`;
/// the suite's time is the test's duration.
pub fn render(store: &StatsStore, judged: &[Judged], now: f64) -> String {
    let started = store.stats.start_time();
    let seconds = store.test_stopped.unwrap_or(now) - started;
    let mut cases = String::new();
    let mut failures = 0;
    for Judged { threshold, verdict } in judged {
        let name = escape(&threshold.source);
        cases.push_str(&format!("    <testcase classname=\"swarmer.thresholds\" name=\"{name}\" time=\"0\""));
        if verdict.passed {
            cases.push_str("/>\n");
            continue;
        }
        failures += 1;
        let message = match verdict.actual {
            Some(actual) => format!("{} was {}", threshold.source, threshold.format_value(actual)),
            None => format!("{}: no requests in its scope", threshold.source),
        };
        let message = escape(&message);
        cases.push_str(&format!(">\n      <failure type=\"threshold\" message=\"{message}\">{message}</failure>\n"));
        cases.push_str("    </testcase>\n");
    }
    let tests = judged.len();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"swarmer\" tests=\"{tests}\" failures=\"{failures}\" time=\"{seconds:.3}\">\n  \
         <testsuite name=\"thresholds\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" \
         time=\"{seconds:.3}\" timestamp=\"{}\">\n{cases}  </testsuite>\n</testsuites>\n",
        utc_timestamp(started).trim_end_matches('Z')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_engine::RunnerState;
    use swarmer_engine::threshold::Threshold;
    use swarmer_engine::threshold_watch::ThresholdWatch;
    use swarmer_stats::{History, RequestSample, RequestStats, ShardRecorder};

    #[test]
    fn each_threshold_is_a_case_and_a_crossed_one_says_by_how_much() {
        let mut recorder = ShardRecorder::new("local");
        let sample = RequestSample {
            method: "GET",
            name: "/a",
            response_time_us: Some(250_000),
            ttfb_us: 0,
            content_length: 0,
            error: None,
        };
        recorder.record(&sample, 10.0);
        let mut stats = RequestStats::new(0.0);
        stats.apply(&recorder.take_delta(), 10.0);
        let store = StatsStore::new(RunnerState::Stopped, stats, History::default());
        let thresholds: Vec<Threshold> =
            ["p95<1s", "max<100ms", "[<b>] requests>0"].iter().map(|t| Threshold::parse(t).unwrap()).collect();
        let judged = ThresholdWatch::new(thresholds).verdicts(&store.stats);
        let xml = render(&store, &judged, 10.0);
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"swarmer\" tests=\"3\"")
        );
        assert!(xml.contains("<testsuite name=\"thresholds\" tests=\"3\" failures=\"2\" errors=\"0\" skipped=\"0\""));
        assert!(xml.contains("timestamp=\"1970-01-01T00:00:00\""));
        assert!(xml.contains("<testcase classname=\"swarmer.thresholds\" name=\"p95&lt;1s\" time=\"0\"/>"));
        assert!(xml.contains("<failure type=\"threshold\" message=\"max&lt;100ms was 250ms\">"));
        assert!(xml.contains("message=\"[&lt;b&gt;] requests&gt;0: no requests in its scope\""));
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert!(xml.ends_with("  </testsuite>\n</testsuites>\n"));
    }
}
