//! Log output: `-L/--loglevel` and `--logfile`, on standard error by default
//! (standard output stays free for `--json`).

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::EnvFilter;

/// Install the global logger. Errors name the log file that failed.
pub fn init(level: &str, logfile: Option<&Path>) -> Result<(), String> {
    let level = match level {
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        _ => "error",
    };
    let filter = EnvFilter::new(format!("warn,swarmer={level},swarmer_engine={level},swarmer_http={level}"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result = match logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--logfile {}: {e}", path.display()))?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).try_init()
        }
        None => builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).try_init(),
    };
    // A logger already installed (tests calling twice) is fine.
    let _ = result;
    Ok(())
}
