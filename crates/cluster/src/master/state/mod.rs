//! The master's loop: the workers' shares and the merged statistics
//! around the shared runner core (`swarmer_engine::RunnerCore`: state,
//! host and class selection, target, run time, statistics epoch). One tokio task; it reads the handle's commands and the
//! workers' events, and once a second checks heartbeats and samples the
//! history. What workers report, and the once-a-second checks, are in
//! `workers`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarmer_engine::{
    Begin, ClassInfo, ClassWeight, ClusterMessage, LockExt, Notice, Plan, RunnerCommand, RunnerCore, RunnerEvent,
    RunnerHandle, RunnerOptions, RunnerState, StatsView, TestSettings, UsageMonitor, WorkerRoster, WorkerState,
    sleep_until,
};
use tokio::sync::{broadcast, mpsc, oneshot};

mod pace;
mod workers;

/// Workers' events waiting for the loop, at most.
pub(super) const EVENT_QUEUE: usize = 256;

use super::service::WorkerEvent;
use crate::arrival_split::{WorkerArrival, worker_parts};
use crate::assign::{assign_keeping, spawn_rates};
use crate::proto::{self, master_message};

/// How long stopping workers get to answer before the master stops waiting.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long quitting workers get to send their last statistics.
const QUIT_GRACE: Duration = Duration::from_secs(10);

struct Worker {
    session: u64,
    cores: u32,
    tx: mpsc::UnboundedSender<proto::MasterMessage>,
    state: WorkerState,
    user_count: usize,
    cpu: f64,
    rss: u64,
    last_seen: Instant,
    missing: bool,
    /// Users per class this worker was given.
    share: Vec<usize>,
    stopped: bool,
    quit: bool,
    /// Why it left, when it could not run the test.
    message: Option<String>,
    /// The most users it can run: its memory guard shed users this test.
    cap: Option<usize>,
    /// Joined while users run: it is dealt users at its first heartbeat
    /// (sent once its plan has loaded), so the others stop the users it
    /// takes over only when it can start them at once.
    joining: bool,
}

