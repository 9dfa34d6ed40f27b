//! Wait times between tasks: Locust's `between`, `constant`,
//! `constant_pacing`, `constant_throughput`, and none.

use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::WaitTimeError;

/// How long a user waits after a task before picking the next one.
#[derive(Clone, Default)]
pub enum WaitTime {
    /// Next task at once.
    #[default]
    None,
    /// Uniformly random between `min` and `max` seconds.
    Between(f64, f64),
    /// Always this many seconds.
    Constant(f64),
    /// Start a task every this many seconds: wait what is left of the period
    /// after the task's own run time (never negative).
    ConstantPacing(f64),
    /// At most this many tasks per second per user (pacing of `1/n`).
    ConstantThroughput(f64),
    /// Any function of your own, e.g. reading a schedule.
    Custom(Rc<dyn Fn() -> Duration>),
}

impl std::fmt::Debug for WaitTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitTime::None => write!(f, "none"),
            WaitTime::Between(a, b) => write!(f, "between({a}, {b})"),
            WaitTime::Constant(t) => write!(f, "constant({t})"),
            WaitTime::ConstantPacing(t) => write!(f, "constant_pacing({t})"),
            WaitTime::ConstantThroughput(n) => write!(f, "constant_throughput({n})"),
            WaitTime::Custom(_) => write!(f, "custom"),
        }
    }
}

/// Locust's `between(min, max)`: uniformly random seconds.
pub fn between(min: f64, max: f64) -> WaitTime {
    WaitTime::Between(min, max)
}

/// Locust's `constant(t)`.
pub fn constant(seconds: f64) -> WaitTime {
    WaitTime::Constant(seconds)
}

/// Locust's `constant_pacing(t)`.
pub fn constant_pacing(seconds: f64) -> WaitTime {
    WaitTime::ConstantPacing(seconds)
}

/// Locust's `constant_throughput(n)`.
pub fn constant_throughput(tasks_per_second: f64) -> WaitTime {
    WaitTime::ConstantThroughput(tasks_per_second)
}

/// A wait time that can cross threads and the network: every kind but a
/// custom function. What a load phase or shape sets for a class instead
/// of the plan's own wait time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WaitSpec {
    /// Locust's `between(min, max)`, seconds.
    Between(f64, f64),
    /// Locust's `constant(t)`.
    Constant(f64),
    /// Locust's `constant_pacing(t)`.
    ConstantPacing(f64),
    /// Locust's `constant_throughput(n)`.
    ConstantThroughput(f64),
}

impl WaitSpec {
    /// The wait time users run with.
    pub fn wait_time(self) -> WaitTime {
        match self {
            WaitSpec::Between(a, b) => WaitTime::Between(a, b),
            WaitSpec::Constant(t) => WaitTime::Constant(t),
            WaitSpec::ConstantPacing(t) => WaitTime::ConstantPacing(t),
            WaitSpec::ConstantThroughput(n) => WaitTime::ConstantThroughput(n),
        }
    }

    /// Read `between(0.1, 0.2)`, `constant(1)`, `constant_pacing(2)` or
    /// `constant_throughput(0.5)` (seconds, as in a plan); the numbers are
    /// checked.
    pub fn parse(text: &str) -> Result<WaitSpec, String> {
        let text = text.trim();
        let usage = || {
            format!(
                "{text:?} is not a wait time: use between(min, max), constant(s), constant_pacing(s) or \
                 constant_throughput(n), in seconds"
            )
        };
        let (kind, rest) = text.split_once('(').ok_or_else(usage)?;
        let inner = rest.strip_suffix(')').ok_or_else(usage)?;
        let numbers: Vec<f64> =
            inner.split(',').map(|n| n.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| usage())?;
        let spec = match (kind.trim(), numbers.as_slice()) {
            ("between", [a, b]) => WaitSpec::Between(*a, *b),
            ("constant", [t]) => WaitSpec::Constant(*t),
            ("constant_pacing", [t]) => WaitSpec::ConstantPacing(*t),
            ("constant_throughput", [n]) => WaitSpec::ConstantThroughput(*n),
            _ => return Err(usage()),
        };
        spec.wait_time().validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }
}

impl std::fmt::Display for WaitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.wait_time())
    }
}

