//! Thresholds watched while a test runs: each second it judges the
//! thresholds over a window (`over 30s`) on the trailing window, stops the
//! test on a crossed `abort` threshold once its grace period (`after 10s`)
//! is over, and at the end gives every threshold its verdict: over the
//! whole run, or, for a window, the worst window seen.

use std::collections::VecDeque;

use swarmer_stats::{RequestStats, StatsEntry};

use crate::threshold::{Judged, Threshold, Verdict};

/// Snapshots kept per window: each holds a histogram (up to ~100 KB), so a
/// long window's start is found to within 1/60 of its length instead.
const SNAPSHOTS_PER_WINDOW: f64 = 60.0;

/// The thresholds of one run and what was seen of them so far.
pub struct ThresholdWatch {
    watched: Vec<Watched>,
    /// When the statistics seen last started: a reset (or a new test)
    /// starts the windows again.
    stats_started: f64,
}

struct Watched {
    threshold: Threshold,
    /// For a window: snapshots of its scope's requests, at most
    /// [`SNAPSHOTS_PER_WINDOW`] of them a window apart (a tick apart for
    /// windows up to a minute), back to the newest one at least a window old.
    snapshots: VecDeque<(f64, StatsEntry)>,
    /// For a window: the worst value of a whole window so far.
    worst: Option<f64>,
}

impl ThresholdWatch {
    /// A watch of `thresholds`, nothing seen yet.
    pub fn new(thresholds: Vec<Threshold>) -> Self {
        let watched = thresholds
            .into_iter()
            .map(|threshold| Watched { threshold, snapshots: VecDeque::new(), worst: None })
            .collect();
        Self { watched, stats_started: f64::NAN }
    }

    /// Whether there is anything to watch.
    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// Look at the running test's statistics at Unix time `now` (about
    /// once a second) for a test that started at `started`. Returns the
    /// first `abort` threshold crossed after its grace period, with the
    /// value that crossed it.
    pub fn tick(&mut self, stats: &RequestStats, now: f64, started: f64) -> Option<(&Threshold, f64)> {
        if stats.start_time() != self.stats_started {
            self.stats_started = stats.start_time();
            for watched in &mut self.watched {
                watched.snapshots.clear();
                watched.worst = None;
            }
        }
        let mut abort_on = None;
        for (index, watched) in self.watched.iter_mut().enumerate() {
            let verdict = match watched.threshold.window {
                Some(_) => watched.judge_window(stats, now),
                None if watched.threshold.abort => Some(watched.threshold.evaluate(stats)),
                None => None,
            };
            let graced = now - started >= watched.threshold.abort_grace.as_secs_f64();
            if let Some(Verdict { actual: Some(actual), passed: false }) = verdict
                && watched.threshold.abort
                && graced
                && abort_on.is_none()
            {
                abort_on = Some((index, actual));
            }
        }
        abort_on.map(|(index, actual)| (&self.watched[index].threshold, actual))
    }

    /// Every threshold's verdict on the final statistics.
    pub fn verdicts(&self, stats: &RequestStats) -> Vec<Judged> {
        self.watched
            .iter()
            .map(|w| {
                let verdict = match w.worst {
                    Some(worst) => Verdict { actual: Some(worst), passed: w.threshold.holds(worst) },
                    // No whole window was seen (a run shorter than its
                    // window): the run is the window.
                    None => w.threshold.evaluate(stats),
                };
                Judged { threshold: w.threshold.clone(), verdict }
            })
            .collect()
    }
}

