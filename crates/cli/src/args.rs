//! The command line, with Locust's flag names.
//!
//! Every option can also come from `SWARMER_<NAME>` environment variables
//! and from a config file (see [`crate::config_file`]), with Locust's
//! precedence: file < environment < command line. Values are checked by
//! their parsers here, wherever they come from, so that a bad value from
//! the environment can be reported as such (see `crate::sources`).

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use swarmer_engine::HttpVersionPreference;

use crate::config::LogLevel;

/// Swarmer: distributed, user-based load testing.
#[derive(Debug, Parser)]
#[command(name = "swarmer", version, about, args_override_self = true, max_term_width = 100)]
pub struct Cli {
    /// `demo` or `target`; none for a test run.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The run's flags (those of a plain `swarmer` command line).
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands besides a plain run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the built-in demo target and load-test it with the seed scenario.
    Demo(Box<DemoArgs>),
    /// Serve the built-in demo target (a small web site to test against).
    Target(TargetArgs),
}

/// Options of a test run.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The test plan: a Lua file (plan.lua), or a built-in plan: builtin:seed, builtin:hello or builtin:idle.
    #[arg(short = 'f', long = "locustfile", env = "SWARMER_LOCUSTFILE", value_name = "PLAN")]
    pub locustfile: Option<String>,

    /// Read options from this TOML file (default: ./swarmer.toml if present).
    #[arg(long = "config", env = "SWARMER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Host to load test, e.g. http://10.21.32.33 (overrides the plan's hosts).
    #[arg(short = 'H', long = "host", env = "SWARMER_HOST")]
    pub host: Option<String>,

    /// Peak number of concurrent users.
    #[arg(short = 'u', long = "users", env = "SWARMER_USERS", default_value_t = 1)]
    pub users: usize,

    /// Rate to spawn users at (users per second).
    #[arg(short = 'r', long = "spawn-rate", env = "SWARMER_SPAWN_RATE", default_value_t = 1.0, value_parser = parse_rate)]
    pub spawn_rate: f64,

    /// Stop after this time, e.g. 300s, 20m, 3h, 1h30m (default: run until stopped).
    #[arg(short = 't', long = "run-time", env = "SWARMER_RUN_TIME", value_parser = parse_span)]
    pub run_time: Option<std::time::Duration>,

    /// Start iterations (one task of a user) at this rate, e.g. 100, 100/s,
    /// 600/m, served by a pool of users: an open model, k6's
    /// constant-arrival-rate. -u is then the users started beforehand (k6's
    /// preAllocatedVUs); when all are busy the pool grows to --max-users and
    /// iterations with no free user are counted as dropped.
    #[arg(long = "arrival-rate", env = "SWARMER_ARRIVAL_RATE", value_name = "RATE", value_parser = parse_arrival_rate)]
    pub arrival_rate: Option<Rate>,

    /// Ramp the arrival rate from --arrival-rate through these stages,
    /// DURATION:RATE each, e.g. 30s:100,1m:100,10s:0 (k6's
    /// ramping-arrival-rate). Without --run-time the test ends after them.
    #[arg(long = "arrival-stages", env = "SWARMER_ARRIVAL_STAGES", value_name = "STAGES", value_parser = parse_arrival_stages)]
    pub arrival_stages: Option<RateStages>,

    /// The most users an arrival-rate pool grows to (k6's maxVUs; default: -u).
    #[arg(long = "max-users", env = "SWARMER_MAX_USERS", value_name = "N")]
    pub max_users: Option<usize>,

    /// Drive the test through load phases from a TOML file ([[phases]]
    /// tables: duration, users, spawn_rate, user_types with ratio and wait
    /// times); -u and -r are then not used. A `phases` table in the config
    /// file does the same.
    #[arg(long = "phases", env = "SWARMER_PHASES", value_name = "FILE")]
    pub phases: Option<PathBuf>,

    /// Run without the web UI and start the test at once.
    #[arg(long = "headless", env = "SWARMER_HEADLESS")]
    pub headless: bool,

    /// Only run tasks with any of these tags.
    #[arg(short = 'T', long = "tags", env = "SWARMER_TAGS", num_args = 1.., value_delimiter = ' ')]
    pub tags: Option<Vec<String>>,

    /// Do not run tasks with any of these tags (wins over --tags).
    #[arg(short = 'E', long = "exclude-tags", env = "SWARMER_EXCLUDE_TAGS", num_args = 1.., value_delimiter = ' ')]
    pub exclude_tags: Option<Vec<String>>,

    /// Seconds users get to finish their current task when stopped (or a span like 30s).
    #[arg(short = 's', long = "stop-timeout", env = "SWARMER_STOP_TIMEOUT", value_parser = parse_seconds, default_value = "0")]
    pub stop_timeout: std::time::Duration,

    /// Reset statistics once spawning completes.
    #[arg(long = "reset-stats", env = "SWARMER_RESET_STATS")]
    pub reset_stats: bool,

    /// While this process's CPU stays saturated (above 90% of its shards'
    /// cores for 3 s), add no users; resume once it recovers. Said in the
    /// log, the notes of the console summary and the report.
    #[arg(long = "cpu-guard", env = "SWARMER_CPU_GUARD")]
    pub cpu_guard: bool,

    /// Resident memory this process keeps under: a size (4G, 512MiB) or a
    /// share of the machine's or container's memory (80%). At 80% of it a
    /// warning, at 90% no more users are added, at 95% the newest users are
    /// shed (noted in the log, the console summary and the report), so the
    /// process is not killed for running out of memory. With --processes N,
    /// each child gets an Nth.
    #[arg(long = "memory-limit", env = "SWARMER_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<String>,

    /// Memory each Lua VM of the plan may use (one per shard, one per
    /// process): a size (512MiB, 2G), a share of this machine's or
    /// container's memory (10%), `auto` (four fifths of it, shared among
    /// the VMs) or `none`. A plan past it gets an error naming it, and the
    /// user that met it stops, instead of the process running out of memory.
    #[arg(long = "lua-memory-limit", env = "SWARMER_LUA_MEMORY_LIMIT", value_name = "SIZE", default_value = "auto")]
    pub lua_memory_limit: String,

    /// Write statistics to PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv, PREFIX_exceptions.csv.
    #[arg(long = "csv", env = "SWARMER_CSV", value_name = "PREFIX")]
    pub csv: Option<String>,

    /// Write every name's statistics to the history CSV each second, not only the total.
    #[arg(long = "csv-full-history", env = "SWARMER_CSV_FULL_HISTORY", requires = "csv")]
    pub csv_full_history: bool,

    /// Print the final statistics as JSON to standard output.
    #[arg(long = "json", env = "SWARMER_JSON")]
    pub json: bool,

    /// Write the final statistics as JSON to FILE.json.
    #[arg(long = "json-file", env = "SWARMER_JSON_FILE", value_name = "FILE")]
    pub json_file: Option<String>,

    /// Print the statistics table in the console while running.
    #[arg(long = "print-stats", env = "SWARMER_PRINT_STATS")]
    pub print_stats: bool,

    /// Only print the summary statistics at the end.
    #[arg(long = "only-summary", env = "SWARMER_ONLY_SUMMARY")]
    pub only_summary: bool,

    /// DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[arg(short = 'L', long = "loglevel", env = "SWARMER_LOGLEVEL", default_value = "INFO", value_parser = LogLevel::parse)]
    pub loglevel: LogLevel,

    /// Write logs to this file instead of standard error.
    #[arg(long = "logfile", env = "SWARMER_LOGFILE")]
    pub logfile: Option<PathBuf>,

    /// Exit code when the test had failures or exceptions.
    #[arg(long = "exit-code-on-error", env = "SWARMER_EXIT_CODE_ON_ERROR", default_value_t = 1)]
    pub exit_code_on_error: i32,

    /// A pass/fail condition over the results, repeatable: "p95<300ms",
    /// "[GET /login] p99.9<1s", "fail_ratio<1%", "rps>=500"; "... abort"
    /// stops the test once it is crossed. A crossed threshold exits 99.
    #[arg(long = "threshold", value_name = "EXPR", action = clap::ArgAction::Append)]
    pub thresholds: Vec<String>,

    /// Write the thresholds' verdicts to FILE as JUnit XML when the run
    /// ends (one test case per --threshold), for CI dashboards.
    #[arg(long = "junit", value_name = "FILE", env = "SWARMER_JUNIT")]
    pub junit: Option<PathBuf>,

    /// Compare this run with an earlier run's --json / --json-file output,
    /// name by name; a regression beyond a tolerance exits 99.
    #[arg(long = "compare", value_name = "BASELINE.json", env = "SWARMER_COMPARE")]
    pub compare: Option<PathBuf>,

    /// How much worse a metric may get against --compare's baseline,
    /// repeatable: "p95 +10%" (the default), "avg +5ms", "fail_ratio +1%",
    /// "rps -10%".
    #[arg(long = "compare-tolerance", value_name = "EXPR", action = clap::ArgAction::Append)]
    pub compare_tolerances: Vec<String>,

    /// List the user classes of the plan and exit.
    #[arg(short = 'l', long = "list")]
    pub list: bool,

    /// Print the ratio of tasks per user class and exit.
    #[arg(long = "show-task-ratio")]
    pub show_task_ratio: bool,

    /// Print the task ratios as JSON and exit.
    #[arg(long = "show-task-ratio-json")]
    pub show_task_ratio_json: bool,

    /// Number of shard threads generating load (default: one per core).
    #[arg(long = "shards", env = "SWARMER_SHARDS")]
    pub shards: Option<usize>,

    /// Do not verify TLS certificates of the target.
    #[arg(long = "insecure", env = "SWARMER_INSECURE")]
    pub insecure: bool,

    /// Trust the CA certificates in this PEM file (besides the Mozilla roots).
    #[arg(long = "ca-cert", env = "SWARMER_CA_CERT")]
    pub ca_cert: Vec<PathBuf>,

    /// Client certificate chain (PEM) for targets that require one.
    #[arg(long = "client-cert", env = "SWARMER_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert.
    #[arg(long = "client-key", env = "SWARMER_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// HTTP version: auto (HTTP/2 by TLS ALPN), 1 (HTTP/1.1 only) or 2 (HTTP/2 only; h2c on plain TCP).
    #[arg(long = "http-version", env = "SWARMER_HTTP_VERSION", default_value = "auto",
          value_parser = PossibleValuesParser::new(HttpVersionPreference::NAMES)
              .map(|name| HttpVersionPreference::from_name(&name).unwrap_or_default()))]
    pub http_version: HttpVersionPreference,

    /// Seconds to wait for a connection.
    #[arg(long = "connect-timeout", env = "SWARMER_CONNECT_TIMEOUT", default_value_t = 10.0, value_parser = parse_timeout)]
    pub connect_timeout: f64,

    /// Seconds a request may take in all, redirects included (0: no limit).
    #[arg(long = "request-timeout", env = "SWARMER_REQUEST_TIMEOUT", default_value_t = 60.0, value_parser = parse_timeout)]
    pub request_timeout: f64,

    /// Largest response body accepted, in bytes, as received and after
    /// decompression (a larger one is a failed request, not a memory blow-up).
    #[arg(long = "max-body-size", env = "SWARMER_MAX_BODY_SIZE", default_value_t = swarmer_engine::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_size: usize,

    /// User classes to run (default: all of the plan's).
    #[arg(value_name = "UserClass")]
    pub user_classes: Vec<String>,

    /// The web UI's flags.
    #[command(flatten)]
    pub web: crate::web_args::WebArgs,

    /// The distributed-run flags.
    #[command(flatten)]
    pub cluster: crate::cluster_args::ClusterArgs,
}

