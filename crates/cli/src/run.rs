//! One run, headless or with the web UI, from start to reports and exit
//! code.
//!
//! Headless: start the test at once, stop at `--run-time`, Ctrl-C, SIGTERM,
//! SIGHUP or a `StopTest`. With the web UI: serve it, start a test only when
//! asked (the form, the API, or `--autostart`); a stopped test leaves the UI
//! up until Ctrl-C/SIGTERM/SIGHUP or `--autoquit`. Both print the table
//! every two seconds (the UI only with `--print-stats`), write CSV every
//! second, and at the end collect the last statistics from every shard and
//! write every report. Nothing recorded is lost on a graceful stop.
//!
//! SIGHUP (the terminal closed, the remote shell dropped) is a stop like
//! SIGTERM: the reports are files the user still wants, and the console
//! writes that follow may fail without stopping them.

use std::time::Duration;

use swarmer_engine::threshold_watch::ThresholdWatch;
use swarmer_engine::{LocalRunner, LockExt, Plan, RunnerEvent, RunnerHandle, RunnerState};
use swarmer_stats::{unix_now, until_second_fraction};
use swarmer_web::WebServer;

use crate::cluster_mode;
use crate::config::{ClusterRole, Outputs, RunConfig};
use crate::outputs::{self, CsvOutput};

/// The exit code when a `--threshold` was crossed (k6's), or a
/// `--compare` found a regression.
pub const THRESHOLD_EXIT_CODE: i32 = 99;
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
    AutoQuit,
}

/// Errors of any crate below, as the message the user reads.
pub type RunError = Box<dyn std::error::Error>;

