//! A shard: one OS thread, one current-thread tokio runtime, many users.
//!
//! The shard builds the plan's classes on its own thread (so user code need
//! not be `Send`), spawns and stops users on command, and once a second
//! sends what its recorder collected to the runner. Nothing on a request's
//! path crosses threads: users record into the shard's own recorder.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use swarmer_http::{ClientConfig, ConnectionPool};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::LocalSet;

use crate::arrival_pool::{ArrivalShare, Growth, Membership, Pool};
use crate::client::{Client, ClientMaker};
use crate::error::StartError;
use crate::plan::{Notice, Plan, ProcessHost, ShardHook, ShardHooks, ShardInfo};
use crate::shard_context::{ShardContext, ShardEvent};
use crate::stop_signal::StopSignal;
use crate::tags::TagFilter;
use crate::user::User;
use crate::user_class::{Connections, UserClass};
use crate::user_loop::{WaitOverride, run_user};
use crate::wait_time::WaitSpec;

/// How often a shard hands its statistics to the runner.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What every shard needs to build its users.
pub(crate) struct ShardSetup {
    pub plan: Plan,
    pub selected: Vec<String>,
    pub tags: TagFilter,
    pub client: Arc<ClientConfig>,
    pub node: String,
    /// `--host`, until a test gives its own.
    pub host: Option<String>,
}

/// Runner → shard.
#[derive(Debug)]
pub(crate) enum ShardCommand {
    /// Run the plan's test-start hooks (before the users that follow spawn);
    /// the test's host, if known.
    TestStart { host: Option<String> },
    /// Run the plan's test-stop hooks.
    TestStop,
    /// Tell the plan's listeners what happened.
    Notice(Notice),
    Spawn {
        user_id: u64,
        class: usize,
        /// Overrides the class's host (`--host` or the start form).
        host: Option<String>,
        /// The user joins the arrival-rate pool instead of running its own loop.
        pooled: bool,
    },
    /// Wait times instead of the classes' own, by class index (`None`:
    /// the class's own), for users running and to come.
    WaitTimes(Vec<Option<WaitSpec>>),
    /// Run this share of an arrival-rate test from now on (its schedule
    /// starts now), or stop pacing (`None`).
    Arrival(Option<Box<ArrivalShare>>),
    /// Ask users to stop; force them after `timeout`.
    Stop { user_ids: Vec<u64>, timeout: Duration },
    /// Drop what was recorded so far; later deltas carry `epoch`.
    ResetStats { epoch: u64 },
    /// Send what was recorded so far now, then `Flushed` with this id.
    Flush { id: u64 },
    /// Stop every user, send the last statistics, end the thread.
    Shutdown,
}

/// Start shard `index` on a thread of its own.
pub(crate) fn spawn_shard(
    info: ShardInfo,
    setup: Arc<ShardSetup>,
    commands: UnboundedReceiver<ShardCommand>,
    events: UnboundedSender<ShardEvent>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let index = info.index;
    std::thread::Builder::new().name(format!("swarmer-shard-{index}")).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = events
                    .send(ShardEvent::Failed { error: StartError::Thread { shard: index, reason: e.to_string() } });
                return;
            }
        };
        LocalSet::new().block_on(&runtime, run_shard(info, setup, commands, events));
    })
}

/// Start the process shard (no users: the plan's once-per-process code)
/// on the plan's process host.
pub(crate) fn spawn_process_shard(
    info: ShardInfo,
    setup: Arc<ShardSetup>,
    commands: UnboundedReceiver<ShardCommand>,
    events: UnboundedSender<ShardEvent>,
    host: &dyn ProcessHost,
) -> Result<(), String> {
    host.run(Box::new(move || Box::pin(run_shard(info.for_process(), setup, commands, events))))
}

/// The connection pools of the classes whose users share one on this
/// shard, by class index, made on the first user.
#[derive(Default)]
struct ClassPools(HashMap<usize, Rc<ConnectionPool>>);

