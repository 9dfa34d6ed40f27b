//! A headless run: start the runner, ramp, print the table every two
//! seconds, write CSV every second, stop at `--run-time`, Ctrl-C, SIGTERM or
//! a `StopTest`, then collect the last statistics from every shard and write
//! every report. Nothing recorded is lost on a graceful stop.

use std::time::Duration;

use swarmer_engine::{LocalRunner, Plan, RunnerEvent, RunnerOptions};
use swarmer_stats::unix_now;

use crate::args::RunArgs;
use crate::outputs::{self, CsvOutput};

/// Console table interval (Locust's `CONSOLE_STATS_INTERVAL_SEC`).
const CONSOLE_INTERVAL: Duration = Duration::from_secs(2);
/// CSV interval (Locust's `CSV_STATS_INTERVAL_SEC`).
const CSV_INTERVAL: Duration = Duration::from_secs(1);

/// Why the run ended.
#[derive(Debug, PartialEq, Eq)]
enum EndReason {
    RunTime,
    Signal(&'static str),
    TestStopped,
}

/// Run the test; returns the process exit code.
pub async fn run(plan: Plan, args: &RunArgs, options: RunnerOptions) -> Result<i32, String> {
    let mut csv = match &args.csv {
        Some(prefix) => Some(CsvOutput::create(prefix, args.csv_full_history)?),
        None => None,
    };
    let handle = LocalRunner::start(plan, options).await?;
    let mut events = handle.subscribe();
    match args.run_time.filter(|d| !d.is_zero()) {
        Some(d) => tracing::info!("Run time limit set to {} seconds", d.as_secs()),
        None => tracing::info!("No run time limit set, use CTRL+C to interrupt"),
    }
    let deadline = args.run_time.filter(|d| !d.is_zero()).map(|d| tokio::time::Instant::now() + d);
    handle.start(args.users, args.spawn_rate);

    let mut console_tick = tokio::time::interval(CONSOLE_INTERVAL);
    console_tick.tick().await;
    let mut csv_tick = tokio::time::interval(CSV_INTERVAL);
    let mut terminate = signal_stream(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal_stream(tokio::signal::unix::SignalKind::interrupt())?;
    let print_live = !args.only_summary;

    let reason = loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = until_deadline => break EndReason::RunTime,
            _ = terminate.recv() => break EndReason::Signal("SIGTERM"),
            _ = interrupt.recv() => break EndReason::Signal("SIGINT"),
            event = events.recv() => {
                if let Ok(RunnerEvent::TestStopped) = event {
                    break EndReason::TestStopped;
                }
            }
            _ = console_tick.tick(), if print_live => {
                if let Ok(store) = handle.stats().lock() {
                    outputs::print_live(&store, unix_now());
                }
            }
            _ = csv_tick.tick(), if csv.is_some() => {
                if let (Some(out), Ok(store)) = (csv.as_mut(), handle.stats().lock())
                    && let Err(e) = out.tick(&store, unix_now())
                {
                    tracing::error!("{e}");
                }
            }
        }
    };
    match reason {
        EndReason::RunTime => tracing::info!("--run-time limit reached, shutting down"),
        EndReason::Signal(name) => tracing::info!("Got {name} signal, stopping users and writing reports"),
        EndReason::TestStopped => tracing::info!("The test was stopped, shutting down"),
    }
    // A second signal while shutting down still lets the shards flush: the
    // quit below collects their last deltas before returning.
    handle.quit().await;

    let store = handle.stats().lock().map_err(|_| "statistics lock poisoned".to_string())?;
    let now = unix_now();
    let mut problems = Vec::new();
    if let Some(out) = csv.as_mut()
        && let Err(e) = out.tick(&store, now)
    {
        problems.push(e);
    }
    if args.json {
        outputs::print_json(&store);
    }
    if let Some(name) = &args.json_file
        && let Err(e) = outputs::write_json_file(&store, name)
    {
        problems.push(e);
    }
    outputs::print_summary(&store, now);
    for p in &problems {
        tracing::error!("{p}");
    }
    let code = if store.stats.error_count() > 0 { args.exit_code_on_error } else { 0 };
    let code = if problems.is_empty() { code } else { code.max(1) };
    tracing::info!("Shutting down (exit code {code})");
    Ok(code)
}

fn signal_stream(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(kind).map_err(|e| format!("could not listen for signals: {e}"))
}
