//! The `swarmer` binary as a user runs it: real processes, a real target.

// The tests send signals to the processes they start (libc::kill).
#![allow(unsafe_code)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use swarmer_target::{DemoTarget, TargetOptions};

fn swarmer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    c.env_remove("SWARMER_USERS").env("NO_COLOR", "1");
    c
}

fn target(options: TargetOptions) -> DemoTarget {
    DemoTarget::spawn("127.0.0.1:0", options, 1).unwrap()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("swarmer runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `source` written as `plan.lua` in `dir`.
fn plan_file(dir: &Path, source: &str) -> std::path::PathBuf {
    let plan = dir.join("plan.lua");
    std::fs::write(&plan, source).unwrap();
    plan
}

fn first_line_with_ending(path: &Path) -> String {
    let content = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let end = content.find("\r\n").expect("CRLF line endings") + 2;
    content[..end].to_owned()
}

#[test]
fn csv_files_have_locust_names_and_headers_byte_for_byte() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("run");
    let out = run(swarmer()
        .args(["-f", "builtin:hello", "--headless", "-u", "2", "-r", "100", "-t", "4s", "--shards", "2"])
        .args(["-H", &t.url(), "--csv", prefix.to_str().unwrap(), "--only-summary"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let p = |suffix: &str| dir.path().join(format!("run_{suffix}.csv"));
    assert_eq!(
        first_line_with_ending(&p("stats")),
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
         Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,\
         99.99%,100%\r\n"
    );
    assert_eq!(
        first_line_with_ending(&p("stats_history")),
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,\
         Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,\
         Total Min Response Time,Total Max Response Time,Total Average Content Size\r\n"
    );
    assert_eq!(first_line_with_ending(&p("failures")), "Method,Name,Error,Occurrences,First Seen,Last Seen\r\n");
    assert_eq!(first_line_with_ending(&p("exceptions")), "Count,Message,Traceback,Nodes\r\n");
    let stats = std::fs::read_to_string(p("stats")).unwrap();
    let rows: Vec<&str> = stats.lines().collect();
    assert!(rows[1].starts_with("GET,/,"), "{stats}");
    assert!(rows[2].starts_with(",Aggregated,"), "{stats}");
    let count: u64 = rows[2].split(',').nth(2).unwrap().parse().unwrap();
    assert!(count > 100, "{count} requests in 4 s");
    let history = std::fs::read_to_string(p("stats_history")).unwrap();
    // Every shard's requests up to each row. Lumps are a step near 0 next
    // to a double one; other tests share the machine.
    common::assert_history_is_even(&history, 2, 0.75);
}

#[test]
fn unknown_options_exit_2_with_a_suggestion() {
    let out = run(swarmer().args(["--usres", "3"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--usres") && err.contains("--users"), "{err}");
}

#[test]
fn invalid_values_name_the_flag() {
    let out = run(swarmer().args(["-f", "builtin:hello", "-t", "5x"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--run-time") && err.contains("expected e.g. 20, 20s"), "{err}");

    let out = run(swarmer().args(["-f", "builtin:hello", "--memory-limit", "lots"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--memory-limit") && err.contains("expected a size"), "{err}");
    let out = run(swarmer().args(["-f", "builtin:hello", "--memory-limit", "0"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--memory-limit: at least 16MiB"), "{err}");

    let out = run(swarmer().args(["-f", "builtin:hello", "--csv-full-history"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--csv"), "{}", text(&out.stderr));

    let out = run(swarmer().args(["-f", "builtin:hello", "--headless", "-H", "http://127.0.0.1:9", "-r", "0"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("'0' for '--spawn-rate") && err.contains("expected a positive number"), "{err}");
}

/// `swarmer ARGS` with `VAR=VALUE` in its environment, refused as a usage
/// error; its standard error.
fn refused_with_env(var: &str, value: &str, args: &[&str]) -> String {
    let out = run(swarmer().env(var, value).args(args));
    assert_eq!(out.status.code(), Some(2), "{var}={value} swarmer {args:?}: {}", text(&out.stderr));
    text(&out.stderr)
}

#[test]
fn invalid_values_from_the_environment_name_the_variable() {
    let headless = ["-f", "builtin:hello", "--headless", "-H", "http://127.0.0.1:9", "-t", "1s"];
    assert_eq!(
        refused_with_env("SWARMER_USERS", "abc", &headless),
        "swarmer: error: invalid value \"abc\" in environment variable SWARMER_USERS for --users: \
         invalid digit found in string\n"
    );
    assert_eq!(
        refused_with_env("SWARMER_SPAWN_RATE", "-3", &headless),
        "swarmer: error: invalid value \"-3\" in environment variable SWARMER_SPAWN_RATE for --spawn-rate: \
         expected a positive number of users per second\n"
    );
    let list = ["-f", "builtin:hello", "--list"];
    assert_eq!(
        refused_with_env("SWARMER_HEADLESS", "maybe", &list),
        "swarmer: error: invalid value \"maybe\" in environment variable SWARMER_HEADLESS for --headless: \
         expected one of \"true\", \"false\"\n"
    );
    assert_eq!(
        refused_with_env("SWARMER_HTTP_VERSION", "3", &list),
        "swarmer: error: invalid value \"3\" in environment variable SWARMER_HTTP_VERSION for --http-version: \
         expected one of \"auto\", \"1\", \"2\"\n"
    );
    let err = refused_with_env("SWARMER_CONNECT_TIMEOUT", "1e300", &list);
    assert!(err.contains("environment variable SWARMER_CONNECT_TIMEOUT for --connect-timeout: too many"), "{err}");
    let err = refused_with_env("SWARMER_RUN_TIME", "soon", &["demo"]);
    assert!(
        err.contains("\"soon\" in environment variable SWARMER_RUN_TIME for --run-time: invalid time span"),
        "{err}"
    );
    let err = refused_with_env("SWARMER_MASTER_TIMEOUT", "0", &["--worker", "--master-port", "9"]);
    assert!(err.contains("SWARMER_MASTER_TIMEOUT for --master-timeout: expected a positive number"), "{err}");

    // The command line wins, so the environment's bad value is not read.
    let out = run(swarmer().env("SWARMER_USERS", "abc").args(["-f", "builtin:hello", "-u", "2", "--list"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A bad value on the command line is clap's own error, naming the flag.
    let err = refused_with_env("SWARMER_USERS", "abc", &["-f", "builtin:hello", "-u", "x", "--list"]);
    assert!(err.contains("invalid value 'x' for '--users <USERS>'") && !err.contains("SWARMER_USERS"), "{err}");
}

#[test]
fn plans_that_cannot_be_loaded_are_exit_2() {
    let out = run(swarmer().args(["-f", "/no/such/plan.lua", "--headless"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/no/such/plan.lua: no such plan file"), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.lua");
    std::fs::write(
        &bad,
        "local s = require('swarmer')
s.user('A', {
  tasks = { function(self) self.client:get('/') end end },
})
",
    )
    .unwrap();
    let t = target(TargetOptions::default());
    let out = run(swarmer().args(["-f", bad.to_str().unwrap(), "--headless", "-t", "1s", "-H", &t.url()]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.lua:3:") && !err.contains("Aggregated"), "exit before any load: {err}");
    let out = run(swarmer().args(["-f", "builtin:nope"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("builtin:seed"), "{}", text(&out.stderr));
    let out = run(swarmer().args(["-f", "builtin:seed", "--headless", "NoSuchUser"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Unknown User(s): NoSuchUser"), "{}", text(&out.stderr));
    let out = run(swarmer().args(["-f", "builtin:seed", "--headless", "-t", "1s"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--host"), "{}", text(&out.stderr));
}

#[test]
fn a_lua_plan_runs_from_the_command_line() {
    let t = target(TargetOptions::default());
    let plan = format!("{}/../../examples/lua/random_query/plan.lua", env!("CARGO_MANIFEST_DIR"));
    let out = run(swarmer()
        .args(["-f", &plan, "--headless", "-u", "2", "-r", "10", "-t", "1s", "--json", "--only-summary"])
        .args(["-H", &t.url()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "/index.html?ok=[random]");
    let out = run(swarmer().args(["-f", &plan, "--list"]));
    assert_eq!(text(&out.stdout), "Available Users:\n    QuickstartUser\n");
}

#[test]
fn list_and_task_ratio_describe_the_plan() {
    let out = run(swarmer().args(["-f", "builtin:seed", "--list"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "Available Users:\n    WebsiteUser\n    QuickstartUser\n");
    let out = run(swarmer().args(["-f", "builtin:seed", "--show-task-ratio", "WebsiteUser"]));
    let ratio = text(&out.stdout);
    assert!(ratio.contains("- index: 66.7%") && ratio.contains("- profile: 33.3%"), "{ratio}");
    assert!(!ratio.contains("QuickstartUser"), "class selection applies: {ratio}");
}

/// The users the run ramped to, from its log (the history CSV's rows
/// depend on the machine's pace; the log line does not).
fn peak_users(args: &[&str], env: &[(&str, &str)], dir: &Path, host: &str) -> u64 {
    let mut cmd = swarmer();
    cmd.current_dir(dir)
        .args(["-f", "builtin:hello", "--headless", "-r", "100", "-t", "1s", "--shards", "1", "--only-summary"])
        .args(["-H", host])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let line = log.lines().find(|l| l.contains("Ramping to ")).unwrap_or_else(|| panic!("no ramp: {log}"));
    let after = &line[line.find("Ramping to ").unwrap() + "Ramping to ".len()..];
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn config_file_then_environment_then_command_line() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("swarmer.toml"), "users = 3\n").unwrap();
    assert_eq!(peak_users(&[], &[], dir.path(), &t.url()), 3, "file");
    assert_eq!(peak_users(&[], &[("SWARMER_USERS", "2")], dir.path(), &t.url()), 2, "env beats file");
    assert_eq!(peak_users(&["-u", "4"], &[("SWARMER_USERS", "2")], dir.path(), &t.url()), 4, "CLI beats env");
    std::fs::write(dir.path().join("other.toml"), "users = 5\n").unwrap();
    assert_eq!(peak_users(&["--config", "other.toml"], &[], dir.path(), &t.url()), 5, "--config FILE");

    std::fs::write(dir.path().join("swarmer.toml"), "usres = 3\n").unwrap();
    let out = run(swarmer().current_dir(dir.path()).args(["-f", "builtin:hello", "--list"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown option 'usres' (did you mean 'users'?)"), "{}", text(&out.stderr));
}

/// The names of the tasks `swarmer -f plan.lua --show-task-ratio-json
/// ARGS` would run, in `dir` (where its config file is).
fn tasks_run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = swarmer();
    cmd.current_dir(dir).env_remove("SWARMER_TAGS").args(["-f", "plan.lua", "--show-task-ratio-json"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["total"]["U"]["tasks"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn a_list_from_the_command_line_or_environment_replaces_the_config_files_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.lua"),
        "local swarmer = require('swarmer')\n\
         swarmer.add_option{ name = 'flavour', help = 'unused' }\n\
         local function task(tag) return swarmer.task{ name = tag, tags = { tag }, run = function() end } end\n\
         swarmer.user('U', { tasks = { task('a'), task('b'), task('c'), task('d') } })\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("swarmer.toml"), "tags = [\"a\", \"b\", \"c\"]\nexclude-tags = [\"b\"]\n").unwrap();
    let tasks = |args: &[&str], env: &[(&str, &str)]| tasks_run(dir.path(), args, env);
    assert_eq!(tasks(&[], &[]), ["a", "c"], "the file's lists");
    assert_eq!(tasks(&["-T", "c", "d"], &[]), ["c", "d"], "--tags replaces the file's tags");
    assert_eq!(tasks(&["--tags=d"], &[]), ["d"], "--tags=VALUE too");
    assert_eq!(tasks(&["-E", "c"], &[]), ["a", "b"], "--exclude-tags replaces the file's");
    assert_eq!(tasks(&["--flavour", "x", "-T", "d"], &[]), ["d"], "after an option of the plan's");
    assert_eq!(tasks(&[], &[("SWARMER_TAGS", "b d")]), ["d"], "the environment replaces the file's tags");
    assert_eq!(tasks(&["-T", "a"], &[("SWARMER_TAGS", "b d")]), ["a"], "the command line replaces the environment's");
}

#[test]
fn config_file_values_of_the_wrong_type_name_the_key_and_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("swarmer.toml");
    let refused = |toml: &str| {
        std::fs::write(&file, toml).unwrap();
        let out = run(swarmer().current_dir(dir.path()).args(["-f", "builtin:hello", "--list"]));
        assert_eq!(out.status.code(), Some(2), "{toml}: {}", text(&out.stderr));
        text(&out.stderr)
    };
    assert_eq!(
        refused("headless = \"yes\"\n"),
        "swarmer: error: swarmer.toml: headless: expected a boolean (true or false), got the string \"yes\"\n"
    );
    assert_eq!(
        refused("spawn-rate = true\n"),
        "swarmer: error: swarmer.toml: spawn-rate: expected a number, got the boolean true\n"
    );
    assert_eq!(
        refused("users = -5\n"),
        "swarmer: error: swarmer.toml: users: expected a non-negative integer, got the integer -5\n"
    );
    // A string starting with '-' is the option's value, not a flag.
    std::fs::write(&file, "host = \"-x\"\nexit-code-on-error = -1\n").unwrap();
    let out = run(swarmer().current_dir(dir.path()).args(["-f", "builtin:hello", "--list"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Every `--flag` the help text mentions is one `swarmer` defines.
#[test]
fn help_mentions_only_flags_that_exist() {
    for command in [&["--help"][..], &["demo", "--help"], &["target", "--help"]] {
        let out = run(swarmer().args(command));
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        // Option lines are "  -x, --name …" or "      --name …";
        // descriptions are indented further.
        let defined: Vec<&str> = help
            .lines()
            .map(|line| (line.len() - line.trim_start().len(), line.trim_start()))
            .filter(|(indent, line)| *indent <= 6 && line.starts_with('-'))
            .map(|(_, line)| line)
            .filter_map(|line| line.split_whitespace().take(2).find(|w| w.starts_with("--")))
            .map(|w| w.trim_end_matches(','))
            .collect();
        assert!(defined.contains(&"--headless") || command[0] == "target", "{help}");
        let mentioned = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.strip_prefix("--").is_some_and(|name| name.starts_with(|c: char| c.is_ascii_lowercase())));
        for flag in mentioned {
            assert!(defined.contains(&flag), "`swarmer {}` mentions {flag}, which is no flag", command.join(" "));
        }
    }
}

#[test]
fn failures_set_the_exit_code_and_are_reported() {
    let t = target(TargetOptions { error_rate: 1.0, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("f");
    let out = run(swarmer()
        .args(["-f", "builtin:hello", "--headless", "-u", "1", "-r", "10", "-t", "1s", "--exit-code-on-error", "3"])
        .args(["-H", &t.url(), "--csv", prefix.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Error report") && err.contains("GET /: HTTPError('500 Server Error"), "{err}");
    let failures = std::fs::read_to_string(dir.path().join("f_failures.csv")).unwrap();
    assert!(
        failures
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("GET,/,HTTPError('500 Server Error: Internal Server Error for url: /'),"),
        "{failures}"
    );
}

#[test]
fn json_goes_to_stdout_with_locust_fields() {
    let t = target(TargetOptions::default());
    let out = run(swarmer()
        .args(["-f", "builtin:hello", "--headless", "-u", "1", "-r", "10", "-t", "1s", "--json", "--only-summary"])
        .args(["-H", &t.url()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is only JSON");
    assert_eq!(v[0]["name"], "/");
    assert_eq!(v[0]["method"], "GET");
    assert!(v[0]["num_requests"].as_u64().unwrap() > 10);
}

#[test]
fn sigterm_stops_gracefully_and_loses_no_statistics() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("term");
    let json = dir.path().join("term");
    let child = swarmer()
        .args(["-f", "builtin:hello", "--headless", "-u", "4", "-r", "100", "-t", "60s", "--shards", "2"])
        .args(["-H", &t.url(), "--csv", prefix.to_str().unwrap(), "--json-file", json.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "stopped promptly");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Got SIGTERM signal"));
    let stats = std::fs::read_to_string(dir.path().join("term_stats.csv")).unwrap();
    let aggregated: u64 = stats.lines().last().unwrap().split(',').nth(2).unwrap().parse().unwrap();
    let entries: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("term.json")).unwrap()).unwrap();
    let json_total: u64 = entries.as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum();
    assert!(aggregated > 100);
    assert_eq!(aggregated, json_total, "CSV and JSON agree on the final totals");
}

/// The `Aggregated` request count of a `_stats.csv`, once it has one.
fn aggregated_requests(stats_csv: &Path) -> Option<u64> {
    let stats = std::fs::read_to_string(stats_csv).ok()?;
    let last = stats.lines().last()?;
    last.starts_with(",Aggregated,").then(|| last.split(',').nth(2)?.parse().ok())?
}

/// A closed terminal: SIGHUP, and standard output and error gone with it.
/// Without a SIGHUP handler the process dies at once with no reports;
/// with one but printing with `eprintln!`, it panics on the closed stream
/// before writing them.
#[test]
fn sighup_with_the_terminal_gone_stops_gracefully_and_writes_every_report() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("hup");
    let html = dir.path().join("hup.html");
    let mut child = swarmer()
        .args(["-f", "builtin:hello", "--headless", "-u", "2", "-r", "100", "-t", "60s", "--shards", "1"])
        .args(["-H", &t.url(), "--csv", prefix.to_str().unwrap(), "--json-file", prefix.to_str().unwrap()])
        .args(["--html", html.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stats_csv = dir.path().join("hup_stats.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    while aggregated_requests(&stats_csv).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no requests recorded within 30 s");
        assert!(child.try_wait().unwrap().is_none(), "swarmer exited before the signal");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child.stdout.take());
    drop(child.stderr.take());
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGHUP");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status}");
    let csv_total = aggregated_requests(&stats_csv).unwrap();
    assert!(csv_total > 0);
    let history = std::fs::read_to_string(dir.path().join("hup_stats_history.csv")).unwrap();
    assert!(history.lines().count() >= 2, "{history}");
    let entries: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("hup.json")).unwrap()).unwrap();
    let json_total: u64 = entries.as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum();
    assert_eq!(json_total, csv_total, "CSV and JSON agree on the final totals");
    let report = std::fs::read_to_string(&html).unwrap();
    assert!(report.contains("<td class=\"text\">/</td>"), "the HTML report names the request");
}

#[test]
fn demo_runs_the_seed_scenario_against_the_built_in_target() {
    let out = run(swarmer().args(["demo", "-t", "2s", "-u", "4", "-r", "10"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Demo target listening on http://127.0.0.1:"), "{err}");
    assert!(err.contains("/index.html?ok=[random]") && err.contains("POST     /login"), "{err}");
    assert!(err.contains("Response time percentiles"), "{err}");
}

fn fixture(name: &str) -> String {
    format!("{}/../../tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn hello_against(url: &str, extra: &[&str]) -> Output {
    run(swarmer()
        .args(["-f", "builtin:hello", "--headless", "-u", "2", "-r", "10", "-t", "1s", "--only-summary", "--json"])
        .args(["-H", url])
        .args(extra))
}

fn requests_and_failures(out: &Output) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
    let sum = |key: &str| v.as_array().unwrap().iter().map(|e| e[key].as_u64().unwrap()).sum();
    (sum("num_requests"), sum("num_failures"))
}

#[test]
fn tls_flags_verify_trust_and_skip_verification() {
    let tls = swarmer_target::TlsFiles {
        cert: fixture("server.pem").into(),
        key: fixture("server.key").into(),
        client_ca: None,
    };
    let t = target(TargetOptions { tls: Some(tls), ..Default::default() });
    let url = format!("https://localhost:{}", t.addr().port());

    let out = hello_against(&url, &[]);
    assert_eq!(out.status.code(), Some(1), "an unknown CA fails verification");
    let err = text(&out.stderr);
    assert!(err.contains("SSLError"), "{err}");

    let out = hello_against(&url, &["--ca-cert", &fixture("ca.pem")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (requests, failures) = requests_and_failures(&out);
    assert!(requests > 10 && failures == 0);

    let out = hello_against(&url, &["--insecure"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn client_certificates_from_the_command_line() {
    let tls = swarmer_target::TlsFiles {
        cert: fixture("server.pem").into(),
        key: fixture("server.key").into(),
        client_ca: Some(fixture("ca.pem").into()),
    };
    let t = target(TargetOptions { tls: Some(tls), ..Default::default() });
    let url = format!("https://localhost:{}", t.addr().port());
    let out = hello_against(&url, &["--ca-cert", &fixture("ca.pem")]);
    assert_eq!(out.status.code(), Some(1), "the server requires a client certificate");
    let out = hello_against(
        &url,
        &[
            "--ca-cert",
            &fixture("ca.pem"),
            "--client-cert",
            &fixture("client.pem"),
            "--client-key",
            &fixture("client.key"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = hello_against(&url, &["--client-cert", "/no/such.pem", "--client-key", "/no/such.key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/no/such.pem"), "{}", text(&out.stderr));
}

#[test]
fn http2_prior_knowledge_and_alpn_from_the_command_line() {
    let t = target(TargetOptions::default());
    let out = hello_against(&t.url(), &["--http-version", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (requests, failures) = requests_and_failures(&out);
    assert!(requests > 10 && failures == 0);

    let tls = swarmer_target::TlsFiles {
        cert: fixture("server.pem").into(),
        key: fixture("server.key").into(),
        client_ca: None,
    };
    let t = target(TargetOptions { tls: Some(tls), ..Default::default() });
    let url = format!("https://localhost:{}", t.addr().port());
    let out = hello_against(&url, &["--insecure", "--http-version", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_lua_plan_declares_its_own_command_line_options() {
    let plan = format!("{}/../../examples/lua/custom_options/plan.lua", env!("CARGO_MANIFEST_DIR"));
    let out = run(swarmer().args(["-f", &plan, "--help"]));
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("--page <VALUE>") && help.contains("[plan] Path every user requests (default: /)"), "{help}");
    assert!(help.contains("--verbose"), "{help}");

    let t = target(TargetOptions::default());
    let out = run(swarmer()
        .args(["-f", &plan, "--headless", "-u", "1", "-r", "10", "-t", "1s", "--json", "--only-summary"])
        .args(["-H", &t.url(), "--page", "/profile", "--pause", "10"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "/profile");
    // The default pause (0.1 s) would make about ten requests in the second.
    assert_eq!(v[0]["num_requests"], 1, "the pause option applied");

    let out = run(swarmer().args(["-f", &plan, "--headless", "-H", &t.url(), "--pause", "soon"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--pause: expected a number"), "{}", text(&out.stderr));
}

/// Set on the child process only: a test setting this process's
/// environment would race with C's `getenv` on other test threads.
#[test]
fn a_lua_plan_reads_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         local page = os.getenv('SWARMER_TEST_PAGE') or '/missing-env'\n\
         swarmer.user('U', { wait_time = swarmer.constant(10), tasks = { function(self) self.client:get(page) end } })\n",
    );
    let t = target(TargetOptions::default());
    let out = run(swarmer()
        .env("SWARMER_TEST_PAGE", "/profile")
        .args([
            "-f",
            plan.to_str().unwrap(),
            "--headless",
            "-u",
            "1",
            "-r",
            "10",
            "-t",
            "1s",
            "--json",
            "--only-summary",
        ])
        .args(["-H", &t.url()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v[0]["name"].as_str(), v[0]["num_requests"].as_u64()), (Some("/profile"), Some(1)));
}

#[test]
fn autostart_with_autoquit_runs_the_test_serves_the_ui_and_quits_with_reports() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let started = Instant::now();
    let out = run(swarmer()
        .args(["-f", "builtin:hello", "--autostart", "--autoquit", "1", "-u", "2", "-r", "100", "-t", "2s"])
        .args(["--web-host", "127.0.0.1", "-P", "0", "--shards", "1", "-H", &t.url()])
        .args(["--html", html.to_str().unwrap()]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Starting web interface at http://127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("quitting in 1 seconds (--autoquit)"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(3), "ran the 2 s test, then waited 1 s");
    let report = std::fs::read_to_string(&html).unwrap();
    assert!(report.contains("<td class=\"text\">/</td>"), "the report names the request");
}

#[test]
fn web_flags_that_cannot_work_are_refused_before_anything_runs() {
    let out = run(swarmer().args(["-f", "builtin:hello", "-H", "http://127.0.0.1:9", "--autoquit", "5"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--autoquit is only meaningful in combination with --autostart"));
    let out = run(swarmer().env_remove("SWARMER_WEB_AUTH").args([
        "-f",
        "builtin:hello",
        "-H",
        "http://127.0.0.1:9",
        "--web-login",
        "-P",
        "0",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--web-login: give the accounts with --web-login-file"),
        "{}",
        text(&out.stderr)
    );
    let out = run(swarmer().args(["-f", "builtin:hello", "-H", "http://127.0.0.1:9", "--web-base-path", "nope/"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--web-base-path \"nope/\""), "{}", text(&out.stderr));
}

/// An Apache/nginx password file serves `--web-login-file` as it is: a
/// bcrypt line (this one made by glibc's crypt, not by Swarmer's crate)
/// and a `{SHA}` line let their users in, by basic auth, and nobody else.
#[test]
fn an_htpasswd_file_with_bcrypt_and_sha_lines_guards_the_web_ui() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(
        &file,
        "seed:$2y$05$abcdefghijklmnopqrstuuvy/xekwREmTVfHxy5g7pw2qI0RiiN06\nops:{SHA}t6h1/B6iKLkGEEG3zsS9PFKrPOM=\n",
    )
    .unwrap();
    let mut child = swarmer()
        .args(["-f", "builtin:hello", "-H", "http://127.0.0.1:9", "--web-host", "127.0.0.1", "-P", "0"])
        .args(["--web-login", "--web-login-file", file.to_str().unwrap()])
        .env_remove("SWARMER_WEB_AUTH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.split("Starting web interface at http://").nth(1).map(|a| a.trim().to_owned()))
        .expect("the web UI starts");
    let status_with = |credentials: &str| {
        use base64::Engine as _;
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
        write!(stream, "GET /stats/requests HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.split(' ').nth(1).unwrap_or_default().to_owned()
    };
    let statuses: Vec<String> = ["seed:swarm", "seed:swarm", "ops:letmein", "seed:letmein", "nobody:swarm"]
        .iter()
        .map(|c| status_with(c))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(statuses, ["200", "200", "200", "401", "401"]);
    // Each refused basic-auth attempt is in the log, as a form's is.
    let failed = lines.map_while(Result::ok).filter(|line| line.contains("web UI: failed login")).count();
    assert_eq!(failed, 2, "the two wrong attempts are logged");

    // A line it cannot use is refused at start, naming the file and line.
    std::fs::write(&file, "a:s3cret\nb:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\n").unwrap();
    let out = run(swarmer()
        .args(["-f", "builtin:hello", "-H", "http://127.0.0.1:9", "--web-host", "127.0.0.1", "-P", "0"])
        .args(["--web-login-file", file.to_str().unwrap()]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:2: MD5 and SHA-crypt hashes", file.display())), "{stderr}");
}

#[test]
fn max_body_size_turns_larger_responses_into_failures_from_the_flag_and_from_a_plan() {
    let t = target(TargetOptions::default());
    let (requests, failures) = requests_and_failures(&hello_against(&t.url(), &["--max-body-size", "1"]));
    assert!(requests > 0 && failures == requests, "every body is over 1 byte: {requests} requests, {failures} failed");
    let (requests, failures) = requests_and_failures(&hello_against(&t.url(), &[]));
    assert!(requests > 0 && failures == 0, "the default limit lets them through");
    // A plan's request option overrides the flag for that request.
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.user('U', { tasks = { function(self)\n\
           self.client:get('/', { name = 'small', max_body = 1 })\n\
           self.client:get('/', { name = 'default' })\n\
         end } })\n",
    );
    let out = run(swarmer()
        .args(["-f", plan.to_str().unwrap(), "--headless", "-u", "1", "-r", "10", "-t", "1s", "--only-summary"])
        .args(["--json", "-H", &t.url()]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
    let row = |name: &str| v.as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap();
    let (small, default) = (row("small"), row("default"));
    assert_eq!(small["num_failures"], small["num_requests"], "{small}");
    assert_eq!(default["num_failures"], 0, "{default}");
}

/// How many times the top level of a plan ran in a run with `args` (the
/// plan appends a line to a file each time), and the run's log.
fn top_level_runs(args: &[&str]) -> (usize, String) {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("top_level.log");
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         local log = assert(io.open(os.getenv('TOP_LEVEL_LOG'), 'a'))\n\
         log:write(swarmer.runner.role .. '\\n')\n\
         log:close()\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.2), tasks = { function(self) self.client:get('/') end } })\n",
    );
    let out = run(swarmer()
        .env("TOP_LEVEL_LOG", &log)
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "2", "-r", "20", "-t", "1s"])
        .args(["--only-summary"])
        .args(args));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let roles = std::fs::read_to_string(&log).unwrap();
    (roles.lines().count(), format!("{}\n{roles}", text(&out.stderr)))
}

#[test]
fn a_plans_top_level_runs_once_per_process_plus_once_per_shard() {
    // One load describes the plan (its options, classes and tasks) for the
    // whole process, and its VM stays as the process VM, where listeners
    // run; each shard's VM loads it once more.
    assert_eq!(top_level_runs(&["--shards", "2"]).0, 1 + 2);
    assert_eq!(top_level_runs(&["--shards", "1"]).0, 1 + 1);
    // A master (its process VM, where its event listeners run, as Locust's
    // master runs them; no users) and two worker processes of one shard
    // each.
    let (runs, log) = top_level_runs(&["--processes", "2", "--shards", "1", "-L", "INFO"]);
    assert_eq!(runs, 1 + 2 * (1 + 1));
    // Each load knows its role, the first (which finds the plan's options) too.
    assert_eq!(log.lines().filter(|l| *l == "master").count(), 1, "{log}");
    assert_eq!(log.lines().filter(|l| *l == "worker").count(), 4, "{log}");
    // Each log line says which node it comes from.
    assert!(log.lines().any(|l| l.starts_with("[master] ") && l.contains("Cluster master listening")), "{log}");
    assert!(log.lines().any(|l| l.starts_with("[worker ") && l.contains("Connected to the master")), "{log}");
}

#[test]
fn rust_log_directives_refine_the_level_and_a_bad_one_is_a_usage_error() {
    let t = target(TargetOptions::default());
    let run_logged = |rust_log: Option<&str>| {
        let mut cmd = swarmer();
        cmd.args(["-f", "builtin:hello", "-H", &t.url(), "--headless", "-u", "1", "-r", "10", "-t", "1s"]).args([
            "--only-summary",
            "-L",
            "INFO",
        ]);
        match rust_log {
            Some(directives) => cmd.env("RUST_LOG", directives),
            None => cmd.env_remove("RUST_LOG"),
        };
        run(&mut cmd)
    };
    let plain = run_logged(None);
    assert!(text(&plain.stderr).contains("Run time limit set"), "{}", text(&plain.stderr));
    let quieted = run_logged(Some("swarmer::run=off"));
    assert_eq!(quieted.status.code(), Some(0), "{}", text(&quieted.stderr));
    assert!(!text(&quieted.stderr).contains("Run time limit set"), "{}", text(&quieted.stderr));
    let bad = run_logged(Some("swarmer=loud"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("RUST_LOG=swarmer=loud"), "{}", text(&bad.stderr));
}

#[test]
fn a_plan_in_a_subfolder_requires_modules_from_the_working_directory() {
    // Locust puts the working directory on sys.path: `plans/api.lua` may
    // use `common/names.lua` at the project's root.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plans")).unwrap();
    std::fs::create_dir_all(dir.path().join("common")).unwrap();
    std::fs::write(dir.path().join("common/names.lua"), "return { class = 'FromRoot' }").unwrap();
    std::fs::write(
        dir.path().join("plans/api.lua"),
        "local swarmer = require('swarmer')\n\
         local names = require('common.names')\n\
         swarmer.user(names.class, { tasks = { function(self) self.client:get('/') end } })\n",
    )
    .unwrap();
    let out = run(swarmer().current_dir(dir.path()).args(["-f", "plans/api.lua", "--list"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("FromRoot"), "{}", text(&out.stdout));
}

#[test]
fn an_error_in_a_listener_makes_the_run_exit_with_2_as_locust_does() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.events.test_start:add_listener(function() error('setup broke') end)\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.1), tasks = { function(self) self.client:get('/') end } })\n",
    );
    let out = run(swarmer()
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "1", "-r", "10", "-t", "1s"])
        .args(["--only-summary"]));
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("a test_start listener failed") && log.contains("plan.lua:2: setup broke"), "{log}");
}

/// Locust's idiom: a `quitting` listener reads the final statistics and
/// chooses the exit code; `quit` then hears it.
#[test]
fn a_quitting_listener_reads_the_final_statistics_and_chooses_the_exit_code() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require('swarmer')
swarmer.events.quitting:add_listener(function()
  local total = swarmer.stats()
  print(("quitting saw %d requests"):format(total.num_requests))
  if total.fail_ratio > 0.2 then swarmer.runner.process_exit_code = tonumber(os.getenv("CODE")) end
end)
swarmer.events.quit:add_listener(function(code) print("quit " .. code) end)
swarmer.user('U', { wait_time = swarmer.constant(0.01), tasks = {
  function(self) self.client:get('/') end,
  function(self) self.client:get('/status/500') end,
} })
"#,
    );
    for (code, expected) in [("3", 3), ("0", 0)] {
        let prefix = dir.path().join(format!("run{code}"));
        let out = run(swarmer()
            .env("CODE", code)
            .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "4", "-r", "100", "-t", "2s"])
            .args(["--shards", "2", "--only-summary", "--csv", prefix.to_str().unwrap()]));
        let (stdout, log) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(expected), "{stdout}{log}");
        assert!(stdout.contains(&format!("quit {expected}\n")), "{stdout}");
        let csv = std::fs::read_to_string(format!("{}_stats.csv", prefix.display())).unwrap();
        let aggregated = csv.lines().find(|l| l.starts_with(",Aggregated,")).expect("an Aggregated row");
        let total: u64 = aggregated.split(',').nth(2).unwrap().parse().unwrap();
        assert!(total > 20, "{csv}");
        assert!(stdout.contains(&format!("quitting saw {total} requests\n")), "every shard's last requests: {stdout}");
    }
    // Failures without a choice of the plan: --exit-code-on-error.
    std::fs::write(&plan, std::fs::read_to_string(&plan).unwrap().replace("process_exit_code", "not_the_code"))
        .unwrap();
    let out = run(swarmer()
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "2", "-r", "100", "-t", "1s"])
        .args(["--only-summary", "--exit-code-on-error", "5"]));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("quit 5\n"), "{}", text(&out.stdout));
}

/// As Locust's, an exception in a task is logged at error level with its
/// traceback; a task failing hundreds of times a second logs a few a
/// second and says how many it left out.
#[test]
fn exceptions_in_tasks_are_logged_with_their_traceback_a_few_a_second() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         local function broken(self)\n\
           error('boom in a task')\n\
         end\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.001), tasks = { broken } })\n",
    );
    let out = run(swarmer()
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "5", "-r", "100", "-t", "2s"])
        .args(["--shards", "1", "--only-summary"]));
    let log = text(&out.stderr);
    let logged: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") && l.contains("boom in a task")).collect();
    assert!(!logged.is_empty(), "{log}");
    assert!(log.contains("plan.lua:3: in"), "the traceback follows the message: {log}");
    assert!(logged.len() <= 5 * 4, "a few a second: {} lines", logged.len());
    assert!(log.contains("more exceptions in user code were not logged"), "{log}");
}

/// A load shape (Locust's LoadTestShape) drives users, spawn rate and
/// class mix over time, and ends the test; with several, --shape picks.
#[test]
fn a_load_shape_drives_the_test_and_ends_it() {
    let t = target(TargetOptions::default());
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/plans/shape_phases.lua");
    let started = Instant::now();
    let out = run(swarmer()
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-t", "30s", "--shards", "2"])
        .args(["--only-summary", "--shape", "phases"]));
    let log = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(15), "the shape ended the test, not -t");
    assert!(log.contains("The load shape ended the test"), "{log}");
    let spawned: Vec<&str> = log.lines().filter(|l| l.contains("All users spawned")).collect();
    assert!(spawned.iter().any(|l| l.contains(r#"{"Weekday": 4, "Weekend": 0}"#)), "{log}");
    assert!(spawned.iter().any(|l| l.contains(r#"{"Weekday": 2, "Weekend": 4}"#)), "{log}");

    // Two shapes and none chosen, or an unknown one: a clear error, no load.
    for (args, expected) in [
        (vec![], "several shapes (phases, flat): choose one with --shape NAME"),
        (vec!["--shape", "steps"], "invalid value 'steps' for '--shape <VALUE>'\n  [possible values: phases, flat]"),
    ] {
        let served = t.requests_served();
        let out = run(swarmer()
            .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-t", "2s", "--only-summary"])
            .args(args));
        let log = text(&out.stderr);
        assert!(log.contains(expected), "{log}");
        assert_eq!(out.status.code(), Some(2), "{log}");
        assert!(t.requests_served() - served <= 1, "no load ran");
    }
    // --help (and the web UI's start form) name the shapes to choose from.
    let help = text(&run(swarmer().args(["-f", plan.to_str().unwrap(), "--help"])).stdout);
    assert!(help.contains("[possible values: phases, flat]"), "{help}");
}

/// A load asked for while the test stops (a listener of test_stopping, a
/// shape step racing the run time) does not revive it: the run ends.
#[test]
fn set_load_while_the_test_stops_does_not_revive_it() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.events.test_stopping:add_listener(function()\n\
           swarmer.runner.set_load{ users = 5, spawn_rate = 100 }\n\
         end)\n\
         swarmer.user('U', { tasks = { function(self) self.client:get('/delay/800') end } })\n",
    );
    // The users' last requests keep the test stopping for a while.
    let mut child = swarmer()
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "2", "-r", "100", "-t", "1s"])
        .args(["--only-summary", "--stop-timeout", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the run never ended: the stopping test was revived");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// `print` from users on several shards (threads) writes whole lines: two
/// users' lines never share one, as they did with Lua's own `print`,
/// which writes each piece separately. Its arguments are shown as Lua's
/// `print` shows them.
#[test]
fn print_from_many_shards_writes_whole_lines() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require('swarmer')
swarmer.events.test_start:add_listener(function() print("start", 1, 2.0, true, nil) end)
swarmer.user('U', { wait_time = swarmer.constant(0), tasks = { function(self)
  for i = 1, 50 do print("line", swarmer.runner.shard, string.rep("x", 200), i) end
  swarmer.sleep(0.001)
end } })
"#,
    );
    let out = run(swarmer()
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "8", "-r", "100", "-t", "1s"])
        .args(["--shards", "2", "--only-summary"]));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("start\t1\t2.0\ttrue\tnil\n"), "{}", &stdout[..stdout.len().min(500)]);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("xxxxx")).collect();
    assert!(lines.len() > 1000, "{} lines", lines.len());
    let bad: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            let parts: Vec<&str> = l.split('\t').collect();
            parts.len() != 4 || parts[0] != "line" || parts[2].len() != 200 || parts[3].parse::<u32>().is_err()
        })
        .collect();
    assert!(bad.is_empty(), "{} mixed lines, first: {:?}", bad.len(), bad.first());
}

/// A message nobody registered a handler for is logged as a warning, in a
/// local run as in a distributed one (Locust logs it too), not printed.
#[test]
fn a_message_without_a_handler_is_logged() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require('swarmer')
swarmer.events.test_start:add_listener(function() swarmer.send_message("nobody_listens", { n = 1 }) end)
swarmer.user('U', { wait_time = swarmer.constant(0.1), tasks = { function(self) self.client:get('/') end } })
"#,
    );
    let out = run(swarmer()
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "1", "-r", "10", "-t", "1s"])
        .args(["--only-summary"]));
    let (stdout, log) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{log}");
    let warning = log.lines().find(|l| l.contains("no handler for \"nobody_listens\" messages"));
    assert!(warning.is_some_and(|l| l.contains("WARN")), "{log}");
    assert!(!stdout.contains("nobody_listens"), "{stdout}");
}

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// The per-phase totals an HTML report embeds (`<script id="phases-data">`).
fn report_phases(html: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(html).unwrap();
    let open = "<script id=\"phases-data\" type=\"application/json\">";
    let start = text.find(open).expect("the phases' data") + open.len();
    let end = start + text[start..].find("</script>").unwrap();
    serde_json::from_str::<serde_json::Value>(&text[start..end]).unwrap().as_array().unwrap().clone()
}

/// Runs the fixture's two phases (locally, or over a master and 2 worker
/// processes) and checks each phase's users per class and per-class
/// request rates, the marks in the history and the end of the test.
fn phases_follow_their_ratios_and_wait_times(extra: &[&str]) {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (html, prefix) = (dir.path().join("report.html"), dir.path().join("run"));
    let started = Instant::now();
    let out = run(swarmer()
        .args([
            "-f",
            &repo_file("tests/fixtures/plans/phases.lua"),
            "--phases",
            &repo_file("tests/fixtures/phases/swap.toml"),
            "-H",
            &t.url(),
        ])
        .args(["--headless", "--only-summary", "--html", html.to_str().unwrap(), "--csv", prefix.to_str().unwrap()])
        .args(extra));
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(20), "the last phase ended the test: {log}");
    assert_eq!(log.matches("The load shape swap.toml ended the test").count(), 1, "{log}");
    let phases = report_phases(&html);
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fast first", "slow first"], "{phases:?}");
    for (phase, (many, few)) in phases.iter().zip([("Fast", "Slow"), ("Slow", "Fast")]) {
        let users = |class: &str| phase["class_counts"][class].as_u64().unwrap_or(0);
        // 8 users at 3:1, within one user per class.
        assert!(users(many).abs_diff(6) <= 1 && users(few).abs_diff(2) <= 1, "{phase}");
        // The class the phase makes wait 50 ms sends ~20 requests/s per
        // user; the other, at the plan's 1 s, ~1.
        let per_user = |class: &str| {
            let name = format!("GET {}", class.to_lowercase());
            phase["requests_by_name"][&name].as_u64().unwrap_or(0) as f64 / users(class).max(1) as f64
        };
        assert!(per_user(many) > 5.0 * per_user(few).max(1.0), "{phase}");
        let seconds = phase["end"].as_f64().unwrap() - phase["start"].as_f64().unwrap();
        assert!((2.5..4.5).contains(&seconds), "{phase}");
    }
    let marks = std::fs::read_to_string(format!("{}_stats_history_phases.csv", prefix.display())).unwrap();
    assert!(marks.starts_with("Timestamp,Phase\r\n"), "{marks}");
    assert!(marks.contains(",\"fast first\"\r\n") && marks.contains(",\"slow first\"\r\n"), "{marks}");
    let history = std::fs::read_to_string(format!("{}_stats_history.csv", prefix.display())).unwrap();
    assert!(history.starts_with("Timestamp,User Count,"), "Locust's columns stay as they are");
}

#[test]
fn phases_drive_a_local_test() {
    phases_follow_their_ratios_and_wait_times(&["--shards", "2"]);
}

#[test]
fn phases_drive_a_master_and_its_workers() {
    phases_follow_their_ratios_and_wait_times(&["--processes", "2"]);
}

/// A phases file that names a class the plan does not have, or a negative
/// duration, is refused before any load, naming the phase and the field.
#[test]
fn bad_phases_are_refused_before_any_load() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[phases]]\nname = \"w\"\nduration = 5\nusers = 2\n[[phases.user_types]]\nname = \"Fats\"\n",
            "phase 1 (w): the plan has no user class \"Fats\"",
        ),
        ("[[phases]]\nduration = 5\nusers = 2\n[[phases]]\nduration = -1\nusers = 2\n", "phase 2: duration: expected"),
    ];
    for (body, expected) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, body).unwrap();
        for extra in [&[][..], &["--processes", "2"][..]] {
            let out = run(swarmer()
                .args([
                    "-f",
                    &repo_file("tests/fixtures/plans/phases.lua"),
                    "--phases",
                    file.to_str().unwrap(),
                    "-H",
                    &t.url(),
                ])
                .args(["--headless", "--only-summary"])
                .args(extra));
            let log = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{extra:?}: {log}");
            assert!(log.contains(expected), "{extra:?}: {log}");
        }
    }
    assert_eq!(t.connections().accepted(), 0, "no load reached the target");
}

/// `[[phases]]` in swarmer.toml work as `--phases swarmer.toml`.
#[test]
fn phases_in_the_config_file() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("swarmer.toml"),
        "headless = true\nonly-summary = true\n[[phases]]\nname = \"only\"\nduration = \"2s\"\nusers = 3\nspawn_rate = 50\n",
    )
    .unwrap();
    let out = run(swarmer().current_dir(dir.path()).args([
        "-f",
        &repo_file("tests/fixtures/plans/phases.lua"),
        "-H",
        &t.url(),
    ]));
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("Load shape swarmer.toml: only (3 users at 50.00/s)"), "{log}");
    assert!(log.contains("The load shape swarmer.toml ended the test"), "{log}");
}

/// `--threshold` gives a run a verdict: a table after the summary, exit
/// 99 when one is crossed (a name with no requests counts as crossed, so a
/// typo cannot pass a pipeline); `abort` stops the test once crossed; a
/// bad expression is refused before any load; swarmer.toml may list them.
#[test]
fn thresholds_give_the_run_a_verdict_and_may_abort_it() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require('swarmer')
swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = { function(self) self.client:get('/') end } })
"#,
    );
    let base = |extra: &[&str]| {
        run(swarmer()
            .current_dir(dir.path())
            .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "2", "-r", "100"])
            .args(["--only-summary"])
            .args(extra))
    };
    let out = base(&["-t", "2s", "--threshold", "p95<10s", "--threshold", "rps>=1", "--threshold", "fail_ratio<1%"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("3 of 3 thresholds passed"), "{log}");
    assert!(log.lines().any(|l| l.starts_with("rps>=1") && l.ends_with("passed")), "{log}");

    let junit = dir.path().join("junit.xml");
    let junit_path = junit.to_str().unwrap();
    let html = dir.path().join("report.html");
    let html_path = html.to_str().unwrap();
    let out = base(&[
        "-t",
        "2s",
        "--threshold",
        "p95<10s",
        "--threshold",
        "[/typo] p95<1s",
        "--junit",
        junit_path,
        "--html",
        html_path,
    ]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!(log.lines().any(|l| l.starts_with("[/typo] p95<1s") && l.contains("no requests") && l.ends_with("FAILED")));
    assert!(log.contains("1 of 2 thresholds passed"), "{log}");
    // The same verdicts for a CI dashboard.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuite name=\"thresholds\" tests=\"2\" failures=\"1\""), "{xml}");
    assert!(xml.contains("<testcase classname=\"swarmer.thresholds\" name=\"p95&lt;10s\" time=\"0\"/>"), "{xml}");
    assert!(xml.contains("message=\"[/typo] p95&lt;1s: no requests in its scope\""), "{xml}");
    // And in the HTML report.
    let report = std::fs::read_to_string(&html).unwrap();
    assert!(report.contains("<h2>Thresholds</h2>"), "the report judges the thresholds");
    assert!(
        report
            .contains("<tr><td>[/typo] p95&lt;1s</td><td>no requests</td><td><b class=\"failed\">FAILED</b></td></tr>")
    );

    // Crossed at once: the test stops long before its 30 s.
    let started = Instant::now();
    let out = base(&["-t", "30s", "--threshold", "max<0.001ms abort"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!(started.elapsed() < Duration::from_secs(15), "{log}");
    assert!(log.contains("Threshold max<0.001ms abort crossed ("), "{log}");
    // The same on a master, over the statistics its workers send.
    let out = base(&["-t", "30s", "--processes", "2", "--threshold", "max<0.001ms abort"]);
    let log = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!(started.elapsed() < Duration::from_secs(30), "{log}");
    assert!(log.contains("[master]") && log.contains("Threshold max<0.001ms abort crossed ("), "{log}");

    let served = t.requests_served();
    let out = base(&["-t", "2s", "--threshold", "p95<3h"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains(r#"--threshold "p95<3h": "3h": a time is in ms (the default) or s"#), "{log}");
    assert_eq!(t.requests_served(), served, "no load ran");

    std::fs::write(dir.path().join("swarmer.toml"), "threshold = [\"[GET /] requests>=1\", \"requests<1\"]\n").unwrap();
    let out = base(&["-t", "1s"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!(log.contains("1 of 2 thresholds passed"), "{log}");
    std::fs::remove_file(dir.path().join("swarmer.toml")).unwrap();

    // Crossed at once, but not before its grace period.
    let started = Instant::now();
    let out = base(&["-t", "30s", "--threshold", "max<0.001ms abort after 3s"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!((3..15).contains(&started.elapsed().as_secs()), "{:?}: {log}", started.elapsed());
    assert!(log.contains("Threshold max<0.001ms abort after 3s crossed ("), "{log}");
}

/// A threshold over a window judges every trailing window of the run: a
/// stall a whole-run figure dilutes fails it.
#[test]
fn a_threshold_over_a_window_fails_on_a_stall_the_run_hides() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    // After its 60th request, one user waits 1.5 s for one response.
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require('swarmer')
local sent = 0
swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = { function(self)
  sent = sent + 1
  if sent == 60 then self.client:get('/delay/1500', { name = '/' }) else self.client:get('/') end
end } })
"#,
    );
    let out = run(swarmer()
        .current_dir(dir.path())
        .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "2", "-r", "100", "-t", "7s"])
        .args(["--shards", "1", "--only-summary", "--threshold", "avg<15ms over 2s", "--threshold", "avg<15ms"]));
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!(log.lines().any(|l| l.starts_with("avg<15ms over 2s") && l.ends_with("FAILED")), "{log}");
    assert!(log.lines().any(|l| l.starts_with("avg<15ms ") && l.ends_with("passed")), "{log}");
}

/// `--compare` judges this run against an earlier run's JSON: the same
/// target passes, a slower one is a regression (exit 99) shown side by
/// side; a bad baseline stops the run before any load.
#[test]
fn compare_finds_a_regression_against_a_baseline_run() {
    let fast = target(TargetOptions::default());
    let slow = target(TargetOptions { delay: Duration::from_millis(20), ..TargetOptions::default() });
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let run_against = |t: &DemoTarget, extra: &[&str]| {
        run(swarmer()
            .current_dir(dir.path())
            .args(["-f", "builtin:hello", "-H", &t.url(), "--headless", "-u", "2", "-r", "100", "-t", "2s"])
            .args(["--shards", "1", "--only-summary"])
            .args(extra))
    };
    let out = run_against(&fast, &["--json-file", base.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let baseline = base.with_extension("json");
    let baseline = baseline.to_str().unwrap();

    let out = run_against(&fast, &["--compare", baseline, "--compare-tolerance", "p95 +1000%"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains(&format!("Compared with {baseline}")), "{log}");
    assert!(log.contains("0 regression(s) in 1 comparison(s) of p95"), "{log}");

    let out = run_against(&slow, &["--compare", baseline, "--compare-tolerance", "avg +10ms"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("GET /") && l.contains("avg +10ms") && l.ends_with("REGRESSED")),
        "{log}"
    );
    assert!(log.contains("1 regression(s) against the --compare baseline"), "{log}");

    let served = fast.requests_served();
    std::fs::write(dir.path().join("bad.json"), "{\"stats\": []}").unwrap();
    let out = run_against(&fast, &["--compare", "bad.json"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("--compare bad.json: expected the list of entries `--json` writes"), "{log}");
    let out = run_against(&fast, &["--compare", baseline, "--compare-tolerance", "p95 -5%"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("gets worse going up, so write +N"));
    assert_eq!(fast.requests_served(), served, "no load ran");
}

/// A plan brings its own thresholds (`swarmer.threshold`), judged with the
/// command line's; a bad one is refused at its line before any load.
#[test]
fn a_plans_thresholds_are_judged_with_the_command_lines() {
    let t = target(TargetOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require('swarmer')
swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = { function(self) self.client:get('/') end } })
swarmer.threshold("p95<10s")
swarmer.threshold("[/nowhere] requests>=1")
"#,
    );
    let run_plan = |extra: &[&str]| {
        run(swarmer()
            .current_dir(dir.path())
            .args(["-f", plan.to_str().unwrap(), "-H", &t.url(), "--headless", "-u", "1", "-r", "100", "-t", "1s"])
            .args(["--only-summary"])
            .args(extra))
    };
    let out = run_plan(&["--threshold", "requests>=1"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{log}");
    assert!(log.contains("2 of 3 thresholds passed"), "{log}");
    assert!(log.lines().any(|l| l.starts_with("[/nowhere] requests>=1") && l.ends_with("FAILED")), "{log}");

    std::fs::write(&plan, "local swarmer = require('swarmer')\n\nswarmer.threshold('p95<3h')\n").unwrap();
    let served = t.requests_served();
    let out = run_plan(&[]);
    let log = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains(r#"plan.lua:3: swarmer.threshold("p95<3h"): "3h": a time is in ms (the default) or s"#),
        "{log}"
    );
    assert_eq!(t.requests_served(), served, "no load ran");
}

/// The CI example (examples/lua/ci_verdict) as a pipeline runs it: its
/// exit code is the verdict and its JUnit file lists every threshold.
#[test]
fn the_ci_example_passes_and_fails_a_pipeline_by_its_thresholds() {
    let script = format!("{}/../../examples/lua/ci_verdict/run.sh", env!("CARGO_MANIFEST_DIR"));
    let results = std::path::PathBuf::from(&script).with_file_name("results");
    let pipeline = |extra: &[&str]| {
        run(Command::new("bash")
            .arg(&script)
            .args(["-t", "2s"])
            .args(extra)
            .env("SWARMER", env!("CARGO_BIN_EXE_swarmer")))
    };
    let out = pipeline(&[]);
    let log = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("5 of 5 thresholds passed") && log.contains("load test passed"), "{log}");
    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite name=\"thresholds\" tests=\"5\" failures=\"0\""), "{junit}");

    let out = pipeline(&["--threshold", "p95<0.001ms"]);
    let log = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "the pipeline fails: {log}");
    assert!(log.contains("load test FAILED"), "{log}");
    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\"") && junit.contains("p95&lt;0.001ms was "), "{junit}");

    // The arrival-rate job: it passes on a healthy target and fails on
    // one that stalls, by the dropped iterations and the corrected p99,
    // while the measured p95 still passes.
    let arrival = |target_args: &str| {
        run(Command::new("bash")
            .arg(&script)
            .env("SWARMER", env!("CARGO_BIN_EXE_swarmer"))
            .env("CONFIG", "arrival.toml")
            .env("TARGET_ARGS", target_args))
    };
    let out = arrival("");
    let log = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("5 of 5 thresholds passed") && log.contains("Iterations: "), "{log}");
    let out = arrival("--stall 2s:1s");
    let log = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "the pipeline fails: {log}");
    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"2\""), "dropped and corrected_p99: {junit}");
    assert!(junit.contains("dropped&lt;1% was ") && junit.contains("corrected_p99&lt;250ms was "), "{junit}");
    assert!(std::fs::read_to_string(results.join("stats_iterations_history.csv")).is_ok());
}

/// The prediction server over TLS, with the test CA's certificate.
fn tls_predict_server() -> swarmer_target::PredictServer {
    let files = swarmer_target::TlsFiles {
        cert: fixture("server.pem").into(),
        key: fixture("server.key").into(),
        client_ca: None,
    };
    swarmer_target::PredictServer::spawn("127.0.0.1:0", 1, Some(&files)).unwrap()
}

/// gRPC over TLS from a plan trusts what `--ca-cert` trusts, as HTTPS does.
#[test]
fn a_plans_grpc_calls_over_tls_trust_the_ca_cert_given() {
    let grpc = tls_predict_server();
    let dir = tempfile::tempdir().unwrap();
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lua/predict/categorization.proto");
    let plan = plan_file(
        dir.path(),
        &format!(
            "local swarmer = require('swarmer')\nswarmer.grpc.load({:?})\n\
             swarmer.user('G', {{ wait_time = swarmer.constant(0.05), tasks = {{ function(self)\n\
               self.client:grpc('categorization.TextCategorization/GetPrediction', {{ text = 'tls' }})\n\
             end }} }})\n",
            proto.to_string_lossy()
        ),
    );
    let run_with = |extra: &[&str]| {
        let mut cmd = swarmer();
        cmd.args(["-f", plan.to_str().unwrap(), "-H", &grpc.url(), "--headless", "-u", "1", "-t", "1s", "--json"]);
        cmd.args(["--only-summary"]).args(extra);
        let out = run(&mut cmd);
        let stdout = text(&out.stdout);
        let rows: serde_json::Value = serde_json::from_str(&stdout[stdout.find('[').expect("JSON")..]).unwrap();
        let row = rows.as_array().unwrap().iter().find(|r| r["method"] == "grpc").cloned().expect("a grpc row");
        (row["num_requests"].as_u64().unwrap(), row["num_failures"].as_u64().unwrap())
    };
    let (calls, failed) = run_with(&["--ca-cert", &fixture("ca.pem")]);
    assert!(calls >= 5 && failed == 0, "{calls} calls, {failed} failed");
    // Without it the server is not trusted: every call fails, none served.
    let served = grpc.served();
    let (calls, failed) = run_with(&[]);
    assert!(calls >= 1 && failed == calls, "{calls} calls, {failed} failed");
    assert_eq!(grpc.served(), served);
}

/// Server reflection at a plan's top level (before any user, and in the
/// plan's first load, made before the command line is parsed) trusts what
/// `--ca-cert` trusts too.
#[test]
fn reflection_over_tls_at_a_plans_top_level_trusts_the_ca_cert_given() {
    let grpc = tls_predict_server();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        &format!(
            "local swarmer = require('swarmer')\n\
             local services = swarmer.grpc.reflect({host:?})\n\
             swarmer.add_option{{ name = 'text', default = 'x' }}\n\
             swarmer.user('G', {{ wait_time = swarmer.constant(0.05), tasks = {{ function(self)\n\
               self.client:grpc('categorization.TextCategorization/GetPrediction', {{ text = 'tls' }})\n\
             end }} }})\n",
            host = grpc.url()
        ),
    );
    let mut cmd = swarmer();
    cmd.args(["-f", plan.to_str().unwrap(), "-H", &grpc.url(), "--headless", "-u", "1", "-t", "1s", "--json"]);
    // The plan's own option is known only if its first load succeeded.
    cmd.args(["--only-summary", "--ca-cert", &fixture("ca.pem"), "--text", "tls"]);
    let out = run(&mut cmd);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout[stdout.find('[').expect("JSON")..]).unwrap();
    let row = rows.as_array().unwrap().iter().find(|r| r["method"] == "grpc").cloned().expect("a grpc row");
    assert!(row["num_requests"].as_u64().unwrap() >= 5 && row["num_failures"] == 0, "{row}");

    // Without it, the plan's top level is refused, naming the certificate problem.
    let mut cmd = swarmer();
    cmd.args(["-f", plan.to_str().unwrap(), "-H", &grpc.url(), "--headless", "-u", "1", "-t", "1s"]);
    let out = run(&mut cmd);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("swarmer.grpc.reflect") && stderr.contains("UNAVAILABLE"), "{stderr}");
}

/// The WebSocket and SSE example against the demo target, over plain TCP
/// and over TLS (wss, https) trusting `--ca-cert`: every row has its
/// requests and no failures.
#[test]
fn the_live_example_runs_over_plain_and_tls() {
    let plan = format!("{}/../../examples/lua/live/plan.lua", env!("CARGO_MANIFEST_DIR"));
    let plain = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let files = swarmer_target::TlsFiles {
        cert: fixture("server.pem").into(),
        key: fixture("server.key").into(),
        client_ca: None,
    };
    let tls_options = TargetOptions { tls: Some(files), ..Default::default() };
    let tls = DemoTarget::spawn("127.0.0.1:0", tls_options, 1).unwrap();
    let ca = fixture("ca.pem");
    for (host, extra) in [(plain.url(), vec![]), (tls.url(), vec!["--ca-cert", ca.as_str()])] {
        let mut cmd = swarmer();
        cmd.args(["-f", &plan, "-H", &host, "--headless", "-u", "8", "-r", "100", "-t", "2s", "--json"]);
        cmd.args(["--only-summary"]).args(&extra);
        let out = run(&mut cmd);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{host}: {}\n{stdout}", text(&out.stderr));
        let rows: serde_json::Value = serde_json::from_str(&stdout[stdout.find('[').expect("JSON")..]).unwrap();
        let row = |method: &str, name: &str| {
            let found = rows.as_array().unwrap().iter().find(|r| r["method"] == method && r["name"] == name);
            let found = found.unwrap_or_else(|| panic!("{host}: no {method} {name} row in {stdout}"));
            (found["num_requests"].as_u64().unwrap(), found["num_failures"].as_u64().unwrap())
        };
        let (opened, failed) = row("WS", "/ws");
        assert!(opened >= 1 && failed == 0, "{host}: {opened} openings, {failed} failed");
        let (pairs, failed) = row("WSR", "echo");
        assert!(pairs >= 10 && failed == 0, "{host}: {pairs} pairs, {failed} failed");
        let (subscribed, failed) = row("SSE", "/sse");
        assert!(subscribed >= 1 && failed == 0, "{host}: {subscribed} subscriptions, {failed} failed");
        let (events, failed) = row("SSE", "event price");
        assert!(events >= 5 && failed == 0, "{host}: {events} events, {failed} failed");
    }
}

/// The own-protocol example (a Redis-like store over raw TCP, timed by the
/// plan) against the target's key-value server, given as the host
/// (`-H tcp://...`): each command is a `kv` row, none failed, and the server
/// answered as many commands as were recorded.
#[test]
fn the_own_protocol_example_times_each_command() {
    let plan = format!("{}/../../examples/lua/own_protocol/plan.lua", env!("CARGO_MANIFEST_DIR"));
    let kv = swarmer_target::KvServer::spawn("127.0.0.1:0").unwrap();
    let mut cmd = swarmer();
    let host = format!("tcp://{}", kv.addr());
    cmd.args(["-f", &plan, "-H", &host, "--headless", "-u", "4", "-r", "100", "-t", "2s"]);
    cmd.args(["--json", "--only-summary", "--stop-timeout", "5s"]);
    let out = run(&mut cmd);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_str(&stdout[stdout.find('[').expect("JSON")..]).unwrap();
    let mut recorded = 0;
    for name in ["SET", "GET", "INCR"] {
        let row = rows.as_array().unwrap().iter().find(|r| r["method"] == "kv" && r["name"] == name);
        let row = row.unwrap_or_else(|| panic!("no kv {name} row in {stdout}"));
        let (requests, failures) = (row["num_requests"].as_u64().unwrap(), row["num_failures"].as_u64().unwrap());
        assert!(requests >= 5 && failures == 0, "{name}: {requests} requests, {failures} failed");
        recorded += requests;
    }
    assert_eq!(kv.served(), recorded);
}

/// In a container with its own cgroup namespace, the groups above its own
/// are hidden: a `--memory-limit` share is then of the machine's memory,
/// and the user is told so (unless the namespace's root group shows a
/// limit of its own). The namespace is made with `unshare -C`.
#[test]
fn a_memory_share_in_a_cgroup_namespace_says_limits_above_are_hidden() {
    let unshare_works = Command::new("unshare").args(["-C", "true"]).status().is_ok_and(|s| s.success());
    if !unshare_works {
        eprintln!("skipped: `unshare -C` (util-linux, as root) cannot make a cgroup namespace here");
        return;
    }
    let t = target(TargetOptions::default());
    let in_namespace = |limit: &str| {
        run(Command::new("unshare")
            .arg("-C")
            .arg(env!("CARGO_BIN_EXE_swarmer"))
            .args(["-f", "builtin:hello", "--headless", "-u", "1", "-r", "10", "-t", "1s", "--only-summary"])
            .args(["-H", &t.url(), "--memory-limit", limit])
            .env("NO_COLOR", "1"))
    };
    let out = in_namespace("80%");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let root_limit = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .filter_map(|value| value.trim().parse::<u64>().ok())
        .any(|limit| limit < 1 << 60);
    let warned = err.contains("--memory-limit: this process's memory cgroup is the root of its cgroup namespace");
    assert!(warned || root_limit, "a share of the machine's memory, said: {err}");
    // A size is taken as given: nothing to say.
    let sized = in_namespace("4G");
    assert!(!text(&sized.stderr).contains("cgroup namespace"), "{}", text(&sized.stderr));
}
