//! Log output: `-L/--loglevel` and `--logfile`, on standard error by default
//! (standard output stays free for `--json`). `RUST_LOG` directives refine
//! the level (`RUST_LOG=swarmer_http=debug`). Each line names the thread it
//! comes from (`swarmer-shard-N` for a shard) and, in a distributed run,
//! the node (`[worker host_pid_id]`, `[master]`).

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogConfig;

/// The node this process is in a distributed run, shown on every line.
static NODE: OnceLock<String> = OnceLock::new();

/// Name this process's node on every log line from now on (once).
pub fn set_node(node: impl Into<String>) {
    let _ = NODE.set(node.into());
}

/// The default line format, after the node's name.
struct WithNode(Format);

impl<S, N> FormatEvent<S, N> for WithNode
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if let Some(node) = NODE.get() {
            write!(writer, "[{node}] ")?;
        }
        self.0.format_event(ctx, writer, event)
    }
}

/// The filter: `level` for Swarmer's crates, warnings from the others,
/// then `RUST_LOG`'s directives (later ones win for the targets they name).
fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, String> {
    let crates = [
        "swarmer",
        "swarmer_engine",
        "swarmer_http",
        "swarmer_lua",
        "swarmer_web",
        "swarmer_cluster",
        "swarmer_report",
    ];
    let mut directives = String::from("warn");
    for name in crates {
        directives.push_str(&format!(",{name}={level}"));
    }
    if let Some(extra) = rust_log.map(str::trim).filter(|d| !d.is_empty()) {
        directives.push(',');
        directives.push_str(extra);
    }
    EnvFilter::try_new(&directives).map_err(|e| format!("RUST_LOG={}: {e}", rust_log.unwrap_or_default()))
}

/// Install the global logger; every line also goes to `logs` (the web
/// UI's `/logs`). Errors name the log file that failed.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let logs = &config.lines;
    let logfile = config.file.as_deref();
    let filter = filter(config.level.directive(), std::env::var("RUST_LOG").ok().as_deref())?;
    // A log line that cannot be written (standard error closed with the
    // terminal, after a SIGHUP) is dropped: by default the subscriber
    // reports it with `eprintln!`, which panics on the same closed stream.
    let format = WithNode(Format::default().with_target(true).with_thread_names(true));
    let ansi = logfile.is_none() && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_ansi(ansi)
        .event_format(format);
    let buffer = logs.clone();
    let result = match logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--logfile {}: {e}", path.display()))?;
            builder.with_writer(std::sync::Mutex::new(file).and(move || buffer.clone())).try_init()
        }
        None => builder.with_writer(std::io::stderr.and(move || buffer.clone())).try_init(),
    };
    // A logger already installed (tests calling twice) is fine.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_refines_the_level_and_a_bad_directive_is_named() {
        let quiet = filter("error", None).unwrap().to_string();
        assert!(quiet.contains("swarmer_http=error"), "{quiet}");
        let refined = filter("error", Some("swarmer_http=debug")).unwrap().to_string();
        assert!(refined.contains("swarmer_http=debug"), "{refined}");
        let error = filter("error", Some("swarmer_http=loud")).unwrap_err();
        assert!(error.starts_with("RUST_LOG=swarmer_http=loud"), "{error}");
    }
}
