//! Options from a TOML config file (`swarmer.toml` or `--config FILE`),
//! merged under environment variables and the command line, as Locust
//! merges `locust.conf`.
//!
//! Keys are the long option names (`users = 10`, `spawn-rate = 2`,
//! `headless = true`, `tags = ["a", "b"]`); underscores work as dashes.
//! The file's options are placed before the command line's, so the command
//! line wins; an option whose environment variable is set is skipped, so
//! the environment wins over the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::args::Cli;

/// Default config file looked for in the working directory.
pub const DEFAULT_CONFIG: &str = "swarmer.toml";

/// `argv` with the config file's options spliced in.
pub fn merge_config_file(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(path) = config_path(&argv) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file_args = to_args(&path, &text, |name| std::env::var_os(name).is_some())?;
    let mut merged = Vec::with_capacity(argv.len() + file_args.len());
    let mut rest = argv.into_iter();
    merged.extend(rest.next());
    // Options belong after a subcommand's name when there is one.
    let rest: Vec<OsString> = rest.collect();
    let subcommand = rest.first().filter(|a| matches!(a.to_str(), Some("demo"))).cloned();
    if let Some(sub) = &subcommand {
        merged.push(sub.clone());
        merged.extend(file_args);
        merged.extend(rest.into_iter().skip(1));
    } else {
        merged.extend(file_args);
        merged.extend(rest);
    }
    Ok(merged)
}

fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut iter = argv.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    if let Some(env) = std::env::var_os("SWARMER_CONFIG") {
        return Some(PathBuf::from(env));
    }
    Path::new(DEFAULT_CONFIG).exists().then(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Turn the file into command-line arguments. `env_is_set(NAME)` tells
/// whether an option's environment variable is set (then the file's value
/// is skipped).
pub fn to_args(path: &Path, text: &str, env_is_set: impl Fn(&str) -> bool) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
    let command = Cli::command();
    let known: Vec<(String, Option<String>, bool)> = command
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_owned();
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            Some((long, env, a.get_num_args().is_some_and(|n| n.max_values() > 1)))
        })
        .collect();
    let mut args = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if name == "config" {
            continue;
        }
        let Some((long, env, multiple)) = known.iter().find(|(l, _, _)| *l == name) else {
            let suggestion = known
                .iter()
                .map(|(l, _, _)| (strsim::jaro_winkler(l, &name), l))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, l)| format!(" (did you mean '{l}'?)"))
                .unwrap_or_default();
            return Err(format!("{}: unknown option '{key}'{suggestion}", path.display()));
        };
        if env.as_deref().is_some_and(&env_is_set) {
            continue;
        }
        let flag = OsString::from(format!("--{long}"));
        match value {
            toml::Value::Boolean(true) => args.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                if !multiple {
                    return Err(format!("{}: option '{key}' takes one value, not a list", path.display()));
                }
                args.push(flag);
                for item in items {
                    args.push(scalar(path, &key, &item)?.into());
                }
            }
            other => {
                args.push(flag);
                args.push(scalar(path, &key, &other)?.into());
            }
        }
    }
    Ok(args)
}

fn scalar(path: &Path, key: &str, value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("{}: option '{key}' has a value of an unsupported type", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str, env: &[&str]) -> Result<Vec<String>, String> {
        to_args(Path::new("swarmer.toml"), text, |n| env.contains(&n))
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn keys_become_long_options() {
        let got =
            args("users = 10\nspawn_rate = 2.5\nheadless = true\nreset-stats = false\ntags = [\"a\", \"b\"]\n", &[])
                .unwrap();
        // Keys come out in the table's (sorted) order; order does not matter
        // to the parser.
        assert_eq!(got, ["--headless", "--spawn-rate", "2.5", "--tags", "a", "b", "--users", "10"]);
    }

    #[test]
    fn environment_wins_over_the_file() {
        assert_eq!(args("users = 10\nhost = \"http://x\"", &["SWARMER_USERS"]).unwrap(), ["--host", "http://x"]);
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let err = args("usres = 3", &[]).unwrap_err();
        assert_eq!(err, "swarmer.toml: unknown option 'usres' (did you mean 'users'?)");
        assert!(args("users = [1, 2]", &[]).unwrap_err().contains("takes one value"));
        assert!(args("users = ", &[]).unwrap_err().starts_with("swarmer.toml:"));
    }
}
