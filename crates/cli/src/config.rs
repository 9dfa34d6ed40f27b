//! The command line's second stage: the flags, config file and environment
//! that clap parsed into [`RunArgs`] (the first stage, `args.rs`) become
//! one validated, typed [`RunConfig`], once, before anything starts.
//!
//! Everything a run needs is decided here: the runner's options, the test
//! settings, the outputs, the web UI, the cluster role, logging and the
//! exit policy. Files named by flags (login accounts, the cluster token)
//! are read here too, so a bad value is an error naming its flag before
//! any load is sent. `run.rs` and `cluster_mode.rs` take a `RunConfig` and
//! never see the clap structs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarmer_cluster::auth::{ClusterTls, ClusterToken};
use swarmer_cluster::client_settings::OwnClientFlags;
use swarmer_engine::ArrivalRate;
use swarmer_engine::threshold::{self, Threshold};
use swarmer_engine::{ClientConfig, RunnerOptions, TagFilter, TestSettings, TlsOptions};
use swarmer_report::compare::{Baseline, Tolerance};
use swarmer_web::{FormDefaults, LogBuffer, TlsFiles, WebOptions};

use crate::args::RunArgs;

/// `-L/--loglevel`, Locust's level names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything, including per-worker and per-shard details.
    Debug,
    /// Test progress (the default).
    Info,
    /// Only what may need attention.
    Warning,
    /// Only errors.
    Error,
    /// Only errors (Locust's highest level; Swarmer has nothing above errors).
    Critical,
}

impl LogLevel {
    /// The level named `text`, in any case (`WARN` too).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(Self::Debug),
            "INFO" => Ok(Self::Info),
            "WARNING" | "WARN" => Ok(Self::Warning),
            "ERROR" => Ok(Self::Error),
            "CRITICAL" => Ok(Self::Critical),
            _ => Err(format!("{text:?}: expected DEBUG, INFO, WARNING, ERROR or CRITICAL")),
        }
    }

    /// The name as `-L` takes it (to hand to child processes).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
            Self::Critical => "CRITICAL",
        }
    }

    /// The `tracing` directive of this level.
    pub fn directive(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warn",
            Self::Error | Self::Critical => "error",
        }
    }
}

/// Everything one run needs, validated.
pub struct RunConfig {
    /// `-f`: a Lua file, `builtin:NAME`, or `-` (a worker takes the master's).
    pub plan: Option<String>,
    /// `--plan-files`: more files or folders (relative to the plan's
    /// folder) shipped to `-f -` workers with the plan.
    pub plan_files: Vec<PathBuf>,
    /// `--list`, `--show-task-ratio`, `--show-task-ratio-json`: describe and exit.
    pub inspect: Inspect,
    /// How the runner is set up (shards, host, HTTP client, tags, classes).
    pub runner: RunnerOptions,
    /// What the test starts with (`-u`, `-r`, `-t`; no run time when zero).
    pub test: TestSettings,
    /// The web UI; `None` with `--headless`.
    pub web: Option<WebConfig>,
    /// Files and console output.
    pub outputs: Outputs,
    /// `-L` and `--logfile`.
    pub log: LogConfig,
    /// One process, a master, or a worker.
    pub cluster: ClusterRole,
    /// `--lua-memory-limit`: bytes each Lua VM of this process may use
    /// (`None`: no limit).
    pub lua_memory_limit: Option<u64>,
}

/// What to print about the plan instead of running it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inspect {
    /// `--list`: the user classes.
    pub list: bool,
    /// `--show-task-ratio`: the task ratios as text.
    pub task_ratio: bool,
    /// `--show-task-ratio-json`: the task ratios as JSON.
    pub task_ratio_json: bool,
}

impl Inspect {
    /// True when anything is asked for (the run then only prints it).
    pub fn any(self) -> bool {
        self.list || self.task_ratio || self.task_ratio_json
    }
}

/// Logging.
pub struct LogConfig {
    /// Swarmer's level (`RUST_LOG` directives apply on top).
    pub level: LogLevel,
    /// Write logs here instead of standard error.
    pub file: Option<PathBuf>,
    /// The recent lines, for the web UI's `/logs`.
    pub lines: LogBuffer,
}

