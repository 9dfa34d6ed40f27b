//! Options a Lua plan declares with `swarmer.add_option` (Locust's
//! `init_command_line_parser`): found by loading the plan named by `-f`
//! before the command line is parsed, added as `--name` flags (so `--help`
//! lists them), and handed back to the plan as `swarmer.options`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Command};
use swarmer_lua::{OptionKind, PlanOption};

/// The options of the Lua plan named by `-f` in `argv` (or
/// `SWARMER_LOCUSTFILE`); none when there is no such plan or it does not
/// load (the run reports that error itself).
pub fn declared(argv: &[OsString]) -> Vec<PlanOption> {
    let Some(plan) = locustfile(argv) else { return Vec::new() };
    if !plan.ends_with(".lua") {
        return Vec::new();
    }
    provisional_memory_limit(argv);
    provisional_trust(argv);
    swarmer_lua::declared_options(Path::new(&plan), likely_role(argv)).unwrap_or_default()
}

/// The role the command line most likely asks for, before it is parsed
/// (the plan's first load shows it to the plan; a wrong guess only costs
/// another load).
fn likely_role(argv: &[OsString]) -> swarmer_engine::NodeRole {
    let given = |flag: &str, env: &str| {
        argv.iter().any(|a| a.to_string_lossy() == flag || a.to_string_lossy().starts_with(&format!("{flag}=")))
            || std::env::var(env).is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
    };
    if given("--worker", "SWARMER_WORKER") {
        swarmer_engine::NodeRole::Worker(String::new())
    } else if given("--master", "SWARMER_MASTER") || given("--processes", "SWARMER_PROCESSES") {
        swarmer_engine::NodeRole::Master
    } else {
        swarmer_engine::NodeRole::Local
    }
}

/// The plan `-f` names; the last one when given more than once, as the
/// parsed command line takes the last.
fn locustfile(argv: &[OsString]) -> Option<String> {
    flag_value(argv, "--locustfile", Some("-f"), "SWARMER_LOCUSTFILE")
}

/// The value of a flag before the command line is parsed: the last one
/// given (`--long V`, `--long=V`, `-s V`, `-sV`), else the environment's.
fn flag_value(argv: &[OsString], long: &str, short: Option<&str>, env: &str) -> Option<String> {
    flag_values(argv, long, short).pop().or_else(|| std::env::var(env).ok())
}

/// Every value given to a flag on the command line, in order.
fn flag_values(argv: &[OsString], long: &str, short: Option<&str>) -> Vec<String> {
    let mut args = argv.iter().skip(1).map(|a| a.to_string_lossy().into_owned());
    let mut values = Vec::new();
    let long_eq = format!("{long}=");
    while let Some(arg) = args.next() {
        if arg == long || Some(arg.as_str()) == short {
            values.extend(args.next());
        } else if let Some(v) = arg
            .strip_prefix(long_eq.as_str())
            .or_else(|| short.and_then(|s| arg.strip_prefix(s)).filter(|v| !v.is_empty()))
        {
            values.push(v.to_owned());
        }
    }
    values
}

/// Set the VMs' memory limit for the plan's first load, which runs before
/// the command line is parsed (the parsed one is set afterwards). A value
/// refused leaves the default: the command line's check says what was
/// wrong once the plan's own options are known.
fn provisional_memory_limit(argv: &[OsString]) {
    let Some(text) = flag_value(argv, "--lua-memory-limit", None, "SWARMER_LUA_MEMORY_LIMIT") else { return };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Ok(limit) = crate::config::lua_memory_limit(&text, cores + 1) {
        swarmer_lua::memory_limit::set(limit);
    }
}

/// The test's TLS trust for the plan's first load (gRPC reflection at its
/// top level), from the raw flags; the parsed one is set afterwards.
/// Files that do not load leave the default: the parsed command line
/// reports them.
fn provisional_trust(argv: &[OsString]) {
    let mut ca_certs: Vec<_> = flag_values(argv, "--ca-cert", None).into_iter().map(PathBuf::from).collect();
    if ca_certs.is_empty()
        && let Ok(path) = std::env::var("SWARMER_CA_CERT")
    {
        ca_certs.push(PathBuf::from(path));
    }
    let insecure =
        argv.iter().any(|a| a == "--insecure") || std::env::var("SWARMER_INSECURE").is_ok_and(|v| v == "true");
    let client_cert = flag_value(argv, "--client-cert", None, "SWARMER_CLIENT_CERT")
        .zip(flag_value(argv, "--client-key", None, "SWARMER_CLIENT_KEY"))
        .map(|(cert, key)| (PathBuf::from(cert), PathBuf::from(key)));
    let options = swarmer_engine::TlsOptions { insecure, ca_certs, client_cert };
    if let Ok(config) = swarmer_engine::ClientConfig::new(&options, swarmer_engine::HttpVersionPreference::Auto) {
        swarmer_lua::trust::set(std::sync::Arc::new(config));
    }
}

fn id(option: &PlanOption) -> String {
    format!("plan-option-{}", option.name)
}

/// `command` with one flag per plan option.
pub fn add_to(mut command: Command, options: &[PlanOption]) -> Command {
    for option in options {
        let mut help = format!("[plan] {}", option.help);
        if let Some(default) = &option.default {
            help.push_str(&format!(" (default: {default})"));
        }
        let arg = Arg::new(id(option)).long(option.name.clone()).help(help);
        let arg = if option.kind == OptionKind::Boolean {
            arg.action(ArgAction::SetTrue)
        } else if !option.choices.is_empty() {
            // clap refuses anything else, listing the choices (exit 2).
            arg.value_name("VALUE").value_parser(PossibleValuesParser::new(option.choices.clone()))
        } else {
            arg.value_name("VALUE")
        };
        command = command.arg(arg);
    }
    command
}

/// The values given for the plan's options.
pub fn values(matches: &ArgMatches, options: &[PlanOption]) -> HashMap<String, String> {
    let mut values = HashMap::new();
    for option in options {
        let id = id(option);
        if option.kind == OptionKind::Boolean {
            if matches.get_flag(&id) {
                values.insert(option.name.clone(), "true".to_owned());
            }
        } else if let Some(v) = matches.get_one::<String>(&id) {
            values.insert(option.name.clone(), v.clone());
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_plan_named_is_the_one_whose_options_count() {
        let argv: Vec<OsString> =
            ["swarmer", "-f", "builtin:seed", "-H", "x", "--locustfile=a.lua", "-fb.lua"].map(OsString::from).into();
        assert_eq!(locustfile(&argv).as_deref(), Some("b.lua"));
        let argv: Vec<OsString> = ["swarmer", "-f", "a.lua", "-u", "2"].map(OsString::from).into();
        assert_eq!(locustfile(&argv).as_deref(), Some("a.lua"));
    }
}
