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
//!   them into the [`crate::StatsStore`] and samples the history. It never sees
//!   single requests.
//!
//! States follow Locust: ready → spawning → running → stopping → stopped,
//! and a stopped test can be started again.

mod actor;
mod arrival_split;
mod core;
mod handle;
mod local;
mod memory_guard;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use swarmer_http::ClientConfig;
use swarmer_stats::StatsDelta;
use tokio::sync::mpsc;

use crate::plan::{ClusterMessage, NodeRole};
use crate::read_model::{StatsView, WorkerRoster};
use crate::tags::TagFilter;

pub use self::arrival_split::shards_taking_part;
pub use self::core::{Begin, ClassWeight, RunnerCore, ShapeAction, sleep_until};
pub use handle::{PlanSummary, RunnerChannels, RunnerCommand, RunnerHandle};
pub use local::LocalRunner;

pub use crate::test_settings::{ArrivalSlice, ClassMix, PlanShapeStep, TestSettings};

/// How long the CPU must stay high before the runner warns, unless told.
pub const DEFAULT_CPU_WARNING_AFTER: Duration = Duration::from_secs(10);

/// How a runner is set up; fixed for its lifetime.
#[derive(Clone)]
pub struct RunnerOptions {
    /// Number of shard threads (default: one per core).
    pub shards: usize,
    /// Overrides every class's host (`--host`).
    pub host: Option<String>,
    /// HTTP settings shared by every user's session.
    pub client: Arc<ClientConfig>,
    /// `--tags` / `--exclude-tags`: which tasks run.
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
    /// the cluster's merged statistics through it).
    pub stats: Option<StatsView>,
    /// On a master: its workers, for the plan (`swarmer.workers()`) and
    /// the handle's surfaces.
    pub workers: Option<WorkerRoster>,
    /// The exit code after failed requests or exceptions (`--exit-code-on-error`).
    pub exit_code_on_error: i32,
    /// The load shape that drives every test (`--phases`, a Rust plan's
    /// shape); a worker never has one (its master's drives it).
    pub shape: Option<crate::shape::SharedShape>,
    /// How long the process's CPU must stay above 90% of its shards' cores
    /// before the runner warns (one busy second is no bottleneck).
    pub cpu_warning_after: Duration,
    /// `--cpu-guard`: no users are added while the CPU stays saturated.
    pub cpu_guard: bool,
    /// `--memory-limit`: bytes of resident memory this process keeps
    /// under, warning, then adding no users, then shedding the newest.
    pub memory_limit: Option<u64>,
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
            workers: None,
            exit_code_on_error: 1,
            shape: None,
            cpu_warning_after: DEFAULT_CPU_WARNING_AFTER,
            cpu_guard: false,
            memory_limit: None,
        }
    }
}

/// Things that happen to a test, for surfaces to react to.
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerEvent {
    /// A new test started (after its test-start hooks ran).
    TestStarted,
    /// Every user of the target has been started.
    SpawningComplete {
        /// Users running.
        user_count: usize,
        /// Users running per class name.
        class_counts: BTreeMap<String, usize>,
    },
    /// A user asked to stop the whole test (`StopTest`).
    StopTestRequested,
    /// The plan asked for this load (`swarmer.runner.set_load`) in a runner
    /// that does not place users itself: a master's plan runner.
    LoadRequested(Box<TestSettings>),
    /// The test's run time is up; the runner stops it.
    RunTimeReached,
    /// Every user has stopped: the test is over.
    TestStopped,
    /// Something the operator should know, as text (high CPU, too many request
    /// names, a failed shard).
    Warning(String),
}
