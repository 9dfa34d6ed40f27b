//! Control flow out of a task, as Locust's exceptions express it.
//!
//! A task returns [`TaskResult`]. `Ok(())` means "done, wait, pick the next
//! task". The error variants steer the user: [`TaskError::StopUser`],
//! [`TaskError::StopTest`], [`TaskError::Interrupt`] (leave a task set),
//! [`TaskError::Reschedule`] / [`TaskError::RescheduleNow`]. Anything else
//! is an [`TaskError::Exception`]: recorded (message and location, grouped
//! and counted) and the user carries on. The `?` operator turns any
//! `std::error::Error` into an exception that remembers the line of the `?`.

use std::fmt;
use std::panic::Location;

/// What a task, `on_start` or `on_stop` returns.
pub type TaskResult = Result<(), TaskError>;

/// Why a task ended other than normally.
pub enum TaskError {
    /// Stop this user (Locust's `StopUser`); `on_stop` still runs.
    StopUser,
    /// Stop the whole test (Locust's `StopTest`).
    StopTest,
    /// Leave the current task set (Locust's `interrupt(reschedule)`); with
    /// `reschedule` the parent picks its next task at once, else it waits.
    Interrupt {
        /// True: the parent picks its next task at once; false: it waits first.
        reschedule: bool,
    },
    /// Wait, then pick the next task (Locust's `RescheduleTask`).
    Reschedule,
    /// Pick the next task without waiting (`RescheduleTaskImmediately`).
    RescheduleNow,
    /// An error in user code: recorded as an exception, the user continues.
    Exception {
        /// The error text (with its sources, when converted from an error).
        message: String,
        /// Where it was raised: `file:line` for Rust code, a traceback for Lua plans.
        location: String,
    },
}

impl TaskError {
    /// An exception with a message, located where this is called.
    #[track_caller]
    pub fn exception(message: impl Into<String>) -> Self {
        let at = Location::caller();
        TaskError::Exception { message: message.into(), location: format!("{}:{}", at.file(), at.line()) }
    }

    /// An exception with an explicit location (a Lua traceback, say).
    pub fn exception_at(message: impl Into<String>, location: impl Into<String>) -> Self {
        TaskError::Exception { message: message.into(), location: location.into() }
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    #[track_caller]
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        TaskError::exception(message)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::StopUser => write!(f, "StopUser"),
            TaskError::StopTest => write!(f, "StopTest"),
            TaskError::Interrupt { reschedule } => write!(f, "Interrupt(reschedule={reschedule})"),
            TaskError::Reschedule => write!(f, "Reschedule"),
            TaskError::RescheduleNow => write!(f, "RescheduleNow"),
            TaskError::Exception { message, location } => write!(f, "Exception({message} at {location})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<i32, TaskError> {
        Ok(text.parse::<i32>()?)
    }

    #[test]
    fn question_mark_records_message_and_line() {
        match parse("x") {
            Err(TaskError::Exception { message, location }) => {
                assert_eq!(message, "invalid digit found in string");
                assert!(location.starts_with("crates/engine/src/control.rs:"), "{location}");
                let line: u32 = location.rsplit(':').next().unwrap().parse().unwrap();
                assert!(line > 70, "points at the `?`, got {line}");
            }
            other => panic!("{other:?}"),
        }
    }
}