/// The run's files and console output.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// `--csv PREFIX`.
    pub csv: Option<String>,
    /// `--csv-full-history`: every name in the history CSV, not only the total.
    pub csv_full_history: bool,
    /// `--json`: the final statistics on standard output.
    pub json: bool,
    /// `--json-file`: the final statistics to `FILE.json`.
    pub json_file: Option<String>,
    /// `--html`: the HTML report, written when the run ends.
    pub html: Option<PathBuf>,
    /// Print the table every two seconds while running.
    pub print_live: bool,
    /// `--threshold`: the run's pass/fail conditions.
    pub thresholds: Vec<Threshold>,
    /// `--junit FILE`: the thresholds' verdicts as JUnit XML.
    pub junit: Option<PathBuf>,
    /// `--compare BASELINE.json` (read before any load) and its tolerances.
    pub compare: Option<(Baseline, Vec<Tolerance>)>,
}

impl Outputs {
    /// The full-history CSV file, when one is written.
    pub fn full_history_file(&self) -> Option<PathBuf> {
        let prefix = self.csv.as_ref().filter(|_| self.csv_full_history)?;
        Some(PathBuf::from(swarmer_report::csv::file_names(prefix)[1].clone()))
    }
}

/// The web UI.
pub struct WebConfig {
    /// How it is served (address, TLS, login, the start form's defaults),
    /// its log lines shared with the logger.
    pub server: WebOptions,
    /// `--autostart`: start the test at once.
    pub autostart: bool,
    /// `--autoquit`: quit this long after the test stops.
    pub autoquit: Option<Duration>,
}

/// Which part of a run this process plays.
pub enum ClusterRole {
    /// The whole test in this process.
    Local,
    /// `--master` and/or `--processes N`: a master (with child workers).
    Master(MasterConfig),
    /// `--worker`: one worker.
    Worker(WorkerConfig),
    /// `--worker --processes N`: start N workers, wait for them.
    WorkerProcesses {
        /// Where the workers connect.
        master_host: String,
        /// The master's port.
        master_port: u16,
        /// The cluster's secret, handed to the children.
        token: ClusterToken,
        /// The children to start.
        children: ChildWorkers,
    },
}

/// A master.
pub struct MasterConfig {
    /// Interface workers connect to (`127.0.0.1` for local children only).
    pub bind_host: String,
    /// Port workers connect to (0: any free port, for local children only).
    pub bind_port: u16,
    /// The cluster's secret (a random one for local children only).
    pub token: ClusterToken,
    /// TLS of the cluster port.
    pub tls: ClusterTls,
    /// A worker silent this long is missing and its users move.
    pub heartbeat_timeout: Duration,
    /// A headless (or autostarted) master waits for this many workers.
    pub expect_workers: usize,
    /// …for this long at most (`None`: forever).
    pub expect_workers_max_wait: Option<Duration>,
    /// Workers to start on this machine (`--processes`).
    pub children: Option<ChildWorkers>,
    /// The certificate files for the target, shipped to workers.
    pub client_tls: TlsOptions,
}

/// Worker processes started on this machine (`--processes`).
#[derive(Clone, Debug)]
pub struct ChildWorkers {
    /// How many (`-1` on the command line: one per core).
    pub count: usize,
    /// Shards of each child (`--shards`, 1 by default).
    pub shards: usize,
    /// The children's log level.
    pub log_level: LogLevel,
    /// `--cluster-ca`, passed on.
    pub cluster_ca: Option<PathBuf>,
    /// `--cluster-server-name`, passed on.
    pub cluster_server_name: Option<String>,
    /// `--client-cert` and `--client-key`, passed on as flags: an
    /// unencrypted cluster port never carries them.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Each child's `--lua-memory-limit` in bytes (`None`: no limit): by
    /// default the machine's share is split among every child's VMs.
    pub lua_memory_limit: Option<u64>,
    /// Each child's `--memory-limit` in bytes: an Nth of this one's.
    pub memory_limit: Option<u64>,
}

/// A worker.
pub struct WorkerConfig {
    /// The master's host.
    pub master_host: String,
    /// The master's port.
    pub master_port: u16,
    /// The cluster's secret.
    pub token: ClusterToken,
    /// TLS towards the master.
    pub tls: ClusterTls,
    /// Without the master this long, the worker stops its users.
    pub master_timeout: Duration,
    /// This worker's certificate files for the target.
    pub client_tls: TlsOptions,
    /// Client settings given on this worker's command line or environment:
    /// they win over the master's.
    pub own_client_flags: OwnClientFlags,
    /// Where health checks are served (`--health-port`).
    pub health_port: Option<u16>,
}