impl ClassPools {
    fn for_user(&mut self, class: usize, def: &UserClass, info: &ShardInfo) -> Option<Rc<ConnectionPool>> {
        match def.connections {
            Connections::PerUser => None,
            Connections::UserLimit { max } => Some(Rc::new(ConnectionPool::new(max))),
            Connections::Shared { max } => Some(
                self.0
                    .entry(class)
                    .or_insert_with(|| {
                        Rc::new(ConnectionPool::new(Connections::shard_share(max, info.index, info.count)))
                    })
                    .clone(),
            ),
        }
    }
}

struct LiveUser {
    stop: Rc<StopSignal>,
    done: tokio::task::JoinHandle<()>,
}

/// Ids of users an arrival-rate pool starts on its own: above the ids
/// runners give, one range per shard.
const GROWN_USER_IDS: u64 = 1 << 62;

/// Builds and starts users on the shard.
struct UserFactory {
    info: ShardInfo,
    setup: Arc<ShardSetup>,
    classes: Vec<Rc<UserClass>>,
    class_names: Vec<Rc<str>>,
    waits: Vec<Rc<WaitOverride>>,
    context: Rc<ShardContext>,
    users: Rc<RefCell<HashMap<u64, LiveUser>>>,
    events: UnboundedSender<ShardEvent>,
    pools: ClassPools,
    seeds: SmallRng,
    next_grown: u64,
}

