//! The read model every surface renders: merged statistics, chart
//! history, runner state and user counts; and, beside it, a master's
//! [`WorkerRoster`] (the only cluster-only part, kept out of the store).
//!
//! Runners write it (the local actor once a second, a cluster master on
//! each worker report); surfaces (web UI, console, reports, Prometheus)
//! read it through a [`StatsView`]. Plans get a [`StatsReader`], which can
//! only read.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use swarmer_stats::{History, HistoryPoint, NodeUsage, RequestStats};

use crate::cpu::ProcessUsage;
use crate::lock::LockExt;
use crate::threshold::Judged;

/// Locust's runner states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerState {
    /// No test has run yet.
    Ready,
    /// Users are being started towards the target.
    Spawning,
    /// Every user of the target is running.
    Running,
    /// Users are being stopped, each within the stop timeout.
    Stopping,
    /// The test is over; it can be started again.
    Stopped,
}

impl RunnerState {
    /// The lower-case name Locust uses: `ready`, `spawning`, `running`, `stopping` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Ready => "ready",
            RunnerState::Spawning => "spawning",
            RunnerState::Running => "running",
            RunnerState::Stopping => "stopping",
            RunnerState::Stopped => "stopped",
        }
    }

    /// The state named `name` (as [`RunnerState::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Ready, Self::Spawning, Self::Running, Self::Stopping, Self::Stopped]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

/// A worker's state as its master sees it: the runner state it last
/// reported, or missing (silent, or its connection dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Connected; no test has run on it yet.
    Ready,
    /// Starting its share of the users.
    Spawning,
    /// Running its share of the users.
    Running,
    /// Stopping its users.
    Stopping,
    /// Its users have stopped.
    Stopped,
    /// Silent past the heartbeat timeout, or its connection dropped; its users are
    /// given to other workers.
    Missing,
}

impl From<RunnerState> for WorkerState {
    fn from(state: RunnerState) -> Self {
        match state {
            RunnerState::Ready => WorkerState::Ready,
            RunnerState::Spawning => WorkerState::Spawning,
            RunnerState::Running => WorkerState::Running,
            RunnerState::Stopping => WorkerState::Stopping,
            RunnerState::Stopped => WorkerState::Stopped,
        }
    }
}

/// Everything surfaces read, behind one mutex taken once a second by the
/// runner and whenever a surface renders.
pub struct StatsStore {
    /// The merged request statistics of the test.
    pub stats: RequestStats,
    /// One point per second of the test, for the charts and the history CSV.
    pub history: History,
    /// The runner's state.
    pub state: RunnerState,
    /// Users running now (on a master, summed over its workers).
    pub user_count: usize,
    /// Users the current ramp goes to.
    pub target_user_count: usize,
    /// The latest test's arrival rate, described (`None`: a closed model).
    pub arrival: Option<String>,
    /// Users running per class name.
    pub class_counts: BTreeMap<String, usize>,
    /// This process's CPU and memory at the latest sample.
    pub usage: ProcessUsage,
    /// Unix time the current (or latest) test started; `None` before the first test.
    pub test_started: Option<f64>,
    /// Unix time the latest test stopped; `None` while a test runs or before the first.
    pub test_stopped: Option<f64>,
    /// What a reader of the results must know (a worker lost mid-test).
    pub notes: Vec<String>,
    /// Errors raised by the plan's own code outside users (a listener, a
    /// message handler, a background coroutine): the run exits with 2, as
    /// Locust's does after an unhandled exception in such code.
    pub plan_errors: u64,
    /// The exit code the plan asked for (Locust's
    /// `environment.process_exit_code`); it wins over every other reason.
    pub process_exit_code: Option<i32>,
    /// The exit code when requests failed or users raised (`--exit-code-on-error`).
    pub exit_code_on_error: i32,
    /// The load shape driving the test, while one does.
    pub shape: Option<ShapeStatus>,
    /// The name of the load shape every test of this runner follows
    /// (`--phases`, a Rust test's), if it has one: the start form says so.
    pub shape_name: Option<String>,
    /// Where each step of the test's shape (each phase) began, oldest
    /// first, with the totals at that moment: marks in the charts, and
    /// per-step totals in the reports.
    pub step_marks: Vec<StepMark>,
    /// The run's thresholds (`--threshold`) with their verdicts so far,
    /// refreshed each second while a test runs and at its end.
    pub thresholds: Vec<Judged>,
    /// The most users this process runs for the rest of the test: set
    /// when `--memory-limit` shed users (a worker tells its master, which
    /// moves them to workers with room); `None` otherwise.
    pub user_cap: Option<usize>,
}

/// What the web UI shows of a load shape driving the test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShapeStatus {
    /// The shape's name (a phases file's name).
    pub name: String,
    /// The current step's name (the phase's), if it has one.
    pub step: Option<String>,
    /// The current step's number, from 1.
    pub step_number: usize,
    /// Unix time the current step ends, if known.
    pub step_ends: Option<f64>,
    /// The load was changed by hand: the shape no longer drives it.
    pub paused: bool,
}