/// `--arrival-rate`, `--arrival-stages` and `--max-users` as one setting;
/// errors name the flag.
fn arrival_rate(args: &RunArgs) -> Result<Option<Box<ArrivalRate>>, String> {
    let Some(crate::args::Rate(start_rate)) = args.arrival_rate else {
        if args.arrival_stages.is_some() {
            return Err("--arrival-stages: give the starting rate with --arrival-rate (0 to start from none)".into());
        }
        if args.max_users.is_some() {
            return Err("--max-users: only an arrival-rate test (--arrival-rate) has a pool to grow".into());
        }
        return Ok(None);
    };
    if args.phases.is_some() {
        return Err("--arrival-rate: --phases drives the load itself; the two cannot be combined".into());
    }
    let rate = ArrivalRate {
        start_rate,
        stages: args.arrival_stages.clone().map(|s| s.0).unwrap_or_default(),
        pre_allocated: args.users,
        max_users: args.max_users.unwrap_or(args.users),
    };
    rate.check().map_err(|e| format!("--max-users / -u: {e}"))?;
    const MOST_USERS: usize = 10_000_000;
    if rate.max_users > MOST_USERS {
        return Err(format!("--max-users: at most {MOST_USERS} users, got {}", rate.max_users));
    }
    Ok(Some(Box::new(rate)))
}

impl RunConfig {
    /// Check and convert the parsed command line. `given` tells whether a
    /// flag (by its clap id) was set on the command line, in the
    /// environment or in the config file rather than left at its default.
    /// Errors name the flag.
    pub fn new(args: RunArgs, given: &dyn Fn(&str) -> bool) -> Result<Self, String> {
        let headless = args.headless;
        args.web.check()?;
        let tags = TagFilter::new(args.tags.clone(), args.exclude_tags.clone().unwrap_or_default());
        let runner = runner_options(&args, tags)?;
        let test = TestSettings {
            users: args.users,
            spawn_rate: args.spawn_rate,
            run_time: args.run_time.filter(|d| !d.is_zero()),
            arrival: arrival_rate(&args)?,
            ..Default::default()
        };
        let outputs = Outputs {
            csv: args.csv.clone(),
            csv_full_history: args.csv_full_history,
            json: args.json,
            json_file: args.json_file.clone(),
            html: args.web.html.clone(),
            print_live: if headless { !args.only_summary } else { args.print_stats },
            thresholds: threshold::parse_all(&args.thresholds).map_err(|e| e.to_string())?,
            junit: args.junit.clone(),
            compare: compare_setup(&args)?,
        };
        let logs = LogBuffer::default();
        let web = if headless {
            None
        } else {
            let web = &args.web;
            let server = WebOptions {
                host: web.web_host.clone(),
                port: web.web_port,
                base_path: web.web_base_path.clone(),
                tls: web.tls_cert.clone().zip(web.tls_key.clone()).map(|(cert, key)| TlsFiles { cert, key }),
                credentials: web.credentials()?,
                class_picker: web.class_picker,
                defaults: FormDefaults { users: test.users, spawn_rate: test.spawn_rate, run_time: test.run_time },
                full_history_csv: outputs.full_history_file(),
                logs: logs.clone(),
            };
            Some(WebConfig {
                server,
                autostart: web.autostart,
                autoquit: u64::try_from(web.autoquit).ok().map(Duration::from_secs),
            })
        };
        let cluster = cluster_role(&args, given)?;
        // This process's VMs: one per shard and the process's own.
        let lua_memory_limit = match &cluster {
            // With children on this machine, the same share as theirs.
            ClusterRole::Master(MasterConfig { children: Some(children), .. })
            | ClusterRole::WorkerProcesses { children, .. } => children.lua_memory_limit,
            ClusterRole::Master(_) => lua_memory_limit(&args.lua_memory_limit, 1)?,
            ClusterRole::Local | ClusterRole::Worker(_) => lua_memory_limit(&args.lua_memory_limit, runner.shards + 1)?,
        };
        Ok(Self {
            plan_files: args.cluster.plan_files.clone(),
            plan: args.locustfile,
            inspect: Inspect {
                list: args.list,
                task_ratio: args.show_task_ratio,
                task_ratio_json: args.show_task_ratio_json,
            },
            runner,
            test,
            web,
            outputs,
            log: LogConfig { level: args.loglevel, file: args.logfile, lines: logs },
            cluster,
            lua_memory_limit,
        })
    }

