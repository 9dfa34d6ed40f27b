//! [`LocalRunner::start`]: the runner of one process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use swarmer_stats::{History, RequestStats, unix_now};
use tokio::sync::mpsc;

use super::actor::Actor;
use super::core::RunnerCore;
use super::handle::RunnerChannels;
use super::{PlanSummary, RunnerHandle, RunnerOptions};
use crate::cpu::UsageMonitor;
use crate::dispatch::UserSequence;
use crate::error::StartError;
use crate::plan::{Plan, ShardInfo, SharedData};
use crate::read_model::{RunnerState, StatsReader, StatsStore};
use crate::shard::{ShardSetup, spawn_shard};
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
        let shards = options.shards.max(1);
        let stats = options.stats.clone().unwrap_or_else(|| {
            Arc::new(Mutex::new(StatsStore::new(RunnerState::Ready, RequestStats::new(unix_now()), History::default())))
        });
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
            let info = ShardInfo::new(
                index,
                shards,
                StatsReader::new(stats.clone()),
                shared.clone(),
                stop_test,
                options.role.clone(),
                options.message_out.clone(),
            )
            .with_workers(options.workers.clone());
            let thread = spawn_shard(info, setup.clone(), rx, event_tx.clone())
                .map_err(|e| StartError::Thread { shard: index, reason: e.to_string() })?;
            shard_tx.push(tx);
            threads.push(thread);
        }
        drop(event_tx);
        let mut ready = 0;
        while ready < shards {
            match event_rx.recv().await {
                Some(ShardEvent::Ready) => ready += 1,
                Some(ShardEvent::Failed { error }) => return Err(error),
                Some(_) => {}
                None => return Err(StartError::ShardsEnded),
            }
        }
        let sequence = UserSequence::new(&classes.iter().map(|c| (c.weight, c.fixed_count)).collect::<Vec<_>>());
        let summary = PlanSummary {
            name: plan.name.clone(),
            options: plan.options.clone(),
            option_values: plan.option_values.clone(),
        };
        let RunnerChannels { handle, commands, events, host } =
            RunnerHandle::remote(stats.clone(), classes.clone(), options.host.clone(), summary);
        let actor = Actor {
            core: RunnerCore::new(&classes, stats, events, host),
            plan,
            options,
            sequence,
            shard_tx,
            threads,
            per_class: vec![0; classes.len()],
            live: Vec::new(),
            stopping: HashSet::new(),
            next_user_id: 0,
            ramp: None,
            usage: UsageMonitor::new(),
            warned_cpu: false,
            warned_names: false,
            quitting: None,
            shut_down: 0,
            seconds: 0,
            targets: None,
            flushes: Vec::new(),
            next_flush: 0,
        };
        tokio::spawn(actor.run(commands, event_rx));
        Ok(handle)
    }
}
