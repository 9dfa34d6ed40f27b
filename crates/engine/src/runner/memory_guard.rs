//! `--memory-limit`: the process's resident memory against its limit,
//! once a second, and what the runner does about it, so that the process
//! never dies of running out of memory and loses the run: warn at
//! [`WARN_AT`], stop adding users at [`PAUSE_AT`] (until it falls below
//! [`RESUME_BELOW`]), and shed the newest users at [`SHED_AT`], a quarter
//! of them (at least one; half once over the limit). Memory given back by
//! stopped users shows late, if at all (allocators keep small blocks), so
//! after a shed the guard waits [`SHED_SETTLE`] and sheds again only while
//! memory is still above what it was then: a leak goes on costing users,
//! a level that merely stays high does not.

use std::time::{Duration, Instant};

use crate::memory::show_size;

/// Shares of the limit.
const WARN_AT: f64 = 0.80;
const PAUSE_AT: f64 = 0.90;
const RESUME_BELOW: f64 = 0.80;
const SHED_AT: f64 = 0.95;
/// Below this share, a later crossing of [`WARN_AT`] warns again.
const REARM_BELOW: f64 = 0.70;
/// After a shed, how long before the next may come.
const SHED_SETTLE: Duration = Duration::from_secs(3);

/// What the runner does this second.
#[derive(Debug, PartialEq)]
pub enum MemoryAction {
    /// Nothing new.
    Keep,
    /// Say it (log, notes, surfaces).
    Warn(String),
    /// Add no users until told to resume; say it.
    Pause(String),
    /// Adding users may go on (the pause lasted this long); say it.
    Resume(String, Duration),
    /// Stop this many of the newest users (at least one); say it once
    /// the count is known.
    Shed(usize),
}

/// The guard's state.
#[derive(Debug)]
pub struct MemoryGuard {
    limit: u64,
    warned: bool,
    paused_since: Option<Instant>,
    /// The last shed: when, and the memory then.
    last_shed: Option<(Instant, u64)>,
}

impl MemoryGuard {
    /// A guard for `limit` bytes of resident memory.
    pub fn new(limit: u64) -> Self {
        Self { limit, warned: false, paused_since: None, last_shed: None }
    }

    /// A new test starts with nothing held, warned or shed.
    pub fn reset(&mut self) {
        *self = Self::new(self.limit);
    }

    /// Whether adding users is paused.
    pub fn holds(&self) -> bool {
        self.paused_since.is_some()
    }

    /// A new ramp began while paused: the pause is timed from now.
    pub fn restart_pause(&mut self) {
        if self.paused_since.is_some() {
            self.paused_since = Some(Instant::now());
        }
    }

    /// This second's resident memory, with `users` running: what to do.
    pub fn observe(&mut self, rss: u64, users: usize) -> MemoryAction {
        let share = rss as f64 / self.limit.max(1) as f64;
        let used = format!("{} of --memory-limit {} ({:.0}%)", show_size(rss), show_size(self.limit), share * 100.0);
        let settled = match self.last_shed {
            None => true,
            Some((at, then)) => at.elapsed() >= SHED_SETTLE && rss > then,
        };
        if share >= SHED_AT && users > 0 && settled {
            if self.paused_since.is_none() {
                self.paused_since = Some(Instant::now());
            }
            self.warned = true;
            self.last_shed = Some((Instant::now(), rss));
            let share_shed = if share >= 1.0 { 2 } else { 4 };
            return MemoryAction::Shed((users / share_shed).max(1));
        }
        if share >= PAUSE_AT && self.paused_since.is_none() {
            self.paused_since = Some(Instant::now());
            self.warned = true;
            return MemoryAction::Pause(format!("Memory guard: {used}; spawning paused at {users} users"));
        }
        if share < RESUME_BELOW
            && let Some(since) = self.paused_since.take()
        {
            return MemoryAction::Resume(
                format!("Memory guard: {used}; spawning resumed at {users} users"),
                since.elapsed(),
            );
        }
        if share >= WARN_AT && !self.warned {
            self.warned = true;
            return MemoryAction::Warn(format!(
                "Memory guard: {used}; users will stop being added at {:.0}% and the newest shed at {:.0}%",
                PAUSE_AT * 100.0,
                SHED_AT * 100.0
            ));
        }
        if share < REARM_BELOW {
            self.warned = false;
        }
        MemoryAction::Keep
    }

    /// What to say once `shed` users were stopped, `left` remaining.
    pub fn shed_said(&self, rss: u64, shed: usize, left: usize) -> String {
        let whom = if shed == 1 { "the newest user".to_owned() } else { format!("the {shed} newest users") };
        format!(
            "Memory guard: {} of --memory-limit {}; shed {whom} ({left} left; the guard adds none back)",
            show_size(rss),
            show_size(self.limit)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn warns_pauses_sheds_and_resumes_by_share_of_the_limit() {
        let mut guard = MemoryGuard::new(1000 * MIB);
        assert_eq!(guard.observe(500 * MIB, 10), MemoryAction::Keep);
        assert!(matches!(guard.observe(820 * MIB, 10), MemoryAction::Warn(s) if s.contains("82%")));
        assert_eq!(guard.observe(830 * MIB, 10), MemoryAction::Keep, "warned once");
        assert!(matches!(guard.observe(910 * MIB, 10), MemoryAction::Pause(s) if s.contains("paused at 10 users")));
        assert!(guard.holds());
        assert_eq!(guard.observe(920 * MIB, 10), MemoryAction::Keep);
        assert_eq!(guard.observe(960 * MIB, 10), MemoryAction::Shed(2));
        assert_eq!(guard.observe(990 * MIB, 8), MemoryAction::Keep, "a shed settles first");
        // Settled, and memory still rose: shed again (half, once over).
        guard.last_shed = Some((Instant::now() - SHED_SETTLE, 960 * MIB));
        assert_eq!(guard.observe(1010 * MIB, 8), MemoryAction::Shed(4), "half once over the limit");
        guard.last_shed = Some((Instant::now() - SHED_SETTLE, 1010 * MIB));
        assert_eq!(guard.observe(970 * MIB, 4), MemoryAction::Keep, "high but falling: no more shedding");
        assert_eq!(guard.observe(990 * MIB, 0), MemoryAction::Keep, "nobody left to shed");
        assert_eq!(guard.observe(850 * MIB, 3), MemoryAction::Keep, "still paused above the resume level");
        assert!(matches!(guard.observe(700 * MIB, 3), MemoryAction::Resume(s, _) if s.contains("resumed at 3")));
        assert!(!guard.holds());
        assert_eq!(guard.observe(600 * MIB, 3), MemoryAction::Keep);
        assert!(matches!(guard.observe(810 * MIB, 3), MemoryAction::Warn(_)), "warns again after falling back");
        assert!(guard.shed_said(960 * MIB, 2, 8).contains("shed the 2 newest users (8 left;"));
        assert!(guard.shed_said(960 * MIB, 1, 0).contains("shed the newest user (0 left;"));
    }
}
