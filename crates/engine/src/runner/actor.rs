//! The local runner's actor: one tokio task that owns the ramp, the
//! users' placement on the shards and the merging of their statistics;
//! the lifecycle is the shared [`RunnerCore`]'s.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use swarmer_stats::{TOO_MANY_NAMES, unix_now};
use tokio::sync::{mpsc, oneshot};

use super::arrival_split::{shard_max_users, shard_shares, shards_taking_part};
use super::core::{Begin, RunnerCore, ShapeAction, sleep_until};
use super::handle::RunnerCommand;
use super::memory_guard::{MemoryAction, MemoryGuard};
use super::{RunnerEvent, RunnerOptions, TestSettings};
use crate::arrival::ArrivalRate;
use crate::cpu::UsageMonitor;
use crate::dispatch::UserSequence;
use crate::lock::LockExt;
use crate::plan::{ClusterMessage, NodeRole, Notice, Plan};
use crate::read_model::{RunnerState, folding_note};
use crate::shard::ShardCommand;
use crate::shard_context::ShardEvent;
use crate::test_settings::ArrivalSlice;

pub(super) struct Slot {
    id: u64,
    class: usize,
    shard: usize,
}

pub(super) struct Ramp {
    from: usize,
    target: usize,
    rate: f64,
    started: Instant,
    /// Users started or stopped so far (per-class targets only).
    done: usize,
}

pub(super) struct Actor {
    pub(super) core: RunnerCore,
    pub(super) plan: Plan,
    pub(super) options: RunnerOptions,
    pub(super) sequence: UserSequence,
    /// The shards users are placed on.
    pub(super) shard_tx: Vec<mpsc::UnboundedSender<ShardCommand>>,
    /// The process shard, when the plan has a process part: no users; the
    /// plan's test and notice hooks run there.
    pub(super) process_tx: Option<mpsc::UnboundedSender<ShardCommand>>,
    pub(super) threads: Vec<std::thread::JoinHandle<()>>,
    /// Live users per class (by the plan's class order).
    pub(super) per_class: Vec<usize>,
    /// Live users, oldest first: ramp-down pops from the end.
    pub(super) live: Vec<Slot>,
    pub(super) stopping: HashSet<u64>,
    pub(super) next_user_id: u64,
    pub(super) ramp: Option<Ramp>,
    pub(super) usage: UsageMonitor,
    pub(super) warned_cpu: bool,
    /// Consecutive seconds the CPU has been above the warning level (the
    /// process's, or one shard thread's), the sum of the process's figures
    /// (for the average the warning gives), and the busiest shard's highest.
    pub(super) busy: (u32, f64, f64),
    /// Consecutive seconds the whole process has been above the warning
    /// level (what `--cpu-guard` goes by).
    pub(super) saturated: u32,
    /// `--cpu-guard` holds the ramp up (since when).
    pub(super) guard_paused: Option<Instant>,
    /// `--memory-limit`.
    pub(super) memory_guard: Option<MemoryGuard>,
    pub(super) warned_names: bool,
    /// The results say that names past the bound are folded.
    pub(super) noted_folding: bool,
    pub(super) quitting: Option<oneshot::Sender<()>>,
    pub(super) shut_down: usize,
    pub(super) seconds: u64,
    /// Exact per-class user counts to reach (a cluster worker's share),
    /// instead of the first N positions of the sequence.
    pub(super) targets: Option<Vec<usize>>,
    /// Flushes in progress: shards still to answer, and who waits.
    /// Each flush's id, the shards still to answer it, and who waits.
    pub(super) flushes: Vec<(u64, usize, oneshot::Sender<()>)>,
    pub(super) next_flush: u64,
    /// A test start waiting for the test_start hooks (a flush answered
    /// after them), and the ramp to begin when they have run.
    pub(super) hooks_pending: Option<(oneshot::Receiver<()>, Ramp)>,
    /// A step of the load shape began: its mark is settled once the
    /// shards have handed over what they recorded before it.
    pub(super) mark_flush: Option<oneshot::Receiver<()>>,
    /// Shards taking part in the current arrival rate; 0 for the closed
    /// model (see [`Actor::pooled`]).
    pub(super) pool_shards: usize,
    /// An arrival-rate schedule (and a worker's slice of it) to start once
    /// its pool's users are placed.
    pub(super) pending_arrival: Option<(Box<ArrivalRate>, Option<ArrivalSlice>)>,
}

