//! Log output: `-L/--loglevel` and `--logfile`, on standard error by default
//! (standard output stays free for `--json`).

use std::io::IsTerminal;
use std::path::Path;

use swarmer_web::LogBuffer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Install the global logger; every line also goes to `logs` (the web
/// UI's `/logs`). Errors name the log file that failed.
pub fn init(level: &str, logfile: Option<&Path>, logs: &LogBuffer) -> Result<(), String> {
    let level = match level {
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        _ => "error",
    };
    let filter = EnvFilter::new(format!(
        "warn,swarmer={level},swarmer_engine={level},swarmer_http={level},swarmer_lua={level},swarmer_web={level}"
    ));
    // A log line that cannot be written (standard error closed with the
    // terminal, after a SIGHUP) is dropped: by default the subscriber
    // reports it with `eprintln!`, which panics on the same closed stream.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).log_internal_errors(false);
    let result = match logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--logfile {}: {e}", path.display()))?;
            let buffer = logs.clone();
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(file).and(move || buffer.clone())).try_init()
        }
        None => {
            let buffer = logs.clone();
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr.and(move || buffer.clone()))
                .try_init()
        }
    };
    // A logger already installed (tests calling twice) is fine.
    let _ = result;
    Ok(())
}