/// Run the test; returns the process exit code.
pub async fn run(plan: Plan, config: RunConfig, program_plan: bool) -> Result<i32, RunError> {
    let RunConfig { runner, test, web, outputs, cluster, plan: plan_spec, plan_files, .. } = config;
    // The plan's own thresholds are judged with the command line's.
    let plan_thresholds = plan.thresholds.clone();
    let shaped = runner.shape.is_some();
    let headless = web.is_none();
    let autostart = web.as_ref().is_some_and(|w| w.autostart);
    let autoquit = web.as_ref().and_then(|w| w.autoquit);
    let mut csv = match &outputs.csv {
        Some(prefix) => Some(CsvOutput::create(prefix, outputs.csv_full_history)?),
        None => None,
    };
    let (handle, master) = match cluster {
        ClusterRole::Master(master_config) => {
            let cluster = cluster_mode::start_master(
                plan,
                plan_spec.as_deref(),
                master_config,
                runner,
                program_plan,
                &plan_files,
            )
            .await?;
            (cluster.master.handle(), Some(cluster))
        }
        _ => (LocalRunner::start(plan, runner).await?, None),
    };
    let web = match web {
        None => None,
        Some(web) => {
            let web = WebServer::start(handle.clone(), web.server).await?;
            tracing::info!("Starting web interface at {}", web.url());
            Some(web)
        }
    };
    let mut events = handle.subscribe();
    // The runner owns the run time: it stops the test when it is up. A
    // headless run then ends; with the UI, the process stays.
    match (&web, test.run_time) {
        (Some(_), _) if !autostart => {}
        (_, None) if shaped => tracing::info!("The load shape ends the test (or CTRL+C)"),
        (_, Some(d)) => tracing::info!("Run time limit set to {} seconds", d.as_secs()),
        (_, None) => tracing::info!("No run time limit set, use CTRL+C to interrupt"),
    }
    if let Some(master) = &master
        && (headless || autostart)
    {
        master.wait_for_workers().await?;
    }
    // As Locust's, the history starts with a row from before the test (no users yet).
    if let Some(out) = csv.as_mut()
        && (headless || autostart)
    {
        out.tick(&handle.stats().lock_or_recover(), unix_now())?;
    }
    match &web {
        // Checked start: a headless master has no host check at startup.
        None => handle.start_test(test.clone())?,
        Some(web) if autostart => web.start_test(test.clone())?,
        Some(_) => {}
    }

    let mut console_tick = tokio::time::interval(CONSOLE_INTERVAL);
    console_tick.tick().await;
    // A master writes its history rows half a second after its workers'
    // whole-second reports, so each row holds every worker's second once.
    let mut csv_tick = match &master {
        Some(_) => tokio::time::interval_at(tokio::time::Instant::now() + until_second_fraction(0.5), CSV_INTERVAL),
        None => tokio::time::interval(CSV_INTERVAL),
    };
    let mut terminate = signal_stream(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal_stream(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hangup = signal_stream(tokio::signal::unix::SignalKind::hangup())?;
    let print_live = outputs.print_live;
    let mut quit_at: Option<tokio::time::Instant> = None;
    // Thresholds over windows or with `abort`, watched every second on the
    // merged statistics.
    let mut watch = ThresholdWatch::new(outputs.thresholds.iter().chain(&plan_thresholds).cloned().collect());
    let mut threshold_tick = tokio::time::interval(Duration::from_secs(1));

    let reason = loop {
        let until_quit = sleep_until(quit_at);
        tokio::select! {
            _ = until_quit => break EndReason::AutoQuit,
            _ = terminate.recv() => break EndReason::Signal("SIGTERM"),
            _ = interrupt.recv() => break EndReason::Signal("SIGINT"),
            _ = hangup.recv() => break EndReason::Signal("SIGHUP"),
            event = events.recv() => {
                if let Ok(RunnerEvent::RunTimeReached) = event && headless {
                    break EndReason::RunTime;
                }
                if let Ok(RunnerEvent::TestStopped) = event {
                    if headless {
                        break EndReason::TestStopped;
                    }
                    if let Some(after) = autoquit {
                        tracing::info!("The test stopped: quitting in {} seconds (--autoquit)", after.as_secs());
                        quit_at = Some(tokio::time::Instant::now() + after);
                    }
                }
            }
            _ = threshold_tick.tick(), if !watch.is_empty() => watch_thresholds(&handle, &mut watch),
            _ = console_tick.tick(), if print_live => {
                outputs::print_live(&handle.stats().lock_or_recover(), unix_now());
            }
            _ = csv_tick.tick(), if csv.is_some() => {
                // Every shard's requests up to now: the counts advance evenly.
                handle.flush().await;
                let store = handle.stats().lock_or_recover();
                // A headless run that stopped is about to end: its history
                // ends with the running test, as Locust's.
                let ending = headless && matches!(store.state, RunnerState::Stopping | RunnerState::Stopped);
                if let Some(out) = csv.as_mut()
                    && !ending
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
        EndReason::AutoQuit => tracing::info!("--autoquit time reached, shutting down"),
    }
    // As Locust's, the history ends with the last second's rows of the
    // running test; the other files get the final totals below.
    // A second signal while shutting down still lets the shards flush: the
    // quit below collects their last deltas before returning.
    handle.quit().await;
    if let Some(web) = &web {
        web.shutdown();
    }
    Ok(finish(&handle, &outputs, &watch, csv.as_mut())?)
}

/// Judge the windowed thresholds on the running test, and stop it once a
/// threshold marked `abort` is crossed after its grace period (one with
/// no requests in its scope yet is not).
fn watch_thresholds(handle: &RunnerHandle, watch: &mut ThresholdWatch) {
    let mut store = handle.stats().lock_or_recover();
    let Some(started) = store.test_started else { return };
    let running = matches!(store.state, RunnerState::Spawning | RunnerState::Running);
    let crossed = match running {
        true => watch.tick(&store.stats, unix_now(), started).map(|(t, actual)| (t.clone(), actual)),
        false => None,
    };
    // The verdicts so far, for the web UI (also those of a stopped test).
    store.thresholds = watch.verdicts(&store.stats);
    if let Some((threshold, actual)) = crossed {
        tracing::error!(
            "Threshold {threshold} crossed ({}): stopping the test (abort)",
            threshold.format_value(actual)
        );
        drop(store);
        handle.stop();
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Write every report from the final statistics, the files first (the
/// console may be gone after a SIGHUP); returns the exit code.
fn finish(
    handle: &RunnerHandle,
    outputs: &Outputs,
    watch: &ThresholdWatch,
    csv: Option<&mut CsvOutput>,
) -> Result<i32, String> {
    let mut store = handle.stats().lock_or_recover();
    let now = unix_now();
    let judged = watch.verdicts(&store.stats);
    store.thresholds = judged.clone();
    let mut problems = Vec::new();
    if let Some(out) = csv
        && let Err(e) = out.write_snapshots(&store)
    {
        problems.push(e);
    }
    if let Some(name) = &outputs.json_file
        && let Err(e) = outputs::write_json_file(&store, name, &judged)
    {
        problems.push(e);
    }
    if let Some(path) = &outputs.html {
        let host = handle.host();
        let meta = swarmer_report::html::ReportMeta {
            plan: &handle.plan().name,
            host: host.as_deref(),
            classes: handle.classes(),
            thresholds: &judged,
        };
        let html = swarmer_report::html::render(&store, &meta, now);
        if let Err(e) = std::fs::write(path, html) {
            problems.push(format!("--html {}: {e}", path.display()));
        }
    }
    if let Some(path) = &outputs.junit {
        let xml = swarmer_report::junit::render(&store, &judged, now);
        if let Err(e) = std::fs::write(path, xml) {
            problems.push(format!("--junit {}: {e}", path.display()));
        }
    }
    if outputs.json
        && let Err(e) = outputs::print_json(&store)
    {
        problems.push(e);
    }
    outputs::print_summary(&store, now);
    let crossed = outputs::print_thresholds(&judged);
    let regressions = match &outputs.compare {
        Some((baseline, tolerances)) => outputs::print_comparison(baseline, &store.stats, tolerances),
        None => 0,
    };
    for p in &problems {
        tracing::error!("{p}");
    }
    // Locust's order: the plan's process_exit_code, failures
    // (--exit-code-on-error), then 2 after an unhandled error in a
    // listener or a background coroutine. A report that could not be
    // written makes it at least 1.
    if store.plan_errors > 0 {
        tracing::error!("{} error(s) in the plan's listeners, handlers or background coroutines", store.plan_errors);
    }
    let code = match store.process_exit_code {
        // A crossed threshold is the run's verdict (k6's exit code 99);
        // only the plan's own choice wins over it.
        None if crossed > 0 || regressions > 0 => {
            if crossed > 0 {
                tracing::error!("{crossed} threshold(s) crossed");
            }
            if regressions > 0 {
                tracing::error!("{regressions} regression(s) against the --compare baseline");
            }
            THRESHOLD_EXIT_CODE
        }
        _ => store.exit_code(),
    };
    let code = if problems.is_empty() || store.process_exit_code.is_some() { code } else { code.max(1) };
    tracing::info!("Shutting down (exit code {code})");
    Ok(code)
}

fn signal_stream(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(kind).map_err(|e| format!("could not listen for signals: {e}"))
}