/// `swarmer demo`: a run's flags plus the demo target's.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Run options (defaults for the demo: -u 20 -r 5 -t 30s, headless).
    #[command(flatten)]
    pub run: RunArgs,

    /// Milliseconds the target adds to every response.
    #[arg(long = "target-delay", default_value_t = 0)]
    pub target_delay: u64,

    /// Fraction (0..1) of requests the target fails with 500.
    #[arg(long = "target-error-rate", default_value_t = 0.0)]
    pub target_error_rate: f64,

    /// The target answers nothing for a while: AFTER:FOR, e.g. 10s:2s
    /// (requests arriving then are answered when it ends).
    #[arg(long = "target-stall", value_name = "AFTER:FOR", value_parser = parse_stall)]
    pub target_stall: Option<(std::time::Duration, std::time::Duration)>,
}

/// `swarmer target`: where and how to serve the demo target.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Address to listen on.
    #[arg(long = "bind", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Milliseconds added to every response.
    #[arg(long = "delay", default_value_t = 0)]
    pub delay: u64,

    /// Fraction (0..1) of requests answered with 500.
    #[arg(long = "error-rate", default_value_t = 0.0)]
    pub error_rate: f64,

    /// Answer nothing for a while: AFTER:FOR from the start, e.g. 10s:2s
    /// (requests arriving then are answered when it ends).
    #[arg(long = "stall", value_name = "AFTER:FOR", value_parser = parse_stall)]
    pub stall: Option<(std::time::Duration, std::time::Duration)>,

    /// Worker threads serving requests.
    #[arg(long = "threads", default_value_t = 1)]
    pub threads: usize,

    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long = "tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long = "tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Also serve the seed's prediction API over gRPC on this address (h2c,
    /// or TLS with --tls-cert): categorization.TextCategorization/GetPrediction
    /// (its REST twin is POST /predict).
    #[arg(long = "grpc-bind", value_name = "ADDR")]
    pub grpc_bind: Option<String>,

    /// Also serve a Redis-like key-value store over raw TCP on this
    /// address (PING, SET, GET, DEL, INCR, SLEEP): the target of
    /// examples/lua/own_protocol.
    #[arg(long = "kv-bind", value_name = "ADDR")]
    pub kv_bind: Option<String>,
}

