//! A plan: the user classes of a test, built once per shard.
//!
//! User code holds `Rc`s and closures that are not `Send`, so a plan is not
//! a list of classes but a `Send + Sync` *factory* of them: each shard calls
//! it on its own thread (a Lua front end loads its VM there). The runner
//! calls it once more on its own thread to learn names, weights and tasks.
//!
//! A plan may also have a *process part*: code that runs once per process
//! (Locust's module-level state, `init` and test listeners, message
//! handlers). When the plan has a [`ProcessHost`], the runner adds one
//! shard without users, the process shard, built by the same factory
//! ([`ShardInfo::process`]) on the host's thread; test and notice hooks
//! then run there.

use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::error::{PlanError, SendError};
use crate::plan_options::{OptionValues, PlanOption};
use crate::read_model::{StatsReader, WorkerRoster};
use crate::shard_context::{RequestHook, UserErrorHook};
use crate::tags::TagFilter;
use crate::task::{LocalBoxFuture, TaskKind, TaskSet};
use crate::test_settings::TestSettings;
use crate::threshold::Threshold;
use crate::user_class::UserClass;

type Factory = dyn Fn(&ShardInfo) -> Result<ShardPlan, PlanError> + Send + Sync;
type Hook = dyn Fn() + Send + Sync;

/// A hook a shard runs (test start, test stop, quitting); not `Send`.
pub type ShardHook = Rc<dyn Fn() -> LocalBoxFuture<'static, ()>>;

/// Work for a [`ProcessHost`]: called on the host's thread, it makes a
/// future that runs there to its end.
pub type ProcessJob = Box<dyn FnOnce() -> LocalBoxFuture<'static, ()> + Send>;

/// The thread a plan's process part lives on (a Lua plan's process VM is
/// made on the thread that first loaded the plan, and cannot move).
pub trait ProcessHost: Send + Sync {
    /// Run `job` on the host's thread, in a tokio runtime with time and
    /// I/O and a local task set. Errors when the thread has ended.
    fn run(&self, job: ProcessJob) -> Result<(), String>;
}

/// Something the runner tells every shard about (Locust's events of the
/// same names).
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// Every user of the current target has been started.
    SpawningComplete {
        /// Number of users running.
        user_count: usize,
    },
    /// The statistics were reset (`--reset-stats` after spawning, or a reset request).
    ResetStats,
    /// The test is stopping: its users are being stopped.
    TestStopping,
    /// This process's CPU went above 90% of the cores it uses (sent once).
    CpuWarning {
        /// Percent of one core (200.0 = two cores fully busy).
        cpu_percent: f64,
    },
    /// Every few seconds: this process's CPU (percent of one core) and RSS.
    UsageMonitor {
        /// Percent of one core (200.0 = two cores fully busy).
        cpu_percent: f64,
        /// Resident memory in bytes.
        rss_bytes: u64,
    },
    /// A custom message from another process of the cluster.
    Message(ClusterMessage),
    /// On a master: a heartbeat went to the worker `client_id` (Unix time `timestamp`).
    HeartbeatSent {
        /// The worker's id.
        client_id: String,
        /// Unix time, seconds.
        timestamp: f64,
    },
    /// On a worker: the master's heartbeat arrived (`client_id` is this worker's id).
    HeartbeatReceived {
        /// This worker's id.
        client_id: String,
        /// Unix time, seconds.
        timestamp: f64,
    },
}

/// A custom message between master and workers (Locust's
/// `register_message` / `send_message`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterMessage {
    /// The message type handlers are registered for.
    pub kind: String,
    /// The payload, as JSON text.
    pub data: String,
    /// Sending: the worker to send to (empty: every worker, or the master
    /// from a worker). Received: who sent it (a worker id, or "master").
    pub peer: String,
}

/// What this process is in a test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NodeRole {
    /// A single process runs the test and its users (the default).
    #[default]
    Local,
    /// A cluster master: coordinates workers and runs no users itself.
    Master,
    /// A cluster worker; holds the worker's id.
    Worker(String),
}

impl NodeRole {
    /// `"local"`, `"master"` or `"worker"` (without the worker's id).
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeRole::Local => "local",
            NodeRole::Master => "master",
            NodeRole::Worker(_) => "worker",
        }
    }
}

