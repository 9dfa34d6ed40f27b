//! The merged statistics of a whole test: what every surface reads.
//!
//! Deltas from shards (and later workers) are applied with
//! [`RequestStats::apply`]. Entries are kept sorted by `(name, method)`, the
//! order Locust prints them in. The "Aggregated" total is maintained
//! alongside, and a ring of the last ten seconds of aggregated histograms
//! gives the *current* (windowed) percentiles that charts show (one ring
//! for the measured times, one for the corrected ones).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};

use crate::delta::StatsDelta;
use crate::entry::StatsEntry;
use crate::errors::{ExceptionEntry, FailureEntry};
use crate::histogram::LatencyHistogram;
use crate::iterations::Iterations;

/// Above this many distinct request names the numbers get hard to read and
/// memory grows; Locust warns once, and so do we.
pub const TOO_MANY_NAMES: usize = 500;

/// The most request names kept apart (each costs about 19 KiB): samples of
/// further names are counted in one row per method, [`FOLDED_NAME`], on a
/// worker and on its master alike.
pub const MOST_NAMES: usize = 2_000;
/// The row that counts the samples of names past [`MOST_NAMES`].
pub const FOLDED_NAME: &str = "(other names, past the first 2000)";
/// Folded rows are one per method, for this many methods; further
/// methods share the row of [`FOLDED_METHOD`] (a peer could invent any).
const MOST_FOLDED_METHODS: usize = 16;
/// The method of the folded row past [`MOST_FOLDED_METHODS`].
pub const FOLDED_METHOD: &str = "(other)";
/// The most failure rows (method, name, error) and exception rows
/// (message, location) kept apart: an error text can carry anything (a
/// server's message, a time); further ones are counted under the
/// [`FOLDED_ERROR`] row of their name, or the [`FOLDED_ERROR`] exception.
pub const MOST_ERRORS: usize = 2_000;
/// The error (or exception message) of the rows past [`MOST_ERRORS`].
pub const FOLDED_ERROR: &str = "(other errors, past the first 2000)";

/// Seconds of aggregated histograms kept for current percentiles.
const CURRENT_PERCENTILE_WINDOW_SECONDS: u64 = 10;

/// All statistics of one test, merged.
#[derive(Clone, Debug)]
pub struct RequestStats {
    entries: BTreeMap<(String, String), StatsEntry>,
    total: StatsEntry,
    failures: BTreeMap<(String, String, String), FailureEntry>,
    exceptions: BTreeMap<(String, String), ExceptionEntry>,
    recent: Recent,
    /// Response times from the intended start, where requests had one.
    corrected: BTreeMap<(String, String), StatsEntry>,
    corrected_total: StatsEntry,
    recent_corrected: Recent,
    iterations: Iterations,
    start_time: f64,
    /// See [`RequestStats::set_rate_lag`].
    rate_lag: u64,
}

impl RequestStats {
    /// Empty statistics whose run starts at Unix time `start_time`.
    pub fn new(start_time: f64) -> Self {
        Self {
            entries: BTreeMap::new(),
            total: StatsEntry::new("", "Aggregated", start_time),
            failures: BTreeMap::new(),
            exceptions: BTreeMap::new(),
            recent: Recent::default(),
            corrected: BTreeMap::new(),
            corrected_total: StatsEntry::new("", "Aggregated", start_time),
            recent_corrected: Recent::default(),
            iterations: Iterations::default(),
            start_time,
            rate_lag: 0,
        }
    }

    /// End the current-rate windows `seconds` earlier than Locust's two
    /// seconds ago, in every row and in rows made later: a master whose
    /// workers report every few seconds (backpressure) has the latest
    /// seconds only in part. Kept across resets.
    pub fn set_rate_lag(&mut self, seconds: u64) {
        self.rate_lag = seconds;
        let rows = self.entries.values_mut().chain(self.corrected.values_mut());
        for entry in rows.chain([&mut self.total, &mut self.corrected_total]) {
            entry.per_second.set_lag(seconds);
        }
        self.iterations.per_second.set_lag(seconds);
    }

    /// A new row, with the current-rate lag.
    fn row(method: &str, name: &str, start: f64, lag: u64) -> StatsEntry {
        let mut entry = StatsEntry::new(method, name, start);
        entry.per_second.set_lag(lag);
        entry
    }

