//! What every handler shares: the runner's handle, the web options, the
//! login state and the live stream's latest message. (A test's run time
//! is the runner's: it comes with the start settings.)

use std::sync::Arc;

use swarmer_engine::{RunnerHandle, StartError, TestSettings};
use tokio::sync::watch;

use crate::auth::{Credentials, Sessions};
use crate::server::WebOptions;

pub struct AppState {
    pub runner: RunnerHandle,
    pub options: WebOptions,
    pub sessions: Sessions,
    /// Served over TLS: cookies get `Secure`.
    pub tls: bool,
    /// The latest push message (the same JSON as `/stats/requests` plus the
    /// newest chart point), rendered once a second for every subscriber.
    pub stream: watch::Sender<Arc<str>>,
    /// A publisher task is rendering `stream` (at most one runs).
    pub publishing: std::sync::atomic::AtomicBool,
    /// Password checks, one at a time (see [`AppState::check_password`]).
    pub login_gate: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Check a password (`verify`) in turn with every other check, form or
    /// basic auth: a wrong one keeps the turn for
    /// [`crate::pages::FAILED_LOGIN_DELAY`], so guesses are throttled in
    /// aggregate (about 2.5 a second however many connections make them),
    /// and a right one cannot be told apart sooner than the queue allows.
    /// `what` names the attempt in the log of failures.
    /// `verify` runs on a blocking thread (a bcrypt hash takes its cost
    /// in time); without credentials it is never right.
    pub async fn check_password(
        self: &Arc<Self>,
        what: &str,
        verify: impl FnOnce(&Credentials) -> bool + Send + 'static,
    ) -> bool {
        // On a task of its own, holding the turn to its end: a request
        // dropped by its client cannot free the turn early (nor leave a
        // hash running outside it).
        let (state, what) = (self.clone(), what.to_owned());
        let check = tokio::spawn(async move {
            let _turn = state.login_gate.lock().await;
            let checking = state.clone();
            let verified =
                tokio::task::spawn_blocking(move || checking.options.credentials.as_ref().is_some_and(verify));
            let right = verified.await.unwrap_or(false);
            if !right {
                tracing::warn!("web UI: failed login ({what})");
                tokio::time::sleep(crate::pages::FAILED_LOGIN_DELAY).await;
            }
            right
        });
        check.await.unwrap_or(false)
    }

    pub fn new(runner: RunnerHandle, options: WebOptions, tls: bool) -> Self {
        let (stream, _) = watch::channel(Arc::from(""));
        Self {
            runner,
            options,
            sessions: Sessions::default(),
            tls,
            stream,
            publishing: Default::default(),
            login_gate: Default::default(),
        }
    }

    /// Start (or re-target) a test; a run time in `settings` restarts the
    /// test's clock, none keeps a running test's. Errors name the field
    /// that was wrong.
    pub fn start_test(&self, settings: TestSettings) -> Result<(), StartError> {
        self.runner.start_test(settings)
    }

    pub fn stop_test(&self) {
        self.runner.stop();
    }

    /// `path` under the base path (for redirects and cookies).
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.options.base_path)
    }
}
