//! The life of one user: `on_start`, then tasks and waits until stopped,
//! then `on_stop`. Mirrors Locust's `User.run` and `TaskSet.run`.
//!
//! A task's outcome steers the loop (see [`crate::TaskError`]). A stop
//! request ends the loop between tasks or during a wait; a forced stop
//! drops the running task. Either way `on_stop` runs. A panic in user code
//! is caught and recorded as an exception, like any other error.
//!
//! In an arrival-rate test a user belongs to its shard's pool: instead of
//! waiting between its own tasks it waits for the pacer to hand it the next
//! iteration (one task of its class), and its requests count both from when
//! they were sent and from when the iteration was due. With a pacing wait
//! (`constant_pacing`, `constant_throughput`) the pacing is the schedule.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::arrival_pool::Membership;
use crate::control::{TaskError, TaskResult};
use crate::stop_signal::StopSignal;
use crate::task::{TaskFn, TaskKind, TaskSet};
use crate::user::User;
use crate::user_class::UserClass;
use crate::wait_time::WaitTime;

/// How a task set was left.
enum SetExit {
    /// The user stops (stop requested, `StopUser`, `StopTest`).
    Stop,
    /// A task interrupted this set; the parent continues.
    Interrupted { reschedule: bool },
}

/// A wait time that replaces a class's own (its task sets' included)
/// while set: a load phase's. Shared by the class's users on a shard.
pub(crate) type WaitOverride = RefCell<Option<WaitTime>>;

/// Run one user to completion.
pub(crate) async fn run_user(
    mut user: User,
    class: Rc<UserClass>,
    stop: Rc<StopSignal>,
    wait: Rc<WaitOverride>,
    pool: Option<Membership>,
) {
    {
        let body = run_body(&mut user, &class, &stop, &wait, pool.as_ref());
        // The stop is looked at first: a user forced to stop while its
        // request waited for a pooled connection must not go on to open
        // one when the slot it waited for is freed by another stopped user.
        tokio::select! {
            biased;
            _ = stop.forced() => {}
            _ = body => {}
        }
    }
    if let Some(on_stop) = &class.on_stop {
        // on_stop is not an iteration: its requests had no schedule.
        user.client.set_schedule_lag(None);
        let result = call(on_stop, &mut user).await;
        handle_hook_result(&user, result);
    }
}

async fn run_body(
    user: &mut User,
    class: &UserClass,
    stop: &StopSignal,
    overridden: &WaitOverride,
    pool: Option<&Membership>,
) {
    if let Some(on_start) = &class.on_start {
        match call(on_start, user).await {
            Err(TaskError::StopUser) => return,
            Err(TaskError::StopTest) => {
                request_stop_test(user);
                return;
            }
            other => handle_hook_result(user, other),
        }
    }
    if class.tasks.total_weight() == 0 {
        // Nothing to do (for example every task was filtered out by tags):
        // the user idles until stopped, as Locust's quits instantly.
        stop.requested().await;
        return;
    }
    let _ = run_task_set(user, &class.tasks, &class.wait_time, overridden, stop, pool, 0).await;
}

fn handle_hook_result(user: &User, result: TaskResult) {
    match result {
        Err(TaskError::Exception { message, location }) => user.record_exception(&message, &location),
        Err(TaskError::StopTest) => request_stop_test(user),
        _ => {}
    }
}

fn request_stop_test(user: &User) {
    user.shard.request_stop_test();
}