    /// Fold a delta in. `now` (Unix seconds) files the delta's histogram
    /// under the current second for the windowed percentiles.
    pub fn apply(&mut self, delta: &StatsDelta, now: f64) {
        let sec = now as u64;
        for e in &delta.entries {
            let key = Self::kept_key(&self.entries, &e.name, &e.method);
            let (start, lag) = (self.start_time, self.rate_lag);
            self.entries.entry(key).or_insert_with_key(|(name, method)| Self::row(method, name, start, lag)).merge(e);
            self.total.merge(e);
            self.recent.add(sec, &e.histogram);
        }
        self.recent.trim(sec);
        for e in &delta.corrected {
            let key = Self::kept_key(&self.corrected, &e.name, &e.method);
            let (start, lag) = (self.start_time, self.rate_lag);
            self.corrected.entry(key).or_insert_with_key(|(name, method)| Self::row(method, name, start, lag)).merge(e);
            self.corrected_total.merge(e);
            self.recent_corrected.add(sec, &e.histogram);
        }
        self.recent_corrected.trim(sec);
        self.iterations.merge(&delta.iterations);
        for f in &delta.failures {
            // A failure is listed under its row's name and method (folded or not).
            let (name, method) = match self.entries.contains_key(&(f.name.clone(), f.method.clone())) {
                true => (f.name.clone(), f.method.clone()),
                false => Self::kept_key(&self.entries, &f.name, &f.method),
            };
            let mut key = (method, name, f.error.clone());
            if self.failures.len() >= MOST_ERRORS && !self.failures.contains_key(&key) {
                key.2 = FOLDED_ERROR.to_owned();
            }
            match self.failures.entry(key) {
                Entry::Occupied(mut row) => row.get_mut().merge(f),
                Entry::Vacant(row) => {
                    let (method, name, error) = row.key().clone();
                    row.insert(FailureEntry { method, name, error, ..f.clone() });
                }
            }
        }
        for x in &delta.exceptions {
            let mut key = (x.msg.clone(), x.traceback.clone());
            if self.exceptions.len() >= MOST_ERRORS && !self.exceptions.contains_key(&key) {
                key = (FOLDED_ERROR.to_owned(), String::new());
            }
            match self.exceptions.entry(key) {
                Entry::Occupied(mut row) => row.get_mut().merge(x),
                Entry::Vacant(row) => {
                    let (msg, traceback) = row.key().clone();
                    row.insert(ExceptionEntry { msg, traceback, ..x.clone() });
                }
            }
        }
    }

    /// Forget everything (Locust's `--reset-stats` and "Reset stats" button).
    pub fn reset(&mut self, now: f64) {
        let lag = self.rate_lag;
        *self = Self::new(now);
        self.set_rate_lag(lag);
    }

    /// Entries sorted by `(name, method)`.
    pub fn entries(&self) -> impl Iterator<Item = &StatsEntry> {
        self.entries.values()
    }

    /// The entry for `method` and `name`; `None` if that pair was never recorded.
    pub fn entry(&self, method: &str, name: &str) -> Option<&StatsEntry> {
        self.entries.get(&(name.to_owned(), method.to_owned()))
    }

    /// The "Aggregated" row.
    pub fn total(&self) -> &StatsEntry {
        &self.total
    }

    /// Corrected entries (response times from the intended start), sorted
    /// by `(name, method)`; empty unless requests had a schedule.
    pub fn corrected_entries(&self) -> impl Iterator<Item = &StatsEntry> {
        self.corrected.values()
    }

    /// The corrected entry for `method` and `name`, if any.
    pub fn corrected_entry(&self, method: &str, name: &str) -> Option<&StatsEntry> {
        self.corrected.get(&(name.to_owned(), method.to_owned()))
    }

    /// The "Aggregated" row of the corrected entries.
    pub fn corrected_total(&self) -> &StatsEntry {
        &self.corrected_total
    }

    /// Whether any request had a schedule (the corrected table has rows).
    pub fn has_corrected(&self) -> bool {
        !self.corrected.is_empty()
    }

    /// Arrival-rate iterations started and dropped.
    pub fn iterations(&self) -> &Iterations {
        &self.iterations
    }

    /// Failures grouped and sorted by `(method, name, error)`.
    pub fn failures(&self) -> impl Iterator<Item = &FailureEntry> {
        self.failures.values()
    }