/// Called for each notice.
pub type NoticeHook = Rc<dyn Fn(Notice) -> LocalBoxFuture<'static, ()>>;
/// Hooks a front end registers per shard (Lua's `swarmer.events`).
#[derive(Clone, Default)]
pub struct ShardHooks {
    /// Run once when the shard has been built, before it reports ready
    /// (Locust's `init`, on the process shard).
    pub init: Vec<ShardHook>,
    /// Run on every shard when a test starts, before its users spawn.
    pub test_start: Vec<ShardHook>,
    /// Run on every shard when a test has stopped.
    pub test_stop: Vec<ShardHook>,
    /// Run on every shard when the process quits, before the last statistics leave.
    pub quitting: Vec<ShardHook>,
    /// Called with every [`Notice`] the runner sends; `None` ignores them.
    pub notice: Option<NoticeHook>,
    /// Called for every request sample recorded on the shard; `None`: no hook.
    pub request: Option<RequestHook>,
    /// Called with the message and location of every exception in user code on the shard.
    pub user_error: Option<UserErrorHook>,
    /// Given, once the shard runs and before `init`, what makes clients
    /// outside users on this shard.
    pub clients: Option<Rc<dyn Fn(crate::client::ClientMaker)>>,
    /// Called last, when the shard has ended (its users, hooks and
    /// statistics are done): a front end lets go of what it built.
    pub close: Option<ShardHook>,
}

/// What a plan factory builds for one shard.
pub struct ShardPlan {
    /// The user classes, in the plan's order.
    pub classes: Vec<UserClass>,
    /// The shard's event hooks.
    pub hooks: ShardHooks,
}

/// Read-only data a front end loads once per process and shares between
/// shards (a CSV of test users, say), keyed by a name of its choosing.
pub type SharedData = Arc<Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>>;

/// What a plan factory is told about the shard it builds for.
#[derive(Clone)]
pub struct ShardInfo {
    /// 0-based index of this shard.
    pub index: usize,
    /// Number of shards in this process.
    pub count: usize,
    /// True when the plan is only being inspected (names, weights), not run:
    /// start no background work then.
    pub probe: bool,
    /// True for the process shard: it runs no users, only the plan's
    /// once-per-process code (see the module doc); its classes are ignored.
    pub process: bool,
    /// The runner's merged statistics, read-only (live totals).
    pub stats: StatsReader,
    /// Data shared by all shards of this process.
    pub shared: SharedData,
    /// Local, master or worker.
    pub role: NodeRole,
    stop_test: Arc<dyn Fn() + Send + Sync>,
    load: Option<Arc<dyn Fn(TestSettings) + Send + Sync>>,
    messages: Option<tokio::sync::mpsc::UnboundedSender<ClusterMessage>>,
    workers: Option<WorkerRoster>,
}

impl ShardInfo {
    pub(crate) fn new(
        index: usize,
        count: usize,
        stats: StatsReader,
        shared: SharedData,
        stop_test: Arc<dyn Fn() + Send + Sync>,
        role: NodeRole,
        messages: Option<tokio::sync::mpsc::UnboundedSender<ClusterMessage>>,
    ) -> Self {
        Self {
            index,
            count,
            probe: false,
            process: false,
            stats,
            shared,
            role,
            stop_test,
            load: None,
            messages,
            workers: None,
        }
    }

    /// This info for the process shard.
    pub fn for_process(mut self) -> Self {
        self.process = true;
        self
    }

    /// On a master: the roster [`ShardInfo::workers`] reads.
    pub(crate) fn with_workers(mut self, workers: Option<WorkerRoster>) -> Self {
        self.workers = workers;
        self
    }

    /// Send a custom message to the master (from a worker) or to workers
    /// (from the master). Errors when this process is not in a cluster.
    pub fn send_message(&self, message: ClusterMessage) -> Result<(), SendError> {
        match &self.messages {
            Some(tx) => tx.send(message).map_err(|_| SendError::Closed),
            None => Err(SendError::NotInCluster),
        }
    }

    /// On a master: the ids of the connected workers (none elsewhere).
    pub fn workers(&self) -> Vec<String> {
        self.workers.as_ref().map(WorkerRoster::live_ids).unwrap_or_default()
    }

