//! A shard's side of an arrival-rate test: the pool of users that serve
//! iterations, and the pacer that hands iterations out on schedule.
//!
//! The pacer wakes when the shard's next iteration is due and gives it to
//! an idle user of the pool. When every user is busy, users whose request
//! has just ended get one turn to come back; if still none is free, the
//! iteration is *dropped* (counted, never delayed, as k6 does) and, below
//! the shard's maximum, one more user is started for the iterations to
//! come. A dropped
//! iteration's wait (from when it was due until a user next came free) is
//! filed among the corrected response times, a lower bound of what a
//! client that never drops would have shown.
//!
//! Users join the pool when the runner spawns them as pooled (or when the
//! pool grows); a user's [`Membership`] is how its loop asks for the next
//! iteration.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use rand::Rng;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::arrival::ArrivalRate;
use crate::shard_context::ShardContext;
use crate::stop_signal::StopSignal;

/// How late a timer may wake (tokio's timers have millisecond ticks).
const TIMER_RESOLUTION: std::time::Duration = std::time::Duration::from_millis(1);

/// Dropped iterations are remembered (until a user comes free) by the
/// millisecond they were due: a run of drops within one millisecond is one
/// entry, so a long stall at a high rate costs about 1,000 entries a second.
const MISSED_RESOLUTION: std::time::Duration = std::time::Duration::from_millis(1);

/// What one shard runs of an arrival-rate test.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ArrivalShare {
    /// The whole test's rate (every shard of every worker).
    pub rate: ArrivalRate,
    /// How many shards share the iterations, and this shard's place among
    /// them: it runs iterations `offset`, `offset + stride`, ...
    pub stride: u64,
    pub offset: u64,
    /// This shard's share of the pool's maximum.
    pub max_users: usize,
    /// Class weights for users the pool grows by (the test's selection).
    pub class_weights: Vec<u32>,
    /// When the schedule starts (its iteration 0 is due then).
    pub began: Instant,
    /// The host of users the pool grows by (the test's, as the runner's own).
    pub host: Option<String>,
}

/// A user the pacer asks the shard to start: its class and its place.
pub(crate) struct Growth {
    /// The schedule it was asked for by (a growth asked for by an ended
    /// schedule is not started).
    pub generation: u64,
    pub class: usize,
    pub host: Option<String>,
    pub membership: Membership,
}

/// A user's place in the pool: where the pacer puts its next iteration.
struct Seat {
    due: Cell<Option<Instant>>,
    notify: Notify,
    gone: Cell<bool>,
}

/// The pool of one shard.
#[derive(Default)]
pub(crate) struct Pool {
    idle: RefCell<Vec<Rc<Seat>>>,
    /// Users in the pool (started or about to start).
    members: Cell<usize>,
    max: Cell<usize>,
    /// When the iterations dropped since a user last came free were due:
    /// runs of `(first due, count)` within [`MISSED_RESOLUTION`].
    missed: RefCell<Vec<(Instant, u64)>>,
    /// Counts the schedules run (see [`Growth::generation`]).
    generation: Cell<u64>,
    pacer: RefCell<Option<JoinHandle<()>>>,
}

/// A user's membership of the pool; it leaves when dropped.
pub(crate) struct Membership {
    pool: Rc<Pool>,
    seat: Rc<Seat>,
}

impl Pool {
    /// A place for a user about to be spawned.
    pub fn join(self: &Rc<Self>) -> Membership {
        self.members.set(self.members.get() + 1);
        let seat = Rc::new(Seat { due: Cell::new(None), notify: Notify::new(), gone: Cell::new(false) });
        Membership { pool: self.clone(), seat }
    }

    /// Run `share` from now on (replacing a schedule already running), or
    /// stop pacing if `None`.
    pub fn run(
        self: &Rc<Self>,
        share: Option<ArrivalShare>,
        context: &Rc<ShardContext>,
        grow: &UnboundedSender<Growth>,
    ) {
        self.stop_pacing(context);
        self.generation.set(self.generation.get() + 1);
        // Seats of users gone since are forgotten.
        self.idle.borrow_mut().retain(|seat| !seat.gone.get());
        let Some(share) = share else { return };
        self.max.set(share.max_users);
        let pacer = tokio::task::spawn_local(pace(self.clone(), share, context.clone(), grow.clone()));
        *self.pacer.borrow_mut() = Some(pacer);
    }

    /// End the schedule; dropped iterations still waiting are filed with
    /// what they waited so far.
    pub fn stop_pacing(&self, context: &ShardContext) {
        if let Some(pacer) = self.pacer.borrow_mut().take() {
            pacer.abort();
        }
        self.file_missed(context);
    }

    /// Give the iteration due at `due` to an idle user; false when none is.
    fn hand_out(&self, due: Instant, context: &ShardContext) -> bool {
        loop {
            let Some(seat) = self.idle.borrow_mut().pop() else { return false };
            if seat.gone.get() {
                continue;
            }
            seat.due.set(Some(due));
            seat.notify.notify_one();
            context.recorder.borrow_mut().count_iteration_started(context.now_unix());
            return true;
        }
    }

    /// Count the iteration due at `due` as dropped.
    fn drop_iteration(&self, due: Instant, context: &ShardContext) {
        context.recorder.borrow_mut().count_iteration_dropped(context.now_unix());
        let mut missed = self.missed.borrow_mut();
        match missed.last_mut() {
            Some((first, count)) if due.saturating_duration_since(*first) < MISSED_RESOLUTION => *count += 1,
            _ => missed.push((due, 1)),
        }
    }

