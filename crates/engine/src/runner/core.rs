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
use std::time::Duration;

use swarmer_stats::unix_now;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{PlanShapeStep, RunnerEvent, TestSettings};
use crate::arrival::ArrivalRate;
use crate::lock::LockExt;
use crate::plan::ClassInfo;
use crate::read_model::{RunnerState, ShapeStatus, StatsView};
use crate::shape::{ShapeStep, SharedShape};
use crate::wait_time::WaitSpec;

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

/// What the test's load shape asks for at a tick.
#[derive(Debug, PartialEq)]
pub enum ShapeAction {
    /// Nothing new.
    Keep,
    /// A new load: apply it as a start command (it never pauses the shape).
    Apply(Box<TestSettings>),
    /// The shape ended the test: stop it.
    End,
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
    /// Wait times by class name instead of the plan's, for this test.
    wait_times: BTreeMap<String, WaitSpec>,
    /// The load shape of every test (`--phases`, a Rust plan's shape).
    shape: Option<SharedShape>,
    /// While the shape drives a test: when that test began (monotonic, unix).
    shape_began: Option<(Instant, f64)>,
    /// The load was changed by hand: the shape waits for the next test.
    shape_paused: bool,
    last_step: Option<ShapeStep>,
    step_number: usize,
    /// The step end the shape was already ticked at (a shape whose step
    /// outlives its stated end is not ticked again and again).
    end_ticked: Option<Duration>,
    /// A start asked for while the test stops: a new test, once stopped.
    deferred_start: Option<TestSettings>,
    /// The arrival rate of the current load, if it is an open model.
    arrival: Option<ArrivalRate>,
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
            wait_times: BTreeMap::new(),
            shape: None,
            shape_began: None,
            shape_paused: false,
            last_step: None,
            step_number: 0,
            end_ticked: None,
            deferred_start: None,
            arrival: None,
        }
    }

    /// The same core, driven by `shape` in every test.
    pub fn with_shape(mut self, shape: Option<SharedShape>) -> Self {
        let name = shape.as_ref().map(|s| s.lock_or_recover().name().to_owned());
        self.stats.lock_or_recover().shape_name = name;
        self.shape = shape;
        self
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
        self.deferred_start = None;
    }

    /// A start while the test stops is a new test, as in Locust (which
    /// starts afresh from any state but spawning and running): it is kept
    /// until every user has stopped and the test_stop hooks ran, so the
    /// two tests never mix. Returns the settings when nothing stops.
    pub fn defer_start_while_stopping(&mut self, settings: TestSettings) -> Option<TestSettings> {
        if self.state != RunnerState::Stopping {
            return Some(settings);
        }
        tracing::info!("A new test was asked for while the last one stops: it starts once every user has stopped");
        self.deferred_start = Some(settings);
        None
    }

    /// The start [`RunnerCore::defer_start_while_stopping`] kept, once the
    /// test it waited for has stopped.
    pub fn take_deferred_start(&mut self) -> Option<TestSettings> {
        if !self.is_idle() || self.quitting {
            return None;
        }
        self.deferred_start.take()
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
        // A ramping arrival rate without a run time lasts its stages (k6's);
        // a load shape's step lasts what the shape says.
        let shaped = self.shape_began.is_some() || settings.shape_step.is_some();
        let stages = settings.arrival.as_deref().and_then(ArrivalRate::stages_duration).filter(|_| !shaped);
        match settings.run_time.or(stages) {
            // A limit beyond any clock is no limit.
            Some(limit) if !limit.is_zero() => self.deadline = Instant::now().checked_add(limit),
            Some(_) => self.deadline = None,
            None if fresh => self.deadline = None,
            None => {}
        }
        match &settings.wait_times {
            Some(waits) => self.wait_times = waits.clone(),
            None if fresh => self.wait_times.clear(),
            None => {}
        }
        self.arrival = settings.arrival.as_deref().cloned();
        self.stats.lock_or_recover().arrival = self.arrival.as_ref().map(ToString::to_string);
        self.spawn_rate = if settings.arrival.is_none() && settings.spawn_rate.is_finite() && settings.spawn_rate > 0.0
        {
            settings.spawn_rate
        } else {
            f64::INFINITY
        };
        if fresh { Begin::Fresh } else { Begin::Retarget }
    }

    /// The arrival rate of the current load; `None` for a closed model.
    pub fn arrival(&self) -> Option<&ArrivalRate> {
        self.arrival.as_ref()
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

    /// Fewer users than the ramp's target will run (the memory guard shed
    /// some): the target follows, the state stays.
    pub fn lower_target(&mut self, target: usize) {
        self.target = self.target.min(target);
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
        // Stop again while stopping: the new test asked for meanwhile is off.
        self.deferred_start = None;
        if self.is_idle() || self.state == RunnerState::Stopping {
            return false;
        }
        self.deadline = None;
        self.shape_began = None;
        self.set_state(RunnerState::Stopping);
        true
    }

    /// Every user stopped: the test is over.
    pub fn stopped(&mut self) {
        self.deadline = None;
        self.shape_began = None;
        self.stats.lock_or_recover().shape = None;
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
        store.step_marks.clear();
        // The step under way counts from the reset.
        if let (Some(step), Some(_)) = (&self.last_step, self.shape_began) {
            store.mark_step(&step_label(step, self.step_number), unix_now());
        }
        self.epoch
    }

    /// Wait times by class name instead of the plan's, for this test.
    pub fn wait_times(&self) -> &BTreeMap<String, WaitSpec> {
        &self.wait_times
    }

    /// The same, in the plan's class order (`None`: the plan's own).
    pub fn wait_times_by_class(&self) -> Vec<Option<WaitSpec>> {
        self.class_names.iter().map(|name| self.wait_times.get(name).copied()).collect()
    }

    /// A start command from a surface (or the plan), as the load shape
    /// sees it. With no shape it is taken as it is. A new test takes the
    /// shape's first step instead of its user count, rate, mix and wait
    /// times (`None`: the shape ends the test before it starts). A change
    /// while the shape drives the test pauses the shape until the next
    /// test, as editing the user count does in Locust's web UI.
    pub fn shape_command(&mut self, settings: TestSettings) -> Option<TestSettings> {
        if let Some(tag) = settings.shape_step.clone() {
            return self.plan_shape_step(tag, settings);
        }
        let Some(shape) = self.shape.clone() else {
            self.pause_shape_by_hand("the plan's shape");
            return Some(settings);
        };
        let name = shape.lock_or_recover().name().to_owned();
        if self.is_idle() && !self.quitting {
            let first = {
                let store = self.stats.lock_or_recover();
                shape.lock_or_recover().tick(Duration::ZERO, &store.stats)
            };
            let Some(step) = first else {
                tracing::warn!("The load shape {name} ends the test before it starts: nothing to run");
                return None;
            };
            self.begin_shape();
            tracing::info!("The load shape {name} drives the test");
            return Some(self.take_step(&name, step, settings));
        }
        self.pause_shape_by_hand(&name);
        Some(settings)
    }

    /// A shape starts driving a test now, from its first step.
    fn begin_shape(&mut self) {
        self.shape_began = Some((Instant::now(), unix_now()));
        self.shape_paused = false;
        self.last_step = None;
        self.step_number = 0;
    }

    /// A change by hand while a shape drives the test: the shape pauses
    /// until the next test.
    fn pause_shape_by_hand(&mut self, name: &str) {
        if self.shape_began.is_some() && !self.shape_paused && self.state != RunnerState::Stopping {
            self.shape_paused = true;
            tracing::info!("The load was changed by hand: the load shape {name} is paused until the next test");
            if let Some(status) = &mut self.stats.lock_or_recover().shape {
                status.paused = true;
            }
        }
    }

    /// A step of the plan's own shape (ticked in the plan, which asks for
    /// its load): shown and marked as a Rust shape's; dropped once the
    /// load was changed by hand in this test.
    fn plan_shape_step(&mut self, tag: PlanShapeStep, settings: TestSettings) -> Option<TestSettings> {
        let name = tag.shape.as_str();
        if self.shape_began.is_some() && self.shape_paused {
            tracing::debug!("load shape {name}: a step after a change by hand, ignored");
            return None;
        }
        if self.shape_began.is_none() {
            self.begin_shape();
        }
        let step = ShapeStep {
            users: settings.users,
            spawn_rate: settings.spawn_rate,
            mix: settings.class_mix.clone(),
            wait_times: BTreeMap::new(),
            label: tag.label.clone(),
            ends_after: tag.ends_after,
            arrival: settings.arrival.as_deref().cloned(),
        };
        if self.last_step.as_ref() == Some(&step) {
            return None; // the same step again (a master saw it early)
        }
        let base = TestSettings { shape_step: None, ..settings.clone() };
        let mut taken = self.take_step(name, step, base);
        // A plan's shape has no wait times of its own.
        taken.wait_times = None;
        Some(taken)
    }

    /// When the shape's current step ends (a phase's end): the loop ticks
    /// the shape then too, so phases change on time, not up to a second late.
    pub fn shape_step_end(&self) -> Option<Instant> {
        // A plan's own shape ticks itself.
        self.shape.as_ref()?;
        let (began, _) = self.shape_began.filter(|_| !self.shape_paused)?;
        let ends = self.last_step.as_ref()?.ends_after.filter(|e| self.end_ticked != Some(*e))?;
        // A hair after, so the shape sees the next step's time.
        Some(began + ends + Duration::from_millis(1))
    }

    /// Ask the shape driving the test (if one does, unpaused) for its
    /// load now: called once a second, as Locust's shape ticks.
    pub fn shape_tick(&mut self) -> ShapeAction {
        let (Some(shape), Some((began, _))) = (self.shape.clone(), self.shape_began) else {
            return ShapeAction::Keep;
        };
        if self.shape_paused || !matches!(self.state, RunnerState::Spawning | RunnerState::Running) {
            return ShapeAction::Keep;
        }
        let step = {
            let store = self.stats.lock_or_recover();
            shape.lock_or_recover().tick(began.elapsed(), &store.stats)
        };
        let name = shape.lock_or_recover().name().to_owned();
        let elapsed = began.elapsed();
        if let Some(end) = step.as_ref().and_then(|s| s.ends_after).filter(|end| elapsed >= *end) {
            self.end_ticked = Some(end);
        }
        match step {
            None => {
                tracing::info!("The load shape {name} ended the test");
                self.shape_began = None;
                ShapeAction::End
            }
            Some(step) if self.last_step.as_ref() == Some(&step) => ShapeAction::Keep,
            Some(step) => ShapeAction::Apply(Box::new(self.take_step(&name, step, TestSettings::default()))),
        }
    }

    /// `base` (host, classes, run time) with the load of `step`; the step
    /// becomes the current one, marked where it changes.
    fn take_step(&mut self, name: &str, step: ShapeStep, base: TestSettings) -> TestSettings {
        let new_step = self.last_step.as_ref().is_none_or(|last| last.label != step.label || step.label.is_none());
        if new_step {
            self.step_number += 1;
        }
        let label = step_label(&step, self.step_number);
        let began_unix = self.shape_began.map(|(_, unix)| unix).unwrap_or_else(unix_now);
        {
            let mut store = self.stats.lock_or_recover();
            if new_step {
                store.mark_step(&label, unix_now());
                tracing::info!("Load shape {name}: {label} ({} users at {:.2}/s)", step.users, step.spawn_rate);
            }
            store.shape = Some(ShapeStatus {
                name: name.to_owned(),
                step: Some(label),
                step_number: self.step_number,
                step_ends: step.ends_after.map(|d| began_unix + d.as_secs_f64()),
                paused: false,
            });
        }
        let settings = TestSettings {
            users: step.users,
            spawn_rate: step.spawn_rate,
            class_mix: step.mix.clone(),
            wait_times: Some(step.wait_times.clone()),
            class_counts: None,
            arrival: step.arrival.clone().map(Box::new),
            ..base
        };
        self.last_step = Some(step);
        settings
    }
}

/// A step's name: its label, or `step N`.
fn step_label(step: &ShapeStep, number: usize) -> String {
    step.label.clone().unwrap_or_else(|| format!("step {number}"))
}

/// Resolves at `deadline`, never without one (for `select!` branches).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
