//! The local runner: a state machine over the shards (Locust's
//! `LocalRunner`).
//!
//! It runs as one tokio task (the "actor") on the caller's runtime. Surfaces
//! talk to it through a cloneable [`RunnerHandle`]: start or re-target a
//! ramp, stop, reset, quit, read the merged statistics, subscribe to events.
//! Shards send it statistics deltas once a second; it merges them into the
//! [`StatsStore`] and samples the history. It never sees single requests.
//!
//! States follow Locust: ready → spawning → running → stopping → stopped,
//! and a stopped test can be started again.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use swarmer_http::ClientConfig;
use swarmer_stats::{History, HistoryPoint, RequestStats, TOO_MANY_NAMES, unix_now};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::cpu::{ProcessUsage, UsageMonitor};
use crate::dispatch::UserSequence;
use crate::plan::{ClassInfo, Notice, Plan, ShardInfo, SharedData};
use crate::plan_options::{OptionValues, PlanOption};
use crate::shard::{ShardCommand, ShardEvent, ShardSetup, spawn_shard};
use crate::tags::TagFilter;

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
}

impl StatsStore {
    pub(crate) fn new(state: RunnerState, stats: RequestStats, history: History) -> Self {
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
        }
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
}

enum Command {
    Start(TestSettings),
    Stop,
    ResetStats,
    Quit(oneshot::Sender<()>),
}

/// A cloneable, `Send` handle to a running [`LocalRunner`].
#[derive(Clone)]
pub struct RunnerHandle {
    commands: mpsc::UnboundedSender<Command>,
    stats: StatsView,
    events: broadcast::Sender<RunnerEvent>,
    classes: Arc<Vec<ClassInfo>>,
    host: Arc<Mutex<Option<String>>>,
    plan: Arc<PlanSummary>,
}

/// What surfaces show of the plan.
pub struct PlanSummary {
    pub name: String,
    pub options: Vec<PlanOption>,
    pub option_values: OptionValues,
}

impl RunnerHandle {
    /// Ramp to `users` at `spawn_rate` users/s; also changes the target of a
    /// running test (down removes the newest users first).
    pub fn start(&self, users: usize, spawn_rate: f64) {
        let _ = self.commands.send(Command::Start(TestSettings { users, spawn_rate, host: None, classes: None }));
    }

    /// [`RunnerHandle::start`] with a host and a class selection, checked
    /// first: the error names what is wrong (an unknown class, no host).
    pub fn start_test(&self, settings: TestSettings) -> Result<(), String> {
        if let Some(picked) = &settings.classes {
            if picked.is_empty() {
                return Err("user_classes: pick at least one user class".into());
            }
            let unknown: Vec<&str> =
                picked.iter().filter(|p| !self.classes.iter().any(|c| &c.name == *p)).map(String::as_str).collect();
            if !unknown.is_empty() {
                let known: Vec<&str> = self.classes.iter().map(|c| c.name.as_str()).collect();
                return Err(format!(
                    "user_classes: unknown user class(es) {}; available: {}",
                    unknown.join(", "),
                    known.join(", ")
                ));
            }
        }
        let running = !matches!(self.state(), RunnerState::Ready | RunnerState::Stopped);
        if !running {
            let host = match &settings.host {
                Some(h) => Some(h.clone()),
                None => self.host(),
            };
            if host.is_none() {
                let picked = |c: &&ClassInfo| settings.classes.as_ref().is_none_or(|p| p.contains(&c.name));
                if let Some(c) = self.classes.iter().filter(picked).find(|c| c.host.is_none()) {
                    return Err(format!("host: user class {} has no host; give one", c.name));
                }
            }
        }
        let _ = self.commands.send(Command::Start(settings));
        Ok(())
    }

    /// The host given for the test (`--host` or the start form), if any.
    pub fn host(&self) -> Option<String> {
        self.host.lock().ok().and_then(|h| h.clone())
    }

    /// The plan's name and options.
    pub fn plan(&self) -> &PlanSummary {
        &self.plan
    }

