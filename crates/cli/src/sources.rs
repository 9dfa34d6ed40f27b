//! Where the options' values came from: the command line or a `SWARMER_*`
//! environment variable, told by clap's `ArgMatches::value_source`.
//!
//! Both uses need it without a successful parse (one comes before the real
//! parse, the other after it failed), so they parse the arguments with a
//! lenient copy of the command: every environment-backed option accepts
//! any value and errors are ignored, so this parse gets at least as far as
//! the real one and records where each option's value came from.
//!
//! - [`on_command_line`]: the options the command line gives, whose values
//!   in the config file are dropped (a list given on the command line
//!   replaces the file's list rather than adding to it).
//! - [`env_error`]: when clap refuses a value that came from an environment
//!   variable, a message naming the variable, not only the flag.

use std::ffi::OsString;

use clap::builder::{FalseyValueParser, ValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The long names of the options `argv` gives on the command line, in the
/// top-level command and in its subcommand (`demo`).
pub fn on_command_line(command: &Command, argv: &[OsString]) -> Vec<String> {
    sources(command, argv)
        .into_iter()
        .filter(|(_, source)| *source == ValueSource::CommandLine)
        .filter_map(|(arg, _)| arg.get_long().map(str::to_owned))
        .collect()
}

/// When `error` is clap refusing a value that came from an environment
/// variable: `invalid value "abc" in environment variable SWARMER_USERS
/// for --users: invalid digit found in string`.
pub fn env_error(command: &Command, argv: &[OsString], error: &clap::Error) -> Option<String> {
    if !matches!(error.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let failed = context_string(error, ContextKind::InvalidArg)?;
    let value = context_string(error, ContextKind::InvalidValue)?;
    let (arg, _) = sources(command, argv)
        .into_iter()
        .find(|(arg, source)| *source == ValueSource::EnvVariable && arg.to_string() == failed)?;
    let variable = arg.get_env()?.to_string_lossy();
    let flag = arg.get_long().map_or(failed.clone(), |long| format!("--{long}"));
    Some(format!("invalid value {value:?} in environment variable {variable} for {flag}: {}", reason(error)))
}

/// Each option that got a value from a lenient parse of `argv`, with where
/// the value came from: the command's options, then its subcommand's.
fn sources(command: &Command, argv: &[OsString]) -> Vec<(Arg, ValueSource)> {
    let mut command = lenient(command.clone());
    let Ok(matches) = command.try_get_matches_from_mut(argv) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut level = Some((&command, &matches));
    while let Some((command, matches)) = level {
        for arg in command.get_arguments() {
            if let Some(source) = matches.value_source(arg.get_id().as_str()) {
                found.push((arg.clone(), source));
            }
        }
        level = subcommand(command, matches);
    }
    found
}

fn subcommand<'a>(command: &'a Command, matches: &'a ArgMatches) -> Option<(&'a Command, &'a ArgMatches)> {
    let (name, sub_matches) = matches.subcommand()?;
    Some((command.find_subcommand(name)?, sub_matches))
}

/// `command` with errors ignored and every environment-backed option
/// accepting any value (a switch keeps a `bool` parser, as clap requires).
fn lenient(command: Command) -> Command {
    command
        .ignore_errors(true)
        .mut_args(|arg| {
            if arg.get_env().is_none() {
                arg
            } else if matches!(arg.get_action(), ArgAction::SetTrue) {
                arg.value_parser(FalseyValueParser::new())
            } else {
                arg.value_parser(ValueParser::os_string())
            }
        })
        .mut_subcommands(lenient)
}

fn context_string(error: &clap::Error, kind: ContextKind) -> Option<String> {
    match error.get(kind)? {
        ContextValue::String(text) => Some(text.clone()),
        _ => None,
    }
}

/// Why clap refused the value: the value parser's own message, or the
/// values it accepts.
fn reason(error: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(error) {
        return source.to_string();
    }
    match error.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(values)) => {
            let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            format!("expected one of {}", quoted.join(", "))
        }
        _ => "not a value it accepts".to_owned(),
    }
}
