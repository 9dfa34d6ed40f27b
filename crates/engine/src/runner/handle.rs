//! [`RunnerHandle`]: how surfaces (console, web, cluster) drive a runner.

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::{RunnerEvent, TestSettings};
use crate::error::StartError;
use crate::lock::LockExt;
use crate::plan::{ClassInfo, ClusterMessage, Notice};
use crate::plan_options::{OptionValues, PlanOption};
use crate::read_model::{RunnerState, StatsView, WorkerRoster};

/// What a handle asks of the runner behind it.
#[derive(Debug)]
pub enum RunnerCommand {
    /// Start a test, or give the running one a new target (see [`RunnerHandle::start_test`]).
    Start(TestSettings),
    /// Stop every user, each within the stop timeout.
    Stop,
    /// Forget every statistic recorded so far.
    ResetStats,
    /// Stop the test, collect the shards' last statistics and end them; answer when done.
    Quit(oneshot::Sender<()>),
    /// Have every shard hand over what it recorded now; answer when done.
    Flush(oneshot::Sender<()>),
    /// Hand a custom message to the plan's handlers on every shard.
    Notify(Notice),
    /// Run the plan's test-start (true) or test-stop hooks on the shards
    /// without starting users (a master's plan); answer when they ran.
    TestHooks {
        /// True: the test-start hooks; false: the test-stop hooks.
        start: bool,
        /// The test's host, for clients the hooks make.
        host: Option<String>,
        /// Answered once every shard ran them.
        done: oneshot::Sender<()>,
    },
}

/// A cloneable, `Send` handle to a running [`LocalRunner`](super::LocalRunner).
#[derive(Clone)]
pub struct RunnerHandle {
    commands: mpsc::UnboundedSender<RunnerCommand>,
    stats: StatsView,
    events: broadcast::Sender<RunnerEvent>,
    classes: Arc<Vec<ClassInfo>>,
    host: Arc<Mutex<Option<String>>>,
    plan: Arc<PlanSummary>,
    workers: Option<WorkerRoster>,
}

/// What surfaces show of the plan.
pub struct PlanSummary {
    /// The plan's name (a file name, or the program's).
    pub name: String,
    /// The options the plan declares.
    pub options: Vec<PlanOption>,
    /// The values in force for those options, shared with the plan.
    pub option_values: OptionValues,
}

/// The other ends of a [`RunnerHandle`], for the loop that runs behind it.
pub struct RunnerChannels {
    /// The handle to give to surfaces.
    pub handle: RunnerHandle,
    /// What the handles ask of the loop.
    pub commands: mpsc::UnboundedReceiver<RunnerCommand>,
    /// Where the loop sends the test's events; the handle's subscribers receive them.
    pub events: broadcast::Sender<RunnerEvent>,
    /// The host of the test (the handle shows it; the loop changes it).
    pub host: Arc<Mutex<Option<String>>>,
}

impl RunnerHandle {
    /// A handle over a runner loop of the caller's (a cluster master): the
    /// loop reads the commands, updates `stats` and sends the events.
    pub fn remote(
        stats: StatsView,
        classes: Vec<ClassInfo>,
        host: Option<String>,
        plan: PlanSummary,
    ) -> RunnerChannels {
        let (events, _) = broadcast::channel(256);
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let host = Arc::new(Mutex::new(host));
        let handle = RunnerHandle {
            commands: commands_tx,
            stats,
            events: events.clone(),
            classes: Arc::new(classes),
            host: host.clone(),
            plan: Arc::new(plan),
            workers: None,
        };
        RunnerChannels { handle, commands, events, host }
    }

    /// Ramp to `users` at `spawn_rate` users/s; also changes the target of a
    /// running test (down removes the newest users first).
    pub fn start(&self, users: usize, spawn_rate: f64) {
        let _ = self.commands.send(RunnerCommand::Start(TestSettings { users, spawn_rate, ..Default::default() }));
    }