    /// Stop every user (gracefully within the stop timeout).
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }

    pub fn reset_stats(&self) {
        let _ = self.commands.send(Command::ResetStats);
    }

    /// Stop the test, collect the last statistics from every shard, end the
    /// shard threads. Resolves when all of that is done.
    pub async fn quit(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Quit(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub fn stats(&self) -> &StatsView {
        &self.stats
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunnerEvent> {
        self.events.subscribe()
    }

    /// The classes this runner runs (after selection and tag filtering).
    pub fn classes(&self) -> &[ClassInfo] {
        &self.classes
    }

    pub fn state(&self) -> RunnerState {
        self.stats.lock().map(|s| s.state).unwrap_or(RunnerState::Stopped)
    }
}

/// Starts runners.
pub struct LocalRunner;

impl LocalRunner {
    /// Check the plan, start the shard threads and the runner task on the
    /// current tokio runtime. Errors name what is wrong (unknown class, no
    /// host, a plan that fails to load on a shard).
    pub async fn start(plan: Plan, options: RunnerOptions) -> Result<RunnerHandle, String> {
        let classes = plan.info(&options.classes, &options.tags)?;
        if options.host_required
            && options.host.is_none()
            && let Some(c) = classes.iter().find(|c| c.host.is_none())
        {
            return Err(format!(
                "You must specify the base host. Either in the host attribute in the User class ({}), \
                 or on the command line using the --host option.",
                c.name
            ));
        }
        let shards = options.shards.max(1);
        let stats = Arc::new(Mutex::new(StatsStore::new(
            RunnerState::Ready,
            RequestStats::new(unix_now()),
            History::default(),
        )));
        let setup = Arc::new(ShardSetup {
            plan: plan.clone(),
            selected: options.classes.clone(),
            tags: options.tags.clone(),
            client: options.client.clone(),
            node: options.node.clone(),
        });
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let mut shard_tx = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let shared = SharedData::default();
        for index in 0..shards {
            let (tx, rx) = mpsc::unbounded_channel();
            let stop_tx = event_tx.clone();
            let stop_test: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let _ = stop_tx.send(ShardEvent::StopTestRequested);
            });
            let info = ShardInfo::new(index, shards, stats.clone(), shared.clone(), stop_test);
            let thread = spawn_shard(info, setup.clone(), rx, event_tx.clone())
                .map_err(|e| format!("could not start shard thread {index}: {e}"))?;
            shard_tx.push(tx);
            threads.push(thread);
        }
        drop(event_tx);
        let mut ready = 0;
        while ready < shards {
            match event_rx.recv().await {
                Some(ShardEvent::Ready) => ready += 1,
                Some(ShardEvent::Failed { shard, error }) => {
                    return Err(format!("shard {shard} could not load the plan: {error}"));
                }
                Some(_) => {}
                None => return Err("shard threads ended before they were ready".into()),
            }
        }
        let (events, _) = broadcast::channel(256);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let sequence = UserSequence::new(&classes.iter().map(|c| (c.weight, c.fixed_count)).collect::<Vec<_>>());
        let host = Arc::new(Mutex::new(options.host.clone()));
        let summary = Arc::new(PlanSummary {
            name: plan.name.clone(),
            options: plan.options.clone(),
            option_values: plan.option_values.clone(),
        });
        let actor = Actor {
            host: host.clone(),
            class_weights: classes.iter().map(|c| (c.weight, c.fixed_count)).collect(),
            plan,
            options,
            class_names: classes.iter().map(|c| c.name.clone()).collect(),
            sequence,
            shard_tx,
            threads,
            stats: stats.clone(),
            events: events.clone(),
            live: Vec::new(),
            stopping: HashSet::new(),
            next_user_id: 0,
            ramp: None,
            state: RunnerState::Ready,
            usage: UsageMonitor::new(),
            warned_cpu: false,
            warned_names: false,
            quitting: None,
            shut_down: 0,
            stats_epoch: 0,
            seconds: 0,
        };
        tokio::spawn(actor.run(command_rx, event_rx));
        Ok(RunnerHandle { commands, stats, events, classes: Arc::new(classes), host, plan: summary })
    }
}

struct Slot {
    id: u64,
    class: usize,
    shard: usize,
}

struct Ramp {
    from: usize,
    target: usize,
    rate: f64,
    started: Instant,
}