    /// True for a master (with or without local child workers).
    pub fn is_master(&self) -> bool {
        matches!(self.cluster, ClusterRole::Master(_))
    }
}

fn client_tls(args: &RunArgs) -> TlsOptions {
    TlsOptions {
        insecure: args.insecure,
        ca_certs: args.ca_cert.clone(),
        client_cert: args.client_cert.clone().zip(args.client_key.clone()),
    }
}

fn runner_options(args: &RunArgs, tags: TagFilter) -> Result<RunnerOptions, String> {
    let mut client = ClientConfig::new(&client_tls(args), args.http_version).map_err(|e| e.to_string())?;
    client.connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    client.max_body_bytes = args.max_body_size;
    client.timeout = (args.request_timeout > 0.0).then(|| Duration::from_secs_f64(args.request_timeout));
    let defaults = RunnerOptions::default();
    Ok(RunnerOptions {
        shards: args.shards.unwrap_or(defaults.shards).max(1),
        host: args.host.clone(),
        client: Arc::new(client),
        tags,
        classes: args.user_classes.clone(),
        stop_timeout: args.stop_timeout,
        reset_stats: args.reset_stats,
        cpu_guard: args.cpu_guard,
        memory_limit: memory_limit(args.memory_limit.as_deref(), 1)?,
        // The web UI's start form can give the host.
        host_required: args.headless,
        exit_code_on_error: args.exit_code_on_error,
        shape: match &args.phases {
            Some(path) => {
                let phases = crate::phases_file::read(path)?;
                Some(Arc::new(std::sync::Mutex::new(Box::new(phases) as Box<dyn swarmer_engine::LoadShape>)))
            }
            None => None,
        },
        ..defaults
    })
}

/// The least `--memory-limit` (of each child, with `--processes`): below
/// it a process is shedding users from its start.
const LEAST_PROCESS_MEMORY: u64 = 16 << 20;

/// Bytes of resident memory each of `processes` processes keeps under,
/// from `--memory-limit` (an even share of it).
fn memory_limit(text: Option<&str>, processes: usize) -> Result<Option<u64>, String> {
    let Some(text) = text else { return Ok(None) };
    let bytes = swarmer_engine::memory::parse_size(text, swarmer_engine::memory::memory_budget())
        .map_err(|e| format!("--memory-limit: {e}"))?;
    let each = bytes / processes.max(1) as u64;
    if each < LEAST_PROCESS_MEMORY {
        let whose = if processes > 1 { format!(" for each of {processes} processes") } else { String::new() };
        return Err(format!("--memory-limit: at least 16MiB{whose}, got {text}"));
    }
    Ok(Some(each))
}

/// The least memory a Lua VM gets (`auto` included): a VM needs about
/// 4 MiB to start, and a plan's data more.
const LEAST_VM_MEMORY: u64 = 16 << 20;

/// Bytes each Lua VM may use, from `--lua-memory-limit` (`auto` shares
/// the default among `vms` VMs, never below [`LEAST_VM_MEMORY`]).
pub(crate) fn lua_memory_limit(text: &str, vms: usize) -> Result<Option<u64>, String> {
    const LEAST: u64 = 4 << 20;
    let bytes = match text.trim() {
        "auto" => {
            return Ok(swarmer_lua::memory_limit::default_limit(vms).map(|b| b.max(LEAST_VM_MEMORY)));
        }
        "none" | "0" => return Ok(None),
        size => swarmer_engine::memory::parse_size(size, swarmer_engine::memory::memory_budget())
            .map_err(|e| format!("--lua-memory-limit: {e}"))?,
    };
    if bytes < LEAST {
        return Err(format!("--lua-memory-limit: at least 4MiB (a VM needs that much to start), got {text}"));
    }
    Ok(Some(bytes))
}