    /// Exceptions grouped and sorted by `(message, location)`.
    pub fn exceptions(&self) -> impl Iterator<Item = &ExceptionEntry> {
        self.exceptions.values()
    }

    /// The key a sample of `(name, method)` is counted under in `rows`:
    /// its own, or the folded row's once [`MOST_NAMES`] names are kept.
    fn kept_key(rows: &BTreeMap<(String, String), StatsEntry>, name: &str, method: &str) -> (String, String) {
        let own = (name.to_owned(), method.to_owned());
        if rows.len() < MOST_NAMES || rows.contains_key(&own) {
            return own;
        }
        // The folded rows (one per method) sort together: not names kept.
        let folded = rows.range((FOLDED_NAME.to_owned(), String::new())..).take_while(|((n, _), _)| n == FOLDED_NAME);
        let folded = folded.count();
        if rows.len() - folded < MOST_NAMES {
            return own;
        }
        let row = (FOLDED_NAME.to_owned(), method.to_owned());
        if folded < MOST_FOLDED_METHODS || rows.contains_key(&row) {
            row
        } else {
            (FOLDED_NAME.to_owned(), FOLDED_METHOD.to_owned())
        }
    }

    /// Whether samples of names past [`MOST_NAMES`] were folded into one row.
    pub fn folded_names(&self) -> bool {
        self.entries.keys().any(|(name, _)| name == FOLDED_NAME)
    }

    /// Number of distinct `(method, name)` entries, compared with [`TOO_MANY_NAMES`].
    pub fn num_names(&self) -> usize {
        self.entries.len()
    }

    /// Unix time the statistics started (or were last reset).
    pub fn start_time(&self) -> f64 {
        self.start_time
    }

    /// Response time (ms) at `quantile` over the last ten seconds, all names.
    pub fn current_percentile_ms(&self, quantile: f64, now: f64) -> f64 {
        self.recent.percentile_ms(quantile, now)
    }

    /// The same over the corrected times (from the intended start), all
    /// names; `None` unless requests had a schedule.
    pub fn current_corrected_percentile_ms(&self, quantile: f64, now: f64) -> Option<f64> {
        // An empty window (no scheduled request for ten seconds) is a gap.
        (self.has_corrected() && self.recent_corrected.any(now))
            .then(|| self.recent_corrected.percentile_ms(quantile, now))
    }

    /// Seconds from the start (or last reset) to the latest request: the
    /// denominator of whole-run rates.
    pub fn run_seconds(&self) -> f64 {
        self.total.last_request_timestamp.map_or(0.0, |last| (last - self.start_time).max(0.0))
    }

    /// Total number of failures and exceptions: the exit-code criterion.
    pub fn error_count(&self) -> u64 {
        self.total.num_failures + self.exceptions.values().map(|e| e.count).sum::<u64>()
    }
}

/// The last ten seconds of aggregated histograms, one per second.
#[derive(Clone, Debug, Default)]
struct Recent(VecDeque<(u64, LatencyHistogram)>);

impl Recent {
    /// File `histogram` under second `sec`.
    fn add(&mut self, sec: u64, histogram: &LatencyHistogram) {
        match self.0.back_mut() {
            Some((s, h)) if *s == sec => h.merge(histogram),
            _ => self.0.push_back((sec, histogram.clone())),
        }
    }

    /// Forget the seconds that left the window at `sec`.
    fn trim(&mut self, sec: u64) {
        while self.0.front().is_some_and(|(s, _)| *s + CURRENT_PERCENTILE_WINDOW_SECONDS <= sec) {
            self.0.pop_front();
        }
    }

    /// Whether the window that ends at `now` has a sample.
    fn any(&self, now: f64) -> bool {
        let sec = now as u64;
        self.0.iter().any(|(s, h)| *s + CURRENT_PERCENTILE_WINDOW_SECONDS > sec && !h.is_empty())
    }

    /// Response time (ms) at `quantile` over the window that ends at `now`.
    fn percentile_ms(&self, quantile: f64, now: f64) -> f64 {
        let sec = now as u64;
        let mut merged = LatencyHistogram::new();
        for (s, h) in &self.0 {
            if *s + CURRENT_PERCENTILE_WINDOW_SECONDS > sec {
                merged.merge(h);
            }
        }
        merged.value_at_quantile(quantile) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{RequestSample, ShardRecorder};

    fn sample(name: &str, rt: u64) -> RequestSample<'_> {
        RequestSample { method: "GET", name, response_time_us: Some(rt), ttfb_us: 0, content_length: 0, error: None }
    }

