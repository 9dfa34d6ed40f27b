//! The Swarmer engine: simulated users, their tasks, and the runner that
//! spawns them across thread-per-core shards.
//!
//! Map of the crate (Locust's words where Locust has them):
//! - [`UserClass`], [`Task`], [`TaskSet`], [`WaitTime`]: what a user does.
//!   Built by a front end (the Rust API here, Lua plans later).
//! - [`User`]: the context a task runs with: its HTTP [`Client`], its state,
//!   its random numbers.
//! - [`TaskError`]: control flow out of a task (stop this user, stop the
//!   test, interrupt a task set, reschedule) and exceptions.
//! - [`Plan`]: a factory of user classes. It is called once per shard, on the
//!   shard's thread, so user code never has to be `Send`.
//! - [`ClassOutline`]: a class without its code (`Send`), from which a
//!   front end that loads a plan once per process answers questions about
//!   it (the Lua front end), so only shards load the plan again.
//! - [`PlanOption`], [`OptionValues`]: options a plan declares for itself,
//!   set from the command line or the web UI's form.
//! - `dispatch`: which class the n-th user has (fixed counts first, then a
//!   smooth weighted round robin), so ramp-down removes the newest users.
//! - `shard`: one OS thread, one current-thread tokio runtime, many users.
//!   Each shard records statistics into its own recorder, no locks.
//! - [`LoadShape`], [`Phases`]: load that changes over time (Locust's
//!   `LoadTestShape`; the seed's load phases), ticked by the runner core.
//! - `threshold`: pass/fail conditions over the statistics (`--threshold
//!   p95<300ms`), parsed and evaluated for CI verdicts.
//! - [`LocalRunner`]: the state machine that starts shards, ramps users,
//!   merges statistics every second and stops gracefully.
//! - [`LockExt`]: `lock_or_recover` takes a std mutex even after a panic
//!   poisoned it (warning once), so shared state keeps being updated.
//!
//! What it does not do: parse flags, print tables, write files, serve HTTP.
//! Surfaces read [`StatsStore`] through the runner's handle.

pub mod arrival;
mod arrival_pool;
mod client;
mod control;
mod cpu;
pub mod dispatch;
mod error;
mod error_log;
mod lock;
pub mod memory;
mod outline;
mod plan;
mod plan_options;
mod read_model;
mod runner;
mod shape;
mod shard;
mod shard_context;
mod stop_signal;
mod tags;
mod task;
mod test_settings;
pub mod threshold;
pub mod threshold_watch;
pub mod timespan;
mod user;
mod user_class;
mod user_loop;
mod wait_time;

pub use arrival::{ArrivalRate, RateStage};
pub use client::{CatchResponse, Client, ClientMaker};
pub use control::{TaskError, TaskResult};
pub use cpu::{ProcessUsage, UsageMonitor};
pub use error::{OptionValueError, PlanError, SendError, StartError, TimespanError, WaitTimeError};
pub use lock::LockExt;
pub use outline::ClassOutline;
pub use plan::{
    ClassInfo, ClusterMessage, NodeRole, Notice, NoticeHook, Plan, ProcessHost, ProcessJob, ShardHook, ShardHooks,
    ShardInfo, ShardPlan, SharedData, TaskInfo,
};
pub use plan_options::{OptionKind, OptionValues, PlanOption};
pub use read_model::{
    RunnerState, ShapeStatus, StatsGuard, StatsReader, StatsStore, StatsView, StepMark, WorkerRoster, WorkerState,
    WorkerStatus, folding_note,
};
pub use runner::{
    ArrivalSlice, Begin, ClassMix, ClassWeight, LocalRunner, PlanShapeStep, PlanSummary, RunnerChannels, RunnerCommand,
    RunnerCore, RunnerEvent, RunnerHandle, RunnerOptions, ShapeAction, TestSettings, shards_taking_part, sleep_until,
};
pub use shape::{LoadShape, Phase, Phases, ShapeStep, SharedShape};
pub use shard_context::{RequestHook, UserErrorHook};
pub use swarmer_http::{ClientConfig, DEFAULT_MAX_BODY_BYTES, HttpVersionPreference, Request, Response, TlsOptions};
pub use swarmer_stats::{RequestSample, RequestStats, StatsEntry, unix_now};
pub use tags::TagFilter;
pub use task::{LocalBoxFuture, Task, TaskFn, TaskSet, task_fn};
pub use user::User;
pub use user_class::{Connections, UserClass};
pub use wait_time::{WaitSpec, WaitTime, between, constant, constant_pacing, constant_throughput};

/// Wrap an `async fn(&mut User) -> TaskResult` as a task function.
///
/// ```
/// use swarmer_engine::{task, Task, TaskResult, User};
/// async fn index(user: &mut User) -> TaskResult {
///     user.client.get("/").await;
///     Ok(())
/// }
/// let t = Task::new("index", task!(index)).weight(2);
/// assert_eq!(t.weight, 2);
/// ```
#[macro_export]
macro_rules! task {
    ($f:expr) => {
        |user: &mut $crate::User| -> $crate::LocalBoxFuture<'_, $crate::TaskResult> { Box::pin($f(user)) }
    };
}
