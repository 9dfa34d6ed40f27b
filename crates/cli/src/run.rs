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

use swarmer_engine::{LocalRunner, LockExt, Plan, RunnerEvent, RunnerHandle, RunnerOptions, TestSettings};
use swarmer_stats::unix_now;
use swarmer_web::{FormDefaults, LogBuffer, TlsFiles, WebOptions, WebServer};

use crate::args::RunArgs;
use crate::cluster_mode;
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
    AutoQuit,
}

/// Run the test; returns the process exit code.
pub async fn run(
    plan: Plan,
    args: &RunArgs,
    options: RunnerOptions,
    logs: LogBuffer,
    program_plan: bool,
) -> Result<i32, String> {
    let headless = args.headless;
    args.web.check()?;
    let credentials = if headless { None } else { args.web.credentials()? };
    let mut csv = match &args.csv {
        Some(prefix) => Some(CsvOutput::create(prefix, args.csv_full_history)?),
        None => None,
    };
    let distributed = args.cluster.master || args.cluster.processes.is_some();
    let (handle, master) = if distributed {
        let cluster = cluster_mode::start_master(plan, args, options, program_plan).await?;
        (cluster.master.handle(), Some(cluster))
    } else {
        (LocalRunner::start(plan, options).await?, None)
    };
    let web = if headless {
        None
    } else {
        let full_history = args
            .csv
            .as_ref()
            .filter(|_| args.csv_full_history)
            .map(|prefix| std::path::PathBuf::from(swarmer_report::csv::file_names(prefix)[1].clone()));
        let web = WebServer::start(
            handle.clone(),
            WebOptions {
                host: args.web.web_host.clone(),
                port: args.web.web_port,
                base_path: args.web.web_base_path.clone(),
                tls: args.web.tls_cert.clone().zip(args.web.tls_key.clone()).map(|(cert, key)| TlsFiles { cert, key }),
                credentials,
                class_picker: args.web.class_picker,
                defaults: FormDefaults { users: args.users, spawn_rate: args.spawn_rate, run_time: args.run_time },
                full_history_csv: full_history,
                logs,
            },
        )
        .await?;
        tracing::info!("Starting web interface at {}", web.url());
        Some(web)
    };
    let mut events = handle.subscribe();
    // The runner owns the run time: it stops the test when it is up. A
    // headless run then ends; with the UI, the process stays.
    let run_time = args.run_time.filter(|d| !d.is_zero());
    match (&web, run_time) {
        (Some(_), _) if !args.web.autostart => {}
        (_, Some(d)) => tracing::info!("Run time limit set to {} seconds", d.as_secs()),
        (_, None) => tracing::info!("No run time limit set, use CTRL+C to interrupt"),
    }
    if let Some(master) = &master
        && (headless || args.web.autostart)
    {
        cluster_mode::wait_for_workers(&master.master, args).await?;
    }
    match &web {
        None => {
            // Checked start: a headless master has no host check at startup.
            let settings =
                TestSettings { users: args.users, spawn_rate: args.spawn_rate, run_time, ..Default::default() };
            handle.start_test(settings)?;
        }
        Some(web) if args.web.autostart => {
            let settings =
                TestSettings { users: args.users, spawn_rate: args.spawn_rate, run_time, ..Default::default() };
            web.start_test(settings)?;
        }
        Some(_) => {}
    }

    let mut console_tick = tokio::time::interval(CONSOLE_INTERVAL);
    console_tick.tick().await;
    let mut csv_tick = tokio::time::interval(CSV_INTERVAL);
    let mut terminate = signal_stream(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal_stream(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hangup = signal_stream(tokio::signal::unix::SignalKind::hangup())?;
    let print_live = if headless { !args.only_summary } else { args.print_stats };
    let mut quit_at: Option<tokio::time::Instant> = None;

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
                    if let Ok(seconds) = u64::try_from(args.web.autoquit) {
                        tracing::info!("The test stopped: quitting in {seconds} seconds (--autoquit)");
                        quit_at = Some(tokio::time::Instant::now() + Duration::from_secs(seconds));
                    }
                }
            }
            _ = console_tick.tick(), if print_live => {
                outputs::print_live(&handle.stats().lock_or_recover(), unix_now());
            }
            _ = csv_tick.tick(), if csv.is_some() => {
                if let Some(out) = csv.as_mut()
                    && let Err(e) = out.tick(&handle.stats().lock_or_recover(), unix_now())
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
    // A second signal while shutting down still lets the shards flush: the
    // quit below collects their last deltas before returning.
    handle.quit().await;
    if let Some(web) = &web {
        web.shutdown();
    }
    finish(&handle, args, csv.as_mut())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Write every report from the final statistics, the files first (the
/// console may be gone after a SIGHUP); returns the exit code.
fn finish(handle: &RunnerHandle, args: &RunArgs, csv: Option<&mut CsvOutput>) -> Result<i32, String> {
    let store = handle.stats().lock_or_recover();
    let now = unix_now();
    let mut problems = Vec::new();
    if let Some(out) = csv
        && let Err(e) = out.tick(&store, now)
    {
        problems.push(e);
    }
    if let Some(name) = &args.json_file
        && let Err(e) = outputs::write_json_file(&store, name)
    {
        problems.push(e);
    }
    if let Some(path) = &args.web.html {
        let host = handle.host();
        let meta = swarmer_report::html::ReportMeta {
            plan: &handle.plan().name,
            host: host.as_deref(),
            classes: handle.classes(),
        };
        let html = swarmer_report::html::render(&store, &meta, now);
        if let Err(e) = std::fs::write(path, html) {
            problems.push(format!("--html {}: {e}", path.display()));
        }
    }
    if args.json
        && let Err(e) = outputs::print_json(&store)
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