    /// [`RunnerHandle::start`] with a host and a class selection, checked
    /// first: the error names what is wrong (an unknown class, no host).
    pub fn start_test(&self, settings: TestSettings) -> Result<(), StartError> {
        if let Some(rate) = &settings.arrival {
            rate.check().map_err(|e| StartError::Arrival(e.0))?;
        }
        if let Some(picked) = &settings.classes {
            if picked.is_empty() {
                return Err(StartError::NoClassPicked);
            }
            let unknown: Vec<String> =
                picked.iter().filter(|p| !self.classes.iter().any(|c| &c.name == *p)).cloned().collect();
            if !unknown.is_empty() {
                let known = self.classes.iter().map(|c| c.name.clone()).collect();
                return Err(StartError::UnknownPicked { unknown, known });
            }
        }
        let running = !matches!(self.state(), RunnerState::Ready | RunnerState::Stopped);
        if !running {
            let host = match &settings.host {
                // An empty host clears the current one (the actor does the same).
                Some(h) if h.is_empty() => None,
                Some(h) => Some(h.clone()),
                None => self.host(),
            };
            if host.is_none() {
                let picked = |c: &&ClassInfo| settings.classes.as_ref().is_none_or(|p| p.contains(&c.name));
                if let Some(c) = self.classes.iter().filter(picked).find(|c| c.host.is_none()) {
                    return Err(StartError::NoHostForTest { class: c.name.clone() });
                }
            }
        }
        let _ = self.commands.send(RunnerCommand::Start(settings));
        Ok(())
    }

    /// On a cluster master, its workers; `None` for one process.
    pub fn workers(&self) -> Option<&WorkerRoster> {
        self.workers.as_ref()
    }

    /// This handle, reading `workers` as a master's roster.
    pub fn with_workers(mut self, workers: WorkerRoster) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The host given for the test (`--host` or the start form), if any.
    pub fn host(&self) -> Option<String> {
        self.host.lock_or_recover().clone()
    }

    /// The plan's name and options.
    pub fn plan(&self) -> &PlanSummary {
        &self.plan
    }

    /// Stop every user (gracefully within the stop timeout).
    pub fn stop(&self) {
        let _ = self.commands.send(RunnerCommand::Stop);
    }

    /// Forget every statistic recorded so far (Locust's "Reset stats").
    pub fn reset_stats(&self) {
        let _ = self.commands.send(RunnerCommand::ResetStats);
    }

    /// Stop the test, collect the last statistics from every shard, end the
    /// shard threads. Resolves when all of that is done.
    pub async fn quit(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(RunnerCommand::Quit(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Make every shard hand over what it recorded so far (the delta sink
    /// and the statistics have it when this returns).
    pub async fn flush(&self) {
        let _ = self.request_flush().await;
    }

    /// The same, asked for now (commands sent after it are taken after
    /// it): the receiver answers once it is done.
    pub fn request_flush(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(RunnerCommand::Flush(tx));
        rx
    }

    /// Hand a custom message to the plan's handlers.
    pub fn deliver_message(&self, message: ClusterMessage) {
        self.notify(Notice::Message(message));
    }

    /// Hand a notice to the plan's listeners on every shard (the cluster
    /// tells a runner about heartbeats and the distributed test this way).
    pub fn notify(&self, notice: Notice) {
        let _ = self.commands.send(RunnerCommand::Notify(notice));
    }

    /// Run the plan's test-start or test-stop hooks without users; resolves
    /// once every shard ran them.
    /// `host` is the test's (clients made by the hooks use it).
    pub async fn run_test_hooks(&self, start: bool, host: Option<String>) {
        let _ = self.request_test_hooks(start, host).await;
    }

    /// The same, asked for now (commands sent after it are taken after
    /// it): the receiver answers once the hooks ran.
    pub fn request_test_hooks(&self, start: bool, host: Option<String>) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let _ = self.commands.send(RunnerCommand::TestHooks { start, host, done });
        rx
    }

    /// The read model (merged statistics, history, state, user counts); hold its lock briefly.
    pub fn stats(&self) -> &StatsView {
        &self.stats
    }

    /// Receive the test's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunnerEvent> {
        self.events.subscribe()
    }

    /// The classes this runner runs (after selection and tag filtering).
    pub fn classes(&self) -> &[ClassInfo] {
        &self.classes
    }

    /// The runner's state, as last published to the read model.
    pub fn state(&self) -> RunnerState {
        self.stats.lock_or_recover().state
    }
}