/// The moment a step of the shape (a phase) began.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepMark {
    /// Unix time.
    pub time: f64,
    /// The step's name.
    pub label: String,
    /// Requests of the whole test so far, at that moment (a step's totals
    /// are the difference to the next mark's).
    pub requests: u64,
    /// Failures so far, likewise.
    pub failures: u64,
    /// Summed response time so far, microseconds.
    pub total_response_time_us: u64,
    /// Requests so far by `"METHOD name"`, likewise.
    pub requests_by_name: BTreeMap<String, u64>,
    /// Users per class at the step's latest second (at its end, once it is over).
    pub class_counts: BTreeMap<String, usize>,
}

/// A worker as a master sees it (Locust's `workers[]` entries).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerStatus {
    /// The worker's id (unique in the cluster).
    pub id: String,
    /// The worker's state as the master last saw it.
    pub state: WorkerState,
    /// Users running on the worker, from its latest heartbeat.
    pub user_count: usize,
    /// Percent of one core.
    pub cpu_usage: f64,
    /// Resident memory, bytes.
    pub memory_usage: u64,
    /// CPU cores the worker offers; its share of the users is weighed by them.
    pub cores: u32,
    /// Why the worker left, when it could not run the test (it cannot load
    /// the plan, say); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StatsStore {
    /// A store in `state` over `stats` and `history`, with no users, tests or notes.
    pub fn new(state: RunnerState, stats: RequestStats, history: History) -> Self {
        Self {
            stats,
            history,
            state,
            user_count: 0,
            target_user_count: 0,
            arrival: None,
            class_counts: BTreeMap::new(),
            usage: ProcessUsage::default(),
            test_started: None,
            test_stopped: None,
            notes: Vec::new(),
            plan_errors: 0,
            process_exit_code: None,
            exit_code_on_error: 1,
            shape: None,
            shape_name: None,
            step_marks: Vec::new(),
            thresholds: Vec::new(),
            user_cap: None,
        }
    }

    /// The code the process exits with, in Locust's order: the plan's own
    /// choice, then `exit_code_on_error` after failures or exceptions, then
    /// 2 after an error in the plan's code outside users, else 0.
    pub fn exit_code(&self) -> i32 {
        if let Some(code) = self.process_exit_code {
            code
        } else if self.stats.error_count() > 0 {
            self.exit_code_on_error
        } else if self.plan_errors > 0 {
            2
        } else {
            0
        }
    }

    /// Record a state change, and when a test started or stopped.
    pub fn set_state(&mut self, state: RunnerState, now: f64) {
        self.state = state;
        match state {
            RunnerState::Spawning if self.test_started.is_none() || self.test_stopped.is_some() => {
                self.test_started = Some(now);
                self.test_stopped = None;
            }
            RunnerState::Stopped => self.test_stopped = Some(now),
            _ => {}
        }
    }

    /// Mark the start of a step of the test's shape (a phase), now.
    pub fn mark_step(&mut self, label: &str, now: f64) {
        let mut mark = StepMark {
            time: now,
            label: label.to_owned(),
            requests: 0,
            failures: 0,
            total_response_time_us: 0,
            requests_by_name: BTreeMap::new(),
            class_counts: self.class_counts.clone(),
        };
        self.count_into(&mut mark);
        self.step_marks.push(mark);
    }

    /// Take the latest mark's totals again: once the statistics recorded
    /// before the step began have all arrived (shards and workers hand
    /// theirs over once a second; the runner flushes them at a step), so
    /// none of the previous step's requests count in the new one.
    pub fn settle_last_mark(&mut self) {
        if let Some(mut mark) = self.step_marks.pop() {
            self.count_into(&mut mark);
            self.step_marks.push(mark);
        }
    }

    fn count_into(&self, mark: &mut StepMark) {
        let total = self.stats.total();
        mark.requests = total.num_requests;
        mark.failures = total.num_failures;
        mark.total_response_time_us = total.total_response_time_us;
        mark.requests_by_name =
            self.stats.entries().map(|e| (format!("{} {}", e.method, e.name), e.num_requests)).collect();
    }

    /// Append this second's point to the chart history (aggregated rates,
    /// current percentiles, users).
    pub fn sample_history(&mut self, now: f64) {
        self.sample_history_of_nodes(now, None);
    }

    /// [`StatsStore::sample_history`], with the CPU and memory of the
    /// nodes the test runs on (a master's workers).
    pub fn sample_history_of_nodes(&mut self, now: f64, nodes: Option<NodeUsage>) {
        // A step keeps the users it ran with: the stop at the end of the
        // test empties the counts, and the last step must not show that.
        let running = matches!(self.state, RunnerState::Spawning | RunnerState::Running);
        if let Some(step) = self.step_marks.last_mut().filter(|_| running) {
            step.class_counts.clone_from(&self.class_counts);
        }
        let total = self.stats.total();
        let (rps, fps) = total.current_rates(now);
        let point = HistoryPoint {
            timestamp: now,
            user_count: self.user_count as u64,
            current_rps: rps,
            current_fail_per_sec: fps,
            response_time_percentile_50: self.stats.current_percentile_ms(0.5, now),
            response_time_percentile_95: self.stats.current_percentile_ms(0.95, now),
            response_time_percentile_99: self.stats.current_percentile_ms(0.99, now),
            total_avg_response_time: total.avg_response_time_ms(),
            current_dropped_per_sec: self
                .arrival
                .is_some()
                .then(|| self.stats.iterations().current_rates(now, self.stats.start_time()).1),
            corrected_percentile_95: self.stats.current_corrected_percentile_ms(0.95, now),
            corrected_percentile_99: self.stats.current_corrected_percentile_ms(0.99, now),
            nodes,
        };
        self.history.push(point);
    }
}

