//! The `swarmer` command line: flags, config file, logging, and the wiring
//! of the engine to its text surfaces.
//!
//! - [`args`]: Locust's flag names (clap), `SWARMER_*` environment variables.
//! - [`config_file`]: `swarmer.toml` / `--config`, merged under env and flags.
//! - [`config`]: the second stage: the parsed flags become one validated,
//!   typed [`config::RunConfig`] that the runs below take.
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
//! - [`phases_file`]: `--phases FILE` (and `[[phases]]` in the config
//!   file): the load phases that drive a test.
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
pub mod config;
pub mod config_file;
mod demo;
mod logging;
mod option_kind;
mod outputs;
pub mod phases_file;
mod plan_options;
mod run;
mod sources;
mod web_args;
mod worker_processes;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
pub use swarmer_engine as engine;
use swarmer_engine::Plan;
use swarmer_lua::PlanOption;

use crate::args::{Cli, Command, RunArgs};
use crate::config::{ClusterRole, RunConfig};

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
        None if cli.run.locustfile.is_some() && plan.is_some() => {
            return usage_error("-f: this program defines its own plan; -f is for the swarmer binary");
        }
        None => {
            // A flag is given when it did not come from its default (the
            // config file's values arrive as command-line arguments).
            let given = |id: &str| {
                matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
            };
            runtime.block_on(run_command_line(plan, cli.run, &given, option_values))
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

/// The second stage of the command line (a [`RunConfig`]), then logging;
/// on an error, the exit code after saying what was wrong.
pub(crate) fn configure(args: RunArgs, given: &dyn Fn(&str) -> bool) -> Result<RunConfig, i32> {
    let memory_share = args.memory_limit.as_deref().is_some_and(|text| text.trim().ends_with('%'));
    let config = RunConfig::new(args, given).map_err(|e| {
        eprintln!("swarmer: error: {e}");
        2
    })?;
    swarmer_lua::memory_limit::set(config.lua_memory_limit);
    swarmer_lua::trust::set(config.runner.client.clone());
    if let Err(e) = logging::init(&config.log) {
        eprintln!("swarmer: error: {e}");
        return Err(2);
    }
    if memory_share && let Some(note) = swarmer_engine::memory::hidden_limit_note() {
        tracing::warn!("--memory-limit: {note}");
    }
    Ok(config)
}

/// A worker, or a run of this program's plan or of `-f`'s. Returns the exit code.
async fn run_command_line(
    program_plan: Option<Plan>,
    args: RunArgs,
    given: &dyn Fn(&str) -> bool,
    option_values: std::collections::HashMap<String, String>,
) -> i32 {
    let config = match configure(args, given) {
        Ok(configured) => configured,
        Err(code) => return code,
    };
    if matches!(config.cluster, ClusterRole::Worker(_) | ClusterRole::WorkerProcesses { .. }) {
        return cluster_mode::run_worker(program_plan, config, option_values).await;
    }
    let from_program = program_plan.is_some();
    let plan = match program_plan {
        Some(plan) => plan,
        None => match builtin::resolve_plan(
            config.plan.as_deref(),
            option_values,
            if config.is_master() { swarmer_engine::NodeRole::Master } else { swarmer_engine::NodeRole::Local },
        ) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("swarmer: error: {e}");
                return 2;
            }
        },
    };
    run_with(plan, config, from_program).await
}

/// `--list`, `--show-task-ratio`, or a run. Returns the exit code.
pub(crate) async fn run_with(plan: Plan, config: RunConfig, program_plan: bool) -> i32 {
    if config.inspect.any() {
        let classes = match plan.info(&config.runner.classes, &config.runner.tags) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("swarmer: error: {e}");
                return 2;
            }
        };
        if config.inspect.list {
            print!("{}", swarmer_report::task_ratio::class_list(&classes));
        }
        if config.inspect.task_ratio {
            print!("{}", swarmer_report::task_ratio::task_ratio_text(&classes));
        }
        if config.inspect.task_ratio_json {
            println!("{}", swarmer_report::task_ratio::task_ratio_json(&classes));
        }
        return 0;
    }
    match run::run(plan, config, program_plan).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swarmer: error: {e}");
            2
        }
    }
}
