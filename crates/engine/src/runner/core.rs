//! The runner core: the part of Locust's runner semantics that does not
//! depend on where users run, shared by the local runner's actor and the
//! cluster master's loop.
//!
//! It owns the runner state (and publishes it to the read model), the
//! test's host and class selection, the target and spawn rate of the
//! current ramp, the run time (`--run-time`, or the web form's), the
//! statistics epoch (which deltas a reset drops) and the events surfaces
//! hear. What differs is *placement*: the local actor places users on its
//! shards one by one at the spawn rate; the master hands each worker a
//! share and a share of the rate. Each loop embeds a [`RunnerCore`] and
//! calls it at the same points of Locust's lifecycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use swarmer_stats::unix_now;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{RunnerEvent, TestSettings};
use crate::lock::LockExt;
use crate::plan::ClassInfo;
use crate::read_model::{RunnerState, StatsView};

/// A class's `(weight, fixed_count)`, as the user sequence and the
/// workers' shares are built from.
pub type ClassWeight = (u32, Option<u32>);

/// What [`RunnerCore::begin`] made of a start command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// Not taken: the runner is quitting.
    Refused,
    /// A new test (the runner was ready or stopped): the caller runs the
    /// plan's test-start hooks, then places users.
    Fresh,
    /// A new target for the running test.
    Retarget,
}

/// The lifecycle state shared by every runner (see the module doc).
pub struct RunnerCore {
    stats: StatsView,
    events: broadcast::Sender<RunnerEvent>,
    /// The host users spawned from now on get (shared with the handles).
    host: Arc<Mutex<Option<String>>>,
    class_names: Vec<String>,
    /// Every class's weight as the plan gives it.
    plan_weights: Vec<ClassWeight>,
    /// The same, with the classes not picked for this test at zero.
    weights: Vec<ClassWeight>,
    state: RunnerState,
    /// Users the current ramp goes to, and at what rate (users/s; infinite
    /// for "all at once").
    target: usize,
    spawn_rate: f64,
    /// When the run time is up, if the test has one.
    deadline: Option<Instant>,
    epoch: u64,
    quitting: bool,
}

impl RunnerCore {
    /// A ready core for `classes` that publishes to `stats` and `events` and shares
    /// `host` with the handles.
    pub fn new(
        classes: &[ClassInfo],
        stats: StatsView,
        events: broadcast::Sender<RunnerEvent>,
        host: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let plan_weights: Vec<ClassWeight> = classes.iter().map(|c| (c.weight, c.fixed_count)).collect();
        Self {
            stats,
            events,
            host,
            class_names: classes.iter().map(|c| c.name.clone()).collect(),
            weights: plan_weights.clone(),
            plan_weights,
            state: RunnerState::Ready,
            target: 0,
            spawn_rate: f64::INFINITY,
            deadline: None,
            epoch: 0,
            quitting: false,
        }
    }

    /// The runner's state.
    pub fn state(&self) -> RunnerState {
        self.state
    }