    /// For inspecting a plan outside a run.
    pub fn probe() -> Self {
        Self {
            index: 0,
            count: 1,
            probe: true,
            process: false,
            stats: StatsReader::detached(),
            shared: SharedData::default(),
            role: NodeRole::Local,
            stop_test: Arc::new(|| {}),
            load: None,
            messages: None,
            workers: None,
        }
    }

    /// [`ShardInfo::probe`] in the role the process will have.
    pub fn probe_as(role: NodeRole) -> Self {
        Self { role, ..Self::probe() }
    }

    /// Ask the runner to stop the test (Locust's `runner.quit()` from a plan).
    pub fn request_stop_test(&self) {
        (self.stop_test)()
    }

    /// Ask the runner for this load (users, spawn rate, class mix): it
    /// starts a test or re-targets the running one. A worker ignores it
    /// (its master sets the load); a master applies it over its workers.
    pub fn request_load(&self, settings: TestSettings) {
        if let Some(load) = &self.load {
            load(settings)
        }
    }

    /// This info with a way to ask the runner for a load.
    pub(crate) fn with_load(mut self, load: Arc<dyn Fn(TestSettings) + Send + Sync>) -> Self {
        self.load = Some(load);
        self
    }

    /// Count an error the plan's own code raised outside users (a listener,
    /// a message handler, a background coroutine): see
    /// [`crate::StatsStore::plan_errors`].
    pub fn report_plan_error(&self) {
        self.stats.record_plan_error();
    }

    /// Choose the process's exit code (Locust's
    /// `environment.process_exit_code`); `None` leaves it to the results.
    pub fn set_process_exit_code(&self, code: Option<i32>) {
        self.stats.set_process_exit_code(code);
    }
}

/// The user classes of a test and its test-level hooks.
#[derive(Clone)]
pub struct Plan {
    /// Shown in reports (a file name, or the program's name).
    pub name: String,
    factory: Arc<Factory>,
    process_host: Option<Arc<dyn ProcessHost>>,
    pub(crate) on_test_start: Vec<Arc<Hook>>,
    pub(crate) on_test_stop: Vec<Arc<Hook>>,
    /// Options the plan declares (shown in `--help` and the web UI's form).
    pub options: Vec<PlanOption>,
    /// The values in force for those options.
    pub option_values: OptionValues,
    /// Thresholds the plan brings, judged with `--threshold`'s.
    pub thresholds: Vec<Threshold>,
}

/// A class as surfaces see it: names and numbers, no code.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassInfo {
    /// The class's name.
    pub name: String,
    /// Relative share of the weighted users.
    pub weight: u32,
    /// Exactly this many users, if the class has a fixed count; `None` for a weighted class.
    pub fixed_count: Option<u32>,
    /// The class's own default host, if any.
    pub host: Option<String>,
    /// The class's tasks, nested sets with their children.
    pub tasks: Vec<TaskInfo>,
}

/// A task as surfaces see it, with nested sets as children.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskInfo {
    /// The task's name (a nested set's name for a set).
    pub name: String,
    /// Relative chance of being picked among its siblings.
    pub weight: u32,
    /// The tasks of a nested set; empty for a function task.
    pub children: Vec<TaskInfo>,
}

impl Plan {
    /// A plan whose classes `factory` builds (called once per shard).
    pub fn new<F>(name: impl Into<String>, factory: F) -> Self
    where
        F: Fn() -> Vec<UserClass> + Send + Sync + 'static,
    {
        Self::fallible(name, move || Ok(factory()))
    }

    /// A plan whose factory can fail (a script that does not load).
    pub fn fallible<F>(name: impl Into<String>, factory: F) -> Self
    where
        F: Fn() -> Result<Vec<UserClass>, PlanError> + Send + Sync + 'static,
    {
        Self::per_shard(name, move |_| factory().map(|classes| ShardPlan { classes, hooks: ShardHooks::default() }))
    }

    /// A plan built per shard with knowledge of the shard, and per-shard
    /// hooks (what the Lua front end uses).
    pub fn per_shard<F>(name: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&ShardInfo) -> Result<ShardPlan, PlanError> + Send + Sync + 'static,
    {
        Self {
            name: name.into(),
            factory: Arc::new(factory),
            process_host: None,
            on_test_start: Vec::new(),
            on_test_stop: Vec::new(),
            options: Vec::new(),
            option_values: OptionValues::default(),
            thresholds: Vec::new(),
        }
    }

