//! Exceptions in user code, written to the log as Locust writes them
//! (error level, message then traceback), at most [`PER_SECOND`] a second
//! per shard, so a task failing on every call cannot flood the log: the
//! rest are counted and summed up once a second. Every one of them is in
//! the exceptions table either way.

use std::cell::Cell;

/// Exceptions logged in full per shard and second.
pub(crate) const PER_SECOND: u32 = 5;

#[derive(Default)]
pub(crate) struct ErrorLog {
    second: Cell<u64>,
    logged: Cell<u32>,
    skipped: Cell<u64>,
}

impl ErrorLog {
    /// Log one exception raised at Unix second `now`, unless this second's
    /// share is used up.
    pub fn exception(&self, now: u64, message: &str, traceback: &str) {
        if now != self.second.get() {
            self.flush();
            self.second.set(now);
            self.logged.set(0);
        }
        if self.logged.get() < PER_SECOND {
            self.logged.set(self.logged.get() + 1);
            if traceback.is_empty() {
                tracing::error!("{message}");
            } else {
                tracing::error!("{message}\n{traceback}");
            }
        } else {
            self.skipped.set(self.skipped.get() + 1);
        }
    }

    /// Say how many exceptions were not logged since the last call.
    pub fn flush(&self) {
        let skipped = self.skipped.replace(0);
        if skipped > 0 {
            tracing::error!(
                "{skipped} more exceptions in user code were not logged (at most {PER_SECOND} a second per shard); \
                 the exceptions table counts them all"
            );
        }
    }

    /// Exceptions not logged since the last [`ErrorLog::flush`].
    #[cfg(test)]
    pub fn skipped(&self) -> u64 {
        self.skipped.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_second_logs_a_few_then_counts_the_rest() {
        let log = ErrorLog::default();
        for _ in 0..8 {
            log.exception(100, "boom", "plan.lua:3");
        }
        assert_eq!(log.skipped(), 8 - u64::from(PER_SECOND));
        log.exception(101, "boom", "plan.lua:3");
        assert_eq!(log.skipped(), 0, "a new second says how many were skipped and starts over");
    }
}