/// Past the moment a ramp's next user is due, so that floating-point
/// rounding never wakes the actor a hair before it.
const RAMP_MARGIN: Duration = Duration::from_micros(50);
const CPU_WARNING_PERCENT: f64 = 90.0;
/// Seconds of saturated CPU before `--cpu-guard` pauses spawning.
const GUARD_AFTER_SECONDS: u32 = 3;
/// How often shards hear the process's CPU and memory (Locust's `usage_monitor`).
const USAGE_MONITOR_SECONDS: u64 = 5;

impl Actor {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<RunnerCommand>,
        mut shards: mpsc::UnboundedReceiver<ShardEvent>,
        mut to_self: Option<mpsc::UnboundedReceiver<ClusterMessage>>,
    ) {
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let _ = self.usage.sample();
        loop {
            let (next_ramp, deadline, step_end) =
                (self.next_ramp_step(), self.core.deadline(), self.core.shape_step_end());
            tokio::select! {
                command = commands.recv() => match command {
                    Some(RunnerCommand::Start(settings)) => {
                        if let Some(settings) = self.core.defer_start_while_stopping(settings) {
                            self.start_command(settings);
                        }
                    }
                    Some(RunnerCommand::Stop) => self.stop(),
                    Some(RunnerCommand::ResetStats) => self.reset_stats(),
                    Some(RunnerCommand::Flush(reply)) => self.flush(reply),
                    Some(RunnerCommand::Notify(notice)) => self.notify_shards(notice),
                    Some(RunnerCommand::TestHooks { start, host, done }) => {
                        let host = host.or_else(|| self.core.host());
                        self.to_every_shard(|| {
                            if start { ShardCommand::TestStart { host: host.clone() } } else { ShardCommand::TestStop }
                        });
                        // Shards take commands in order: the flush answers after the hooks ran.
                        self.flush(done);
                    }
                    Some(RunnerCommand::Quit(done)) => {
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
                _ = hooks_done(&mut self.hooks_pending), if self.hooks_pending.is_some() => self.begin_ramp(),
                message = message_to_self(&mut to_self), if to_self.is_some() => match message {
                    Some(message) => self.notify_shards(Notice::Message(ClusterMessage { peer: "local".into(), ..message })),
                    None => to_self = None,
                },
                _ = sleep_until(next_ramp), if next_ramp.is_some() => self.ramp_step(),
                _ = sleep_until(deadline) => {
                    self.core.run_time_reached();
                    self.stop();
                }
                _ = sleep_until(step_end), if step_end.is_some() => self.shape_tick(),
                _ = flushed(&mut self.mark_flush), if self.mark_flush.is_some() => {
                    self.mark_flush = None;
                    self.core.stats().lock_or_recover().settle_last_mark();
                }
                _ = second.tick() => self.every_second(),
            }
            if let Some(settings) = self.core.take_deferred_start() {
                self.start_command(settings);
            }
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The last sample (the CPU of shards shutting down is no warning).
        self.warned_cpu = true;
        self.every_second();
        if let Some(done) = self.quitting.take() {
            let _ = done.send(());
        }
    }

    fn flush(&mut self, reply: oneshot::Sender<()>) {
        let id = self.next_flush;
        self.to_every_shard(|| ShardCommand::Flush { id });
        self.flushes.push((id, self.shard_count(), reply));
        self.next_flush += 1;
    }

    /// Send a command to every shard, the process shard included.
    fn to_every_shard(&self, command: impl Fn() -> ShardCommand) {
        for tx in self.shard_tx.iter().chain(&self.process_tx) {
            let _ = tx.send(command());
        }
    }

    fn shut_down_process_shard(&self) {
        if let Some(tx) = &self.process_tx {
            let _ = tx.send(ShardCommand::Shutdown);
        }
    }

    /// Shards, the process shard included.
    fn shard_count(&self) -> usize {
        self.shard_tx.len() + usize::from(self.process_tx.is_some())
    }

    fn notify_shards(&self, notice: Notice) {
        self.to_every_shard(|| ShardCommand::Notice(notice.clone()));
    }

    fn emit(&self, event: RunnerEvent) {
        self.core.emit(event);
    }

    /// A start asked for by a handle (the load shape, if any, has its say).
    fn start_command(&mut self, settings: TestSettings) {
        if let Some(settings) = self.core.shape_command(settings) {
            self.start(settings);
        }
    }

    fn start(&mut self, mut settings: TestSettings) {
        // A new model starts its users afresh; a running pool given a new
        // rate or shape keeps its users, but for those over a shard's new
        // maximum.
        let restart_pool = match &settings.arrival {
            Some(rate) => {
                if let Err(e) = rate.check() {
                    tracing::error!("arrival rate: {e}; the load stays as it is");
                    return;
                }
                !self.pooled()
            }
            None => self.pooled(),
        };
        if let Some(rate) = settings.arrival.as_deref().filter(|_| !restart_pool) {
            self.trim_pool(rate);
        }
        if let Some(rate) = &settings.arrival {
            // The pool: its pre-allocated users, or as many as it grew to
            // (up to its maximum), all at once.
            let running = if restart_pool { 0 } else { self.live.len() };
            settings.users = running.max(rate.pre_allocated).min(rate.max_users);
            settings.spawn_rate = f64::INFINITY;
            if running > 0 {
                // A new rate for a running pool (a worker's share included)
                // keeps the users it grew to, whatever their classes.
                settings.class_counts = None;
                self.targets = None;
            }
        }
        if let Some(mix) = settings.class_mix.take() {
            // Classes by name become counts in this runner's class order.
            let counts = mix.counts(self.core.class_names(), self.core.weights(), settings.users);
            settings.users = counts.iter().sum();
            settings.class_counts = Some(counts);
        }
        let was_ramping = self.core.state() == RunnerState::Spawning && self.live.len() != self.core.target();
        let begin = self.core.begin(&settings);
        if begin == Begin::Refused {
            return;
        }
        // A new load replaces the schedule; users of the other model leave
        // (the new model's start afresh).
        self.to_every_shard(|| ShardCommand::Arrival(None));
        if restart_pool && !self.live.is_empty() {
            let all: Vec<Slot> = self.live.drain(..).collect();
            self.stop_slots(all);
        }
        self.pool_shards = settings.arrival.as_deref().map_or(0, |r| shards_taking_part(r, self.shard_tx.len()));
        self.pending_arrival = settings.arrival.clone().map(|rate| (rate, settings.arrival_slice));
        if begin == Begin::Retarget && was_ramping {
            // A step shorter than its ramp is cut where it ends, and said so.
            tracing::info!(
                "A new target came before the ramp to {} users was done ({} running): the ramp goes to the new target",
                self.core.target(),
                self.live.len()
            );
        }
        if begin == Begin::Fresh || settings.wait_times.is_some() {
            // Shards take commands in order: users spawned next wait as told.
            let waits = self.core.wait_times_by_class();
            for tx in &self.shard_tx {
                let _ = tx.send(ShardCommand::WaitTimes(waits.clone()));
            }
        }
        if begin == Begin::Fresh && settings.classes.is_some() {
            // The class picker's selection: the sequence follows it.
            self.sequence = UserSequence::new(self.core.weights());
        }
        let target = match (&settings.class_counts, self.sequence.capacity()) {
            (Some(counts), _) => counts.iter().sum(),
            (None, Some(cap)) if settings.users > cap => {
                tracing::warn!("only {cap} users can be placed: every class has a fixed_count");
                cap
            }
            _ => settings.users,
        };
        let had_targets = self.targets.is_some();
        self.targets = settings.class_counts.map(|mut counts| {
            counts.resize(self.core.class_names().len(), 0);
            counts
        });
        if self.targets.is_none() && had_targets && begin == Begin::Retarget {
            // Back from a mix to the plan's weights: users move to the
            // weights' counts (as a master's do), not just the newest ones.
            self.targets = Some(self.sequence.counts(target, self.core.class_names().len()));
        }
        if begin == Begin::Fresh {
            if let Some(guard) = &mut self.memory_guard {
                guard.reset();
                self.core.stats().lock_or_recover().user_cap = None;
            }
            // A new test starts from zero (its listeners' requests count in it).
            let epoch = self.core.reset_stats();
            self.to_every_shard(|| ShardCommand::ResetStats { epoch });
            // As Locust's, test_start listeners read the test's target (the
            // process shard runs them on its own thread, maybe at once).
            self.core.stats().lock_or_recover().target_user_count = target;
            for hook in &self.plan.on_test_start {
                hook();
            }
            let host = self.core.host();
            self.to_every_shard(|| ShardCommand::TestStart { host: host.clone() });
            self.core.started();
        }
        tracing::info!("Ramping to {target} users at a rate of {:.2} per second", settings.spawn_rate);
        self.core.enter_spawning(target);
        let rate = self.core.spawn_rate();
        let ramp = Ramp { from: self.live.len(), target, rate, started: Instant::now(), done: 0 };
        if let Some((_, pending)) = &mut self.hooks_pending {
            // The test_start hooks still run: the ramp waits for them.
            *pending = ramp;
        } else if begin == Begin::Fresh && self.process_tx.is_some() {
            // Users start once the process shard's test_start listeners
            // have run (shards take commands in order: a flush answers after).
            let (done, wait) = oneshot::channel();
            self.flush(done);
            self.hooks_pending = Some((wait, ramp));
        } else {
            self.ramp = Some(ramp);
            self.keep_guard_for_new_ramp();
            self.ramp_step();
        }
    }

    /// The test_start hooks have run: the ramp waiting for them begins.
    fn begin_ramp(&mut self) {
        let Some((_, mut ramp)) = self.hooks_pending.take() else { return };
        ramp.started = Instant::now();
        ramp.from = self.live.len();
        self.ramp = Some(ramp);
        self.keep_guard_for_new_ramp();
        self.ramp_step();
    }

    /// When the ramp's next user is due: after `n` changes since it began,
    /// the next is due `n / rate` seconds after its start.
    fn next_ramp_step(&self) -> Option<tokio::time::Instant> {
        if self.guard_holds() {
            return None;
        }
        let ramp = self.ramp.as_ref()?;
        let done = if self.targets.is_some() { ramp.done } else { self.live.len().abs_diff(ramp.from) };
        let after = Duration::try_from_secs_f64(done as f64 / ramp.rate).unwrap_or(Duration::ZERO);
        Some(tokio::time::Instant::from_std(ramp.started) + after + RAMP_MARGIN)
    }

    fn ramp_step(&mut self) {
        if self.guard_holds() {
            return;
        }
        let Some(ramp) = &self.ramp else { return };
        if self.shard_tx.is_empty() {
            // A runner without user shards (a master's plan runner) places no users.
            self.ramp = None;
            return;
        }
        let due = if ramp.rate.is_infinite() {
            usize::MAX
        } else {
            (ramp.rate * ramp.started.elapsed().as_secs_f64()).floor() as usize + 1
        };
        if self.targets.is_some() {
            self.reconcile_step(due);
            return;
        }
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
            self.spawning_complete();
        }
    }

    /// Per-class targets: stop surplus users (newest first), then start the
    /// missing ones, the class furthest from its target first, at most
    /// `due` changes since the ramp began.
    fn reconcile_step(&mut self, due: usize) {
        let (Some(targets), Some(ramp)) = (self.targets.clone(), self.ramp.as_mut()) else { return };
        let mut budget = due.saturating_sub(ramp.done);
        let mut counts = self.per_class.clone();
        // Newest first: mark the surplus, then take it out in one pass.
        let mut doomed = vec![false; self.live.len()];
        for (i, slot) in self.live.iter().enumerate().rev() {
            if budget == 0 {
                break;
            }
            if counts[slot.class] > targets[slot.class] {
                counts[slot.class] -= 1;
                doomed[i] = true;
                budget -= 1;
            }
        }
        let mut doomed = doomed.into_iter();
        let removed: Vec<Slot> = self.live.extract_if(.., |_| doomed.next().unwrap_or(false)).collect();
        let mut spawned = 0;
        while budget > 0 {
            let next = (0..targets.len()).filter(|&c| counts[c] < targets[c]).max_by(|&a, &b| {
                let gap = |c: usize| (targets[c] - counts[c]) as f64 / targets[c] as f64;
                gap(a).total_cmp(&gap(b)).then(b.cmp(&a))
            });
            let Some(class) = next else { break };
            self.spawn_class(class);
            counts[class] += 1;
            budget -= 1;
            spawned += 1;
        }
        if let Some(ramp) = self.ramp.as_mut() {
            ramp.done += removed.len() + spawned;
        }
        self.stop_slots(removed);
        self.publish_counts();
        if counts == targets {
            self.spawning_complete();
        }
    }

    fn spawning_complete(&mut self) {
        self.ramp = None;
        let class_counts = self.class_counts();
        let pretty: Vec<String> = class_counts.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        tracing::info!("All users spawned: {{{}}} ({} total users)", pretty.join(", "), self.live.len());
        if self.options.reset_stats {
            tracing::info!("Resetting stats");
            self.reset_stats();
        }
        self.notify_shards(Notice::SpawningComplete { user_count: self.live.len() });
        self.core.spawning_complete(self.live.len(), class_counts);
        self.start_arrival();
    }

    /// The shard with the most room under its share of `rate`'s maximum
    /// (the first of equals): where a pool's next user goes.
    fn roomiest_shard(&self, rate: &ArrivalRate) -> usize {
        let shards = self.shard_tx.len();
        let mut on = vec![0usize; shards];
        for slot in &self.live {
            on[slot.shard] += 1;
        }
        (0..shards)
            .max_by_key(|&i| (shard_max_users(rate, shards, i) as i64 - on[i] as i64, std::cmp::Reverse(i)))
            .unwrap_or(0)
    }

    /// Stop the pool's users over each shard's maximum under `rate` (the
    /// newest of a shard first; a shard that no longer takes part loses
    /// them all). The others keep running, and the pool grows back on
    /// drops as always.
    fn trim_pool(&mut self, rate: &ArrivalRate) {
        let shards = self.shard_tx.len();
        let mut kept_on = vec![0usize; shards];
        let mut surplus = Vec::new();
        let live = std::mem::take(&mut self.live);
        for slot in live {
            if kept_on[slot.shard] < shard_max_users(rate, shards, slot.shard) {
                kept_on[slot.shard] += 1;
                self.live.push(slot);
            } else {
                surplus.push(slot);
            }
        }
        if !surplus.is_empty() {
            tracing::info!("The pool's new maximum is {}: {} users leave it", rate.max_users, surplus.len());
            self.stop_slots(surplus);
        }
    }

    /// The users placed now are an arrival-rate pool.
    fn pooled(&self) -> bool {
        self.pool_shards > 0
    }

    /// The pool is placed: its schedule starts now on every shard.
    fn start_arrival(&mut self) {
        let Some((rate, slice)) = self.pending_arrival.take() else { return };
        // The pool grows by the classes' weights (of the test's selection),
        // whatever the users it started with.
        let weights: Vec<u32> = self.core.weights().iter().map(|(w, _)| *w).collect();
        tracing::info!("Starting iterations at {rate}");
        let shares = shard_shares(&rate, self.shard_tx.len(), slice, &weights, Instant::now(), self.core.host());
        for (tx, share) in self.shard_tx.iter().zip(shares) {
            let _ = tx.send(ShardCommand::Arrival(share));
        }
    }

    fn spawn_next(&mut self) {
        let Some(class) = self.sequence.class_at(self.live.len()) else { return };
        self.spawn_class(class);
    }

    fn spawn_class(&mut self, class: usize) {
        if self.shard_tx.is_empty() {
            return;
        }
        let shard = match self.pending_arrival.as_ref().filter(|_| self.pooled()) {
            Some((rate, _)) => self.roomiest_shard(rate),
            None => self.live.len() % self.shard_tx.len(),
        };
        let id = self.next_user_id;
        self.next_user_id += 1;
        let host = self.core.host();
        let pooled = self.pooled();
        let _ = self.shard_tx[shard].send(ShardCommand::Spawn { user_id: id, class, host, pooled });
        self.live.push(Slot { id, class, shard });
        self.per_class[class] += 1;
    }

    fn stop_slots(&mut self, slots: Vec<Slot>) {
        let mut per_shard: Vec<Vec<u64>> = vec![Vec::new(); self.shard_tx.len()];
        for slot in slots {
            self.per_class[slot.class] -= 1;
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
        if self.core.is_idle() {
            return;
        }
        self.ramp = None;
        self.hooks_pending = None;
        self.pending_arrival = None;
        self.to_every_shard(|| ShardCommand::Arrival(None));
        if self.core.begin_stop() {
            self.notify_shards(Notice::TestStopping);
        }
        let all: Vec<Slot> = self.live.drain(..).collect();
        self.stop_slots(all);
        self.publish_counts();
        if self.stopping.is_empty() {
            self.finish_stop();
        }
    }

    fn finish_stop(&mut self) {
        for hook in &self.plan.on_test_stop {
            hook();
        }
        self.to_every_shard(|| ShardCommand::TestStop);
        self.core.stopped();
        self.maybe_shutdown();
    }

    /// Once stopped and asked to quit, tell every shard to shut down.
    fn maybe_shutdown(&mut self) {
        if self.quitting.is_some() && self.core.is_idle() {
            // The process shard goes last: its `quitting` listeners read
            // the users' final statistics (and may choose the exit code).
            for tx in &self.shard_tx {
                let _ = tx.send(ShardCommand::Shutdown);
            }
            if self.shard_tx.is_empty() {
                self.shut_down_process_shard();
            }
        }
    }

    /// Returns true when the last shard has shut down.
    pub(super) fn on_shard_event(&mut self, event: ShardEvent) -> bool {
        match event {
            ShardEvent::Stats { delta, epoch } => {
                if epoch != self.core.epoch() {
                    return false;
                }
                if let Some(sink) = &self.options.delta_sink {
                    let _ = sink.send(delta.clone());
                }
                self.core.stats().lock_or_recover().stats.apply(&delta, unix_now());
            }
            ShardEvent::UserGrown { user_id, class, shard } => {
                self.live.push(Slot { id: user_id, class, shard });
                self.per_class[class] += 1;
                let memory_holds = self.memory_guard.as_ref().is_some_and(MemoryGuard::holds);
                if self.pooled() && self.core.is_active() && self.core.state() != RunnerState::Stopping && !memory_holds
                {
                    self.publish_counts();
                } else {
                    // Grown as the test stopped (or left the arrival rate), or
                    // while the memory guard holds: it stops too.
                    let slot = self.live.pop().into_iter().collect();
                    self.stop_slots(slot);
                }
            }
            ShardEvent::UserStopped { user_id } => {
                if !self.stopping.remove(&user_id) {
                    // The user ended itself (StopUser): it is not replaced.
                    if let Some(at) = self.live.iter().rposition(|s| s.id == user_id) {
                        let slot = self.live.remove(at);
                        self.per_class[slot.class] -= 1;
                    }
                    self.publish_counts();
                }
                if self.core.state() == RunnerState::Stopping && self.stopping.is_empty() {
                    self.finish_stop();
                }
            }
            ShardEvent::LoadRequested(settings) => match self.options.role {
                // A worker runs the share its master gives it.
                NodeRole::Worker(_) => tracing::warn!(
                    "swarmer.runner.set_load is ignored on a worker: the master's plan sets the load of the whole test"
                ),
                // A master's plan runner places no users: the master does.
                NodeRole::Master => self.emit(RunnerEvent::LoadRequested(Box::new(settings))),
                // A test that is stopping stays stopped: a step that raced
                // the stop (or a test_stopping listener) does not revive it.
                NodeRole::Local if self.core.state() == RunnerState::Stopping => {
                    tracing::info!("swarmer.runner.set_load while the test stops: ignored")
                }
                NodeRole::Local => {
                    if let Some(settings) = self.core.shape_command(settings) {
                        self.start(settings);
                    }
                }
            },
            ShardEvent::StopTestRequested => {
                if !matches!(self.core.state(), RunnerState::Stopping | RunnerState::Stopped) {
                    tracing::info!("A user asked to stop the test (StopTest)");
                    self.emit(RunnerEvent::StopTestRequested);
                    self.stop();
                }
            }
            ShardEvent::ShutDown => {
                self.shut_down += 1;
                if self.shut_down == self.shard_tx.len() {
                    self.shut_down_process_shard();
                }
                return self.shut_down == self.shard_count();
            }
            ShardEvent::Failed { error } => {
                self.emit(RunnerEvent::Warning(format!("a shard failed: {error}")));
            }
            ShardEvent::Flushed { id } => {
                if let Some(at) = self.flushes.iter().position(|(f, _, _)| *f == id) {
                    self.flushes[at].1 -= 1;
                    if self.flushes[at].1 == 0 {
                        let (_, _, reply) = self.flushes.remove(at);
                        let _ = reply.send(());
                    }
                }
            }
            ShardEvent::Ready => {}
        }
        false
    }

    /// Forget every statistic recorded so far, exactly: shards drop what
    /// they hold, and deltas already on their way are dropped by epoch.
    fn reset_stats(&mut self) {
        let epoch = self.core.reset_stats();
        self.to_every_shard(|| ShardCommand::ResetStats { epoch });
        self.notify_shards(Notice::ResetStats);
    }

    fn class_counts(&self) -> BTreeMap<String, usize> {
        self.core.class_names().iter().cloned().zip(self.per_class.iter().copied()).collect()
    }

    fn publish_counts(&self) {
        let counts = self.class_counts();
        let mut store = self.core.stats().lock_or_recover();
        store.user_count = self.live.len();
        store.class_counts = counts;
    }

    fn every_second(&mut self) {
        let usage = self.usage.sample().unwrap_or_default();
        let shards = self.shard_tx.len().max(1) as f64;
        let mut warnings = Vec::new();
        {
            let mut store = self.core.stats().lock_or_recover();
            store.usage = usage;
            let now = unix_now();
            if self.core.is_active() {
                store.sample_history(now);
            }
            // Once per test (a reset clears the rows and the notes).
            let folded = store.stats.folded_names();
            if folded && !self.noted_folding {
                warnings.push(folding_note());
            }
            self.noted_folding = folded;
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
        // A sustained condition, never one sample: each figure is a whole
        // second's (see `cpu::UsageMonitor`), and only a run of them warns.
        // A shard thread at its core's limit starves its own users even
        // when the others idle (users spread unevenly, a heavy class).
        let shard_hot = usage.busiest_shard_percent > CPU_WARNING_PERCENT;
        let process_hot = usage.cpu_percent > CPU_WARNING_PERCENT * shards;
        // `--cpu-guard` holds the ramp only while the whole process is
        // saturated: new users also go to shards that have room.
        self.saturated = if process_hot { self.saturated.saturating_add(1) } else { 0 };
        self.busy = if process_hot || shard_hot {
            (self.busy.0 + 1, self.busy.1 + usage.cpu_percent, self.busy.2.max(usage.busiest_shard_percent))
        } else {
            (0, 0.0, 0.0)
        };
        let after = u32::try_from(self.options.cpu_warning_after.as_secs()).unwrap_or(u32::MAX).max(1);
        if !self.warned_cpu && self.busy.0 >= after {
            self.warned_cpu = true;
            let average = self.busy.1 / f64::from(self.busy.0);
            self.notify_shards(Notice::CpuWarning { cpu_percent: average });
            let whole = average > CPU_WARNING_PERCENT * shards;
            warnings.push(if whole || shards <= 1.0 {
                format!(
                    "CPU usage above {CPU_WARNING_PERCENT}% of the {shards} core(s) in use for {} s (on average \
                     {average:.0}%)! The load generator may be the bottleneck and response times may be inflated. \
                     Use more shards, processes or workers.",
                    self.busy.0
                )
            } else {
                format!(
                    "CPU usage of a shard thread above {CPU_WARNING_PERCENT}% of its core for {} s (up to {:.0}%; \
                     the process at {average:.0}% of {shards} cores)! That shard's users wait for CPU and their \
                     response times may be inflated. Spread the load (more users per shard evenly, lighter tasks) \
                     or use more shards, processes or workers.",
                    self.busy.0, self.busy.2
                )
            });
        }
        warnings.extend(self.cpu_guard(usage.cpu_percent));
        warnings.extend(self.memory_guard(usage.rss_bytes));
        if !warnings.is_empty() {
            // Every warning is also a note of the test, with its time: the
            // console summary, the web UI and the report list them.
            let mut store = self.core.stats().lock_or_recover();
            let at = store.test_started.map_or(0.0, |started| (unix_now() - started).max(0.0));
            store.notes.extend(warnings.iter().map(|w| format!("{w} ({at:.0} s into the test)")));
        }
        for w in warnings {
            tracing::warn!("{w}");
            self.emit(RunnerEvent::Warning(w));
        }
        self.shape_tick();
    }

    /// A new ramp (a new start, a shape step, a master's new share) while
    /// `--cpu-guard` holds: the pause goes on, timed from the new ramp's
    /// start (which its resume shifts).
    fn keep_guard_for_new_ramp(&mut self) {
        if self.guard_paused.is_some() {
            self.guard_paused = Some(Instant::now());
        }
        if let Some(guard) = &mut self.memory_guard {
            guard.restart_pause();
        }
    }

    /// Whether `--cpu-guard` or `--memory-limit` holds the ramp: paused,
    /// and the ramp adds users.
    fn guard_holds(&self) -> bool {
        let paused = self.guard_paused.is_some() || self.memory_guard.as_ref().is_some_and(MemoryGuard::holds);
        paused && self.ramp.as_ref().is_some_and(|ramp| ramp.target > self.live.len())
    }

    /// `--memory-limit`: this second's resident memory against the limit;
    /// what to say, if anything.
    fn memory_guard(&mut self, rss: u64) -> Option<String> {
        let guard = self.memory_guard.as_mut()?;
        if rss == 0 || !self.core.is_active() {
            return None;
        }
        match guard.observe(rss, self.live.len()) {
            MemoryAction::Keep => None,
            MemoryAction::Warn(said) | MemoryAction::Pause(said) => Some(said),
            MemoryAction::Resume(said, paused) => {
                // Only a ramp that adds users was held.
                if let Some(ramp) = self.ramp.as_mut().filter(|ramp| ramp.target > self.live.len()) {
                    ramp.started += paused;
                }
                Some(said)
            }
            MemoryAction::Shed(n) => {
                let shed = self.shed_newest(n);
                let left = self.live.len();
                self.memory_guard.as_ref().map(|g| g.shed_said(rss, shed, left))
            }
        }
    }

    /// Stop the `n` newest users for good: the test goes on with those
    /// left (the ramp's target and the class targets follow). Returns how
    /// many were stopped.
    fn shed_newest(&mut self, n: usize) -> usize {
        let keep = self.live.len().saturating_sub(n);
        let shed: Vec<Slot> = self.live.split_off(keep);
        let count = shed.len();
        self.stop_slots(shed);
        if let Some(targets) = &mut self.targets {
            // A ramp down under way keeps going to its lower counts.
            for (target, &live) in targets.iter_mut().zip(&self.per_class) {
                *target = (*target).min(live);
            }
        }
        self.core.lower_target(keep);
        self.core.stats().lock_or_recover().user_cap = Some(keep);
        // A ramp under way ends where it is (its next step completes it).
        if let Some(ramp) = &mut self.ramp {
            ramp.target = ramp.target.min(keep);
        }
        self.publish_counts();
        count
    }

    /// `--cpu-guard`: pause a ramp that adds users once the CPU has been
    /// saturated for [`GUARD_AFTER_SECONDS`]; resume it, where it left off,
    /// after the first calm second. What to say, when it changes.
    fn cpu_guard(&mut self, percent: f64) -> Option<String> {
        if !self.options.cpu_guard {
            return None;
        }
        let target = self.ramp.as_ref().map(|ramp| ramp.target)?;
        match self.guard_paused {
            None if self.saturated >= GUARD_AFTER_SECONDS && target > self.live.len() => {
                self.guard_paused = Some(Instant::now());
                Some(format!(
                    "CPU guard: the load generator has been saturated for {} s ({percent:.0}% CPU); spawning paused \
                     at {} of {target} users",
                    self.saturated,
                    self.live.len()
                ))
            }
            Some(since) if self.saturated == 0 => {
                self.guard_paused = None;
                let paused = since.elapsed();
                if let Some(ramp) = &mut self.ramp {
                    ramp.started += paused;
                }
                Some(format!(
                    "CPU guard: the load generator recovered ({percent:.0}% CPU); spawning resumed at {} of {target} \
                     users after a pause of {:.0} s",
                    self.live.len(),
                    paused.as_secs_f64()
                ))
            }
            _ => None,
        }
    }

    /// Apply what the load shape asks for now. The shards hand over what
    /// they recorded first (they take commands in order), so the new
    /// step's mark counts none of the previous step's requests.
    fn shape_tick(&mut self) {
        match self.core.shape_tick() {
            ShapeAction::Keep => {}
            ShapeAction::Apply(settings) => {
                let (done, flushed) = oneshot::channel();
                self.flush(done);
                self.mark_flush = Some(flushed);
                self.start(*settings);
            }
            ShapeAction::End => self.stop(),
        }
    }
}

/// Resolves when the flush for a step's mark has been answered (or can no longer be).
async fn flushed(pending: &mut Option<oneshot::Receiver<()>>) {
    if let Some(rx) = pending {
        let _ = rx.await;
    }
}

/// Resolves when the pending test_start hooks have run (or can no longer
/// answer); never when none are pending.
async fn hooks_done(pending: &mut Option<(oneshot::Receiver<()>, Ramp)>) {
    match pending {
        Some((wait, _)) => {
            let _ = wait.await;
        }
        None => std::future::pending().await,
    }
}

/// The next custom message this process sent to itself (outside a cluster).
async fn message_to_self(to_self: &mut Option<mpsc::UnboundedReceiver<ClusterMessage>>) -> Option<ClusterMessage> {
    match to_self {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