    #[test]
    fn corrected_times_have_their_own_ten_second_window() {
        let mut stats = RequestStats::new(0.0);
        let mut r = ShardRecorder::new("local");
        r.record(&sample("/", 5_000), 1.0);
        stats.apply(&r.take_delta(), 1.0);
        assert_eq!(stats.current_corrected_percentile_ms(0.99, 1.0), None, "no schedule, no corrected line");
        // A stall: measured 5 ms, but sent 2 s late.
        for _ in 0..10 {
            r.record(&sample("/", 5_000), 2.0);
            r.record_corrected(&sample("/", 5_000), 2_000_000, 2.0);
        }
        stats.apply(&r.take_delta(), 2.0);
        assert!((5.0..5.01).contains(&stats.current_percentile_ms(0.99, 2.0)));
        let corrected = stats.current_corrected_percentile_ms(0.99, 2.0).unwrap();
        assert!((2000.0..2010.0).contains(&corrected), "{corrected}");
        // Ten seconds later the stall has left the window.
        r.record_corrected(&sample("/", 1_000), 0, 12.0);
        stats.apply(&r.take_delta(), 12.0);
        let after = stats.current_corrected_percentile_ms(0.99, 12.0).unwrap();
        assert!((1.0..1.01).contains(&after), "{after}");
        assert!(stats.corrected_total().percentile_ms(0.99) >= 2000.0, "the whole run keeps it");
        // Ten quiet seconds later the window is empty: a gap, not a 0 ms line.
        assert_eq!(stats.current_corrected_percentile_ms(0.99, 23.0), None);
    }

    #[test]
    fn merged_shards_equal_a_single_recorder_exactly() {
        let mut shards: Vec<ShardRecorder> = (0..4).map(|_| ShardRecorder::new("local")).collect();
        let mut single = ShardRecorder::new("local");
        for i in 0..10_000u64 {
            let name = if i % 3 == 0 { "/a" } else { "/b" };
            let rt = i * 7919 % 250_000 + 1;
            shards[(i % 4) as usize].record(&sample(name, rt), 50.0);
            single.record(&sample(name, rt), 50.0);
        }
        let mut merged = RequestStats::new(50.0);
        for s in &mut shards {
            merged.apply(&s.take_delta(), 50.0);
        }
        let mut reference = RequestStats::new(50.0);
        reference.apply(&single.take_delta(), 50.0);
        assert_eq!(merged.total(), reference.total());
        for (a, b) in merged.entries().zip(reference.entries()) {
            assert_eq!(a, b);
        }
        assert_eq!(merged.total().num_requests, 10_000);
    }

    #[test]
    fn entries_are_sorted_by_name_then_method() {
        let mut r = ShardRecorder::new("local");
        r.record(&sample("/z", 1), 1.0);
        r.record(&RequestSample { method: "POST", ..sample("/a", 1) }, 1.0);
        r.record(&sample("/a", 1), 1.0);
        let mut s = RequestStats::new(1.0);
        s.apply(&r.take_delta(), 1.0);
        let order: Vec<_> = s.entries().map(|e| format!("{} {}", e.method, e.name)).collect();
        assert_eq!(order, ["GET /a", "POST /a", "GET /z"]);
    }

    #[test]
    fn current_percentiles_only_see_the_last_ten_seconds() {
        let mut s = RequestStats::new(0.0);
        let mut r = ShardRecorder::new("local");
        r.record(&sample("/", 900_000), 100.0);
        s.apply(&r.take_delta(), 100.0);
        r.record(&sample("/", 1_000), 105.0);
        s.apply(&r.take_delta(), 105.0);
        assert_eq!(s.current_percentile_ms(1.0, 105.0).round(), 900.0);
        r.record(&sample("/", 1_000), 111.0);
        s.apply(&r.take_delta(), 111.0);
        assert_eq!(s.current_percentile_ms(1.0, 111.0), 1.0);
        // The total still remembers the slow one.
        assert_eq!(s.total().max_response_time_ms(), 900.0);
    }