impl UserFactory {
    /// Start user `user_id` of `class`; in the arrival-rate pool if it has
    /// a place there.
    fn spawn(&mut self, user_id: u64, class: usize, host: Option<String>, pool: Option<Membership>) {
        let Some(class_def) = self.classes.get(class).cloned() else { return };
        let host = host.or_else(|| class_def.host.clone()).unwrap_or_default();
        let connections = self.pools.for_user(class, &class_def, &self.info);
        let client = Client::pooled(self.setup.client.clone(), host, self.context.clone(), connections);
        let state = class_def.state.as_ref().map(|make| make());
        let rng = SmallRng::seed_from_u64(self.seeds.r#gen());
        let user = User::new(user_id, self.class_names[class].clone(), client, state, rng, self.context.clone());
        let stop = Rc::new(StopSignal::default());
        let users_ref = self.users.clone();
        let events_ref = self.events.clone();
        let stop_ref = stop.clone();
        let wait = self.waits[class].clone();
        let done = tokio::task::spawn_local(async move {
            run_user(user, class_def, stop_ref, wait, pool).await;
            users_ref.borrow_mut().remove(&user_id);
            let _ = events_ref.send(ShardEvent::UserStopped { user_id });
        });
        self.users.borrow_mut().insert(user_id, LiveUser { stop, done });
    }

    /// Start a user the arrival-rate pool grows by, and tell the runner.
    fn grow(&mut self, growth: Growth) {
        let user_id = GROWN_USER_IDS + ((self.info.index as u64) << 40) + self.next_grown;
        self.next_grown += 1;
        self.spawn(user_id, growth.class, growth.host, Some(growth.membership));
        let _ = self.events.send(ShardEvent::UserGrown { user_id, class: growth.class, shard: self.info.index });
    }
}

async fn run_shard(
    info: ShardInfo,
    setup: Arc<ShardSetup>,
    mut commands: UnboundedReceiver<ShardCommand>,
    events: UnboundedSender<ShardEvent>,
) {
    let index = info.index;
    let (classes, hooks): (Vec<Rc<UserClass>>, ShardHooks) =
        match setup.plan.build_for(&info, &setup.selected, &setup.tags) {
            Ok(plan) => (plan.classes.into_iter().map(Rc::new).collect(), plan.hooks),
            Err(error) => {
                let _ =
                    events.send(ShardEvent::Failed { error: StartError::ShardLoad { shard: index, reason: error } });
                return;
            }
        };
    let class_names: Vec<Rc<str>> = classes.iter().map(|c| Rc::from(c.name.as_str())).collect();
    let waits: Vec<Rc<WaitOverride>> = classes.iter().map(|_| Rc::default()).collect();
    let context = Rc::new(ShardContext::new(&setup.node, events.clone()));
    context.set_hooks(hooks.request.clone(), hooks.user_error.clone());
    let users: Rc<RefCell<HashMap<u64, LiveUser>>> = Rc::default();
    let pool: Rc<Pool> = Rc::default();
    let (grow_tx, mut grow_rx) = tokio::sync::mpsc::unbounded_channel::<Growth>();
    let mut epoch = 0;
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let maker = ClientMaker::new(setup.client.clone(), context.clone(), setup.host.clone());
    if let Some(give) = &hooks.clients {
        give(maker.clone());
    }
    let mut factory = UserFactory {
        info,
        setup: setup.clone(),
        classes,
        class_names,
        waits: waits.clone(),
        context: context.clone(),
        users: users.clone(),
        events: events.clone(),
        pools: ClassPools::default(),
        seeds: SmallRng::from_entropy(),
        next_grown: 0,
    };
    run_hooks(&hooks.init).await;
    let _ = events.send(ShardEvent::Ready);

    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(ShardCommand::TestStart { host }) => {
                    maker.set_host(host);
                    run_hooks(&hooks.test_start).await
                }
                Some(ShardCommand::TestStop) => run_hooks(&hooks.test_stop).await,
                Some(ShardCommand::Notice(notice)) => {
                    if let Some(hook) = &hooks.notice {
                        hook(notice).await;
                    }
                }
                Some(ShardCommand::Spawn { user_id, class, host, pooled }) => {
                    let membership = pooled.then(|| pool.join());
                    factory.spawn(user_id, class, host, membership);
                }
                Some(ShardCommand::Arrival(share)) => pool.run(share.map(|s| *s), &context, &grow_tx),
                Some(ShardCommand::WaitTimes(specs)) => {
                    for (slot, spec) in waits.iter().zip(specs) {
                        *slot.borrow_mut() = spec.map(WaitSpec::wait_time);
                    }
                }
                Some(ShardCommand::Stop { user_ids, timeout }) => {
                    let signals: Vec<Rc<StopSignal>> = {
                        let users = users.borrow();
                        user_ids.iter().filter_map(|id| users.get(id).map(|u| u.stop.clone())).collect()
                    };
                    stop_politely(signals, timeout);
                }
                Some(ShardCommand::ResetStats { epoch: new }) => {
                    epoch = new;
                    let _ = context.recorder.borrow_mut().take_delta();
                }
                Some(ShardCommand::Flush { id }) => {
                    let delta = context.recorder.borrow_mut().take_delta();
                    if !delta.is_empty() {
                        let _ = events.send(ShardEvent::Stats { delta, epoch });
                    }
                    let _ = events.send(ShardEvent::Flushed { id });
                }
                Some(ShardCommand::Shutdown) | None => break,
            },
            // A growth asked for by a schedule since ended is not started
            // (its place in the pool is given back as it is dropped).
            Some(growth) = grow_rx.recv() => if pool.wants(growth.generation) { factory.grow(growth) },
            _ = flush.tick() => {
                context.error_log.flush();
                let delta = context.recorder.borrow_mut().take_delta();
                if !delta.is_empty() {
                    let _ = events.send(ShardEvent::Stats { delta, epoch });
                }
            }
        }
    }

    // Shutdown: stop whoever is left at once, wait for their on_stop, then
    // hand over the last statistics so none are lost.
    pool.run(None, &context, &grow_tx);
    let remaining: Vec<LiveUser> = users.borrow_mut().drain().map(|(_, u)| u).collect();
    for user in &remaining {
        user.stop.force();
    }
    for user in remaining {
        let _ = user.done.await;
    }
    run_hooks(&hooks.quitting).await;
    let delta = context.recorder.borrow_mut().take_delta();
    if !delta.is_empty() {
        let _ = events.send(ShardEvent::Stats { delta, epoch });
    }
    let _ = events.send(ShardEvent::ShutDown);
    if let Some(close) = &hooks.close {
        close().await;
    }
}

async fn run_hooks(hooks: &[ShardHook]) {
    for hook in hooks {
        hook().await;
    }
}

/// Ask users to stop; those still running a task after `timeout` are
/// stopped by force. A zero timeout forces at once (Locust's default).
fn stop_politely(signals: Vec<Rc<StopSignal>>, timeout: Duration) {
    if timeout.is_zero() {
        signals.iter().for_each(|s| s.force());
        return;
    }
    signals.iter().for_each(|s| s.request());
    tokio::task::spawn_local(async move {
        tokio::time::sleep(timeout).await;
        signals.iter().for_each(|s| s.force());
    });
}
