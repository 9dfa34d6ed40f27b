//! The runner: a state machine over the shards (Locust's `LocalRunner`).
//!
//! - `handle`: [`RunnerHandle`], the cloneable, `Send` way every surface
//!   talks to a runner (start, stop, reset, quit, statistics, events). A
//!   cluster master builds one over its own loop with [`RunnerHandle::remote`].
//! - `local`: [`LocalRunner::start`]: check the plan, start the shards and
//!   the actor.
//! - `core`: [`RunnerCore`], the lifecycle every runner shares (state,
//!   host and class selection, target and rate, run time, statistics
//!   epoch, events); the local actor and the cluster master embed it and
//!   differ only in where users are placed.
//! - `actor`: the tokio task that owns the state, the ramp and the merged
//!   statistics. Shards send it statistics deltas once a second; it merges
//!   them into the [`StatsStore`] and samples the history. It never sees
//!   single requests.
//!
//! States follow Locust: ready → spawning → running → stopping → stopped,
//! and a stopped test can be started again.

mod actor;
mod core;
mod handle;
mod local;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use swarmer_http::ClientConfig;
use swarmer_stats::{History, HistoryPoint, RequestStats, StatsDelta};
use tokio::sync::mpsc;

use crate::cpu::ProcessUsage;
use crate::plan::{ClusterMessage, NodeRole};
use crate::tags::TagFilter;

pub use self::core::{Begin, ClassWeight, RunnerCore, sleep_until};
pub use handle::{PlanSummary, RunnerChannels, RunnerCommand, RunnerHandle};
pub use local::LocalRunner;

/// How a runner is set up; fixed for its lifetime.
#[derive(Clone)]
pub struct RunnerOptions {
    /// Number of shard threads (default: one per core).
    pub shards: usize,
    /// Overrides every class's host (`--host`).
    pub host: Option<String>,
    pub client: Arc<ClientConfig>,
    pub tags: TagFilter,
    /// Class names to run (all when empty).
    pub classes: Vec<String>,
    /// Users get this long to finish their task when stopped.
    pub stop_timeout: Duration,
    /// Reset statistics when spawning completes (`--reset-stats`).
    pub reset_stats: bool,
    /// This process's name in reports.
    pub node: String,
    /// Refuse to start the runner when a class has no host and `host` is
    /// not set. A web UI clears it: its start form gives the host.
    pub host_required: bool,
    /// Also hand every statistics delta the shards send to this channel
    /// (a cluster worker forwards them to its master).
    pub delta_sink: Option<mpsc::UnboundedSender<StatsDelta>>,
    /// Local, master or worker (plans can ask).
    pub role: NodeRole,
    /// Where the plan's custom messages go (a cluster connection).
    pub message_out: Option<mpsc::UnboundedSender<ClusterMessage>>,
    /// Use this store instead of a new one (a master's plan runner reads
    /// the cluster's merged statistics and workers through it).
    pub stats: Option<StatsView>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            host: None,
            client: Arc::new(ClientConfig::default_config()),
            tags: TagFilter::default(),
            classes: Vec::new(),
            stop_timeout: Duration::ZERO,
            reset_stats: false,
            node: "local".into(),
            host_required: true,
            delta_sink: None,
            role: NodeRole::Local,
            message_out: None,
            stats: None,
        }
    }
}

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
    /// ready, spawning, running, stopping, stopped, or missing.
    pub state: String,
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
        self.workers.iter().flatten().filter(|w| w.state != "missing")
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

/// Things that happen to a test, for surfaces to react to.
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerEvent {
    TestStarted,
    SpawningComplete {
        user_count: usize,
        class_counts: BTreeMap<String, usize>,
    },
    /// A user asked to stop the whole test (`StopTest`).
    StopTestRequested,
    /// The test's run time is up; the runner stops it.
    RunTimeReached,
    TestStopped,
    Warning(String),
}

/// What a test is started (or re-targeted) with: Locust's start form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestSettings {
    pub users: usize,
    pub spawn_rate: f64,
    /// The host for this test; `None` keeps the current one. Only applied
    /// when no test is running.
    pub host: Option<String>,
    /// The classes to run (Locust's class picker); `None` keeps the current
    /// selection. Only applied when no test is running.
    pub classes: Option<Vec<String>>,
    /// Exact users per class (by the plan's class order), instead of
    /// `users` placed by weight: a cluster worker's share of the test.
    pub class_counts: Option<Vec<usize>>,
    /// Stop the test this long after this start (`--run-time`, the web
    /// form's run time). `None` keeps a running test's limit (a new test
    /// then has none); zero removes it.
    pub run_time: Option<Duration>,
}
