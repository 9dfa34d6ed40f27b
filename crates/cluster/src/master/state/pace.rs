//! How often the master asks workers to report (backpressure).
//!
//! Merging workers' reports is the master loop's main work and grows with
//! workers × request names. The loop times what it spends on workers'
//! events and watches its bounded event queue; once a second it decides:
//! past its budget, [`BUSY_HIGH`] of the loop's time unless
//! `SWARMER_MASTER_MERGE_BUDGET` (percent) says otherwise, or with the
//! queue filling up,
//! workers are asked to report half as often, up to every
//! [`crate::MAX_REPORT_EVERY_SECONDS`]; well under it again, twice as
//! often, back to every second. A worker that reports less often sends
//! what it recorded meanwhile as one report, so nothing is dropped and
//! totals stay exact; only the per-second charts get coarser.

use std::time::{Duration, Instant};

/// Share of the loop's time above which reports are asked for less often.
pub(super) const BUSY_HIGH: f64 = 0.5;
/// Asking for reports twice as often must keep the loop under this share
/// of the budget.
const BUSY_LOW: f64 = 0.6;
/// Seconds between two slowdowns: a whole report cycle at the current
/// pace must have shown its effect.
const SETTLE_CYCLES: u32 = 2;
/// Seconds before reports are asked for more often again.
const SPEED_UP_AFTER: Duration = Duration::from_secs(10);

/// The report pace and what the loop measured since the last decision.
pub(super) struct ReportPace {
    /// Share of the loop's time merging may take.
    budget: f64,
    every: u32,
    busy: Duration,
    since: Instant,
    /// When the pace last changed (`None`: never).
    changed: Option<Instant>,
    queue_filled: bool,
}

impl ReportPace {
    pub(super) fn new(now: Instant) -> Self {
        Self::with_budget(now, budget_from_env())
    }

    fn with_budget(now: Instant, budget: f64) -> Self {
        Self { budget, every: 1, busy: Duration::ZERO, since: now, changed: None, queue_filled: false }
    }

    /// The current pace: report every this many seconds.
    pub(super) fn every(&self) -> u32 {
        self.every
    }

    /// Time the loop spent on workers' events.
    pub(super) fn spent(&mut self, time: Duration) {
        self.busy += time;
    }

    /// The event queue's length as the loop took an event from it.
    pub(super) fn queue(&mut self, len: usize, capacity: usize) {
        if len * 4 >= capacity * 3 {
            self.queue_filled = true;
        }
    }

    /// Once a second: the new pace if it changes, and the loop's busy share.
    pub(super) fn decide(&mut self, now: Instant) -> (Option<u32>, f64) {
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64().max(0.001);
        let busy = self.busy.as_secs_f64() / elapsed;
        let filled = std::mem::take(&mut self.queue_filled);
        self.busy = Duration::ZERO;
        self.since = now;
        let settled = self.changed.map_or(Duration::MAX, |changed| now.saturating_duration_since(changed));
        let max = crate::MAX_REPORT_EVERY_SECONDS;
        let next = if (busy > self.budget || filled) && self.every < max {
            (settled >= Duration::from_secs(u64::from(self.every * SETTLE_CYCLES))).then(|| (self.every * 2).min(max))
        } else if self.every > 1 && !filled && busy * 2.0 < BUSY_LOW * self.budget && settled >= SPEED_UP_AFTER {
            Some(self.every / 2)
        } else {
            None
        };
        if let Some(every) = next {
            self.every = every;
            self.changed = Some(now);
        }
        (next, busy)
    }
}

/// `SWARMER_MASTER_MERGE_BUDGET`: percent of the loop's time, (0, 100].
fn budget_from_env() -> f64 {
    let Ok(text) = std::env::var("SWARMER_MASTER_MERGE_BUDGET") else { return BUSY_HIGH };
    match text.trim().parse::<f64>() {
        Ok(percent) if percent > 0.0 && percent <= 100.0 => percent / 100.0,
        _ => {
            tracing::warn!(
                "SWARMER_MASTER_MERGE_BUDGET={text:?} is not a percentage in (0, 100]; using {}",
                BUSY_HIGH * 100.0
            );
            BUSY_HIGH
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second in which the loop was busy `share` of the time.
    fn second(pace: &mut ReportPace, now: &mut Instant, share: f64) -> Option<u32> {
        pace.spent(Duration::from_secs_f64(share));
        *now += Duration::from_secs(1);
        pace.decide(*now).0
    }

    #[test]
    fn a_busy_loop_asks_for_fewer_reports_step_by_step_up_to_the_bound() {
        let mut now = Instant::now();
        let mut pace = ReportPace::with_budget(now, BUSY_HIGH);
        assert_eq!(second(&mut pace, &mut now, 0.2), None);
        assert_eq!(second(&mut pace, &mut now, 0.9), Some(2));
        // The new pace gets two report cycles to show its effect.
        let changes: Vec<_> = (0..40).filter_map(|_| second(&mut pace, &mut now, 0.9)).collect();
        assert_eq!(changes, [4, 8]);
        assert_eq!(pace.every(), crate::MAX_REPORT_EVERY_SECONDS);
    }

    #[test]
    fn a_filling_queue_slows_reports_even_when_the_loop_looks_idle() {
        let mut now = Instant::now();
        let mut pace = ReportPace::with_budget(now, BUSY_HIGH);
        pace.queue(200, 256);
        assert_eq!(second(&mut pace, &mut now, 0.1), Some(2));
        // Not full any more, and little work: back to every second later.
        let changes: Vec<_> = (0..30).filter_map(|_| second(&mut pace, &mut now, 0.05)).collect();
        assert_eq!(changes, [1]);
    }

    #[test]
    fn reports_come_more_often_again_only_when_that_would_stay_well_under_the_limit() {
        let mut now = Instant::now();
        let mut pace = ReportPace::with_budget(now, BUSY_HIGH);
        assert_eq!(second(&mut pace, &mut now, 0.8), Some(2));
        // At 0.4 busy, twice the reports would be 0.8: stay.
        assert!((0..30).all(|_| second(&mut pace, &mut now, 0.4).is_none()));
        assert_eq!(pace.every(), 2);
        // At 0.1, twice the reports is 0.2: speed up after the settling time.
        let changes: Vec<_> = (0..30).filter_map(|_| second(&mut pace, &mut now, 0.1)).collect();
        assert_eq!(changes, [1]);
    }
}
