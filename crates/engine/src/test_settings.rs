//! What a test is started or re-targeted with ([`TestSettings`], Locust's
//! start form) and a mix of classes by name ([`ClassMix`]): what surfaces,
//! the cluster and plans hand to a runner.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::arrival::ArrivalRate;
use crate::dispatch::UserSequence;
use crate::wait_time::WaitSpec;

/// How many users of each class, by class name, instead of the plan's
/// weights. Classes with a `fixed_count` keep it; classes not named get none.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassMix {
    /// Relative weights: `users` placed as the plan's weights would be.
    Weights(BTreeMap<String, u32>),
    /// Exact counts: the test's user count is their sum (plus fixed ones).
    Counts(BTreeMap<String, usize>),
}

impl ClassMix {
    /// Users per class, in the order of `names` (whose weights and fixed
    /// counts are `weights`), for `users` users.
    pub fn counts(&self, names: &[String], weights: &[(u32, Option<u32>)], users: usize) -> Vec<usize> {
        match self {
            ClassMix::Counts(counts) => names
                .iter()
                .zip(weights)
                .map(|(name, (_, fixed))| match fixed {
                    Some(n) => *n as usize,
                    None => counts.get(name).copied().unwrap_or(0),
                })
                .collect(),
            ClassMix::Weights(mix) => {
                let mixed: Vec<(u32, Option<u32>)> = names
                    .iter()
                    .zip(weights)
                    .map(|(name, (_, fixed))| (mix.get(name).copied().unwrap_or(0), *fixed))
                    .collect();
                UserSequence::new(&mixed).counts(users, names.len())
            }
        }
    }

    /// The class names it gives.
    pub fn names(&self) -> Vec<&str> {
        match self {
            ClassMix::Weights(m) => m.keys().map(String::as_str).collect(),
            ClassMix::Counts(m) => m.keys().map(String::as_str).collect(),
        }
    }
}

/// What a test is started (or re-targeted) with: Locust's start form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestSettings {
    /// Users to ramp to, placed by class weight.
    pub users: usize,
    /// Users started per second; 0 or less (or infinite) starts them all at once.
    pub spawn_rate: f64,
    /// The host for this test; `None` keeps the current one. Only applied
    /// when no test is running.
    pub host: Option<String>,
    /// The classes to run (Locust's class picker); `None` keeps the current
    /// selection. Only applied when no test is running.
    pub classes: Option<Vec<String>>,
    /// Exact users per class (by the plan's class order), instead of
    /// `users` placed by weight: a cluster worker's share of the test.
    pub class_counts: Option<Vec<usize>>,
    /// A mix of the classes by name, instead of the plan's weights (a
    /// plan's `swarmer.runner.set_load`); resolved into `class_counts` by
    /// the runner that places the users.
    pub class_mix: Option<ClassMix>,
    /// Stop the test this long after this start (`--run-time`, the web
    /// form's run time). `None` keeps a running test's limit (a new test
    /// then has none); zero removes it.
    pub run_time: Option<Duration>,
    /// Wait times by class name instead of the plan's, from now on (a
    /// load phase's); `None` keeps the current ones (a new test then has
    /// the plan's), an empty map restores the plan's.
    pub wait_times: Option<BTreeMap<String, WaitSpec>>,
    /// This load is a step of the plan's own shape (a Lua `swarmer.shape`):
    /// the runner shows and marks it, and ignores it once the load was
    /// changed by hand.
    pub shape_step: Option<PlanShapeStep>,
    /// Start iterations at this rate from a pool of users (an open model)
    /// instead of keeping `users` busy; `users` is then ignored. `None`:
    /// the closed model. A ramping rate without a run time ends after its
    /// stages.
    pub arrival: Option<Box<ArrivalRate>>,
    /// On a cluster worker: the master's split of the arrival-rate
    /// iterations (which of every `total` iterations this worker's shards
    /// take, from `first`). `None` outside a cluster.
    pub arrival_slice: Option<ArrivalSlice>,
}

/// Which iterations of an arrival-rate test a runner's shards take: the
/// `first` of every `total`, one slot per shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrivalSlice {
    /// The first slot of this runner's shards.
    pub first: u64,
    /// Slots in the whole test (every shard of every worker).
    pub total: u64,
    /// How long ago the test's schedule began (a worker that joins, or is
    /// dealt anew, mid-test takes it up where it is).
    pub began_ago: Duration,
}

/// What a plan's shape says of the step it asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanShapeStep {
    /// The shape's name.
    pub shape: String,
    /// The step's name, if the shape gives one (a new name is a new step;
    /// without one every change is).
    pub label: Option<String>,
    /// When the step ends, counted from the shape's start, if the shape says.
    pub ends_after: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_by_name_keeps_fixed_counts_and_leaves_unnamed_classes_out() {
        let names: Vec<String> = ["Admin", "Weekday", "Weekend"].map(String::from).into();
        let weights = [(1, Some(1)), (1, None), (1, None)];
        let weights_mix = ClassMix::Weights([("Weekday".into(), 1), ("Weekend".into(), 2)].into());
        assert_eq!(weights_mix.counts(&names, &weights, 7), [1, 2, 4]);
        let counts = ClassMix::Counts([("Weekday".into(), 5), ("Admin".into(), 9)].into());
        assert_eq!(counts.counts(&names, &weights, 0), [1, 5, 0], "fixed stays fixed, unnamed get none");
    }
}
