//! An arrival-rate run as a user runs it: the `swarmer` binary against the
//! demo target, which stalls for 2 s in the middle of a 10 s run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use swarmer_target::{DemoTarget, Stall, TargetOptions};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A stall shows in the corrected figures and the dropped iterations, not
/// in the measured ones; every surface of a headless run carries them and
/// thresholds on them give the verdict (exit 99).
#[test]
fn a_stall_in_an_arrival_rate_run_shows_in_the_corrected_figures_and_the_dropped_iterations() {
    let stall = Stall::starting_in(Duration::from_secs(5), Duration::from_secs(2));
    let target =
        DemoTarget::spawn("127.0.0.1:0", TargetOptions { stall: Some(stall), ..Default::default() }, 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("run");
    let prefix = prefix.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swarmer"))
        .env("NO_COLOR", "1")
        .env_remove("SWARMER_USERS")
        .current_dir(dir.path())
        .args(["-f", "builtin:hello", "-H", &target.url(), "--headless", "--only-summary", "--shards", "1"])
        .args(["--arrival-rate", "200", "-u", "5", "--max-users", "10", "-t", "10s", "--stop-timeout", "5"])
        .args(["--csv", prefix, "--json-file", prefix, "--junit", &format!("{prefix}.xml")])
        .args(["--threshold", "p99<1s", "--threshold", "corrected_p99<1s", "--threshold", "dropped<1%"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "two thresholds crossed:\n{log}");
    assert!(log.contains("1 of 3 thresholds passed"), "{log}");
    assert!(log.contains("Iterations: ") && log.contains("from the intended start"), "{log}");

    let run: Value = serde_json::from_str(&read(Path::new(&format!("{prefix}_run.json")))).unwrap();
    let (started, dropped) =
        (run["iterations"]["started"].as_u64().unwrap(), run["iterations"]["dropped"].as_u64().unwrap());
    assert!((1990..=2010).contains(&(started + dropped)), "10 s at 200/s: {started} + {dropped}");
    assert!(dropped >= 300, "the stall ran the pool dry: {dropped} dropped");
    assert_eq!(run["arrival_rate"].as_str().unwrap(), "200/s (users: 5 pre-allocated, at most 10)");
    let verdicts: Vec<(String, bool)> = run["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["expression"].as_str().unwrap().to_owned(), t["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [("p99<1s".into(), true), ("corrected_p99<1s".into(), false), ("dropped<1%".into(), false)],
        "the measured p99 hides the stall, the corrected one shows it"
    );
    let corrected = run["corrected"].as_array().unwrap();
    let total = corrected.last().unwrap();
    assert_eq!(total["name"], "Aggregated");
    assert!(total["percentiles_exact"]["0.99"].as_f64().unwrap() >= 1000.0, "{total}");

    // Locust's files are as they were; the corrected figures and the
    // iterations have files of their own.
    let stats = read(Path::new(&format!("{prefix}_stats.csv")));
    assert!(!stats.contains("ITER"), "{stats}");
    let corrected_csv = read(Path::new(&format!("{prefix}_corrected_stats.csv")));
    assert!(corrected_csv.lines().any(|l| l.starts_with("GET,/,")), "{corrected_csv}");
    assert!(corrected_csv.lines().any(|l| l.starts_with("ITER,dropped,")), "{corrected_csv}");
    let history = read(Path::new(&format!("{prefix}_iterations_history.csv")));
    assert!(history.starts_with("Timestamp,User Count,Iterations/s,Dropped/s,Total Iterations,Total Dropped\r\n"));
    let last: Vec<u64> = history.lines().last().unwrap().split(',').map(|c| c.parse::<f64>().unwrap() as u64).collect();
    assert!(last[5] > 0 && last[4] + last[5] >= 1800, "{history}");
    let junit = read(Path::new(&format!("{prefix}.xml")));
    assert!(junit.contains("corrected_p99&lt;1s") && junit.contains("<failure"), "{junit}");
}

/// Bad arrival-rate settings are refused before any load, naming the flag.
#[test]
fn bad_arrival_settings_name_the_flag() {
    for (args, expected) in [
        (&["--arrival-rate", "fast"][..], "--arrival-rate"),
        (&["--arrival-rate", "10", "-u", "0"][..], "at least one user"),
        (&["--arrival-rate", "10", "-u", "5", "--max-users", "2"][..], "below the pre-allocated"),
        (&["--arrival-stages", "10s:5"][..], "--arrival-stages: give the starting rate"),
        (&["--max-users", "5"][..], "--max-users: only an arrival-rate test"),
        (&["--arrival-rate", "10", "--arrival-stages", "10s"][..], "DURATION:RATE"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmer"))
            .env_remove("SWARMER_USERS")
            .args(["-f", "builtin:hello", "-H", "http://127.0.0.1:9", "--headless", "-t", "1s"])
            .args(args)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {log}");
        assert!(log.contains(expected), "{args:?}: {log}");
    }
}
