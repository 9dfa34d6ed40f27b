//! What every user of one shard shares: the shard's statistics recorder
//! and clock, the front end's request and error listeners, and the channel
//! on which the shard reports to its runner ([`ShardEvent`]).
//!
//! Users, their clients and the user loop write here; the shard thread
//! creates it and drains the recorder once a second. Nothing here crosses
//! threads except the events.
//!
//! HOT PATH: [`ShardContext::record`] runs once per request.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use swarmer_stats::{RequestSample, ShardRecorder, StatsDelta};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::StartError;
use crate::error_log::ErrorLog;

/// Called for every request sample recorded on the shard (keep it cheap:
/// it runs on the hot path, only when set).
pub type RequestHook = Rc<dyn Fn(&RequestSample<'_>)>;
/// Called for every exception raised by user code on the shard.
pub type UserErrorHook = Rc<dyn Fn(&str, &str)>;

/// The lag of a request that had no schedule (closed load without pacing).
pub(crate) const NO_SCHEDULE: u64 = u64::MAX;

/// Shard → runner.
#[derive(Debug)]
pub(crate) enum ShardEvent {
    Ready,
    Failed {
        error: StartError,
    },
    /// Recorded since the previous delta; `epoch` is the statistics reset
    /// it was recorded after, so the runner can drop pre-reset deltas.
    Stats {
        delta: StatsDelta,
        epoch: u64,
    },
    UserStopped {
        user_id: u64,
    },
    /// The arrival-rate pool started a user of `class` on its own (no
    /// user was free for an iteration).
    UserGrown {
        user_id: u64,
        class: usize,
        shard: usize,
    },
    StopTestRequested,
    /// The plan asked for this load (`swarmer.runner.set_load`).
    LoadRequested(crate::test_settings::TestSettings),
    /// Answer to `Flush { id }`, after its statistics.
    Flushed {
        id: u64,
    },
    ShutDown,
}

/// What every user of a shard shares: the shard's recorder and clock.
pub(crate) struct ShardContext {
    pub recorder: RefCell<ShardRecorder>,
    /// Front-end listeners of every sample and every exception, if any.
    request_hook: RefCell<Option<RequestHook>>,
    user_error_hook: RefCell<Option<UserErrorHook>>,
    clock_instant: Instant,
    clock_unix: f64,
    pub events: UnboundedSender<ShardEvent>,
    /// Exceptions written to the log, a few a second.
    pub error_log: ErrorLog,
}

impl ShardContext {
    pub fn new(node: &str, events: UnboundedSender<ShardEvent>) -> Self {
        Self {
            recorder: RefCell::new(ShardRecorder::new(node)),
            request_hook: RefCell::new(None),
            user_error_hook: RefCell::new(None),
            clock_instant: Instant::now(),
            clock_unix: swarmer_stats::unix_now(),
            events,
            error_log: ErrorLog::default(),
        }
    }

    /// Unix time from the monotonic clock: one `Instant::now()` per call.
    #[inline]
    pub fn now_unix(&self) -> f64 {
        self.clock_unix + self.clock_instant.elapsed().as_secs_f64()
    }

    pub fn set_hooks(&self, request: Option<RequestHook>, user_error: Option<UserErrorHook>) {
        *self.request_hook.borrow_mut() = request;
        *self.user_error_hook.borrow_mut() = user_error;
    }

    /// Record `sample`, and if it had a schedule (`lag_us` is not
    /// [`NO_SCHEDULE`]) its response time from when it was due.
    #[inline]
    pub fn record_scheduled(&self, sample: &RequestSample<'_>, lag_us: u64) {
        let now = self.now_unix();
        {
            let mut recorder = self.recorder.borrow_mut();
            recorder.record(sample, now);
            if lag_us != NO_SCHEDULE {
                recorder.record_corrected(sample, lag_us, now);
            }
        }
        let hook = self.request_hook.borrow().clone();
        if let Some(hook) = hook {
            hook(sample);
        }
    }

    /// A user asked to stop the whole test (`StopTest`).
    pub fn request_stop_test(&self) {
        let _ = self.events.send(ShardEvent::StopTestRequested);
    }

    pub fn record_exception(&self, message: &str, location: &str) {
        self.recorder.borrow_mut().record_exception(message, location);
        self.error_log.exception(self.now_unix() as u64, message, location);
        let hook = self.user_error_hook.borrow().clone();
        if let Some(hook) = hook {
            hook(message, location);
        }
    }
}