fn parse_span(text: &str) -> Result<std::time::Duration, String> {
    swarmer_engine::timespan::parse_timespan(text).map_err(|e| e.to_string())
}

/// Seconds as a number, or a time span like "1m30s".
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(_) => parse_timeout(text).map(std::time::Duration::from_secs_f64),
        Err(_) => swarmer_engine::timespan::parse_timespan(text).map_err(|e| e.to_string()),
    }
}

/// `--spawn-rate`: users per second, more than zero.
fn parse_rate(text: &str) -> Result<f64, String> {
    match parse_number(text)? {
        rate if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("expected a positive number of users per second".to_owned()),
    }
}

/// A number of seconds a `Duration` can hold: not negative, not too large.
pub(crate) fn parse_timeout(text: &str) -> Result<f64, String> {
    let seconds = parse_number(text)?;
    match std::time::Duration::try_from_secs_f64(seconds) {
        Ok(_) => Ok(seconds),
        Err(_) if seconds > 0.0 => Err("too many seconds".to_owned()),
        Err(_) => Err("expected a non-negative number of seconds".to_owned()),
    }
}

/// Like [`parse_timeout`], and more than zero.
pub(crate) fn parse_positive_timeout(text: &str) -> Result<f64, String> {
    match parse_timeout(text)? {
        seconds if seconds > 0.0 => Ok(seconds),
        _ => Err("expected a positive number of seconds".to_owned()),
    }
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.trim().parse::<f64>().map_err(|e| e.to_string())
}

/// `--arrival-rate`, read: iterations per second (a type of its own, so
/// that `swarmer.toml` takes it as a number or as text with a unit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate(pub f64);

fn parse_arrival_rate(text: &str) -> Result<Rate, String> {
    swarmer_engine::arrival::parse_rate(text).map(Rate).map_err(|e| e.0)
}

/// `--arrival-stages`, read (one value: clap would take a `Vec` for many).
#[derive(Clone, Debug)]
pub struct RateStages(pub Vec<swarmer_engine::RateStage>);

fn parse_arrival_stages(text: &str) -> Result<RateStages, String> {
    swarmer_engine::arrival::parse_stages(text).map(RateStages).map_err(|e| e.0)
}

fn parse_stall(text: &str) -> Result<(std::time::Duration, std::time::Duration), String> {
    let (after, lasting) = text.split_once(':').ok_or("expected AFTER:FOR, e.g. 10s:2s")?;
    Ok((parse_span(after)?, parse_span(lasting)?))
}