fn cluster_role(args: &RunArgs, given: &dyn Fn(&str) -> bool) -> Result<ClusterRole, String> {
    let cluster = &args.cluster;
    let children = match cluster.processes {
        Some(n) => {
            let count = match n {
                -1 => std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1),
                // parse_processes admits -1 and positive numbers only.
                n => n.max(1) as usize,
            };
            let shards = args.shards.unwrap_or(1).max(1);
            // The children's VMs and this process's one share the machine.
            let vms = count.saturating_mul(shards + 1).saturating_add(1);
            Some(ChildWorkers {
                count,
                shards,
                log_level: args.loglevel,
                cluster_ca: cluster.cluster_ca.clone(),
                cluster_server_name: cluster.cluster_server_name.clone(),
                client_cert: args.client_cert.clone().zip(args.client_key.clone()),
                lua_memory_limit: lua_memory_limit(&args.lua_memory_limit, vms)?,
                memory_limit: memory_limit(args.memory_limit.as_deref(), count)?,
            })
        }
        None => None,
    };
    if cluster.health_port.is_some() && !(cluster.worker && children.is_none()) {
        return Err("--health-port: only a single worker process serves health checks (--worker without \
                    --processes; run one worker per pod or container)"
            .into());
    }
    if cluster.worker {
        let token = cluster.token()?;
        return Ok(match children {
            Some(children) => ClusterRole::WorkerProcesses {
                master_host: cluster.master_host.clone(),
                master_port: cluster.master_port,
                token,
                children,
            },
            None => ClusterRole::Worker(WorkerConfig {
                master_host: cluster.master_host.clone(),
                master_port: cluster.master_port,
                token,
                tls: cluster.tls(),
                master_timeout: Duration::from_secs_f64(cluster.master_timeout),
                health_port: cluster.health_port,
                client_tls: client_tls(args),
                own_client_flags: OwnClientFlags {
                    http_version: given("http_version"),
                    insecure: given("insecure"),
                    connect_timeout: given("connect_timeout"),
                    request_timeout: given("request_timeout"),
                    max_body: given("max_body_size"),
                    ca_certs: given("ca_cert"),
                    client_cert: given("client_cert"),
                },
            }),
        });
    }
    if !cluster.master && children.is_none() {
        return Ok(ClusterRole::Local);
    }
    // `--processes` without `--master`: the workers are our own children,
    // on loopback, with a fresh secret unless one is given.
    let local_only = !cluster.master;
    let token = match cluster.token() {
        Ok(token) => token,
        Err(_) if local_only && !token_given(cluster) => ClusterToken::random(),
        Err(e) => return Err(e),
    };
    Ok(ClusterRole::Master(MasterConfig {
        bind_host: if local_only { "127.0.0.1".into() } else { cluster.master_bind_host.clone() },
        bind_port: if local_only { 0 } else { cluster.master_bind_port },
        token,
        tls: cluster.tls(),
        heartbeat_timeout: Duration::from_secs_f64(cluster.heartbeat_timeout),
        // As Locust's: a master starts the test once the workers it
        // started itself are all there (more if --expect-workers says so).
        expect_workers: cluster.expect_workers.max(children.as_ref().map_or(1, |c| c.count)),
        expect_workers_max_wait: (cluster.expect_workers_max_wait > 0)
            .then(|| Duration::from_secs(cluster.expect_workers_max_wait)),
        children,
        client_tls: client_tls(args),
    }))
}

/// Whether a cluster token was given (an empty one counts as none).
fn token_given(cluster: &crate::cluster_args::ClusterArgs) -> bool {
    cluster.cluster_token.as_deref().is_some_and(|t| !t.trim().is_empty()) || cluster.cluster_token_file.is_some()
}

