//! Load that follows a plan over time (Locust's `LoadTestShape`): the
//! [`LoadShape`] trait, the [`ShapeStep`] it answers with, and [`Phases`],
//! the shape a phases file describes. The runner core ticks a test's
//! shape once a second, on a local runner and a master alike (workers
//! never run one); see `runner::core`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmer_stats::RequestStats;

use crate::arrival::ArrivalRate;
use crate::test_settings::ClassMix;
use crate::wait_time::WaitSpec;

/// The load a shape asks for from now on.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeStep {
    /// Users to run.
    pub users: usize,
    /// Users started (or stopped) per second to get there.
    pub spawn_rate: f64,
    /// Users per class by name instead of the plan's weights; `None`
    /// keeps the plan's weights.
    pub mix: Option<ClassMix>,
    /// Wait times by class name instead of the plan's (classes not named
    /// keep their own).
    pub wait_times: BTreeMap<String, WaitSpec>,
    /// The step's name (a phase's): shown in the web UI, marked in the
    /// charts and the reports.
    pub label: Option<String>,
    /// When the step ends, counted from the start of the test, if known.
    pub ends_after: Option<Duration>,
    /// Iterations at a rate from a pool of `users` (pre-allocated) instead
    /// of busy users; `None`: the closed model.
    pub arrival: Option<ArrivalRate>,
}

/// A load shape: asked about once a second what load the test should
/// have `run_time` after it started; `None` ends the test.
pub trait LoadShape: Send {
    /// What the shape is called (in the log and the web UI).
    fn name(&self) -> &str;
    /// The load for this moment of the test; `None` ends it.
    fn tick(&mut self, run_time: Duration, stats: &RequestStats) -> Option<ShapeStep>;
    /// Check what the shape names against the plan's classes, before any load.
    fn check(&self, _classes: &[String]) -> Result<(), String> {
        Ok(())
    }
}

/// A shape as runner options hold it (shared by the handles' clones).
pub type SharedShape = Arc<Mutex<Box<dyn LoadShape>>>;

/// One phase of a [`Phases`] shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// Its name, for the charts and reports (`phase 2` when not given).
    pub name: String,
    /// How long it lasts.
    pub duration: Duration,
    /// Users during the phase.
    pub users: usize,
    /// How fast users start or stop to reach them.
    pub spawn_rate: f64,
    /// Relative weights of classes by name; empty keeps the plan's weights
    /// (a class not named gets no users).
    pub ratios: BTreeMap<String, u32>,
    /// Wait times of classes by name during the phase.
    pub wait_times: BTreeMap<String, WaitSpec>,
    /// An arrival-rate phase: its iterations per second (ramping over the
    /// phase when it has stages), with `users` pre-allocated.
    pub arrival: Option<ArrivalRate>,
}

/// Phases one after another, in one continuous test: the seed's load
/// phases, each with its users, their ratio and wait times per class.
/// The test ends after the last.
#[derive(Clone, Debug, PartialEq)]
pub struct Phases {
    /// What the phases are called (the file they came from).
    pub name: String,
    /// In order; at least one.
    pub phases: Vec<Phase>,
}

impl Phases {
    /// The phase running `run_time` into the test, and when it ends.
    pub fn at(&self, run_time: Duration) -> Option<(&Phase, Duration)> {
        let mut end = Duration::ZERO;
        for phase in &self.phases {
            end += phase.duration;
            if run_time < end {
                return Some((phase, end));
            }
        }
        None
    }

    /// All the phases take this long.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }
}

impl LoadShape for Phases {
    fn name(&self) -> &str {
        &self.name
    }

    fn tick(&mut self, run_time: Duration, _stats: &RequestStats) -> Option<ShapeStep> {
        let (phase, end) = self.at(run_time)?;
        Some(ShapeStep {
            users: phase.users,
            spawn_rate: phase.spawn_rate,
            mix: (!phase.ratios.is_empty()).then(|| ClassMix::Weights(phase.ratios.clone())),
            wait_times: phase.wait_times.clone(),
            label: Some(phase.name.clone()),
            ends_after: Some(end),
            arrival: phase.arrival.clone(),
        })
    }

    fn check(&self, classes: &[String]) -> Result<(), String> {
        for (i, phase) in self.phases.iter().enumerate() {
            let named = phase.ratios.keys().chain(phase.wait_times.keys());
            if let Some(unknown) = named.into_iter().find(|name| !classes.contains(name)) {
                return Err(format!(
                    "{}: phase {} ({}): the plan has no user class {unknown:?} (classes: {})",
                    self.name,
                    i + 1,
                    phase.name,
                    classes.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, secs: u64, users: usize) -> Phase {
        Phase {
            name: name.into(),
            duration: Duration::from_secs(secs),
            users,
            spawn_rate: 10.0,
            ratios: BTreeMap::from([("Weekday".into(), 3)]),
            wait_times: BTreeMap::new(),
            arrival: None,
        }
    }

    #[test]
    fn phases_follow_each_other_and_end_the_test() {
        let mut phases = Phases { name: "load.toml".into(), phases: vec![phase("a", 10, 4), phase("b", 5, 8)] };
        let stats = RequestStats::new(0.0);
        let first = phases.tick(Duration::ZERO, &stats).unwrap();
        assert_eq!(
            (first.users, first.label.as_deref(), first.ends_after),
            (4, Some("a"), Some(Duration::from_secs(10)))
        );
        assert_eq!(phases.tick(Duration::from_millis(9_999), &stats).unwrap().users, 4);
        let second = phases.tick(Duration::from_secs(10), &stats).unwrap();
        assert_eq!((second.users, second.ends_after), (8, Some(Duration::from_secs(15))));
        assert_eq!(phases.tick(Duration::from_secs(15), &stats), None);
        assert_eq!(phases.total(), Duration::from_secs(15));
    }

    #[test]
    fn an_unknown_class_names_the_phase() {
        let phases = Phases { name: "load.toml".into(), phases: vec![phase("a", 10, 4), phase("b", 5, 8)] };
        assert_eq!(phases.check(&["Weekday".into()]), Ok(()));
        let err = phases.check(&["Weekend".into()]).unwrap_err();
        assert!(err.contains("load.toml: phase 1 (a)") && err.contains("\"Weekday\""), "{err}");
    }
}