    /// Ready or stopped: no test runs.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, RunnerState::Ready | RunnerState::Stopped)
    }

    /// Spawning, running or stopping: users may be running.
    pub fn is_active(&self) -> bool {
        matches!(self.state, RunnerState::Spawning | RunnerState::Running | RunnerState::Stopping)
    }

    /// Record a state change in the core and the read model.
    pub fn set_state(&mut self, state: RunnerState) {
        self.state = state;
        self.stats.lock_or_recover().set_state(state, unix_now());
    }

    /// Send `event` to the surfaces subscribed (none listening is fine).
    pub fn emit(&self, event: RunnerEvent) {
        let _ = self.events.send(event);
    }

    /// The read model this core publishes to.
    pub fn stats(&self) -> &StatsView {
        &self.stats
    }

    /// The plan's class names, in the plan's order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The classes' weights for this test (unpicked classes at zero).
    pub fn weights(&self) -> &[ClassWeight] {
        &self.weights
    }

    /// The host for users spawned now.
    pub fn host(&self) -> Option<String> {
        self.host.lock_or_recover().clone()
    }

    /// The current ramp's target.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The current ramp's rate, users/s (infinite: all at once).
    pub fn spawn_rate(&self) -> f64 {
        self.spawn_rate
    }

    /// The number of statistics resets so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the runner was asked to quit.
    pub fn is_quitting(&self) -> bool {
        self.quitting
    }

    /// Mark the runner quitting: no test starts from now on.
    pub fn set_quitting(&mut self) {
        self.quitting = true;
    }

    /// Take a start command: apply the host and class selection when no
    /// test runs, and arm the run time. For a fresh test the caller then
    /// runs the plan's test-start hooks and calls [`RunnerCore::started`];
    /// either way then [`RunnerCore::enter_spawning`] with the number of
    /// users it can place. Locust's rules: a host and a class selection apply only to a new
    /// test; a run time given restarts the clock; none given keeps the
    /// running test's clock, and a new test without one has no limit.
    pub fn begin(&mut self, settings: &TestSettings) -> Begin {
        if self.quitting {
            return Begin::Refused;
        }
        let fresh = self.is_idle();
        if fresh {
            if let Some(host) = &settings.host {
                *self.host.lock_or_recover() = Some(host.clone()).filter(|h| !h.is_empty());
            }
            if let Some(picked) = &settings.classes {
                self.weights = self
                    .plan_weights
                    .iter()
                    .zip(&self.class_names)
                    .map(|(w, name)| if picked.contains(name) { *w } else { (0, None) })
                    .collect();
            }
        }
        match settings.run_time {
            Some(limit) if !limit.is_zero() => self.deadline = Some(Instant::now() + limit),
            Some(_) => self.deadline = None,
            None if fresh => self.deadline = None,
            None => {}
        }
        self.spawn_rate = if settings.spawn_rate.is_finite() && settings.spawn_rate > 0.0 {
            settings.spawn_rate
        } else {
            f64::INFINITY
        };
        if fresh { Begin::Fresh } else { Begin::Retarget }
    }

    /// A fresh test's start hooks ran: tell the surfaces.
    pub fn started(&self) {
        self.emit(RunnerEvent::TestStarted);
    }

    /// Enter spawning towards `target` users.
    pub fn enter_spawning(&mut self, target: usize) {
        self.target = target;
        self.set_state(RunnerState::Spawning);
        self.stats.lock_or_recover().target_user_count = self.target;
    }

    /// When the run time is up, while a test with one runs.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| matches!(self.state, RunnerState::Spawning | RunnerState::Running))
    }

    /// The run time is up: say so (the caller then stops the test).
    pub fn run_time_reached(&mut self) {
        self.deadline = None;
        tracing::info!("Run time limit reached: stopping the test");
        self.emit(RunnerEvent::RunTimeReached);
    }

    /// Every user placed: enter running and tell the surfaces.
    pub fn spawning_complete(&mut self, user_count: usize, class_counts: BTreeMap<String, usize>) {
        self.set_state(RunnerState::Running);
        self.emit(RunnerEvent::SpawningComplete { user_count, class_counts });
    }

    /// Begin stopping; false when no test runs or one is already stopping.
    pub fn begin_stop(&mut self) -> bool {
        if self.is_idle() || self.state == RunnerState::Stopping {
            return false;
        }
        self.deadline = None;
        self.set_state(RunnerState::Stopping);
        true
    }

    /// Every user stopped: the test is over.
    pub fn stopped(&mut self) {
        self.deadline = None;
        self.set_state(RunnerState::Stopped);
        self.emit(RunnerEvent::TestStopped);
    }

    /// Start a new statistics epoch and empty the merged statistics, the
    /// chart history and the notes; returns the epoch (deltas recorded
    /// before it are dropped). Also the start of every new test, as
    /// Locust's: a test's numbers, rates and charts are its own.
    pub fn reset_stats(&mut self) -> u64 {
        self.epoch += 1;
        let mut store = self.stats.lock_or_recover();
        store.stats.reset(unix_now());
        store.history.clear();
        store.notes.clear();
        self.epoch
    }
}

/// Resolves at `deadline`, never without one (for `select!` branches).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
