//! Options from a TOML config file (`swarmer.toml` or `--config FILE`),
//! merged under environment variables and the command line, as Locust
//! merges `locust.conf`.
//!
//! Keys are the long option names (`users = 10`, `spawn-rate = 2`,
//! `headless = true`, `tags = ["a", "b"]`); underscores work as dashes.
//! Values must have their option's TOML type: `headless = "yes"` is an
//! error naming the key and the type expected, not a user class `yes`.
//! The file's options are placed before the command line's. An option
//! whose environment variable is set is skipped, so the environment wins
//! over the file; an option the command line gives is skipped too, so the
//! command line wins, and a list given there (`--tags b`) replaces the
//! file's list instead of adding to it. `[[phases]]` tables make the
//! file the run's phases file too (`--phases`, see `phases_file`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::args::Cli;
use crate::option_kind::OptionShape;

/// Default config file looked for in the working directory.
pub const DEFAULT_CONFIG: &str = "swarmer.toml";

/// The config file's options, each as the arguments that give it; none
/// when there is no config file.
#[derive(Debug, Default)]
pub struct FileOptions {
    options: Vec<FileOption>,
}

/// One option of the file: its long name and its arguments.
pub type FileOption = (String, Vec<OsString>);

/// The options of the config file `argv` names (`--config`,
/// `SWARMER_CONFIG`, or `./swarmer.toml` if present), checked.
pub fn read(argv: &[OsString]) -> Result<FileOptions, String> {
    let Some(path) = config_path(argv) else {
        return Ok(FileOptions::default());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let options = to_args(&path, &text, |name| std::env::var_os(name).is_some())?;
    Ok(FileOptions { options })
}

impl FileOptions {
    /// `argv` with the file's options spliced in, except those for which
    /// `on_command_line(long name)` holds.
    pub fn merge(&self, argv: &[OsString], on_command_line: impl Fn(&str) -> bool) -> Vec<OsString> {
        // After the program, and after a subcommand's name when there is one.
        let demo = argv.get(1).is_some_and(|a| *a == "demo");
        let split = argv.len().min(1 + usize::from(demo));
        let file_args = self.options.iter().filter(|(long, _)| !on_command_line(long)).flat_map(|(_, args)| args);
        argv[..split].iter().chain(file_args).chain(&argv[split..]).cloned().collect()
    }
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

/// Turn the file into command-line arguments, option by option (long name
/// and arguments). `env_is_set(NAME)` tells whether an option's
/// environment variable is set (then the file's value is skipped). Each
/// value must have its option's type (see `option_kind`); an error names
/// the file, the key, the type expected and the value found.
pub fn to_args(path: &Path, text: &str, env_is_set: impl Fn(&str) -> bool) -> Result<Vec<FileOption>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
    let mut command = Cli::command();
    command.build();
    let known: Vec<OptionShape> = command.get_arguments().filter_map(OptionShape::of).collect();
    let mut args = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if name == "config" {
            continue;
        }
        // [[phases]] tables: the file is also the phases file (`--phases`).
        if name == "phases" {
            if !env_is_set("SWARMER_PHASES") {
                args.push(("phases".to_owned(), vec![format!("--phases={}", path.display()).into()]));
            }
            continue;
        }
        let Some(option) = known.iter().find(|o| o.long == name) else {
            let suggestion = known
                .iter()
                .map(|o| (strsim::jaro_winkler(&o.long, &name), &o.long))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, l)| format!(" (did you mean '{l}'?)"))
                .unwrap_or_default();
            return Err(format!("{}: unknown option '{key}'{suggestion}", path.display()));
        };
        if option.env.as_deref().is_some_and(&env_is_set) {
            continue;
        }
        let option_args = option.args_for(&value).map_err(|e| format!("{}: {key}: {e}", path.display()))?;
        args.push((option.long.clone(), option_args));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(text: &str, env: &[&str]) -> Result<Vec<String>, String> {
        to_args(Path::new("swarmer.toml"), text, |n| env.contains(&n))
            .map(|v| v.into_iter().flat_map(|(_, args)| args).map(|s| s.into_string().unwrap()).collect())
    }

    fn err(text: &str) -> String {
        args(text, &[]).unwrap_err()
    }

    /// The file's arguments as clap reads them.
    fn parsed(text: &str) -> crate::args::RunArgs {
        let mut argv = vec!["swarmer".to_owned()];
        argv.extend(args(text, &[]).unwrap());
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}")).run
    }

    #[test]
    fn keys_become_long_options() {
        let got =
            args("users = 10\nspawn_rate = 2.5\nheadless = true\nreset-stats = false\ntags = [\"a\", \"b\"]\n", &[])
                .unwrap();
        // Keys come out in the table's (sorted) order; order does not matter
        // to the parser.
        assert_eq!(got, ["--headless", "--spawn-rate=2.5", "--tags=a", "--tags=b", "--users=10"]);
    }

    #[test]
    fn environment_wins_over_the_file() {
        assert_eq!(args("users = 10\nhost = \"http://x\"", &["SWARMER_USERS"]).unwrap(), ["--host=http://x"]);
    }

    #[test]
    fn the_command_line_replaces_the_files_options_lists_too() {
        let options = to_args(Path::new("swarmer.toml"), "tags = [\"a\", \"b\"]\nusers = 3", |_| false).unwrap();
        let file = FileOptions { options };
        let argv = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        let on_command_line = |long: &str| long == "tags";
        assert_eq!(
            file.merge(&argv(&["swarmer", "-T", "c"]), on_command_line),
            argv(&["swarmer", "--users=3", "-T", "c"])
        );
        assert_eq!(
            file.merge(&argv(&["swarmer", "demo", "-T", "c"]), |_| false),
            argv(&["swarmer", "demo", "--tags=a", "--tags=b", "--users=3", "-T", "c"])
        );
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let err = args("usres = 3", &[]).unwrap_err();
        assert_eq!(err, "swarmer.toml: unknown option 'usres' (did you mean 'users'?)");
        assert!(args("users = ", &[]).unwrap_err().starts_with("swarmer.toml:"));
    }

    #[test]
    fn switches_take_only_toml_booleans() {
        assert_eq!(
            err("headless = \"yes\""),
            "swarmer.toml: headless: expected a boolean (true or false), got the string \"yes\""
        );
        assert_eq!(
            err("headless = 1"),
            "swarmer.toml: headless: expected a boolean (true or false), got the integer 1"
        );
        assert_eq!(
            err("reset_stats = [true]"),
            "swarmer.toml: reset_stats: expected a boolean (true or false), got a list"
        );
    }

    #[test]
    fn numeric_options_take_only_toml_numbers() {
        assert_eq!(err("spawn-rate = true"), "swarmer.toml: spawn-rate: expected a number, got the boolean true");
        assert_eq!(err("spawn-rate = \"2\""), "swarmer.toml: spawn-rate: expected a number, got the string \"2\"");
        assert_eq!(err("users = 2.5"), "swarmer.toml: users: expected a non-negative integer, got the number 2.5");
        assert_eq!(err("users = [1, 2]"), "swarmer.toml: users: expected a non-negative integer, got a list");
        assert_eq!(parsed("spawn-rate = 3").spawn_rate, 3.0);
        // A rate is a number, or text with its time unit.
        assert_eq!(parsed("arrival-rate = 50").arrival_rate, Some(crate::args::Rate(50.0)));
        assert_eq!(parsed("arrival-rate = \"600/m\"").arrival_rate, Some(crate::args::Rate(10.0)));
        assert!(err("arrival-rate = true").contains("arrival-rate: expected a number of iterations per second"));
    }

    #[test]
    fn negative_numbers_are_refused_or_passed_as_values() {
        assert_eq!(err("users = -5"), "swarmer.toml: users: expected a non-negative integer, got the integer -5");
        assert_eq!(
            err("web-port = 70000"),
            "swarmer.toml: web-port: expected an integer from 0 to 65535, got the integer 70000"
        );
        assert_eq!(
            err("run-time = -5"),
            "swarmer.toml: run-time: expected a non-negative number of seconds or a time span string like \"1h30m\", got the integer -5"
        );
        // Signed options take a negative number as their value, not as a flag.
        assert_eq!(parsed("exit-code-on-error = -3").exit_code_on_error, -3);
        // A negative rate reaches the parser that names the flag.
        let argv = ["swarmer".to_owned()].into_iter().chain(args("spawn-rate = -1.5", &[]).unwrap());
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("'-1.5' for '--spawn-rate") && err.contains("expected a positive number"), "{err}");
    }

    #[test]
    fn strings_starting_with_a_dash_are_values_not_flags() {
        let run = parsed("host = \"-x\"\ntags = [\"-a\", \"b\"]\ncsv = \"--json\"\nlogfile = \"-\"");
        assert_eq!(run.host.as_deref(), Some("-x"));
        assert_eq!(run.tags, Some(vec!["-a".to_owned(), "b".to_owned()]));
        assert_eq!(run.csv.as_deref(), Some("--json"));
        assert!(!run.json, "--json came only as --csv's value");
        assert_eq!(run.logfile, Some(PathBuf::from("-")));
    }

    #[test]
    fn string_options_take_only_toml_strings_or_one_of_their_values() {
        assert_eq!(err("host = 5"), "swarmer.toml: host: expected a string, got the integer 5");
        assert_eq!(err("host = true"), "swarmer.toml: host: expected a string, got the boolean true");
        assert_eq!(err("tags = [\"a\", 1]"), "swarmer.toml: tags: expected a string, got the integer 1 in the list");
        assert_eq!(
            err("http-version = 3"),
            "swarmer.toml: http-version: expected one of \"auto\", \"1\", \"2\", got the integer 3"
        );
        assert_eq!(parsed("http-version = 2").http_version, swarmer_engine::HttpVersionPreference::Http2Only);
        assert_eq!(
            parsed("run-time = \"1m30s\"\nstop-timeout = 2.5").run_time,
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parsed("ca-cert = [\"a.pem\", \"b.pem\"]").ca_cert,
            [PathBuf::from("a.pem"), PathBuf::from("b.pem")]
        );
        assert_eq!(err("help = true"), "swarmer.toml: help: cannot be set in a config file");
    }
}