impl WaitTime {
    /// Check the numbers a plan gave; the message names what is wrong.
    pub fn validate(&self) -> Result<(), WaitTimeError> {
        let bad = |what: &str, v: f64| !v.is_finite() || v < 0.0 || (what == "n" && v == 0.0);
        match *self {
            WaitTime::Between(a, b) if bad("t", a) || bad("t", b) || a > b => {
                Err(WaitTimeError::Between { min: a, max: b })
            }
            WaitTime::Constant(t) if bad("t", t) => Err(WaitTimeError::Seconds { function: "constant", seconds: t }),
            WaitTime::ConstantPacing(t) if bad("t", t) => {
                Err(WaitTimeError::Seconds { function: "constant_pacing", seconds: t })
            }
            WaitTime::ConstantThroughput(n) if bad("n", n) => Err(WaitTimeError::Throughput(n)),
            _ => Ok(()),
        }
    }

    /// The period of a pacing wait (`constant_pacing`, `constant_throughput`):
    /// the schedule a task is due on, for response times counted from it.
    pub fn pacing_period(&self) -> Option<Duration> {
        let period = match self {
            WaitTime::ConstantPacing(t) => *t,
            WaitTime::ConstantThroughput(n) => 1.0 / n,
            _ => return None,
        };
        Duration::try_from_secs_f64(period.max(0.0)).ok()
    }

    /// How long to wait now, given when the task that just ended started.
    pub fn next_wait(&self, rng: &mut impl Rng, task_started: Instant, now: Instant) -> Duration {
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        let pacing = |period: f64| secs(period).saturating_sub(now.saturating_duration_since(task_started));
        match self {
            WaitTime::None => Duration::ZERO,
            WaitTime::Between(a, b) if a < b => secs(rng.gen_range(*a..*b)),
            WaitTime::Between(a, _) => secs(*a),
            WaitTime::Constant(t) => secs(*t),
            WaitTime::ConstantPacing(t) => pacing(*t),
            WaitTime::ConstantThroughput(n) => pacing(1.0 / n),
            WaitTime::Custom(f) => f(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::SmallRng {
        rand::rngs::SmallRng::seed_from_u64(3)
    }

    #[test]
    fn between_stays_within_bounds() {
        let now = Instant::now();
        let w = between(5.0, 9.0);
        for _ in 0..1000 {
            let d = w.next_wait(&mut rng(), now, now).as_secs_f64();
            assert!((5.0..9.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn constant_pacing_subtracts_the_task_run_time() {
        let start = Instant::now();
        let w = WaitTime::ConstantPacing(1.0);
        assert_eq!(w.next_wait(&mut rng(), start, start + Duration::from_millis(300)), Duration::from_millis(700));
        // A task longer than the period: no wait at all.
        assert_eq!(w.next_wait(&mut rng(), start, start + Duration::from_secs(3)), Duration::ZERO);
    }

    #[test]
    fn constant_throughput_is_pacing_of_one_over_n() {
        let start = Instant::now();
        let w = WaitTime::ConstantThroughput(4.0);
        assert_eq!(w.next_wait(&mut rng(), start, start + Duration::from_millis(50)), Duration::from_millis(200));
    }

    #[test]
    fn constant_and_none() {
        let now = Instant::now();
        assert_eq!(WaitTime::Constant(0.1).next_wait(&mut rng(), now, now), Duration::from_millis(100));
        assert_eq!(WaitTime::None.next_wait(&mut rng(), now, now), Duration::ZERO);
    }

    #[test]
    fn wait_specs_read_as_in_a_plan() {
        assert_eq!(WaitSpec::parse("between(0.1, 0.2)"), Ok(WaitSpec::Between(0.1, 0.2)));
        assert_eq!(WaitSpec::parse(" constant_throughput(2) "), Ok(WaitSpec::ConstantThroughput(2.0)));
        assert_eq!(WaitSpec::parse("constant(1)").map(|w| w.to_string()), Ok("constant(1)".to_string()));
        assert!(WaitSpec::parse("between(2, 1)").unwrap_err().contains("between(2, 1)"));
        assert!(WaitSpec::parse("sometimes(1)").unwrap_err().contains("not a wait time"));
        assert!(WaitSpec::parse("constant(x)").is_err());
    }

    #[test]
    fn invalid_numbers_are_named() {
        assert!(between(9.0, 5.0).validate().unwrap_err().to_string().contains("between(9, 5)"));
        assert!(WaitTime::ConstantThroughput(0.0).validate().is_err());
        assert!(WaitTime::Constant(-1.0).validate().is_err());
        assert!(between(0.0, 1.0).validate().is_ok());
    }
}
