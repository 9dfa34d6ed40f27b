//! What the workers tell the master (joins, heartbeats, statistics, stops,
//! losses), the once-a-second checks (silent workers, spawning complete,
//! history), and copying the workers' numbers into the store.

use std::collections::BTreeMap;
use std::time::Instant;

use swarmer_engine::{ClusterMessage, LockExt, Notice, RunnerState, ShapeAction, WorkerState, WorkerStatus};
use swarmer_stats::{NodeUsage, unix_now};

use super::{MasterLoop, Worker};
use crate::convert::report_to_delta;
use crate::master::service::WorkerEvent;
use crate::proto::{self, master_message};

impl MasterLoop {
    pub(super) fn on_worker(&mut self, event: WorkerEvent) {
        let current = |workers: &BTreeMap<String, Worker>, id: &str, session: u64| {
            workers.get(id).is_some_and(|w| w.session == session)
        };
        let mut quiet = false;
        match event {
            WorkerEvent::Joined { id, session, cores, hostname, tx } => {
                let rejoined = self.workers.contains_key(&id);
                let joining = matches!(self.core.state(), RunnerState::Spawning | RunnerState::Running);
                self.workers.insert(
                    id.clone(),
                    Worker {
                        session,
                        cores,
                        tx,
                        state: WorkerState::Ready,
                        user_count: 0,
                        cpu: 0.0,
                        rss: 0,
                        last_seen: Instant::now(),
                        missing: false,
                        message: None,
                        share: vec![0; self.classes.len()],
                        stopped: true,
                        quit: false,
                        cap: None,
                        joining,
                    },
                );
                let n = self.live_ids().len();
                tracing::info!(
                    "Worker {id} ({hostname}, {cores} cores) {} (workers: {n})",
                    if rejoined { "reconnected" } else { "connected" }
                );
                if self.quitting.is_some() {
                    self.send(&id, master_message::Kind::Quit(proto::Quit {}));
                }
                if !joining {
                    self.catch_up(&id, false);
                }
            }
            WorkerEvent::Heartbeat { id, session, beat } => {
                if !current(&self.workers, &id, session) {
                    return;
                }
                let back = {
                    let w = self.workers.get_mut(&id).expect("checked above");
                    let before = (w.state, w.user_count);
                    // When the loop takes it, not when it arrived: a loop
                    // slow to take events must not find workers silent.
                    w.last_seen = Instant::now();
                    match RunnerState::parse(&beat.state) {
                        Some(state) => w.state = state.into(),
                        None => tracing::debug!("worker {id}: unknown state {:?} in a heartbeat ignored", beat.state),
                    }
                    w.user_count = beat.user_count as usize;
                    // A number, within what a machine's cores can use.
                    w.cpu = if beat.cpu_percent.is_finite() { beat.cpu_percent.clamp(0.0, 100_000.0) } else { 0.0 };
                    w.rss = beat.rss_bytes;
                    // The surfaces' copy follows at the next second's tick
                    // unless what a heartbeat usually repeats changed: copying
                    // every worker's numbers on each of a thousand workers'
                    // heartbeats would cost the master more than the merging.
                    quiet = before == (w.state, w.user_count) && !w.missing && !w.joining;
                    // A cap holds while the worker runs the test it shed
                    // users in (a heartbeat from before a new test's start
                    // may still carry the last test's).
                    let running = matches!(w.state, WorkerState::Spawning | WorkerState::Running);
                    let cap = beat.user_cap.filter(|_| running).map(|n| n as usize);
                    let capped = (cap != w.cap).then(|| std::mem::replace(&mut w.cap, cap));
                    (std::mem::replace(&mut w.missing, false), std::mem::take(&mut w.joining), capped)
                };
                let (back, ready, capped) = back;
                if let Some(before) = capped {
                    self.on_cap(&id, before);
                }
                if ready {
                    // Its plan has loaded: it takes its share now.
                    self.catch_up(&id, false);
                } else if back {
                    tracing::info!("Worker {id} is back");
                    // It may have missed a reset while it was silent.
                    let epoch = self.core.epoch();
                    self.send(&id, master_message::Kind::ResetStats(proto::ResetStats { epoch }));
                    self.catch_up(&id, true);
                }
            }
            WorkerEvent::Stats { id, session, report } => {
                // Statistics go straight to the store; the workers' numbers
                // did not change.
                quiet = true;
                if !current(&self.workers, &id, session) && !self.workers.contains_key(&id) {
                    return;
                }
                if report.epoch != self.core.epoch() {
                    return; // recorded before the latest reset
                }
                if self.core.state() == RunnerState::Ready {
                    // No test has run here: these are a previous master's users.
                    let requests = report.entries.iter().fold(0u64, |sum, e| sum.saturating_add(e.num_requests));
                    tracing::warn!("worker {id}: {requests} requests recorded before any test of this master dropped");
                    return;
                }
                let now = unix_now();
                match report_to_delta(&report, now) {
                    Ok(checked) => {
                        if checked.seconds_left_out > 0 {
                            tracing::warn!(
                                "worker {id}: {} per-second counts left out of the current rates (seconds more than \
                                 a minute ahead of this master's clock, or a day behind; is its clock set?)",
                                checked.seconds_left_out
                            );
                        }
                        let mut store = self.core.stats().lock_or_recover();
                        store.stats.apply(&checked.delta, now);
                        // Once per test (a reset clears the rows and the notes).
                        let folded = store.stats.folded_names();
                        if folded && !self.noted_folding {
                            store.notes.push(swarmer_engine::folding_note());
                        }
                        self.noted_folding = folded;
                    }
                    Err(e) => self.refuse_report(&id, &e.to_string()),
                }
                if self.mark_waiting.as_ref().is_some_and(|(seq, _)| report.assign_sequence >= *seq) {
                    self.settle_mark_if_reported(Some(&id));
                }
            }
            WorkerEvent::Stopped { id, session } => {
                if let Some(w) = self.workers.get_mut(&id).filter(|w| w.session == session) {
                    w.stopped = true;
                    w.user_count = 0;
                }
                self.check_stopped();
            }
            WorkerEvent::QuitAck { id, session } => {
                if let Some(w) = self.workers.get_mut(&id).filter(|w| w.session == session) {
                    w.quit = true;
                }
            }
            WorkerEvent::Custom { id, message } => {
                if let Some(control) = &self.control {
                    let data = String::from_utf8_lossy(&message.data).into_owned();
                    control.deliver_message(ClusterMessage { kind: message.r#type, data, peer: id });
                }
            }
            WorkerEvent::Gone { id, session, reason } => {
                if !current(&self.workers, &id, session) {
                    return;
                }
                let Some(w) = self.workers.get_mut(&id) else { return };
                if w.quit {
                    self.workers.remove(&id);
                } else if !w.missing {
                    w.missing = true;
                    w.state = WorkerState::Missing;
                    w.user_count = 0;
                    tracing::warn!("Worker {id} is missing ({reason}); its users move to the other workers");
                    self.note_lost(&id, &reason);
                    self.dispatch(false);
                    self.check_stopped();
                }
                // A worker already missing (silent past the heartbeat
                // timeout) was noted and its users moved then: once is enough.
            }
            WorkerEvent::Leaving { id, session, reason } => {
                if !current(&self.workers, &id, session) {
                    return;
                }
                // Its last statistics came before this on the same stream.
                if reason.starts_with("stopped by") {
                    self.workers.remove(&id);
                    tracing::info!("Worker {id} left ({reason}); its users move to the other workers");
                } else if let Some(w) = self.workers.get_mut(&id) {
                    // It could not run the test: surfaces show it, and why.
                    w.missing = true;
                    w.state = WorkerState::Missing;
                    w.user_count = 0;
                    w.message = Some(reason.clone());
                    tracing::warn!("Worker {id} left ({reason}); its users move to the other workers");
                }
                self.dispatch(false);
                self.check_stopped();
            }
        }
        if !quiet {
            self.publish();
        }
    }

    /// Drop a report that does not hold together: logged, and said once per
    /// worker in the results (its statistics are missing from them).
    fn refuse_report(&mut self, id: &str, why: &str) {
        tracing::warn!("worker {id}: malformed statistics refused: {why}");
        if self.refused_reports.insert(id.to_owned()) {
            let note = format!(
                "Worker {id} sent statistics that do not hold together at {} ({why}); they were refused and are \
                 missing from these results.",
                swarmer_stats::utc_timestamp(unix_now())
            );
            self.core.stats().lock_or_recover().notes.push(note);
        }
    }

    /// A worker's cap changed (its memory guard shed users, or a new test
    /// lifted it): its users beyond the cap move to workers with room,
    /// and the results say so.
    fn on_cap(&mut self, id: &str, before: Option<usize>) {
        if !self.core.is_active() {
            return;
        }
        let Some(cap) = self.workers.get(id).and_then(|w| w.cap) else {
            // Lifted (its test ended, or it came back afresh): it may take
            // users again.
            self.dispatch(false);
            return;
        };
        if before.is_some_and(|b| b <= cap) {
            self.dispatch(false);
            return;
        }
        let dealt = self.dealt_ids();
        // Room: a worker without a cap, or the others' caps above their shares.
        let room: Option<usize> = dealt
            .iter()
            .filter(|other| other.as_str() != id)
            .map(|other| {
                let w = &self.workers[other];
                w.cap.map(|c| c.saturating_sub(w.share.iter().sum()))
            })
            .sum();
        let share: usize = self.workers.get(id).map_or(0, |w| w.share.iter().sum());
        let moved = share.saturating_sub(cap);
        let whither = match room {
            Some(room) if room < moved => {
                format!("{} moved to workers with room; no worker had room for {}", room, moved - room)
            }
            _ => format!("{moved} moved to workers with room"),
        };
        tracing::warn!("Worker {id} shed users under its memory limit: it runs at most {cap} now; {whither}");
        let note = format!(
            "Worker {id} shed users under its memory limit (--memory-limit) at {}: it runs at most {cap} users for \
             the rest of the test; of its {share}, {whither}.",
            swarmer_stats::utc_timestamp(unix_now())
        );
        self.core.stats().lock_or_recover().notes.push(note);
        self.dispatch(false);
    }

    /// Say in the results that a worker's last second may be missing.
    pub(super) fn note_lost(&self, id: &str, why: &str) {
        if !self.core.is_active() {
            return;
        }
        let last = match self.pace.every() {
            1 => "its last second".to_owned(),
            every => format!("its last {every} seconds"),
        };
        let note = format!(
            "Worker {id} was lost during the test at {} ({why}): the statistics it had not yet sent (at most {last}) \
             are missing from these results.",
            swarmer_stats::utc_timestamp(unix_now())
        );
        self.core.stats().lock_or_recover().notes.push(note);
    }

    /// Once a second: ask workers to report less (or again more) often
    /// when merging their reports takes much of the loop's time; said in
    /// the log, and once per test in the results.
    fn pace_reports(&mut self) {
        let (changed, busy) = self.pace.decide(Instant::now());
        let workers = self.live_ids().len();
        match changed {
            Some(1) => tracing::info!("The master keeps up again: {workers} workers report every second"),
            Some(every) => tracing::warn!(
                "The master's loop spent {:.0}% of its time on {workers} workers' reports: they now report every \
                 {every} s (nothing is lost; per-second charts get coarser)",
                busy * 100.0
            ),
            None => {}
        }
        let every = self.pace.every();
        if changed.is_some() {
            // The latest seconds are late by up to a report's interval.
            self.core.stats().lock_or_recover().stats.set_rate_lag(u64::from(every - 1));
        }
        if every > 1 && !self.noted_pace && self.core.is_active() {
            self.noted_pace = true;
            let note = format!(
                "From {} the master could not merge {workers} workers' reports every second (its loop was {:.0}% \
                 busy): workers were asked to report every {every} s or less often. Totals and percentiles are exact; \
                 from then on requests per second over time are coarser, and current rates cover a window ending \
                 a report's interval earlier.",
                swarmer_stats::utc_timestamp(unix_now()),
                busy * 100.0
            );
            self.core.stats().lock_or_recover().notes.push(note);
        }
    }

    /// Apply what the load shape asks for now.
    pub(super) fn shape_tick(&mut self) {
        match self.core.shape_tick() {
            ShapeAction::Keep => {}
            ShapeAction::Apply(settings) => {
                self.start(*settings, true);
                self.mark_waiting = Some((self.assign_sequence, self.dealt_ids().into_iter().collect()));
                self.settle_mark_if_reported(None);
            }
            ShapeAction::End => self.stop(),
        }
    }

    /// Settle the latest step's mark once every live worker has reported
    /// since the step's Assign (`reported`: the worker that just did).
    fn settle_mark_if_reported(&mut self, reported: Option<&str>) {
        let Some((_, waiting)) = &mut self.mark_waiting else { return };
        if let Some(id) = reported {
            waiting.remove(id);
        }
        waiting.retain(|id| self.workers.get(id).is_some_and(|w| !w.missing));
        if waiting.is_empty() {
            self.mark_waiting = None;
            self.core.stats().lock_or_recover().settle_last_mark();
        }
    }

    pub(super) fn every_second(&mut self) {
        let timeout = self.heartbeat_timeout;
        let silent: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.missing && w.last_seen.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &silent {
            if let Some(w) = self.workers.get_mut(id) {
                w.missing = true;
                w.state = WorkerState::Missing;
                w.user_count = 0;
            }
            tracing::warn!("Worker {id} sent no heartbeat for {:.0?}: missing; its users move to the others", timeout);
            self.note_lost(id, "no heartbeat");
        }
        if !silent.is_empty() {
            self.dispatch(false);
            self.check_stopped();
        }
        self.shape_tick();
        self.pace_reports();
        self.broadcast(master_message::Kind::Heartbeat(proto::Heartbeat {
            state: self.core.state().as_str().into(),
            report_every_seconds: self.pace.every(),
            ..Default::default()
        }));
        let now = unix_now();
        for id in self.live_ids() {
            self.notify_plan(Notice::HeartbeatSent { client_id: id, timestamp: now });
        }
        self.check_stopped();
        let live: Vec<&Worker> = self.workers.values().filter(|w| !w.missing).collect();
        let running: usize = live.iter().map(|w| w.user_count).sum();
        let assigned: usize = live.iter().map(|w| w.share.iter().sum::<usize>()).sum();
        let settled = live.iter().all(|w| w.state == WorkerState::Running || w.share.iter().sum::<usize>() == 0);
        let workers = live.len();
        if self.core.state() == RunnerState::Spawning && running == assigned && settled {
            let class_counts = self.class_counts();
            tracing::info!("All users spawned: {running} users over {workers} workers");
            self.core.spawning_complete(running, class_counts);
            self.notify_plan(Notice::SpawningComplete { user_count: running });
            // --reset-stats: what was counted while users spawned (their
            // on_start) is dropped on every worker too, as Locust's master
            // does; once per ramp asked for, not when workers come and go.
            if self.options.reset_stats && std::mem::take(&mut self.reset_pending) {
                tracing::info!("Resetting stats");
                self.reset_stats();
            }
        }
        let usage = self.usage.sample().unwrap_or_default();
        self.publish();
        let nodes = NodeUsage::of(self.workers.values().filter(|w| !w.missing).map(|w| (w.cpu, w.rss)));
        let mut store = self.core.stats().lock_or_recover();
        store.usage = usage;
        if self.core.is_active() {
            store.sample_history_of_nodes(unix_now(), nodes);
        }
    }

    pub(super) fn class_counts(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> = self.classes.iter().map(|c| (c.name.clone(), 0)).collect();
        for w in self.workers.values().filter(|w| !w.missing) {
            for (class, n) in self.classes.iter().zip(&w.share) {
                *counts.entry(class.name.clone()).or_default() += n;
            }
        }
        counts
    }

    /// Copy the workers' numbers into the store the surfaces read.
    pub(super) fn publish(&self) {
        let statuses: Vec<WorkerStatus> = self
            .workers
            .iter()
            .map(|(id, w)| WorkerStatus {
                id: id.clone(),
                state: w.state,
                user_count: w.user_count,
                cpu_usage: w.cpu,
                memory_usage: w.rss,
                cores: w.cores,
                message: w.message.clone(),
            })
            .collect();
        let users: usize = self.workers.values().filter(|w| !w.missing).map(|w| w.user_count).sum();
        let counts = self.class_counts();
        self.roster.publish(statuses);
        let mut store = self.core.stats().lock_or_recover();
        store.user_count = users;
        store.class_counts = counts;
    }
}