/// Shared read access to the runner's statistics.
pub type StatsView = Arc<Mutex<StatsStore>>;

/// A cluster master's workers as it last saw them (Locust's `workers[]`):
/// written by the master's loop, read by surfaces and plans. Cheap to clone.
#[derive(Clone, Default)]
pub struct WorkerRoster(Arc<Mutex<Vec<WorkerStatus>>>);

impl WorkerRoster {
    /// Replace the list (the master's loop, once a second and on changes).
    pub fn publish(&self, workers: Vec<WorkerStatus>) {
        *self.0.lock_or_recover() = workers;
    }

    /// Every worker known, missing ones included.
    pub fn all(&self) -> Vec<WorkerStatus> {
        self.0.lock_or_recover().clone()
    }

    /// The ids of the workers connected and not missing.
    pub fn live_ids(&self) -> Vec<String> {
        self.0.lock_or_recover().iter().filter(|w| w.state != WorkerState::Missing).map(|w| w.id.clone()).collect()
    }

    /// How many workers are connected and not missing.
    pub fn live_count(&self) -> usize {
        self.0.lock_or_recover().iter().filter(|w| w.state != WorkerState::Missing).count()
    }
}

/// Read-only access to a runner's [`StatsStore`], for plans: live totals,
/// the state, the user count. Cheap to clone.
#[derive(Clone)]
pub struct StatsReader(StatsView);

impl StatsReader {
    /// Reads through `view`.
    pub fn new(view: StatsView) -> Self {
        Self(view)
    }

    /// A store of its own, empty (inspecting a plan outside a run).
    pub fn detached() -> Self {
        Self(Arc::new(Mutex::new(StatsStore::new(RunnerState::Ready, RequestStats::new(0.0), History::default()))))
    }

    /// The store as it is now; hold the guard briefly (the runner waits
    /// for it to merge statistics).
    pub fn read(&self) -> StatsGuard<'_> {
        StatsGuard(self.0.lock_or_recover())
    }

    /// Count one of [`StatsStore::plan_errors`] (the only write a reader may make).
    pub(crate) fn record_plan_error(&self) {
        self.0.lock_or_recover().plan_errors += 1;
    }

    /// Set (or clear) [`StatsStore::process_exit_code`].
    pub(crate) fn set_process_exit_code(&self, code: Option<i32>) {
        self.0.lock_or_recover().process_exit_code = code;
    }
}

/// A read-only borrow of the [`StatsStore`] (see [`StatsReader::read`]).
pub struct StatsGuard<'a>(MutexGuard<'a, StatsStore>);

impl Deref for StatsGuard<'_> {
    type Target = StatsStore;

    fn deref(&self) -> &StatsStore {
        &self.0
    }
}

/// The note the results carry once samples of names past
/// [`swarmer_stats::MOST_NAMES`] are folded into one row.
pub fn folding_note() -> String {
    format!(
        "More than {} different request names: the samples of further names are counted together in the row \
         {:?}. Group dynamic URLs with a request name (e.g. /item?id=[id]).",
        swarmer_stats::MOST_NAMES,
        swarmer_stats::FOLDED_NAME
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stop at the end of a test empties the class counts; the last
    /// step still shows the users it ran with.
    #[test]
    fn a_step_keeps_the_users_it_ran_with_after_the_test_stops() {
        let mut store = StatsStore::new(RunnerState::Ready, RequestStats::new(0.0), History::default());
        store.set_state(RunnerState::Running, 1.0);
        store.mark_step("only", 1.0);
        store.class_counts = BTreeMap::from([("A".to_owned(), 3)]);
        store.sample_history(2.0);
        store.set_state(RunnerState::Stopping, 3.0);
        store.class_counts = BTreeMap::from([("A".to_owned(), 0)]);
        store.sample_history(3.0);
        store.set_state(RunnerState::Stopped, 4.0);
        store.sample_history(4.0);
        assert_eq!(store.step_marks[0].class_counts["A"], 3);
    }
}
