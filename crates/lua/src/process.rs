//! The plan's thread: where a plan is first loaded and where its process
//! VM lives.
//!
//! A Lua plan has one VM per shard for its users, and one more, the
//! process VM, for what Locust runs once per process: the plan's `init`,
//! test and notice listeners, message handlers and background coroutines
//! started at load. The first load of a plan, which tells the process its
//! options, classes and files, happens in that VM: it is not thrown away
//! but kept on this thread until the runner starts its process shard here
//! ([`swarmer_engine::ProcessHost`]), which adopts it. So a plan's top
//! level runs once per shard plus once per process, never in a VM made
//! only to inspect it.
//!
//! The thread ends, with whatever still runs on it (background
//! coroutines), when the last handle to it goes: the plan and its runner.

use std::cell::RefCell;
use std::sync::Arc;

use mlua::Lua;
use swarmer_engine::{ProcessHost, ProcessJob};
use tokio::sync::mpsc;

/// A plan's thread: a current-thread tokio runtime with a local task set,
/// running the jobs it is given.
pub struct PlanThread {
    jobs: mpsc::UnboundedSender<ProcessJob>,
}

thread_local! {
    /// The VM of the plan's first load on this thread, until the process
    /// shard adopts it.
    static ADOPTABLE: RefCell<Option<Lua>> = const { RefCell::new(None) };
}

impl PlanThread {
    /// Start a plan's thread.
    pub fn start() -> Result<Arc<Self>, String> {
        let (jobs, mut rx) = mpsc::unbounded_channel::<ProcessJob>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the plan's thread: {e}"))?;
        std::thread::Builder::new()
            .name("swarmer-plan".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(job) = rx.recv().await {
                        tokio::task::spawn_local(job());
                    }
                });
                // Dropping the task set cancels what still runs on it.
                drop(local);
                ADOPTABLE.with(|vm| vm.borrow_mut().take());
            })
            .map_err(|e| format!("cannot start the plan's thread: {e}"))?;
        Ok(Arc::new(Self { jobs }))
    }

    /// Run `work` on this thread and wait for its result.
    pub fn call<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.run(Box::new(move || {
            let _ = tx.send(work());
            Box::pin(async {})
        }))?;
        rx.recv().map_err(|_| "the plan's thread ended while loading the plan".to_owned())
    }
}

impl ProcessHost for PlanThread {
    fn run(&self, job: ProcessJob) -> Result<(), String> {
        self.jobs.send(job).map_err(|_| "the plan's thread has ended".to_owned())
    }
}

/// Keep `lua` on this thread for the process shard to adopt.
pub fn keep_for_adoption(lua: Lua) {
    ADOPTABLE.with(|vm| *vm.borrow_mut() = Some(lua));
}

/// The VM kept on this thread by the plan's first load, if no process
/// shard took it yet.
pub fn adopt() -> Option<Lua> {
    ADOPTABLE.with(|vm| vm.borrow_mut().take())
}
