//! What every handler shares: the runner's handle, the web options, the
//! login state, the run-time timer of the current test, and the live
//! stream's latest message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmer_engine::{LockExt, RunnerHandle, RunnerState, TestSettings};
use tokio::sync::watch;

use crate::auth::Sessions;
use crate::server::WebOptions;

pub struct AppState {
    pub runner: RunnerHandle,
    pub options: WebOptions,
    pub sessions: Sessions,
    /// Served over TLS: cookies get `Secure`.
    pub tls: bool,
    /// Stops the current test when its run time is up; replaced by the next
    /// start, cancelled by a stop.
    run_timer: Mutex<Option<tokio::task::AbortHandle>>,
    /// The latest push message (the same JSON as `/stats/requests` plus the
    /// newest chart point), rendered once a second for every subscriber.
    pub stream: watch::Sender<Arc<str>>,
    /// A publisher task is rendering `stream` (at most one runs).
    pub publishing: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn new(runner: RunnerHandle, options: WebOptions, tls: bool) -> Self {
        let (stream, _) = watch::channel(Arc::from(""));
        Self {
            runner,
            options,
            sessions: Sessions::default(),
            tls,
            run_timer: Mutex::new(None),
            stream,
            publishing: Default::default(),
        }
    }

    /// Start (or re-target) a test and arm its run-time timer. Errors name
    /// the field that was wrong.
    /// Changing the users of a running test without a run time keeps the
    /// timer it started with.
    pub fn start_test(&self, settings: TestSettings, run_time: Option<Duration>) -> Result<(), String> {
        let running = !matches!(self.runner.state(), RunnerState::Ready | RunnerState::Stopped);
        self.runner.start_test(settings)?;
        if running && run_time.is_none() {
            return Ok(());
        }
        let timer = run_time.filter(|d| !d.is_zero()).map(|d| {
            let runner = self.runner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                tracing::info!("Run time limit reached ({}s): stopping the test", d.as_secs());
                runner.stop();
            })
            .abort_handle()
        });
        self.replace_timer(timer);
        Ok(())
    }

    pub fn stop_test(&self) {
        self.replace_timer(None);
        self.runner.stop();
    }

    fn replace_timer(&self, timer: Option<tokio::task::AbortHandle>) {
        let mut slot = self.run_timer.lock_or_recover();
        if let Some(old) = std::mem::replace(&mut *slot, timer) {
            old.abort();
        }
    }

    /// `path` under the base path (for redirects and cookies).
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.options.base_path)
    }
}
