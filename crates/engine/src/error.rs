//! The engine's errors: typed, so a caller can tell them apart (a web API
//! answers a bad class pick with 400, a CLI exits 2 on a plan that does not
//! load); their messages name what is wrong, as a user should read it.

use thiserror::Error;

/// A plan that cannot be built, or a class selection it does not have.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum PlanError {
    /// The front end could not build the classes; its message says where
    /// (a Lua plan's file and line).
    #[error("{0}")]
    Load(String),
    /// The plan built no user class at all.
    #[error("{plan}: the plan defines no user class")]
    NoClasses {
        /// The plan's name.
        plan: String,
    },
    /// Classes were asked for by name (`swarmer UserA UserB`) that the plan
    /// does not define.
    #[error("Unknown User(s): {}. Available: {}", unknown.join(", "), known.join(", "))]
    UnknownClasses {
        /// The names asked for and not found.
        unknown: Vec<String>,
        /// The plan's class names.
        known: Vec<String>,
    },
    /// A class's wait time has numbers no wait can be made of.
    #[error("user class {class}: wait_time {reason}")]
    WaitTime {
        /// The class.
        class: String,
        /// What is wrong with it.
        reason: WaitTimeError,
    },
}

impl From<String> for PlanError {
    fn from(message: String) -> Self {
        PlanError::Load(message)
    }
}

impl From<&str> for PlanError {
    fn from(message: &str) -> Self {
        PlanError::Load(message.to_owned())
    }
}

/// A wait time with numbers no wait can be made of.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum WaitTimeError {
    /// `between(min, max)` with a negative, non-finite or reversed range.
    #[error("between({min}, {max}): expected 0 <= min <= max")]
    Between {
        /// The minimum given, seconds.
        min: f64,
        /// The maximum given, seconds.
        max: f64,
    },
    /// `constant(t)` or `constant_pacing(t)` with a negative or non-finite time.
    #[error("{function}({seconds}): expected a non-negative number of seconds")]
    Seconds {
        /// `constant` or `constant_pacing`.
        function: &'static str,
        /// The time given.
        seconds: f64,
    },
    /// `constant_throughput(n)` with a rate that is not positive.
    #[error("constant_throughput({0}): expected a positive number of tasks per second")]
    Throughput(f64),
}

/// Why a runner did not start, or a test was not started.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum StartError {
    /// The plan does not build, or lacks a class asked for.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A class has no host and none was given (`--host`), in a headless
    /// run that must start at once.
    #[error(
        "You must specify the base host. Either in the host attribute in the User class ({class}), \
         or on the command line using the --host option."
    )]
    NoHost {
        /// The first class without a host.
        class: String,
    },
    /// A test was started with no host for a class that has none (the
    /// web form's host field was empty).
    #[error("host: user class {class} has no host; give one")]
    NoHostForTest {
        /// The first picked class without a host.
        class: String,
    },
    /// The arrival rate cannot run (no users, a maximum below the pre-allocated users).
    #[error("arrival rate: {0}")]
    Arrival(String),
    /// The class picker was sent with no class picked.
    #[error("user_classes: pick at least one user class")]
    NoClassPicked,
    /// The class picker named classes the plan does not have.
    #[error("user_classes: unknown user class(es) {}; available: {}", unknown.join(", "), known.join(", "))]
    UnknownPicked {
        /// The names picked and not found.
        unknown: Vec<String>,
        /// The plan's class names.
        known: Vec<String>,
    },
    /// A shard thread could not be started.
    #[error("could not start shard thread {shard}: {reason}")]
    Thread {
        /// The shard's index.
        shard: usize,
        /// The operating system's reason.
        reason: String,
    },
    /// A shard could not build the plan on its thread.
    #[error("shard {shard} could not load the plan: {reason}")]
    ShardLoad {
        /// The shard's index.
        shard: usize,
        /// The plan's error on that shard.
        reason: PlanError,
    },
    /// The load shape names what the plan does not have (a phase's class).
    #[error("{0}")]
    Shape(String),
    /// The shard threads ended before they were ready.
    #[error("shard threads ended before they were ready")]
    ShardsEnded,
    /// A runner of another kind could not start (a cluster master's
    /// port); its message says why.
    #[error("{0}")]
    Other(String),
}

/// A custom message that could not be sent ([`crate::ShardInfo::send_message`]).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SendError {
    /// This process is neither a master nor a worker.
    #[error("this process is not part of a distributed run (--master or --worker)")]
    NotInCluster,
    /// The connection to the cluster is gone.
    #[error("the cluster connection is closed")]
    Closed,
}

/// A value given for a plan's option that its type does not admit.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OptionValueError {
    /// A number option got something else.
    #[error("{option}: expected a number, got {value:?}")]
    NotANumber {
        /// The option's name.
        option: String,
        /// The value given.
        value: String,
    },
    /// A boolean option got something other than true or false.
    #[error("{option}: expected true or false, got {value:?}")]
    NotABoolean {
        /// The option's name.
        option: String,
        /// The value given.
        value: String,
    },
    /// An option with a list of choices got a value not on it.
    #[error("{option}: expected one of {choices}, got {value:?}")]
    NotAChoice {
        /// The option's name.
        option: String,
        /// The value given.
        value: String,
        /// The allowed values, joined with `, `.
        choices: String,
    },
}

/// A time span (`-t 1h30m`) that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid time span {0:?}: expected e.g. 20, 20s, 3m, 2h, 1h20m, 3h30m10s")]
pub struct TimespanError(pub String);