/// `--compare FILE` read and checked, with its `--compare-tolerance`s
/// (default `p95 +10%`): a missing or malformed baseline stops the run
/// before any load.
fn compare_setup(args: &RunArgs) -> Result<Option<(Baseline, Vec<Tolerance>)>, String> {
    let Some(path) = &args.compare else {
        if !args.compare_tolerances.is_empty() {
            return Err("--compare-tolerance needs --compare BASELINE.json".into());
        }
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("--compare {}: {e}", path.display()))?;
    let baseline = Baseline::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
    let texts: Vec<String> = match args.compare_tolerances.as_slice() {
        [] => vec!["p95 +10%".to_owned()],
        given => given.to_vec(),
    };
    let tolerances =
        texts.iter().map(|t| Tolerance::parse(t)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    Ok(Some((baseline, tolerances)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::Cli;

    fn config(argv: &[&str]) -> Result<RunConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("swarmer").chain(argv.iter().copied())).expect("flags parse");
        RunConfig::new(cli.run, &|_| false)
    }

    #[test]
    fn levels_are_read_in_any_case_and_named_as_locust_names_them() {
        assert_eq!(LogLevel::parse("warn"), Ok(LogLevel::Warning));
        assert_eq!(LogLevel::parse("Debug").map(LogLevel::as_str), Ok("DEBUG"));
        assert_eq!(LogLevel::Critical.directive(), "error");
        assert!(LogLevel::parse("LOUD").unwrap_err().contains("expected DEBUG"));
    }

    #[test]
    fn a_headless_run_has_no_web_ui_and_a_zero_run_time_means_none() {
        let c = config(&["--headless", "-u", "7", "-r", "2", "-t", "0s"]).expect("valid");
        assert!(c.web.is_none());
        assert_eq!((c.test.users, c.test.spawn_rate, c.test.run_time), (7, 2.0, None));
        assert!(c.outputs.print_live);
        assert!(matches!(c.cluster, ClusterRole::Local));
    }

    #[test]
    fn processes_alone_make_a_loopback_master_with_a_fresh_secret() {
        let c = config(&["--processes", "2", "--shards", "3"]).expect("valid");
        let ClusterRole::Master(master) = c.cluster else { panic!("a master") };
        assert_eq!((master.bind_host.as_str(), master.bind_port), ("127.0.0.1", 0));
        let children = master.children.expect("children");
        assert_eq!((children.count, children.shards), (2, 3));
    }

    #[test]
    fn health_checks_are_for_a_single_worker_process() {
        let token = "test-cluster-token-0123456789";
        let c = config(&["--worker", "--cluster-token", token, "--health-port", "8080"]).expect("valid");
        let ClusterRole::Worker(worker) = c.cluster else { panic!("a worker") };
        assert_eq!(worker.health_port, Some(8080));
        let processes = ["--worker", "--cluster-token", token, "--processes", "2", "--health-port", "8080"];
        for refused in [&processes[..], &["--health-port", "8080"]] {
            let error = config(refused).err().expect("refused");
            assert!(error.contains("--health-port") && error.contains("single worker"), "{error}");
        }
    }

    #[test]
    fn memory_limits_are_shared_among_processes_and_vms() {
        let local = config(&["--shards", "3", "--memory-limit", "1G", "--lua-memory-limit", "auto"]).expect("valid");
        assert_eq!(local.runner.memory_limit, Some(1 << 30));
        let four_vms = swarmer_lua::memory_limit::default_limit(4).unwrap().max(LEAST_VM_MEMORY);
        assert_eq!(local.lua_memory_limit, Some(four_vms), "3 shards and the process VM");
        let c = config(&["--processes", "2", "--shards", "3", "--memory-limit", "1G"]).expect("valid");
        let ClusterRole::Master(master) = c.cluster else { panic!("a master") };
        let children = master.children.expect("children");
        assert_eq!(children.memory_limit, Some(1 << 29), "each child an even share");
        // Two children of 4 VMs, and the master's process VM.
        let nine_vms = swarmer_lua::memory_limit::default_limit(9).unwrap().max(LEAST_VM_MEMORY);
        assert_eq!((children.lua_memory_limit, c.lua_memory_limit), (Some(nine_vms), Some(nine_vms)));
        let sized = config(&["--lua-memory-limit", "64MiB"]).expect("valid");
        assert_eq!(sized.lua_memory_limit, Some(64 << 20));
        assert_eq!(config(&["--lua-memory-limit", "none"]).expect("valid").lua_memory_limit, None);
        let error = config(&["--processes", "4", "--memory-limit", "40MiB"]).err().expect("refused");
        assert!(error.contains("at least 16MiB for each of 4 processes"), "{error}");
    }

    #[test]
    fn a_worker_without_a_token_is_refused_naming_the_flags() {
        let error = config(&["--worker"]).err().expect("refused");
        assert!(error.contains("--cluster-token-file"), "{error}");
        let error = config(&["--processes", "2", "--cluster-token", "short"]).err().expect("refused");
        assert!(error.contains("at least 16 characters"), "{error}");
    }

    #[test]
    fn http_versions_and_autoquit_are_typed() {
        let c = config(&["--http-version", "2", "--autostart", "--autoquit", "5"]).expect("valid");
        assert_eq!(c.runner.client.version, swarmer_engine::HttpVersionPreference::Http2Only);
        assert_eq!(c.web.as_ref().expect("web UI").autoquit, Some(Duration::from_secs(5)));
        assert!(config(&["--autoquit", "5"]).err().expect("refused").contains("--autostart"));
    }
}
