//! The `swarmer` command line: flags, config file, logging, and the wiring
//! of the engine to its text surfaces.
//!
//! - [`args`]: Locust's flag names (clap), `SWARMER_*` environment variables.
//! - [`config_file`]: `swarmer.toml` / `--config`, merged under env and flags.
//! - `option_kind`: what each option takes (from clap's definitions), to
//!   check the config file's TOML types before clap sees the values.
//! - `sources`: whether a value came from the command line or the
//!   environment (the file's options the command line replaces; errors
//!   that name the environment variable of a bad value).
//! - `builtin`: the plans compiled into the binary (`-f builtin:NAME`).
//! - `run`: one run, headless or with the web UI, from start to reports
//!   and exit code.
//! - `web_args`: the web UI's flags (`--web-port`, `--web-login`, TLS, …).
//! - `outputs`: CSV, JSON and console output of a run.
//! - `demo`: the `demo` and `target` subcommands (the built-in target).
//! - `plan_options`: options a Lua plan declares (`swarmer.add_option`).
//! - `cluster_args`, `cluster_mode`: `--master`, `--worker`, `--processes`.
//!
//! A test written in Rust calls [`run_plan`] from its `main` and gets the
//! whole command line for free (see `examples/rust/`).

/// The allocator the `swarmer` binary uses, for test programs to choose
/// too (`#[global_allocator] static A: swarmer::Allocator =
/// swarmer::Allocator;`): mimalloc instead of the system allocator, since a
/// load generator makes many small, short-lived allocations per request
/// (headers, bodies, Lua values); bench/run.sh measured glibc's
/// malloc/free at ~17% of a Lua shard's time. The library does not set it:
/// a program linking Swarmer chooses its own allocator.
pub use mimalloc::MiMalloc as Allocator;

pub mod args;
mod builtin;
mod cluster_args;
mod cluster_mode;
pub mod config_file;
mod demo;
mod logging;
mod option_kind;
mod outputs;
mod plan_options;
mod run;
mod sources;
mod web_args;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches};
pub use swarmer_engine as engine;
use swarmer_engine::{ClientConfig, HttpVersionPreference, Plan, RunnerOptions, TagFilter, TlsOptions};
use swarmer_lua::PlanOption;

use crate::args::{Cli, Command, RunArgs};

/// Run a test plan with the full `swarmer` command line (for Rust tests).
pub fn run_plan(plan: Plan) -> ExitCode {
    main_with(Some(plan))
}

/// The `swarmer` binary: the plan comes from `-f`.
pub fn main_binary() -> ExitCode {
    main_with(None)
}

fn main_with(plan: Option<Plan>) -> ExitCode {
    let (matches, plan_options) = match parse_command_line() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let option_values = plan_options::values(&matches, &plan_options);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarmer: error: could not start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match cli.command {
        Some(Command::Target(args)) => runtime.block_on(demo::serve_target(args)),
        Some(Command::Demo(demo_args)) => {
            let sub = matches.subcommand_matches("demo").expect("demo subcommand matched");
            let run = demo::with_demo_defaults(demo_args.run.clone(), sub);
            let plan = plan.unwrap_or_else(demo::default_plan);
            runtime.block_on(demo::run_demo(plan, run, *demo_args))
        }
        None if cli.run.cluster.worker => {
            let run = cli.run;
            if run.locustfile.is_some() && plan.is_some() {
                return usage_error("-f: this program defines its own plan; -f is for the swarmer binary");
            }
            let logs = swarmer_web::LogBuffer::default();
            if let Err(e) = logging::init(&run.loglevel, run.logfile.as_deref(), &logs) {
                return usage_error(&e);
            }
            let tags = TagFilter::new(run.tags.clone(), run.exclude_tags.clone().unwrap_or_default());
            match runner_options(&run, tags) {
                Ok(options) => runtime.block_on(cluster_mode::run_worker(plan, run, options, option_values)),
                Err(e) => return usage_error(&e),
            }
        }
        None => {
            let program_plan = plan.is_some();
            let plan = match plan {
                Some(p) if cli.run.locustfile.is_none() => Ok(p),
                Some(_) => Err("-f: this program defines its own plan; -f is for the swarmer binary".to_string()),
                None => builtin::resolve_plan(cli.run.locustfile.as_deref(), option_values),
            };
            match plan {
                Ok(plan) => runtime.block_on(run_with(plan, cli.run, program_plan)),
                Err(e) => return usage_error(&e),
            }
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The command line with the config file merged in, parsed, and the
/// options the plan declares; on a usage error, the exit code.
fn parse_command_line() -> Result<(ArgMatches, Vec<PlanOption>), ExitCode> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let file = config_file::read(&argv).map_err(|e| usage_error(&e))?;
    // A Lua plan may declare options of its own (its -f may come from the
    // file): add them before parsing, so they are accepted and shown in --help.
    let plan_options = plan_options::declared(&file.merge(&argv, |_| false));
    let mut command = plan_options::add_to(Cli::command(), &plan_options);
    let given = sources::on_command_line(&command, &argv);
    let argv = file.merge(&argv, |long| given.iter().any(|g| g == long));
    match command.try_get_matches_from_mut(&argv) {
        Ok(matches) => Ok((matches, plan_options)),
        Err(e) => match sources::env_error(&command, &argv, &e) {
            Some(message) => Err(usage_error(&message)),
            None => e.exit(),
        },
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("swarmer: error: {message}");
    ExitCode::from(2)
}

/// `--list`, `--show-task-ratio`, or a run. Returns the exit code.
pub(crate) async fn run_with(plan: Plan, args: RunArgs, program_plan: bool) -> i32 {
    let logs = swarmer_web::LogBuffer::default();
    if let Err(e) = logging::init(&args.loglevel, args.logfile.as_deref(), &logs) {
        eprintln!("swarmer: error: {e}");
        return 2;
    }
    let tags = TagFilter::new(args.tags.clone(), args.exclude_tags.clone().unwrap_or_default());
    if args.list || args.show_task_ratio || args.show_task_ratio_json {
        let classes = match plan.info(&args.user_classes, &tags) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("swarmer: error: {e}");
                return 2;
            }
        };
        if args.list {
            print!("{}", swarmer_report::task_ratio::class_list(&classes));
        }
        if args.show_task_ratio {
            print!("{}", swarmer_report::task_ratio::task_ratio_text(&classes));
        }
        if args.show_task_ratio_json {
            println!("{}", swarmer_report::task_ratio::task_ratio_json(&classes));
        }
        return 0;
    }
    let options = match runner_options(&args, tags) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("swarmer: error: {e}");
            return 2;
        }
    };
    let code = run::run(plan, &args, options, logs, program_plan).await;
    match code {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swarmer: error: {e}");
            2
        }
    }
}

fn runner_options(args: &RunArgs, tags: TagFilter) -> Result<RunnerOptions, String> {
    let tls = TlsOptions {
        insecure: args.insecure,
        ca_certs: args.ca_cert.clone(),
        client_cert: args.client_cert.clone().zip(args.client_key.clone()),
    };
    let version = match args.http_version.as_str() {
        "1" => HttpVersionPreference::Http1Only,
        "2" => HttpVersionPreference::Http2Only,
        _ => HttpVersionPreference::Auto,
    };
    let mut client = ClientConfig::new(&tls, version).map_err(|e| e.to_string())?;
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
        // The web UI's start form can give the host.
        host_required: args.headless,
        ..defaults
    })
}
