//! How a shard tells one user to stop: first politely (finish the current
//! task, skip the wait), then, after `--stop-timeout`, by force (drop the
//! task mid-flight). `on_stop` runs in both cases.

use std::cell::Cell;

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct StopSignal {
    requested: Cell<bool>,
    forced: Cell<bool>,
    notify: Notify,
}

impl StopSignal {
    pub fn request(&self) {
        self.requested.set(true);
        self.notify.notify_waiters();
    }

    pub fn force(&self) {
        self.requested.set(true);
        self.forced.set(true);
        self.notify.notify_waiters();
    }

    pub fn is_requested(&self) -> bool {
        self.requested.get()
    }

    /// Resolves once a stop (polite or forced) has been requested.
    pub async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested.get() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once a forced stop has been requested.
    pub async fn forced(&self) {
        loop {
            let notified = self.notify.notified();
            if self.forced.get() {
                return;
            }
            notified.await;
        }
    }
}