    /// Declare the plan's own options and the store its code reads them from.
    pub fn with_options(mut self, options: Vec<PlanOption>, values: OptionValues) -> Self {
        self.options = options;
        self.option_values = values;
        self
    }

    /// Thresholds the plan brings (a Rust test's own, Lua's
    /// `swarmer.threshold`), judged with the command line's.
    pub fn with_thresholds(mut self, thresholds: Vec<Threshold>) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Give the plan a process part, built by its factory on `host`'s
    /// thread (see the module doc).
    pub fn with_process_host(mut self, host: Arc<dyn ProcessHost>) -> Self {
        self.process_host = Some(host);
        self
    }

    /// Where the plan's process part runs, if it has one.
    pub fn process_host(&self) -> Option<&Arc<dyn ProcessHost>> {
        self.process_host.as_ref()
    }

    /// Run `hook` once when a test starts (Locust's `test_start` event).
    pub fn on_test_start(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_test_start.push(Arc::new(hook));
        self
    }

    /// Run `hook` once when a test stops (Locust's `test_stop` event).
    pub fn on_test_stop(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_test_stop.push(Arc::new(hook));
        self
    }

    /// Run the test-start hooks (a runner of another kind calls this).
    pub fn run_test_start_hooks(&self) {
        self.on_test_start.iter().for_each(|hook| hook());
    }

    /// Run the test-stop hooks.
    pub fn run_test_stop_hooks(&self) {
        self.on_test_stop.iter().for_each(|hook| hook());
    }

    /// Build the classes, keep the `selected` ones (all if empty), apply tag
    /// filtering and check the numbers. Every error names what is wrong.
    pub fn build(&self, selected: &[String], tags: &TagFilter) -> Result<Vec<UserClass>, PlanError> {
        Ok(self.build_for(&ShardInfo::probe(), selected, tags)?.classes)
    }

    /// [`Plan::build`] for a given shard, with the shard's hooks.
    /// The process shard gets no classes (it runs no users).
    pub fn build_for(&self, shard: &ShardInfo, selected: &[String], tags: &TagFilter) -> Result<ShardPlan, PlanError> {
        let ShardPlan { classes: all, hooks } = (self.factory)(shard)?;
        if shard.process {
            return Ok(ShardPlan { classes: Vec::new(), hooks });
        }
        if all.is_empty() {
            return Err(PlanError::NoClasses { plan: self.name.clone() });
        }
        let mut classes = if selected.is_empty() {
            all
        } else {
            let unknown: Vec<String> =
                selected.iter().filter(|s| !all.iter().any(|c| &c.name == *s)).cloned().collect();
            if !unknown.is_empty() {
                let known = all.iter().map(|c| c.name.clone()).collect();
                return Err(PlanError::UnknownClasses { unknown, known });
            }
            all.into_iter().filter(|c| selected.contains(&c.name)).collect()
        };
        for class in &mut classes {
            class.wait_time.validate().map_err(|reason| PlanError::WaitTime { class: class.name.clone(), reason })?;
            if !tags.is_noop() {
                class.tasks = tags.apply(&class.tasks);
            }
        }
        Ok(ShardPlan { classes, hooks })
    }

    /// Names and numbers of the classes [`Plan::build`] would give.
    pub fn info(&self, selected: &[String], tags: &TagFilter) -> Result<Vec<ClassInfo>, PlanError> {
        Ok(self.build(selected, tags)?.iter().map(class_info).collect())
    }
}

fn class_info(class: &UserClass) -> ClassInfo {
    ClassInfo {
        name: class.name.clone(),
        weight: class.weight,
        fixed_count: class.fixed_count,
        host: class.host.clone(),
        tasks: tasks_info(&class.tasks),
    }
}

fn tasks_info(set: &TaskSet) -> Vec<TaskInfo> {
    set.tasks
        .iter()
        .map(|t| TaskInfo {
            name: t.name.clone(),
            weight: t.weight,
            children: match &t.kind {
                TaskKind::Set(inner) => tasks_info(inner),
                TaskKind::Function(_) => Vec::new(),
            },
        })
        .collect()
}