struct Actor {
    plan: Plan,
    /// The host users spawned from now on get (shared with the handles).
    host: Arc<Mutex<Option<String>>>,
    /// `(weight, fixed_count)` of every class, to rebuild the sequence
    /// when the class picker selects a subset.
    class_weights: Vec<(u32, Option<u32>)>,
    options: RunnerOptions,
    class_names: Vec<String>,
    sequence: UserSequence,
    shard_tx: Vec<mpsc::UnboundedSender<ShardCommand>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stats: StatsView,
    events: broadcast::Sender<RunnerEvent>,
    /// Live users, oldest first: ramp-down pops from the end.
    live: Vec<Slot>,
    stopping: HashSet<u64>,
    next_user_id: u64,
    ramp: Option<Ramp>,
    state: RunnerState,
    usage: UsageMonitor,
    warned_cpu: bool,
    warned_names: bool,
    quitting: Option<oneshot::Sender<()>>,
    shut_down: usize,
    /// Number of statistics resets; deltas recorded before the latest are dropped.
    stats_epoch: u64,
    seconds: u64,
}

const RAMP_TICK: Duration = Duration::from_millis(10);
const CPU_WARNING_PERCENT: f64 = 90.0;
/// How often shards hear the process's CPU and memory (Locust's `usage_monitor`).
const USAGE_MONITOR_SECONDS: u64 = 5;

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut shards: mpsc::UnboundedReceiver<ShardEvent>,
    ) {
        let mut ramp_tick = tokio::time::interval(RAMP_TICK);
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let _ = self.usage.sample();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Start(settings)) => self.start(settings),
                    Some(Command::Stop) => self.stop(),
                    Some(Command::ResetStats) => self.reset_stats(),
                    Some(Command::Quit(done)) => {
                        self.quitting = Some(done);
                        self.stop();
                        self.maybe_shutdown();
                    }
                    None => {
                        // Every handle is gone: quit without anyone waiting.
                        if self.quitting.is_none() {
                            let (tx, _) = oneshot::channel();
                            self.quitting = Some(tx);
                            self.stop();
                            self.maybe_shutdown();
                        }
                    }
                },
                event = shards.recv() => match event {
                    Some(event) => {
                        if self.on_shard_event(event) {
                            break;
                        }
                    }
                    None => break,
                },
                _ = ramp_tick.tick(), if self.ramp.is_some() => self.ramp_step(),
                _ = second.tick() => self.every_second(),
            }
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.every_second();
        if let Some(done) = self.quitting.take() {
            let _ = done.send(());
        }
    }

    fn notify_shards(&self, notice: Notice) {
        for tx in &self.shard_tx {
            let _ = tx.send(ShardCommand::Notice(notice.clone()));
        }
    }

    fn emit(&self, event: RunnerEvent) {
        let _ = self.events.send(event);
    }

    fn set_state(&mut self, state: RunnerState) {
        self.state = state;
        if let Ok(mut store) = self.stats.lock() {
            store.state = state;
            match state {
                RunnerState::Spawning if store.test_started.is_none() || store.test_stopped.is_some() => {
                    store.test_started = Some(unix_now());
                    store.test_stopped = None;
                }
                RunnerState::Stopped => store.test_stopped = Some(unix_now()),
                _ => {}
            }
        }
    }

    fn start(&mut self, settings: TestSettings) {
        if self.quitting.is_some() {
            return;
        }
        let TestSettings { users, spawn_rate, host, classes } = settings;
        if matches!(self.state, RunnerState::Ready | RunnerState::Stopped) {
            if let Some(host) = host
                && let Ok(mut current) = self.host.lock()
            {
                *current = Some(host).filter(|h| !h.is_empty());
            }
            if let Some(picked) = classes {
                let weights: Vec<(u32, Option<u32>)> = self
                    .class_weights
                    .iter()
                    .zip(&self.class_names)
                    .map(|(w, name)| if picked.contains(name) { *w } else { (0, None) })
                    .collect();
                self.sequence = UserSequence::new(&weights);
            }
        }
        let target = match self.sequence.capacity() {
            Some(cap) if users > cap => {
                tracing::warn!("only {cap} users can be placed: every class has a fixed_count");
                cap
            }
            _ => users,
        };
        if matches!(self.state, RunnerState::Ready | RunnerState::Stopped) {
            for hook in &self.plan.on_test_start {
                hook();
            }
            for tx in &self.shard_tx {
                let _ = tx.send(ShardCommand::TestStart);
            }
            self.emit(RunnerEvent::TestStarted);
        }
        tracing::info!("Ramping to {target} users at a rate of {spawn_rate:.2} per second");
        self.set_state(RunnerState::Spawning);
        if let Ok(mut store) = self.stats.lock() {
            store.target_user_count = target;
        }
        let rate = if spawn_rate.is_finite() && spawn_rate > 0.0 { spawn_rate } else { f64::INFINITY };
        self.ramp = Some(Ramp { from: self.live.len(), target, rate, started: Instant::now() });
        self.ramp_step();
    }

    fn ramp_step(&mut self) {
        let Some(ramp) = &self.ramp else { return };
        let due = if ramp.rate.is_infinite() {
            usize::MAX
        } else {
            (ramp.rate * ramp.started.elapsed().as_secs_f64()).floor() as usize + 1
        };
        let (target, from) = (ramp.target, ramp.from);
        if target > self.live.len() {
            let desired = target.min(from.saturating_add(due));
            while self.live.len() < desired {
                self.spawn_next();
            }
        } else if target < self.live.len() {
            let desired = target.max(from.saturating_sub(due));
            let removed: Vec<Slot> = self.live.drain(desired..).collect();
            self.stop_slots(removed);
        }
        self.publish_counts();
        if self.live.len() == target {
            self.ramp = None;
            self.set_state(RunnerState::Running);
            let class_counts = self.class_counts();
            let pretty: Vec<String> = class_counts.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            tracing::info!("All users spawned: {{{}}} ({} total users)", pretty.join(", "), self.live.len());
            if self.options.reset_stats {
                tracing::info!("Resetting stats");
                self.reset_stats();
            }
            self.notify_shards(Notice::SpawningComplete { user_count: self.live.len() });
            self.emit(RunnerEvent::SpawningComplete { user_count: self.live.len(), class_counts });
        }
    }

    fn spawn_next(&mut self) {
        let position = self.live.len();
        let Some(class) = self.sequence.class_at(position) else { return };
        let shard = position % self.shard_tx.len();
        let id = self.next_user_id;
        self.next_user_id += 1;
        let host = self.host.lock().ok().and_then(|h| h.clone());
        let _ = self.shard_tx[shard].send(ShardCommand::Spawn { user_id: id, class, host });
        self.live.push(Slot { id, class, shard });
    }

    fn stop_slots(&mut self, slots: Vec<Slot>) {
        let mut per_shard: Vec<Vec<u64>> = vec![Vec::new(); self.shard_tx.len()];
        for slot in slots {
            self.stopping.insert(slot.id);
            per_shard[slot.shard].push(slot.id);
        }
        for (shard, user_ids) in per_shard.into_iter().enumerate() {
            if !user_ids.is_empty() {
                let timeout = self.options.stop_timeout;
                let _ = self.shard_tx[shard].send(ShardCommand::Stop { user_ids, timeout });
            }
        }
    }

    fn stop(&mut self) {
        if matches!(self.state, RunnerState::Ready | RunnerState::Stopped) {
            return;
        }
        self.ramp = None;
        self.notify_shards(Notice::TestStopping);
        self.set_state(RunnerState::Stopping);
        let all: Vec<Slot> = self.live.drain(..).collect();
        self.stop_slots(all);
        self.publish_counts();
        if self.stopping.is_empty() {
            self.finish_stop();
        }
    }

    fn finish_stop(&mut self) {
        self.set_state(RunnerState::Stopped);
        for hook in &self.plan.on_test_stop {
            hook();
        }
        for tx in &self.shard_tx {
            let _ = tx.send(ShardCommand::TestStop);
        }
        self.emit(RunnerEvent::TestStopped);
        self.maybe_shutdown();
    }

    /// Once stopped and asked to quit, tell every shard to shut down.
    fn maybe_shutdown(&mut self) {
        if self.quitting.is_some() && matches!(self.state, RunnerState::Ready | RunnerState::Stopped) {
            for tx in &self.shard_tx {
                let _ = tx.send(ShardCommand::Shutdown);
            }
        }
    }

    /// Returns true when the last shard has shut down.
    fn on_shard_event(&mut self, event: ShardEvent) -> bool {
        match event {
            ShardEvent::Stats { delta, epoch } => {
                if epoch != self.stats_epoch {
                    return false;
                }
                if let Ok(mut store) = self.stats.lock() {
                    store.stats.apply(&delta, unix_now());
                }
            }
            ShardEvent::UserStopped { user_id } => {
                if !self.stopping.remove(&user_id) {
                    // The user ended itself (StopUser): it is not replaced.
                    self.live.retain(|s| s.id != user_id);
                    self.publish_counts();
                }
                if self.state == RunnerState::Stopping && self.stopping.is_empty() {
                    self.finish_stop();
                }
            }
            ShardEvent::StopTestRequested => {
                if !matches!(self.state, RunnerState::Stopping | RunnerState::Stopped) {
                    tracing::info!("A user asked to stop the test (StopTest)");
                    self.emit(RunnerEvent::StopTestRequested);
                    self.stop();
                }
            }
            ShardEvent::ShutDown => {
                self.shut_down += 1;
                return self.shut_down == self.shard_tx.len();
            }
            ShardEvent::Failed { shard, error } => {
                self.emit(RunnerEvent::Warning(format!("shard {shard} failed: {error}")));
            }
            ShardEvent::Ready => {}
        }
        false
    }

    /// Forget every statistic recorded so far, exactly: shards drop what
    /// they hold, and deltas already on their way are dropped by epoch.
    fn reset_stats(&mut self) {
        self.stats_epoch += 1;
        for tx in &self.shard_tx {
            let _ = tx.send(ShardCommand::ResetStats { epoch: self.stats_epoch });
        }
        self.notify_shards(Notice::ResetStats);
        if let Ok(mut store) = self.stats.lock() {
            store.stats.reset(unix_now());
        }
    }

    fn class_counts(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> = self.class_names.iter().map(|n| (n.clone(), 0)).collect();
        for slot in &self.live {
            *counts.entry(self.class_names[slot.class].clone()).or_default() += 1;
        }
        counts
    }

    fn publish_counts(&self) {
        let counts = self.class_counts();
        if let Ok(mut store) = self.stats.lock() {
            store.user_count = self.live.len();
            store.class_counts = counts;
        }
    }

    fn every_second(&mut self) {
        let usage = self.usage.sample().unwrap_or_default();
        let shards = self.shard_tx.len() as f64;
        let mut warnings = Vec::new();
        if let Ok(mut store) = self.stats.lock() {
            store.usage = usage;
            let now = unix_now();
            if matches!(self.state, RunnerState::Spawning | RunnerState::Running | RunnerState::Stopping) {
                let total = store.stats.total();
                let (rps, fps) = total.current_rates(now);
                let point = HistoryPoint {
                    timestamp: now,
                    user_count: store.user_count as u64,
                    current_rps: rps,
                    current_fail_per_sec: fps,
                    response_time_percentile_50: store.stats.current_percentile_ms(0.5, now),
                    response_time_percentile_95: store.stats.current_percentile_ms(0.95, now),
                    response_time_percentile_99: store.stats.current_percentile_ms(0.99, now),
                    total_avg_response_time: total.avg_response_time_ms(),
                };
                store.history.push(point);
            }
            if !self.warned_names && store.stats.num_names() > TOO_MANY_NAMES {
                self.warned_names = true;
                warnings.push(format!(
                    "More than {TOO_MANY_NAMES} different request names ({}). Group dynamic URLs with a request name \
                     (e.g. /item?id=[id]): the statistics get hard to read and use more memory.",
                    store.stats.num_names()
                ));
            }
        }
        self.seconds += 1;
        if self.seconds.is_multiple_of(USAGE_MONITOR_SECONDS) {
            self.notify_shards(Notice::UsageMonitor { cpu_percent: usage.cpu_percent, rss_bytes: usage.rss_bytes });
        }
        if !self.warned_cpu && usage.cpu_percent > CPU_WARNING_PERCENT * shards {
            self.warned_cpu = true;
            self.notify_shards(Notice::CpuWarning { cpu_percent: usage.cpu_percent });
            warnings.push(format!(
                "CPU usage above {CPU_WARNING_PERCENT}% of the {shards} core(s) in use ({:.0}%)! The load generator \
                 may be the bottleneck and response times may be inflated. Use more shards, processes or workers.",
                usage.cpu_percent
            ));
        }
        for w in warnings {
            tracing::warn!("{w}");
            self.emit(RunnerEvent::Warning(w));
        }
    }
}