    /// The pool ran dry: one user more for the iterations to come, if it may.
    fn grow(self: &Rc<Self>, share: &ArrivalShare, grow: &UnboundedSender<Growth>) {
        if self.members.get() < self.max.get()
            && let Some(class) = pick_class(&share.class_weights)
        {
            let generation = self.generation.get();
            let _ = grow.send(Growth { generation, class, host: share.host.clone(), membership: self.join() });
        }
    }

    /// Whether a growth asked for by schedule `generation` is still wanted.
    pub fn wants(&self, generation: u64) -> bool {
        self.generation.get() == generation && self.pacer.borrow().is_some()
    }

    /// A user came free: file the waits of the iterations dropped meanwhile.
    fn file_missed(&self, context: &ShardContext) {
        let missed = std::mem::take(&mut *self.missed.borrow_mut());
        if missed.is_empty() {
            return;
        }
        let now = context.now_unix();
        let free = Instant::now();
        let mut recorder = context.recorder.borrow_mut();
        for (due, count) in missed {
            let waited = free.saturating_duration_since(due).as_micros() as u64;
            for _ in 0..count {
                recorder.record_dropped_wait(waited, now);
            }
        }
    }
}

impl Membership {
    /// Wait for the next iteration; when it was due. `None` once the user
    /// is asked to stop.
    pub async fn next_iteration(&self, stop: &StopSignal, context: &ShardContext) -> Option<Instant> {
        self.pool.file_missed(context);
        self.seat.due.set(None);
        self.pool.idle.borrow_mut().push(self.seat.clone());
        loop {
            let handed = self.seat.notify.notified();
            if let Some(due) = self.seat.due.take() {
                return Some(due);
            }
            tokio::select! {
                _ = handed => {}
                _ = stop.requested() => {
                    self.seat.gone.set(true);
                    return None;
                }
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.seat.gone.set(true);
        self.pool.members.set(self.pool.members.get().saturating_sub(1));
    }
}

/// Hand out the shard's iterations on schedule until it ends.
async fn pace(pool: Rc<Pool>, share: ArrivalShare, context: Rc<ShardContext>, grow: UnboundedSender<Growth>) {
    let began = tokio::time::Instant::from_std(share.began);
    let stride = share.stride.max(1);
    // A schedule that began before this shard took it up (a worker dealt
    // anew mid-test) goes on from now: what was due before is not made up.
    let first = first_due_from(&share.rate, stride, share.offset, share.began.elapsed());
    for k in first.. {
        let Some(at) = share.rate.due_time(k.saturating_mul(stride).saturating_add(share.offset)) else { break };
        // Beyond any clock (a rate of almost nothing): the schedule ends.
        let Some(due) = began.checked_add(at) else { break };
        if due > tokio::time::Instant::now() + TIMER_RESOLUTION {
            // The timer wakes up to a millisecond after its deadline: asked
            // for one tick early, it wakes about when the iteration is due.
            tokio::time::sleep_until(due - TIMER_RESOLUTION).await;
        } else {
            // Behind schedule (a burst after a busy moment): the shard's
            // users and commands still get their turns.
            tokio::task::coop::consume_budget().await;
        }
        let due = due.into_std();
        if pool.hand_out(due, &context) {
            continue;
        }
        // The pool ran dry: users whose request just ended, free but not
        // yet back (they have not run since), get one turn; if none comes,
        // the iteration is dropped and the pool grows (k6's maxVUs).
        tokio::task::yield_now().await;
        if !pool.hand_out(due, &context) {
            pool.drop_iteration(due, &context);
            pool.grow(&share, &grow);
        }
    }
}

/// The first of a shard's iterations (`k` for iteration `k * stride +
/// offset`) not due before `elapsed`.
fn first_due_from(rate: &ArrivalRate, stride: u64, offset: u64, elapsed: std::time::Duration) -> u64 {
    let before = |k: u64| rate.due_time(k.saturating_mul(stride).saturating_add(offset)).is_some_and(|at| at < elapsed);
    if elapsed.is_zero() || !before(0) {
        return 0;
    }
    // Double past it, then halve back: `before(low)` holds, `before(high)` does not.
    let (mut low, mut high) = (0u64, 1u64);
    while before(high) {
        low = high;
        high = high.saturating_mul(2);
        if high == u64::MAX {
            return high;
        }
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if before(middle) { low = middle } else { high = middle }
    }
    high
}

/// A class by weight, for a user the pool grows by.
fn pick_class(weights: &[u32]) -> Option<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rand::thread_rng().gen_range(0..total);
    weights.iter().position(|&w| {
        if pick < u64::from(w) {
            return true;
        }
        pick -= u64::from(w);
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_taken_up_late_goes_on_from_now() {
        let rate = ArrivalRate::constant(10.0, 1, 1);
        assert_eq!(first_due_from(&rate, 1, 0, std::time::Duration::ZERO), 0);
        // At 2.05 s, iterations 0..=20 were due (0.1 s apart): 21 is next.
        assert_eq!(first_due_from(&rate, 1, 0, std::time::Duration::from_millis(2050)), 21);
        // Every second iteration from 1: 1, 3, ..., 19 were due; k = 10 is 21.
        assert_eq!(first_due_from(&rate, 2, 1, std::time::Duration::from_millis(2050)), 10);
    }

    #[test]
    fn grown_users_follow_the_class_weights() {
        assert_eq!(pick_class(&[0, 0]), None);
        assert_eq!(pick_class(&[0, 3]), Some(1));
        let picks: Vec<usize> = (0..1000).filter_map(|_| pick_class(&[1, 3])).collect();
        let second = picks.iter().filter(|&&c| c == 1).count();
        assert!((650..850).contains(&second), "{second} of 1000");
    }
}