impl Watched {
    /// Snapshot the scope's requests and judge the window that ends now,
    /// once a whole window has passed; keeps the worst value.
    fn judge_window(&mut self, stats: &RequestStats, now: f64) -> Option<Verdict> {
        let window = self.threshold.window?.as_secs_f64();
        let current = self.threshold.entry_of(stats).unwrap_or_else(|| StatsEntry::new("", "", now));
        // Keep one snapshot at least a window old: the start of the window.
        while self.snapshots.len() >= 2 && now - self.snapshots[1].0 >= window {
            self.snapshots.pop_front();
        }
        let verdict = match self.snapshots.front() {
            // Allow a tick's jitter: a window is judged from 90% of its length.
            Some((at, base)) if now - at >= window * 0.9 => {
                let recent = current.since(base, *at);
                self.threshold.judge_window(&recent, now - at)
            }
            _ => None,
        };
        if let Some(Verdict { actual: Some(actual), .. }) = verdict {
            self.worst = Some(match self.worst {
                Some(worst) => self.threshold.worse(worst, actual),
                None => actual,
            });
        }
        // Long windows keep fewer, evenly spaced snapshots.
        let spacing = (window / SNAPSHOTS_PER_WINDOW).max(1.0) * 0.9;
        if self.snapshots.back().is_none_or(|(at, _)| now - at >= spacing) {
            self.snapshots.push_back((now, current));
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_stats::{RequestSample, ShardRecorder};

    /// `count` requests of `ms` each at Unix second `at`, added to `stats`.
    fn record(stats: &mut RequestStats, at: f64, count: usize, ms: u64) {
        let mut recorder = ShardRecorder::new("local");
        let sample = RequestSample {
            method: "GET",
            name: "/",
            response_time_us: Some(ms * 1000),
            ttfb_us: 0,
            content_length: 0,
            error: None,
        };
        for _ in 0..count {
            recorder.record(&sample, at);
        }
        stats.apply(&recorder.take_delta(), at);
    }

    fn watch(texts: &[&str]) -> ThresholdWatch {
        ThresholdWatch::new(texts.iter().map(|t| Threshold::parse(t).unwrap()).collect())
    }

    #[test]
    fn a_window_fails_on_a_stall_the_whole_run_hides() {
        let mut stats = RequestStats::new(0.0);
        let mut w = watch(&["avg<20ms over 2s", "avg<20ms"]);
        // 10 s of 50 fast requests a second, one slow second in the middle.
        for second in 1..=10 {
            let ms = if second == 5 { 100 } else { 2 };
            record(&mut stats, second as f64, 50, ms);
            assert!(w.tick(&stats, second as f64 + 0.5, 0.0).is_none(), "no abort asked for");
        }
        let verdicts = w.verdicts(&stats);
        assert!(!verdicts[0].verdict.passed, "the windows with the slow second: {:?}", verdicts[0]);
        assert!(verdicts[0].verdict.actual.unwrap() >= 40.0, "{:?}", verdicts[0]);
        assert!(verdicts[1].verdict.passed, "over the whole run the stall is diluted: {:?}", verdicts[1]);
    }

    #[test]
    fn a_window_sees_the_quiet_time_of_a_rate() {
        let mut stats = RequestStats::new(0.0);
        let mut w = watch(&["rps>=10 over 2s abort"]);
        record(&mut stats, 1.0, 50, 2);
        assert!(w.tick(&stats, 1.5, 0.0).is_none());
        record(&mut stats, 2.0, 50, 2);
        assert!(w.tick(&stats, 2.5, 0.0).is_none());
        assert!(w.tick(&stats, 3.5, 0.0).is_none(), "the last 2 s held 50 requests");
        let (crossed, actual) = w.tick(&stats, 4.5, 0.0).expect("nothing in the last 2 s");
        assert_eq!((crossed.source.as_str(), actual), ("rps>=10 over 2s abort", 0.0));
    }

    #[test]
    fn an_abort_waits_for_its_grace_period() {
        let mut stats = RequestStats::new(0.0);
        let mut w = watch(&["max<1ms abort after 3s"]);
        record(&mut stats, 1.0, 5, 50);
        assert!(w.tick(&stats, 1.0, 0.0).is_none(), "within the grace period");
        assert!(w.tick(&stats, 2.9, 0.0).is_none());
        let (_, actual) = w.tick(&stats, 3.0, 0.0).expect("crossed after its grace period");
        assert!((actual - 50.0).abs() < 0.1, "{actual}");
    }

    #[test]
    fn a_long_window_keeps_a_bounded_number_of_snapshots() {
        let mut stats = RequestStats::new(0.0);
        let mut w = watch(&["avg<20ms over 1h"]);
        for second in 1..=7200 {
            if second % 60 == 0 {
                record(&mut stats, second as f64, 1, 5);
            }
            w.tick(&stats, second as f64, 0.0);
        }
        let kept = w.watched[0].snapshots.len();
        assert!((60..=70).contains(&kept), "{kept} snapshots for a 1 h window");
        assert_eq!(w.verdicts(&stats)[0].verdict.actual, Some(5.0));
    }

    #[test]
    fn a_new_test_in_the_same_process_starts_its_windows_again() {
        let mut w = watch(&["avg<20ms over 2s"]);
        let mut first = RequestStats::new(0.0);
        for second in 1..=4 {
            record(&mut first, second as f64, 10, if second == 2 { 100 } else { 2 });
            w.tick(&first, second as f64 + 0.5, 0.0);
        }
        assert!(!w.verdicts(&first)[0].verdict.passed, "the first test had a slow window");
        // The second test's statistics start afresh (a new start time).
        let mut second = RequestStats::new(100.0);
        for s in 101..=104 {
            record(&mut second, s as f64, 10, 2);
            w.tick(&second, s as f64 + 0.5, 100.0);
        }
        let verdict = &w.verdicts(&second)[0].verdict;
        assert!(verdict.passed && verdict.actual == Some(2.0), "only the second test's windows: {verdict:?}");
    }

    #[test]
    fn a_run_shorter_than_its_window_is_judged_whole() {
        let mut stats = RequestStats::new(0.0);
        let mut w = watch(&["avg<20ms over 1m"]);
        record(&mut stats, 1.0, 10, 5);
        assert!(w.tick(&stats, 1.5, 0.0).is_none());
        let verdicts = w.verdicts(&stats);
        assert!(verdicts[0].verdict.passed && verdicts[0].verdict.actual == Some(5.0), "{:?}", verdicts[0]);
    }
}