pub(super) struct MasterLoop {
    core: RunnerCore,
    plan: Plan,
    options: RunnerOptions,
    classes: Vec<ClassInfo>,
    heartbeat_timeout: Duration,
    usage: UsageMonitor,
    workers: BTreeMap<String, Worker>,
    /// What surfaces and the plan read of `workers`.
    roster: WorkerRoster,
    stop_started: Option<Instant>,
    quitting: Option<(oneshot::Sender<()>, Instant)>,
    /// The plan's runner on the master (no users: listeners and handlers).
    control: Option<RunnerHandle>,
    /// `epoch`, for the gRPC side to tell joining workers.
    shared_epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Users per class the plan asked for (`swarmer.runner.set_load` with
    /// a mix), in the plan's class order, instead of its weights.
    mix: Option<Vec<usize>>,
    /// `--reset-stats` waits for the end of the ramp a start asked for.
    pub(super) reset_pending: bool,
    /// Assigns sent so far (each carries its number).
    assign_sequence: u64,
    /// When the current arrival rate's schedule began (`None`: closed model).
    arrival_began: Option<Instant>,
    /// The next dispatch is a step of the load shape: workers flush first.
    /// A step of the load shape began with Assign number `.0`: its mark is
    /// settled once each of these workers has reported since that Assign.
    pub(super) mark_waiting: Option<(u64, std::collections::BTreeSet<String>)>,
    /// Workers whose malformed statistics the results already note.
    refused_reports: std::collections::BTreeSet<String>,
    /// The results say that names past the bound are folded.
    noted_folding: bool,
    /// How often workers are asked to report (backpressure).
    pace: pace::ReportPace,
    /// The results say that workers were asked to report less often.
    noted_pace: bool,
}

impl MasterLoop {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        plan: Plan,
        options: RunnerOptions,
        classes: Vec<ClassInfo>,
        stats: StatsView,
        roster: WorkerRoster,
        events: broadcast::Sender<RunnerEvent>,
        host: Arc<Mutex<Option<String>>>,
        heartbeat_timeout: Duration,
        usage: UsageMonitor,
    ) -> Self {
        Self {
            core: RunnerCore::new(&classes, stats, events, host).with_shape(options.shape.clone()),
            plan,
            options,
            classes,
            heartbeat_timeout,
            usage,
            workers: BTreeMap::new(),
            roster,
            stop_started: None,
            quitting: None,
            control: None,
            shared_epoch: Arc::default(),
            mix: None,
            reset_pending: false,
            assign_sequence: 0,
            arrival_began: None,
            mark_waiting: None,
            refused_reports: Default::default(),
            noted_folding: false,
            pace: pace::ReportPace::new(Instant::now()),
            noted_pace: false,
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<RunnerCommand>,
        mut workers: mpsc::Receiver<WorkerEvent>,
        control: RunnerHandle,
        mut messages: mpsc::UnboundedReceiver<ClusterMessage>,
        epoch: Arc<std::sync::atomic::AtomicU64>,
    ) {
        self.shared_epoch = epoch;
        // A closed input is not polled again (it would answer at once, forever).
        let (mut commands_open, mut messages_open, mut control_open) = (true, true, true);
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let _ = self.usage.sample();
        let mut control_events = control.subscribe();
        self.control = Some(control);
        loop {
            tokio::select! {
                command = commands.recv(), if commands_open => match command {
                    Some(command) => {
                        self.on_command(command, &mut messages).await;
                    }
                    None => {
                        commands_open = false;
                        if self.quitting.is_none() {
                            self.begin_quit(oneshot::channel().0);
                        }
                    }
                },
                event = workers.recv() => match event {
                    // Reports are timed: what fewer reports would save.
                    Some(event @ WorkerEvent::Stats { .. }) => {
                        self.pace.queue(workers.len(), EVENT_QUEUE);
                        let began = Instant::now();
                        self.on_worker(event);
                        self.pace.spent(began.elapsed());
                    }
                    Some(event) => {
                        self.pace.queue(workers.len(), EVENT_QUEUE);
                        self.on_worker(event);
                    }
                    None => break,
                },
                message = messages.recv(), if messages_open => match message {
                    Some(message) => self.route(message),
                    None => messages_open = false,
                },
                event = control_events.recv(), if control_open => match event {
                    // The plan asked to stop the test (swarmer.quit() on the master).
                    Ok(RunnerEvent::StopTestRequested) => self.stop(),
                    // The plan asked for a load (swarmer.runner.set_load): as a start form would.
                    // (Not while the test stops: that would revive it.)
                    Ok(RunnerEvent::LoadRequested(settings)) if self.core.state() != RunnerState::Stopping => {
                        self.on_command(RunnerCommand::Start(*settings), &mut messages).await
                    }
                    Err(broadcast::error::RecvError::Closed) => control_open = false,
                    _ => {}
                },
                _ = second.tick() => self.every_second(),
                _ = sleep_until(self.core.shape_step_end()) => self.shape_tick(),
                _ = sleep_until(self.core.deadline()) => {
                    self.core.run_time_reached();
                    self.stop();
                }
            }
            if let Some(settings) = self.core.take_deferred_start() {
                self.on_command(RunnerCommand::Start(settings), &mut messages).await;
            }
            if self.quit_done() {
                break;
            }
        }
        if let Some(control) = self.control.take() {
            control.quit().await;
        }
        if let Some((reply, _)) = self.quitting.take() {
            let _ = reply.send(());
        }
    }

    async fn on_command(&mut self, command: RunnerCommand, messages: &mut mpsc::UnboundedReceiver<ClusterMessage>) {
        match command {
            RunnerCommand::Start(settings) => {
                let Some(settings) = self.core.defer_start_while_stopping(settings) else { return };
                if self.live_ids().is_empty() && self.core.is_idle() {
                    tracing::warn!("No worker is connected yet: the test cannot start (start workers with --worker)");
                    return;
                }
                // The load shape's first step, or a change by hand that pauses it.
                let Some(mut settings) = self.core.shape_command(settings) else { return };
                if self.core.is_idle() && !self.live_ids().is_empty() && self.quitting.is_none() {
                    // A new test starts from zero, on the master and every
                    // worker: what the plan's listeners recorded here before
                    // (the last test's test_stop) is merged before the reset.
                    self.flush_control().await;
                    self.new_epoch();
                    // Memory guards start the new test afresh too.
                    self.workers.values_mut().for_each(|w| w.cap = None);
                    // The plan's test_start listeners run here first; what they
                    // send reaches each worker before its users.
                    // As Locust's, the listeners read the test's target user count.
                    self.core.stats().lock_or_recover().target_user_count = settings.users;
                    if let Some(control) = self.control.clone() {
                        let host = settings.host.clone().or_else(|| self.core.host());
                        let mut early = control.subscribe();
                        control.run_test_hooks(true, host).await;
                        // A plan's shape took its first step in test_start:
                        // that is the test's load, not the start's user count.
                        loop {
                            match early.try_recv() {
                                Ok(RunnerEvent::LoadRequested(step)) if step.shape_step.is_some() => {
                                    if let Some(load) = self.core.shape_command(*step) {
                                        settings = TestSettings {
                                            host: settings.host.clone(),
                                            classes: settings.classes.clone(),
                                            run_time: settings.run_time,
                                            ..load
                                        };
                                    }
                                }
                                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                                Err(_) => break,
                            }
                        }
                    }
                    // Heartbeats were not read meanwhile: do not count that time.
                    let now = Instant::now();
                    self.workers.values_mut().for_each(|w| w.last_seen = now);
                    while let Ok(message) = messages.try_recv() {
                        self.route(message);
                    }
                }
                self.start(settings, false)
            }
            RunnerCommand::Notify(notice) => self.notify_plan(notice),
            RunnerCommand::TestHooks { done, .. } => {
                let _ = done.send(());
            }
            RunnerCommand::Stop => self.stop(),
            RunnerCommand::ResetStats => {
                self.flush_control().await;
                // Heartbeats were not read meanwhile (test_stop hooks may
                // have run first): do not count that time.
                let now = Instant::now();
                self.workers.values_mut().for_each(|w| w.last_seen = now);
                self.reset_stats()
            }
            RunnerCommand::Quit(reply) => self.begin_quit(reply),
            // Workers report every second on their own, and so does the
            // plan runner here: nothing to wait for (waiting on the plan
            // runner would stall the master behind a slow test_stop hook).
            RunnerCommand::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }

    /// A worker that joined (`silent_return` false) or whose heartbeats came
    /// back on the same stream: a share if a test runs. A worker that comes
    /// back while no test runs may still run users from before: stop them.
    /// (A worker that reconnects stops its users itself.)
    fn catch_up(&mut self, id: &str, silent_return: bool) {
        match self.core.state() {
            RunnerState::Spawning | RunnerState::Running => self.dispatch(false),
            _ if !silent_return => {}
            state => {
                if state == RunnerState::Stopping
                    && let Some(w) = self.workers.get_mut(id)
                {
                    w.stopped = false;
                }
                self.send(id, master_message::Kind::Stop(proto::Stop {}));
                self.check_stopped();
            }
        }
    }

    /// A message from the master's plan to one worker (or every worker).
    fn route(&self, message: ClusterMessage) {
        let custom =
            proto::CustomMessage { r#type: message.kind, data: message.data.into_bytes(), worker_id: String::new() };
        if message.peer.is_empty() {
            self.broadcast(master_message::Kind::Custom(custom));
        } else if self.workers.contains_key(&message.peer) {
            self.send(&message.peer, master_message::Kind::Custom(custom));
        } else {
            tracing::warn!("send_message: no worker {:?}; message {:?} dropped", message.peer, custom.r#type);
        }
    }

    fn live_ids(&self) -> Vec<String> {
        self.workers.iter().filter(|(_, w)| !w.missing).map(|(id, _)| id.clone()).collect()
    }

    /// The live workers users are dealt to (not those still joining).
    fn dealt_ids(&self) -> Vec<String> {
        self.workers.iter().filter(|(_, w)| !w.missing && !w.joining).map(|(id, _)| id.clone()).collect()
    }

    fn send(&self, id: &str, kind: master_message::Kind) {
        if let Some(w) = self.workers.get(id)
            && w.tx.send(proto::MasterMessage { kind: Some(kind) }).is_err()
        {
            tracing::debug!("worker {id}: its stream is closed; message dropped");
        }
    }

    fn broadcast(&self, kind: master_message::Kind) {
        for id in self.live_ids() {
            self.send(&id, kind.clone());
        }
    }

    /// `flush_first`: workers hand over their statistics before the new
    /// load (a shape's step begins, and its records must not mix).
    fn start(&mut self, mut settings: TestSettings, flush_first: bool) {
        if self.core.is_quitting() {
            return;
        }
        if let Some(rate) = &settings.arrival {
            if let Err(e) = rate.check() {
                tracing::error!("arrival rate: {e}; the load stays as it is");
                return;
            }
            // The pool's pre-allocated users are dealt as users are; each
            // worker's pool grows on its own (see `dispatch`).
            settings.users = rate.pre_allocated;
            settings.spawn_rate = f64::INFINITY;
        }
        // Each new rate is a new schedule, from now.
        self.arrival_began = settings.arrival.is_some().then(Instant::now);
        // A mix by class name: exact users per class from now on; a start
        // without one goes back to the plan's weights.
        self.mix = settings
            .class_mix
            .take()
            .map(|mix| mix.counts(self.core.class_names(), self.core.weights(), settings.users));
        if let Some(counts) = &self.mix {
            settings.users = counts.iter().sum();
        }
        if self.live_ids().is_empty() {
            tracing::warn!("No worker is connected yet: the test cannot start (start workers with --worker)");
            return;
        }
        let was_ramping = self.core.state() == RunnerState::Spawning;
        match self.core.begin(&settings) {
            Begin::Fresh => {
                self.plan.run_test_start_hooks();
                self.core.started();
            }
            // A step shorter than its ramp is cut where it ends, and said so.
            Begin::Retarget if was_ramping => tracing::info!(
                "A new target came before the ramp to {} users was done: the ramp goes to the new target",
                self.core.target()
            ),
            _ => {}
        }
        tracing::info!(
            "Ramping to {} users at a rate of {:.2} per second over {} workers",
            settings.users,
            settings.spawn_rate,
            self.live_ids().len()
        );
        self.core.enter_spawning(settings.users);
        self.reset_pending = true;
        self.dispatch(flush_first);
    }

    /// Give every live worker its share of the users and of the spawn rate
    /// (`flush_first`: see `start`).
    fn dispatch(&mut self, flush_first: bool) {
        if !matches!(self.core.state(), RunnerState::Spawning | RunnerState::Running) {
            return;
        }
        let ids = self.dealt_ids();
        let cores: Vec<u32> = ids.iter().map(|id| self.workers[id].cores).collect();
        // The shares they run now: only what no longer fits moves.
        let current: Vec<Vec<usize>> = ids.iter().map(|id| self.workers[id].share.clone()).collect();
        // A mix the plan asked for is a fixed count per class.
        let weights: Vec<ClassWeight> = match &self.mix {
            Some(counts) => counts.iter().map(|n| (0, Some(*n as u32))).collect(),
            None => self.core.weights().to_vec(),
        };
        // A worker whose memory guard shed users runs no more than it kept.
        let caps: Vec<Option<usize>> = ids.iter().map(|id| self.workers[id].cap).collect();
        let shares = assign_keeping(&weights, self.core.target(), &cores, &current, &caps);
        let host = self.core.host().unwrap_or_default();
        let wait_times: std::collections::HashMap<String, String> =
            self.core.wait_times().iter().map(|(class, wait)| (class.clone(), wait.to_string())).collect();
        // Workers read a rate that is not finite and positive as "all at once".
        let spawn_rate = if self.core.spawn_rate().is_finite() { self.core.spawn_rate() } else { 1e9 };
        let rates = spawn_rates(spawn_rate, &current, &shares);
        let arrivals: Vec<Option<proto::ArrivalAssign>> = match self.core.arrival() {
            Some(rate) => {
                let dealt: Vec<usize> = shares.iter().map(|share| share.iter().sum()).collect();
                let began_ago = self.arrival_began.map_or(Duration::ZERO, |at| at.elapsed());
                worker_parts(rate, &cores, &dealt, began_ago).into_iter().map(|part| part.map(arrival_assign)).collect()
            }
            None => vec![None; ids.len()],
        };
        self.assign_sequence += 1;
        for (((id, share), rate), arrival) in ids.iter().zip(shares).zip(rates).zip(arrivals) {
            let assign = proto::Assign {
                arrival,
                class_counts: share.iter().map(|n| *n as u32).collect(),
                spawn_rate: rate,
                host: host.clone(),
                wait_times: wait_times.clone(),
                sequence: self.assign_sequence,
                flush_first,
            };
            if let Some(w) = self.workers.get_mut(id) {
                w.share = share;
                w.stopped = false;
            }
            self.send(id, master_message::Kind::Assign(assign));
        }
        if self.core.state() == RunnerState::Running {
            self.core.set_state(RunnerState::Spawning);
        }
        self.publish();
    }

    fn stop(&mut self) {
        if !self.core.begin_stop() {
            return;
        }
        for w in self.workers.values_mut() {
            w.stopped = w.missing;
        }
        self.stop_started = Some(Instant::now());
        self.notify_plan(Notice::TestStopping);
        self.broadcast(master_message::Kind::Stop(proto::Stop {}));
        self.check_stopped();
    }

    fn check_stopped(&mut self) {
        if self.core.state() != RunnerState::Stopping {
            return;
        }
        let all = self.workers.values().all(|w| w.stopped || w.missing);
        let late = self.stop_started.is_some_and(|t| t.elapsed() > self.options.stop_timeout + STOP_GRACE);
        if all || late {
            if late && !all {
                tracing::warn!("Some workers did not confirm the stop in time; the test is marked stopped");
            }
            self.stop_started = None;
            self.plan.run_test_stop_hooks();
            if let Some(control) = &self.control {
                // Asked for now, so that anything asked of the plan runner
                // next (a new test's flush and test_start) comes after.
                drop(control.request_test_hooks(false, None));
            }
            self.core.stopped();
            if self.quitting.is_some() {
                self.broadcast(master_message::Kind::Quit(proto::Quit {}));
            }
        }
    }

    /// Merge what the plan's listeners on the master recorded so far.
    async fn flush_control(&self) {
        if let Some(control) = &self.control {
            control.flush().await;
        }
    }

    /// Hand a notice to the plan's listeners on the master.
    pub(super) fn notify_plan(&self, notice: Notice) {
        if let Some(control) = &self.control {
            control.notify(notice);
        }
    }

    pub(super) fn reset_stats(&mut self) {
        self.notify_plan(Notice::ResetStats);
        self.new_epoch();
    }

    /// Empty the statistics here and on every worker (deltas of earlier
    /// epochs are dropped when they arrive).
    fn new_epoch(&mut self) {
        // The notes go with the statistics: say these again if they recur.
        self.refused_reports.clear();
        self.noted_folding = false;
        self.noted_pace = false;
        let epoch = self.core.reset_stats();
        self.shared_epoch.store(epoch, std::sync::atomic::Ordering::Relaxed);
        self.broadcast(master_message::Kind::ResetStats(proto::ResetStats { epoch }));
    }

    fn begin_quit(&mut self, reply: oneshot::Sender<()>) {
        self.quitting = Some((reply, Instant::now()));
        self.core.set_quitting();
        if self.core.is_idle() {
            self.broadcast(master_message::Kind::Quit(proto::Quit {}));
        } else {
            self.stop();
        }
    }

    /// Quitting, and every worker has sent its last statistics (or the
    /// grace period is over).
    fn quit_done(&self) -> bool {
        let Some((_, since)) = &self.quitting else { return false };
        if !self.core.is_idle() {
            return since.elapsed() > self.options.stop_timeout + STOP_GRACE + QUIT_GRACE;
        }
        let all = self.workers.values().all(|w| w.quit || w.missing);
        if !all && since.elapsed() > QUIT_GRACE + self.options.stop_timeout + STOP_GRACE {
            let late: Vec<&str> =
                self.workers.iter().filter(|(_, w)| !w.quit && !w.missing).map(|(id, _)| id.as_str()).collect();
            tracing::warn!("Workers {} did not send their last statistics in time", late.join(", "));
            return true;
        }
        all
    }
}

/// A worker's part of an arrival-rate test, as the protocol carries it.
fn arrival_assign(part: WorkerArrival) -> proto::ArrivalAssign {
    proto::ArrivalAssign {
        start_rate: part.rate.start_rate,
        stages: part
            .rate
            .stages
            .iter()
            .map(|s| proto::RateStage { seconds: s.duration.as_secs_f64(), target: s.target })
            .collect(),
        pre_allocated: part.rate.pre_allocated as u32,
        max_users: part.rate.max_users.min(u32::MAX as usize) as u32,
        slice_first: part.slice.first,
        slice_total: part.slice.total,
        began_seconds_ago: part.slice.began_ago.as_secs_f64(),
    }
}