fn run_task_set<'a>(
    user: &'a mut User,
    set: &'a TaskSet,
    wait: &'a WaitTime,
    overridden: &'a WaitOverride,
    stop: &'a StopSignal,
    pool: Option<&'a Membership>,
    depth: usize,
) -> Pin<Box<dyn Future<Output = SetExit> + 'a>> {
    Box::pin(async move {
        let wait = set.wait_time.as_ref().filter(|_| depth > 0).unwrap_or(wait);
        if depth > 0
            && let Some(on_start) = &set.on_start
        {
            match call(on_start, user).await {
                Err(TaskError::StopUser) => return SetExit::Stop,
                Err(TaskError::StopTest) => {
                    request_stop_test(user);
                    return SetExit::Stop;
                }
                other => handle_hook_result(user, other),
            }
        }
        let mut next_in_sequence = 0;
        // With a pacing wait, when the next task is due (its first at once).
        let mut pacing_due = {
            let phase_wait = overridden.borrow();
            phase_wait.as_ref().unwrap_or(wait).pacing_period().map(|_| Instant::now())
        };
        let exit = loop {
            if stop.is_requested() {
                break SetExit::Stop;
            }
            if let Some(pool) = pool {
                // An arrival-rate user: the next iteration comes from the pacer.
                let Some(due) = pool.next_iteration(stop, &user.shard).await else { break SetExit::Stop };
                let now = Instant::now();
                user.client.set_schedule_lag(Some(now.saturating_duration_since(due)));
            } else if let Some(due) = pacing_due {
                user.client.set_schedule_lag(Some(Instant::now().saturating_duration_since(due)));
            }
            let task = if set.sequential {
                let t = &set.tasks[next_in_sequence % set.tasks.len()];
                next_in_sequence += 1;
                t
            } else {
                match set.pick(user.rng()) {
                    Some(t) => t,
                    None => break SetExit::Stop,
                }
            };
            user.task_started = Instant::now();
            let outcome = match &task.kind {
                TaskKind::Function(body) => call(body, user).await,
                TaskKind::Set(inner) => {
                    match run_task_set(user, inner, wait, overridden, stop, None, depth + 1).await {
                        SetExit::Stop => break SetExit::Stop,
                        SetExit::Interrupted { reschedule: true } => Err(TaskError::RescheduleNow),
                        SetExit::Interrupted { reschedule: false } => Ok(()),
                    }
                }
            };
            match outcome {
                Ok(()) | Err(TaskError::Reschedule) => {}
                Err(TaskError::RescheduleNow) => continue,
                Err(TaskError::StopUser) => break SetExit::Stop,
                Err(TaskError::StopTest) => {
                    request_stop_test(user);
                    break SetExit::Stop;
                }
                Err(TaskError::Interrupt { reschedule }) if depth > 0 => {
                    break SetExit::Interrupted { reschedule };
                }
                Err(TaskError::Interrupt { .. }) => {
                    user.record_exception(
                        "interrupt() called in a user's own tasks; only a nested task set can be interrupted",
                        &task.name,
                    );
                }
                Err(TaskError::Exception { message, location }) => user.record_exception(&message, &location),
            }
            if pool.is_some() {
                // No wait: the pacer says when the next iteration is due.
                continue;
            }
            let started = user.task_started;
            let delay = {
                let phase_wait = overridden.borrow();
                let effective = phase_wait.as_ref().unwrap_or(wait);
                pacing_due = effective.pacing_period().map(|period| started + period);
                if pacing_due.is_none() && depth == 0 {
                    // A nested set's tasks belong to the iteration that
                    // entered it; only the user's own loop ends a schedule.
                    user.client.set_schedule_lag(None);
                }
                effective.next_wait(user.rng(), started, Instant::now())
            };
            if delay.is_zero() {
                // Even without a wait, the shard's other users, its timers
                // and its commands get a turn now and then: a task that
                // never waits on I/O must not take the shard over.
                tokio::task::coop::consume_budget().await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.requested() => break SetExit::Stop,
                }
            }
        };
        if depth > 0
            && let Some(on_stop) = &set.on_stop
        {
            let result = call(on_stop, user).await;
            handle_hook_result(user, result);
        }
        exit
    })
}

/// Run a task body, turning a panic into an exception.
async fn call(body: &TaskFn, user: &mut User) -> TaskResult {
    CatchPanic(body(user)).await
}

struct CatchPanic<F>(F);

impl<F: Future<Output = TaskResult> + Unpin> Future for CatchPanic<F> {
    type Output = TaskResult;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TaskResult> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(TaskError::exception_at(panic_message(&*panic), "panic"))),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("panic: {text}")
}
