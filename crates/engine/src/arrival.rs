//! Arrival-rate load (an open model, k6's `constant-arrival-rate` and
//! `ramping-arrival-rate`): iterations start on a schedule whatever the
//! target's response times, served by a pool of users.
//!
//! This module owns the description ([`ArrivalRate`], parsed from the CLI,
//! `swarmer.toml`, the web form and phases files) and the schedule: when
//! the n-th iteration of a test is due. Shards run the schedule (see
//! `arrival_pool`); each takes every `stride`-th iteration from its own
//! offset, so shards and workers together start exactly the requested
//! iterations, evenly interleaved.

use std::fmt;
use std::time::Duration;

use crate::timespan::parse_timespan;

/// One stage of a ramping arrival rate: the rate goes linearly to `target`
/// (iterations per second) over `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateStage {
    /// How long the ramp takes.
    pub duration: Duration,
    /// Iterations per second at its end.
    pub target: f64,
}

/// Iterations started at a rate, from a pool of users.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrivalRate {
    /// Iterations per second at the start (k6's `rate` or `startRate`).
    pub start_rate: f64,
    /// Ramps after the start (k6's `stages`); none for a constant rate.
    /// After the last stage its rate holds.
    pub stages: Vec<RateStage>,
    /// Users started before the first iteration (k6's `preAllocatedVUs`).
    pub pre_allocated: usize,
    /// The pool grows to this many users when none is free (k6's `maxVUs`).
    pub max_users: usize,
}

/// What was wrong with an arrival-rate setting.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ArrivalError(pub String);

impl ArrivalRate {
    /// A constant rate of `rate` iterations per second.
    pub fn constant(rate: f64, pre_allocated: usize, max_users: usize) -> Self {
        Self { start_rate: rate, stages: Vec::new(), pre_allocated, max_users: max_users.max(pre_allocated) }
    }

    /// The settings are usable: rates finite and not negative, a pool of
    /// at least one user, the maximum not below the pre-allocated users.
    pub fn check(&self) -> Result<(), ArrivalError> {
        let rates = std::iter::once(self.start_rate).chain(self.stages.iter().map(|s| s.target));
        for rate in rates {
            if !rate.is_finite() || rate < 0.0 {
                return Err(ArrivalError(format!("an arrival rate must be a number of iterations >= 0, not {rate}")));
            }
        }
        if self.max_users == 0 {
            return Err(ArrivalError("an arrival rate needs at least one user to run its iterations".into()));
        }
        if self.max_users < self.pre_allocated {
            return Err(ArrivalError(format!(
                "the maximum of users ({}) is below the pre-allocated users ({})",
                self.max_users, self.pre_allocated
            )));
        }
        Ok(())
    }

    /// Whether it ramps (k6's `ramping-arrival-rate`).
    pub fn is_ramping(&self) -> bool {
        !self.stages.is_empty()
    }

    /// How long the stages last, if it ramps: the test's natural length.
    pub fn stages_duration(&self) -> Option<Duration> {
        self.is_ramping().then(|| self.stages.iter().fold(Duration::ZERO, |sum, s| sum.saturating_add(s.duration)))
    }

    /// Iterations per second `elapsed` into the test.
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        let mut from = self.start_rate;
        let mut left = elapsed.as_secs_f64();
        for stage in &self.stages {
            let d = stage.duration.as_secs_f64();
            if left < d {
                return from + (stage.target - from) * left / d;
            }
            left -= d;
            from = stage.target;
        }
        from
    }

    /// When iteration `n` (counted from 0) of the whole test is due,
    /// counted from the test's start: the moment the rate's integral
    /// reaches `n`. `None` if the rate never gets there (it ends at 0).
    pub fn due_time(&self, n: u64) -> Option<Duration> {
        let mut left = n as f64;
        let mut at = 0.0;
        let mut from = self.start_rate;
        for stage in &self.stages {
            let d = stage.duration.as_secs_f64();
            let area = (from + stage.target) / 2.0 * d;
            if left < area {
                return Duration::try_from_secs_f64(at + time_into_ramp(from, stage.target, d, left)).ok();
            }
            left -= area;
            at += d;
            from = stage.target;
        }
        if from <= 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(at + left / from).ok()
    }
}

/// Seconds into a linear ramp from `r0` to `r1` over `d` seconds at which
/// `count` iterations have become due (`count` is below the ramp's area).
fn time_into_ramp(r0: f64, r1: f64, d: f64, count: f64) -> f64 {
    let slope = (r1 - r0) / d;
    // r0 t + slope t^2 / 2 = count, solved in the form that stays exact
    // for a slope near 0.
    if count <= 0.0 {
        return 0.0;
    }
    let root = (r0 * r0 + 2.0 * slope * count).max(0.0).sqrt();
    let denominator = r0 + root;
    if denominator <= 0.0 {
        return d;
    }
    (2.0 * count / denominator).clamp(0.0, d)
}

