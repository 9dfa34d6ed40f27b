//! Taking a `std::sync::Mutex` even after a panic poisoned it.
//!
//! Shared state (the [`StatsStore`](crate::StatsStore), the host, the web
//! UI's sessions and log lines, ...) lives behind std mutexes. A panic while
//! one is held poisons it; skipping every later update would silently stop
//! statistics merging for the rest of the run. [`LockExt::lock_or_recover`]
//! takes the guard anyway (the data is whatever the panicking code left)
//! and warns once per process that it did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Set once a poisoned lock has been recovered and reported.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Lock a mutex, recovering it when a panic poisoned it.
pub trait LockExt<T: ?Sized> {
    /// The guard, from a poisoned mutex too. The first recovery in the
    /// process logs a warning.
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        match self.lock() {
            Ok(guard) => guard,
            Err(poisoned) if WARNED.swap(true, Ordering::Relaxed) => poisoned.into_inner(),
            Err(poisoned) => {
                // Warn with the lock released: the log line may itself go
                // through this mutex (the web UI's log buffer).
                drop(poisoned);
                tracing::warn!("a panic poisoned a lock on shared state; carrying on with the data it left");
                self.lock().unwrap_or_else(PoisonError::into_inner)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Log lines, kept behind a mutex the way the web UI's log buffer is.
    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Writes every event's message into [`LOG`] through `lock_or_recover`.
    struct IntoLog;

    impl tracing::Subscriber for IntoLog {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    self.0 = format!("{value:?}");
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            LOG.lock_or_recover().push(message.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// One test, so that the process-wide warning is seen here first.
    #[test]
    fn recovers_a_poisoned_lock_and_keeps_updates() {
        warns_once_without_holding_the_lock();

        let shared = Arc::new(Mutex::new(vec![1]));
        let held = Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let mut data = held.lock_or_recover();
            data.push(2);
            panic!("panic with the lock held");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());

        assert_eq!(*shared.lock_or_recover(), [1, 2]);
        shared.lock_or_recover().push(3);
        shared.lock_or_recover().push(4);
        assert_eq!(*shared.lock_or_recover(), [1, 2, 3, 4]);
    }

    /// The one warning goes out with the lock released, so a logger that
    /// takes the same (poisoned) lock does not deadlock; later recoveries
    /// are silent.
    fn warns_once_without_holding_the_lock() {
        let _ = std::thread::spawn(|| {
            let _held = LOG.lock_or_recover();
            panic!("panic with the log lock held");
        })
        .join();
        assert!(LOG.is_poisoned());
        assert!(!WARNED.load(Ordering::Relaxed));
        tracing::subscriber::with_default(IntoLog, || {
            LOG.lock_or_recover().push("first".into());
            LOG.lock_or_recover().push("second".into());
            tracing::info!("third");
        });
        assert!(WARNED.load(Ordering::Relaxed));
        let log = LOG.lock_or_recover().clone();
        assert_eq!(log.len(), 4, "{log:?}");
        assert!(log[0].contains("poisoned"), "{log:?}");
        assert_eq!(log[1..], ["first", "second", "third"]);
    }

    #[test]
    fn locks_a_healthy_mutex() {
        let shared = Mutex::new(0);
        *shared.lock_or_recover() += 1;
        assert_eq!(*shared.lock_or_recover(), 1);
        assert!(!shared.is_poisoned());
    }
}
