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
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use rand::Rng;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::arrival::ArrivalRate;
use crate::shard_context::ShardContext;
use crate::stop_signal::StopSignal;

/// How late a timer may wake (tokio's timers have millisecond ticks).
const TIMER_RESOLUTION: std::time::Duration = std::time::Duration::from_millis(1);

/// How far ahead of an iteration the pacer sets timers: two ticks, so an
/// iteration handed out at once (its timer would fire with this one's)
/// still leaves the next one's set.
const AHEAD_BY: std::time::Duration = std::time::Duration::from_millis(2);

/// Most timers the pacer sets ahead (at rates above this many per
/// millisecond it seldom sleeps).
const MOST_AHEAD: usize = 64;

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
    // Beyond any clock (a rate of almost nothing): the schedule ends.
    let due_of = |k: u64| {
        let at = share.rate.due_time(k.saturating_mul(stride).saturating_add(share.offset))?;
        began.checked_add(at)
    };
    // Timers of the iterations after this one, set before this one fires.
    let mut ahead = Ahead::default();
    for k in first.. {
        let Some(due) = due_of(k) else { break };
        let own = ahead.take(k);
        let now = tokio::time::Instant::now();
        if due > now + TIMER_RESOLUTION {
            // The timer wakes up to a millisecond after its deadline: asked
            // for one tick early, it wakes about when the iteration is due.
            let timer = own.unwrap_or_else(|| Box::pin(tokio::time::sleep_until(due - TIMER_RESOLUTION)));
            ahead.extend(k, due + AHEAD_BY, &due_of).await;
            timer.await;
        } else {
            if !ahead.is_empty() {
                ahead.extend(k, due + AHEAD_BY, &due_of).await;
            }
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

/// The timers of iterations to come, set while the pacer's current timer
/// is pending. Tokio wakes its own driver (an eventfd write, then one more
/// `epoll_wait`) for every timer set earlier than the earliest it knew of
/// when it last slept or fired timers, which a pacer's next timer always
/// is when set after the last one fired: twice the system calls per
/// iteration at low rates. Set ahead, while the current one is pending, up
/// to [`AHEAD_BY`] past it, no timer is.
#[derive(Default)]
struct Ahead {
    /// Iteration, when it is due, its timer; in order.
    timers: VecDeque<(u64, tokio::time::Instant, Pin<Box<Sleep>>)>,
}

impl Ahead {
    /// The timer set for iteration `k`, if any; those of earlier ones
    /// (handed out without waiting) are dropped.
    fn take(&mut self, k: u64) -> Option<Pin<Box<Sleep>>> {
        while self.timers.front().is_some_and(|(j, _, _)| *j < k) {
            self.timers.pop_front();
        }
        match self.timers.front() {
            Some((j, _, _)) if *j == k => self.timers.pop_front().map(|(_, _, timer)| timer),
            _ => None,
        }
    }

    /// Whether no timer is set ahead.
    fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// Set timers for the iterations after `k` (and those already set), up
    /// to the first one due at `until` or later.
    async fn extend(
        &mut self,
        k: u64,
        until: tokio::time::Instant,
        due_of: &impl Fn(u64) -> Option<tokio::time::Instant>,
    ) {
        let mut j = self.timers.back().map_or(k, |(j, _, _)| *j) + 1;
        while self.timers.len() < MOST_AHEAD && self.timers.back().is_none_or(|(_, due, _)| *due < until) {
            let Some(due) = due_of(j) else { return };
            let mut timer = Box::pin(tokio::time::sleep_until(due - TIMER_RESOLUTION));
            arm(timer.as_mut()).await;
            self.timers.push_back((j, due, timer));
            j += 1;
        }
    }
}

/// Register `timer` with the runtime's timer wheel now (a sleep registers
/// on its first poll), with the calling task's waker.
async fn arm(mut timer: Pin<&mut Sleep>) {
    std::future::poll_fn(|cx| {
        // Pending, or already past: either way it is in the wheel or done.
        let _ = timer.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
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

    #[tokio::test(flavor = "current_thread")]
    async fn timers_are_set_ahead_up_to_two_ticks_and_handed_over_in_order() {
        let base = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
        // An iteration every half millisecond.
        let due_of = |k: u64| Some(base + std::time::Duration::from_micros(500 * k));
        let mut ahead = Ahead::default();
        ahead.extend(0, base + AHEAD_BY, &due_of).await;
        let set: Vec<u64> = ahead.timers.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(set, [1, 2, 3, 4], "up to the first due two ticks later");
        // Extending again from a later iteration adds only what is missing.
        ahead.extend(1, due_of(1).unwrap() + AHEAD_BY, &due_of).await;
        assert_eq!(ahead.timers.back().map(|(k, _, _)| *k), Some(5));
        assert!(ahead.take(1).is_some());
        // Iteration 2 was handed out without waiting: its timer is dropped.
        assert!(ahead.take(3).is_some());
        assert_eq!(ahead.timers.front().map(|(k, _, _)| *k), Some(4));
        assert!(ahead.take(9).is_none() && ahead.is_empty());
        // A timer set ahead fires when its iteration's own would.
        let mut ahead = Ahead::default();
        ahead.extend(0, base + AHEAD_BY, &due_of).await;
        let timer = ahead.take(2).unwrap();
        timer.await;
        assert!(tokio::time::Instant::now() >= due_of(2).unwrap() - TIMER_RESOLUTION);
    }

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