/// Read a rate: `100` or `100/s` (per second), `600/m`, `6000/h`, or with
/// a time unit of k6's kind, `50/2s`. The result is per second.
pub fn parse_rate(text: &str) -> Result<f64, ArrivalError> {
    let text = text.trim();
    let wrong = |why: &str| ArrivalError(format!("arrival rate '{text}': {why}"));
    let (count, unit) = match text.split_once('/') {
        Some((count, unit)) => (count.trim(), unit.trim()),
        None => (text, "s"),
    };
    let count: f64 = count.parse().map_err(|_| wrong("expected a number of iterations, e.g. 100 or 100/s"))?;
    if !count.is_finite() || count < 0.0 {
        return Err(wrong("the number of iterations must be 0 or more"));
    }
    let unit = match unit {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => parse_timespan(other).map_err(|_| wrong("the time unit must be s, m, h or a time span like 2s"))?,
    };
    if unit.is_zero() {
        return Err(wrong("the time unit must be longer than 0"));
    }
    Ok(count / unit.as_secs_f64())
}

/// Read stages: `30s:100,1m:100,10s:0` (duration:rate, rates as in
/// [`parse_rate`]), each a linear ramp from the rate before it.
pub fn parse_stages(text: &str) -> Result<Vec<RateStage>, ArrivalError> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (duration, rate) = part.split_once(':').ok_or_else(|| {
                ArrivalError(format!("arrival stage '{}': expected DURATION:RATE, e.g. 30s:100", part.trim()))
            })?;
            let duration =
                parse_timespan(duration).map_err(|e| ArrivalError(format!("arrival stage '{}': {e}", part.trim())))?;
            Ok(RateStage { duration, target: parse_rate(rate)? })
        })
        .collect()
}

impl fmt::Display for ArrivalRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", trim_rate(self.start_rate))?;
        for stage in &self.stages {
            write!(f, " → {}/s over {:?}", trim_rate(stage.target), stage.duration)?;
        }
        write!(f, " (users: {} pre-allocated, at most {})", self.pre_allocated, self.max_users)
    }
}

fn trim_rate(rate: f64) -> String {
    let text = format!("{rate:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_their_time_unit() {
        assert_eq!(parse_rate("100").unwrap(), 100.0);
        assert_eq!(parse_rate("100/s").unwrap(), 100.0);
        assert_eq!(parse_rate("600/m").unwrap(), 10.0);
        assert_eq!(parse_rate("50/2s").unwrap(), 25.0);
        assert!(parse_rate("fast").unwrap_err().0.contains("'fast'"));
        assert!(parse_rate("10/0s").is_err());
        assert!(parse_rate("-1").is_err());
    }

    #[test]
    fn stages_read_as_duration_and_rate() {
        let stages = parse_stages("30s:100, 1m:600/m").unwrap();
        assert_eq!(stages[0], RateStage { duration: Duration::from_secs(30), target: 100.0 });
        assert_eq!(stages[1].target, 10.0);
        assert!(parse_stages("30s").unwrap_err().0.contains("DURATION:RATE"));
    }

    #[test]
    fn a_constant_rate_is_due_evenly() {
        let rate = ArrivalRate::constant(4.0, 1, 1);
        assert_eq!(rate.due_time(0), Some(Duration::ZERO));
        assert_eq!(rate.due_time(2), Some(Duration::from_millis(500)));
        assert_eq!(rate.due_time(8), Some(Duration::from_secs(2)));
        assert_eq!(ArrivalRate::constant(0.0, 1, 1).due_time(0), None);
    }

    #[test]
    fn a_ramp_is_due_along_its_integral() {
        // 0 → 10/s over 10 s: 50 iterations, the n-th at sqrt(2n / slope).
        let ramp = ArrivalRate {
            start_rate: 0.0,
            stages: vec![RateStage { duration: Duration::from_secs(10), target: 10.0 }],
            pre_allocated: 1,
            max_users: 1,
        };
        let at = |n| ramp.due_time(n).unwrap().as_secs_f64();
        assert_eq!(at(0), 0.0, "the first iteration is due at the start, even from a rate of 0");
        assert!((at(5) - 10f64.sqrt()).abs() < 1e-9);
        assert!((at(50) - 10.0).abs() < 1e-9);
        // Then 10/s holds.
        assert!((at(60) - 11.0).abs() < 1e-9);
        assert_eq!(ramp.rate_at(Duration::from_secs(5)), 5.0);
        assert_eq!(ramp.stages_duration(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_ramp_to_zero_ends() {
        let down = ArrivalRate {
            start_rate: 10.0,
            stages: vec![RateStage { duration: Duration::from_secs(2), target: 0.0 }],
            pre_allocated: 1,
            max_users: 1,
        };
        assert!(down.due_time(9).is_some());
        assert_eq!(down.due_time(10), None);
    }

    #[test]
    fn checks_name_what_is_wrong() {
        assert!(ArrivalRate::constant(1.0, 0, 0).check().unwrap_err().0.contains("at least one user"));
        let mut rate = ArrivalRate::constant(1.0, 5, 5);
        rate.max_users = 2;
        assert!(rate.check().unwrap_err().0.contains("below the pre-allocated"));
    }
}