    /// Names past the bound share one row per method, with their failures;
    /// names kept before go on being counted apart.
    #[test]
    fn names_past_the_bound_fold_into_one_row() {
        let mut stats = RequestStats::new(0.0);
        let mut recorder = crate::ShardRecorder::new("s");
        for i in 0..MOST_NAMES + 10 {
            let name = format!("/item/{i}");
            let error = (i >= MOST_NAMES).then_some("boom");
            let sample = crate::RequestSample {
                method: "GET",
                name: &name,
                response_time_us: Some(1_000),
                ttfb_us: 0,
                content_length: 0,
                error,
            };
            recorder.record(&sample, 1.0);
            // (Within one delta, which names come first is not defined.)
            if i + 1 == MOST_NAMES {
                stats.apply(&recorder.take_delta(), 1.0);
            }
        }
        stats.apply(&recorder.take_delta(), 1.0);
        assert_eq!(stats.num_names(), MOST_NAMES + 1);
        assert!(stats.folded_names());
        let folded = stats.entry("GET", FOLDED_NAME).expect("the folded row");
        assert_eq!((folded.num_requests, folded.num_failures), (10, 10));
        assert_eq!(stats.total().num_requests, MOST_NAMES as u64 + 10);
        let failure = stats.failures().next().unwrap();
        assert_eq!((failure.name.as_str(), failure.occurrences), (FOLDED_NAME, 10));
        // A kept name is still its own row.
        let sample = crate::RequestSample {
            method: "GET",
            name: "/item/0",
            response_time_us: Some(1),
            ttfb_us: 0,
            content_length: 0,
            error: None,
        };
        recorder.record(&sample, 2.0);
        stats.apply(&recorder.take_delta(), 2.0);
        assert_eq!(stats.entry("GET", "/item/0").unwrap().num_requests, 2);

        // Past the bound, methods a peer invents fold too: at most
        // MOST_FOLDED_METHODS rows of their own and one for the rest.
        for i in 0..40 {
            let method = format!("M{i}");
            let sample = crate::RequestSample {
                method: &method,
                name: "/new",
                response_time_us: Some(1),
                ttfb_us: 0,
                content_length: 0,
                error: Some("bad"),
            };
            recorder.record(&sample, 3.0);
            stats.apply(&recorder.take_delta(), 3.0);
        }
        let folded_rows = stats.entries().filter(|e| e.name == FOLDED_NAME).count();
        assert_eq!(folded_rows, MOST_FOLDED_METHODS + 1, "GET's and 15 more, then the other methods' row");
        let other = stats.entry(FOLDED_METHOD, FOLDED_NAME).expect("the row of the other methods");
        assert_eq!(other.num_requests, 40 - (MOST_FOLDED_METHODS as u64 - 1));
        let other_failures = stats.failures().find(|f| f.method == FOLDED_METHOD).unwrap();
        assert_eq!((other_failures.name.as_str(), other_failures.occurrences), (FOLDED_NAME, other.num_requests));
    }

    #[test]
    fn failure_and_exception_rows_past_the_bound_fold_into_one() {
        let mut stats = RequestStats::new(0.0);
        let mut recorder = crate::ShardRecorder::new("s");
        for i in 0..MOST_ERRORS + 25 {
            let error = format!("error {i}");
            let sample = crate::RequestSample {
                method: "GET",
                name: "/a",
                response_time_us: Some(1),
                ttfb_us: 0,
                content_length: 0,
                error: Some(&error),
            };
            recorder.record(&sample, 1.0);
            recorder.record_exception(&format!("raised {i}"), "plan.lua:1");
            stats.apply(&recorder.take_delta(), 1.0);
        }
        assert_eq!(stats.failures().count(), MOST_ERRORS + 1);
        let folded = stats.failures().find(|f| f.error == FOLDED_ERROR).unwrap();
        assert_eq!((folded.name.as_str(), folded.occurrences), ("/a", 25));
        assert_eq!(stats.failures().map(|f| f.occurrences).sum::<u64>(), MOST_ERRORS as u64 + 25);
        assert_eq!(stats.exceptions().count(), MOST_ERRORS + 1);
        let folded = stats.exceptions().find(|x| x.msg == FOLDED_ERROR).unwrap();
        assert_eq!(folded.count, 25);
    }
}
