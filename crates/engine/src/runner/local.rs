//! [`LocalRunner::start`]: the runner of one process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use swarmer_stats::{History, RequestStats, unix_now};
use tokio::sync::mpsc;

use super::actor::Actor;
use super::core::RunnerCore;
use super::handle::RunnerChannels;
use super::{PlanSummary, RunnerHandle, RunnerOptions, TestSettings};
use crate::cpu::UsageMonitor;
use crate::dispatch::UserSequence;
use crate::error::StartError;
use crate::lock::LockExt;
use crate::plan::{Plan, ShardInfo, SharedData};
use crate::read_model::{RunnerState, StatsReader, StatsStore};
use crate::shard::{ShardSetup, spawn_process_shard, spawn_shard};
use crate::shard_context::ShardEvent;

/// Starts runners.
pub struct LocalRunner;

impl LocalRunner {
    /// Check the plan, start the shard threads and the runner task on the
    /// current tokio runtime. Errors name what is wrong (unknown class, no
    /// host, a plan that fails to load on a shard).
    pub async fn start(plan: Plan, options: RunnerOptions) -> Result<RunnerHandle, StartError> {
        let classes = plan.info(&options.classes, &options.tags)?;
        if options.host_required
            && options.host.is_none()
            && let Some(c) = classes.iter().find(|c| c.host.is_none())
        {
            return Err(StartError::NoHost { class: c.name.clone() });
        }
        if let Some(shape) = &options.shape {
            let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
            shape.lock_or_recover().check(&names).map_err(StartError::Shape)?;
        }
        // A plan with a process part may run without user shards (the
        // master runs only its hooks).
        let process_host = plan.process_host().cloned();
        let shards = if process_host.is_some() { options.shards } else { options.shards.max(1) };
        let stats = options.stats.clone().unwrap_or_else(|| {
            Arc::new(Mutex::new(StatsStore::new(RunnerState::Ready, RequestStats::new(unix_now()), History::default())))
        });
        stats.lock_or_recover().exit_code_on_error = options.exit_code_on_error;
        let setup = Arc::new(ShardSetup {
            plan: plan.clone(),
            selected: options.classes.clone(),
            tags: options.tags.clone(),
            client: options.client.clone(),
            node: options.node.clone(),
            host: options.host.clone(),
        });
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        // Outside a cluster, custom messages go to this process's own
        // handlers (as Locust's local runner delivers them).
        let (message_out, to_self) = match &options.message_out {
            Some(out) => (Some(out.clone()), None),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
        };
        let mut shard_tx = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let shared = SharedData::default();
        let info_for = |index: usize| {
            let stop_tx = event_tx.clone();
            let stop_test: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let _ = stop_tx.send(ShardEvent::StopTestRequested);
            });
            let load_tx = event_tx.clone();
            let load: Arc<dyn Fn(TestSettings) + Send + Sync> = Arc::new(move |settings| {
                let _ = load_tx.send(ShardEvent::LoadRequested(settings));
            });
            ShardInfo::new(
                index,
                shards,
                StatsReader::new(stats.clone()),
                shared.clone(),
                stop_test,
                options.role.clone(),
                message_out.clone(),
            )
            .with_workers(options.workers.clone())
            .with_load(load)
        };
        // The process shard first: its `init` runs before users' shards load.
        let mut process_tx = None;
        // What the process shard sends while the others load (statistics of
        // its init, a stop asked for by it) is handed to the actor after.
        let mut early = Vec::new();
        if let Some(host) = &process_host {
            let (tx, rx) = mpsc::unbounded_channel();
            spawn_process_shard(info_for(0), setup.clone(), rx, event_tx.clone(), host.as_ref())
                .map_err(|reason| StartError::Thread { shard: 0, reason })?;
            early.extend(wait_ready(&mut event_rx, 1).await?);
            process_tx = Some(tx);
        }
        for index in 0..shards {
            let (tx, rx) = mpsc::unbounded_channel();
            let thread = spawn_shard(info_for(index), setup.clone(), rx, event_tx.clone())
                .map_err(|e| StartError::Thread { shard: index, reason: e.to_string() })?;
            shard_tx.push(tx);
            threads.push(thread);
        }
        drop(event_tx);
        early.extend(wait_ready(&mut event_rx, shards).await?);
        let sequence = UserSequence::new(&classes.iter().map(|c| (c.weight, c.fixed_count)).collect::<Vec<_>>());
        let summary = PlanSummary {
            name: plan.name.clone(),
            options: plan.options.clone(),
            option_values: plan.option_values.clone(),
        };
        let RunnerChannels { handle, commands, events, host } =
            RunnerHandle::remote(stats.clone(), classes.clone(), options.host.clone(), summary);
        let memory_guard = options.memory_limit.map(super::memory_guard::MemoryGuard::new);
        let actor = Actor {
            core: RunnerCore::new(&classes, stats, events, host).with_shape(options.shape.clone()),
            plan,
            options,
            sequence,
            shard_tx,
            process_tx,
            threads,
            per_class: vec![0; classes.len()],
            live: Vec::new(),
            stopping: HashSet::new(),
            next_user_id: 0,
            ramp: None,
            usage: UsageMonitor::new(),
            busy: (0, 0.0, 0.0),
            saturated: 0,
            guard_paused: None,
            memory_guard,
            warned_cpu: false,
            warned_names: false,
            noted_folding: false,
            quitting: None,
            shut_down: 0,
            seconds: 0,
            targets: None,
            flushes: Vec::new(),
            hooks_pending: None,
            mark_flush: None,
            pool_shards: 0,
            pending_arrival: None,
            next_flush: 0,
        };
        let mut actor = actor;
        for event in early {
            actor.on_shard_event(event);
        }
        tokio::spawn(actor.run(commands, event_rx, to_self));
        Ok(handle)
    }
}

/// Wait until `count` shards said they are ready; the first that failed
/// fails the start. Returns the other events that came meanwhile.
async fn wait_ready(
    events: &mut mpsc::UnboundedReceiver<ShardEvent>,
    count: usize,
) -> Result<Vec<ShardEvent>, StartError> {
    let (mut ready, mut others) = (0, Vec::new());
    while ready < count {
        match events.recv().await {
            Some(ShardEvent::Ready) => ready += 1,
            Some(ShardEvent::Failed { error }) => return Err(error),
            Some(other) => others.push(other),
            None => return Err(StartError::ShardsEnded),
        }
    }
    Ok(others)
}
