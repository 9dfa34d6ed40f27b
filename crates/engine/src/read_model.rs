//! The read model every surface renders: merged statistics, chart
//! history, runner state, user counts and, on a master, its workers.
//!
//! Runners write it (the local actor once a second, a cluster master on
//! each worker report); surfaces (web UI, console, reports, Prometheus)
//! read it through a [`StatsView`]. Plans get a [`StatsReader`], which can
//! only read.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use swarmer_stats::{History, HistoryPoint, RequestStats};

use crate::cpu::ProcessUsage;
use crate::lock::LockExt;

/// Locust's runner states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerState {
    Ready,
    Spawning,
    Running,
    Stopping,
    Stopped,
}

impl RunnerState {
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
    Ready,
    Spawning,
    Running,
    Stopping,
    Stopped,
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
    pub stats: RequestStats,
    pub history: History,
    pub state: RunnerState,
    pub user_count: usize,
    pub target_user_count: usize,
    pub class_counts: BTreeMap<String, usize>,
    pub usage: ProcessUsage,
    pub test_started: Option<f64>,
    pub test_stopped: Option<f64>,
    /// On a cluster master, its workers; `None` elsewhere.
    pub workers: Option<Vec<WorkerStatus>>,
    /// What a reader of the results must know (a worker lost mid-test).
    pub notes: Vec<String>,
}

/// A worker as a master sees it (Locust's `workers[]` entries).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub id: String,
    pub state: WorkerState,
    pub user_count: usize,
    /// Percent of one core.
    pub cpu_usage: f64,
    /// Resident memory, bytes.
    pub memory_usage: u64,
    pub cores: u32,
}

impl StatsStore {
    pub fn new(state: RunnerState, stats: RequestStats, history: History) -> Self {
        Self {
            stats,
            history,
            state,
            user_count: 0,
            target_user_count: 0,
            class_counts: BTreeMap::new(),
            usage: ProcessUsage::default(),
            test_started: None,
            test_stopped: None,
            workers: None,
            notes: Vec::new(),
        }
    }

    /// On a master: the workers connected and not missing.
    pub fn live_workers(&self) -> impl Iterator<Item = &WorkerStatus> {
        self.workers.iter().flatten().filter(|w| w.state != WorkerState::Missing)
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

    /// Append this second's point to the chart history (aggregated rates,
    /// current percentiles, users).
    pub fn sample_history(&mut self, now: f64) {
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
        };
        self.history.push(point);
    }
}

/// Shared read access to the runner's statistics.
pub type StatsView = Arc<Mutex<StatsStore>>;

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
}

/// A read-only borrow of the [`StatsStore`] (see [`StatsReader::read`]).
pub struct StatsGuard<'a>(MutexGuard<'a, StatsStore>);

impl Deref for StatsGuard<'_> {
    type Target = StatsStore;

    fn deref(&self) -> &StatsStore {
        &self.0
    }
}
