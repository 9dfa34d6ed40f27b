//! Wiring the cluster crate into the command line: `--worker`, `--master`
//! (the runner behind the usual run loop), and `--processes` (child worker
//! processes on this machine).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use swarmer_cluster::bundle::Bundle;
use swarmer_cluster::master::{Master, MasterOptions};
use swarmer_cluster::worker::{self, PlanLoader, WorkerOptions};
use swarmer_engine::{LockExt, Plan, PlanError, RunnerOptions};

use crate::config::{ClusterRole, MasterConfig, RunConfig};
use crate::worker_processes::{Children, Incidents, spawn_workers};

/// The plan a cluster process announces: its files (the plan, what it
/// loads, and `extra`, named relative to the plan's folder), or its name.
pub fn bundle_for(spec: Option<&str>, program_plan: Option<&Plan>, extra: &[PathBuf]) -> Result<Bundle, String> {
    match (program_plan, spec) {
        (Some(plan), _) => Ok(Bundle::named(&plan.name)),
        (None, Some(spec)) if spec.ends_with(".lua") => {
            let path = std::path::Path::new(spec);
            let mut needed = swarmer_lua::plan_files(path).map_err(|e| e.to_string())?;
            let folder = path.parent().unwrap_or(std::path::Path::new(""));
            needed.extend(extra.iter().map(|p| folder.join(p)));
            Bundle::from_plan_file(path, &needed).map_err(|e| e.to_string())
        }
        (None, Some(spec)) => Ok(Bundle::named(spec)),
        (None, None) => Err("no test plan given: use -f".into()),
    }
}

/// `--worker` (or `--worker --processes N`): run until the master says
/// quit. Returns the exit code.
pub async fn run_worker(program_plan: Option<Plan>, config: RunConfig, option_values: HashMap<String, String>) -> i32 {
    let worker = match config.cluster {
        ClusterRole::Worker(worker) => worker,
        ClusterRole::WorkerProcesses { master_host, master_port, token, children } => {
            // `--worker --processes N`: N worker processes, this one only waits.
            let exposed = token.expose();
            // No results here: the master, elsewhere, notes its losses.
            let children =
                match spawn_workers(&children, &master_host, master_port, &exposed, program_plan.is_some(), None) {
                    Ok(children) => children,
                    Err(e) => return fail(&e),
                };
            return children.wait();
        }
        ClusterRole::Local | ClusterRole::Master(_) => return fail("not a worker: --worker is not set"),
    };
    let spec = config.plan.as_deref();
    let own = if spec == Some("-") { None } else { Some(spec) };
    let plan = match own {
        None => None,
        Some(spec) => match bundle_for(spec, program_plan.as_ref(), &config.plan_files) {
            Ok(b) => Some(b),
            Err(e) => return fail(&e),
        },
    };
    let options = config.runner;
    let cores = options.shards as u32;
    let id = worker::new_worker_id();
    let role = swarmer_engine::NodeRole::Worker(id.clone());
    let loader: PlanLoader = Box::new(move |entry: &str, client: &std::sync::Arc<swarmer_engine::ClientConfig>| {
        // A plan's top level (gRPC reflection) trusts what its users will.
        swarmer_lua::trust::set(client.clone());
        match &program_plan {
            Some(plan) => Ok(plan.clone()),
            None => {
                crate::builtin::resolve_plan(Some(entry), option_values.clone(), role.clone()).map_err(PlanError::Load)
            }
        }
    });
    crate::logging::set_node(format!("worker {id}"));
    let (connected, connected_rx) = tokio::sync::watch::channel(false);
    let _health = match worker.health_port {
        Some(port) => match swarmer_web::serve_health(([0, 0, 0, 0], port).into(), connected_rx).await {
            Ok((addr, task)) => {
                tracing::info!("Health checks on http://{addr}/healthz and /readyz");
                Some(AbortOnDrop(task))
            }
            Err(e) => return fail(&format!("--health-port: {e}")),
        },
        None => None,
    };
    let worker_options = WorkerOptions {
        master_host: worker.master_host,
        master_port: worker.master_port,
        token: worker.token,
        tls: worker.tls,
        id,
        cores,
        plan,
        plan_path: own.flatten().map(str::to_owned),
        master_timeout: worker.master_timeout,
        runner: options,
        client_tls: worker.client_tls,
        own_client_flags: worker.own_client_flags,
        leave: leave_on_signals(),
        connected,
    };
    match worker::run(worker_options, loader).await {
        Ok(()) => 0,
        Err(e) => fail(&e.to_string()),
    }
}

/// A task ended when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A channel that says why this worker should leave when the process gets
/// SIGTERM (Kubernetes scale-downs, rollouts, drains), SIGINT or SIGHUP:
/// the worker then sends its last statistics and tells the master.
fn leave_on_signals() -> tokio::sync::watch::Receiver<Option<String>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::watch::channel(None);
    let kinds =
        [("SIGTERM", SignalKind::terminate()), ("SIGINT", SignalKind::interrupt()), ("SIGHUP", SignalKind::hangup())];
    for (name, kind) in kinds {
        let tx = tx.clone();
        match signal(kind) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        tracing::info!("Got {name}: stopping this worker's users and leaving the master");
                        let _ = tx.send(Some(format!("stopped by {name}")));
                    }
                });
            }
            Err(e) => tracing::warn!("cannot listen for {name}: {e}"),
        }
    }
    rx
}

fn fail(message: &str) -> i32 {
    tracing::error!("{message}");
    eprintln!("swarmer: error: {message}");
    2
}

/// A master and the `--processes` workers it started (ended with it).
pub struct ClusterMaster {
    pub master: Master,
    expect_workers: usize,
    expect_workers_max_wait: Option<Duration>,
    _children: Option<Children>,
}

/// `--master` (or `--processes` without `--worker`): start the master.
pub async fn start_master(
    plan: Plan,
    plan_spec: Option<&str>,
    config: MasterConfig,
    options: RunnerOptions,
    program_plan: bool,
    plan_files: &[PathBuf],
) -> Result<ClusterMaster, crate::run::RunError> {
    crate::logging::set_node("master");
    let bundle = bundle_for(plan_spec, program_plan.then_some(&plan), plan_files)?;
    let master_options = MasterOptions {
        bind_host: config.bind_host,
        bind_port: config.bind_port,
        token: config.token.clone(),
        tls: config.tls,
        heartbeat_timeout: config.heartbeat_timeout,
        bundle,
        client_tls: config.client_tls,
    };
    let master = Master::start(plan, options, master_options).await?;
    let children = match &config.children {
        Some(children) => {
            // The report lists each incident with its time and cause.
            let stats = master.handle().stats().clone();
            let note: Incidents = Box::new(move |incident| stats.lock_or_recover().notes.push(incident));
            Some(spawn_workers(
                children,
                "127.0.0.1",
                master.local_addr().port(),
                &config.token.expose(),
                program_plan,
                Some(note),
            )?)
        }
        None => None,
    };
    Ok(ClusterMaster {
        master,
        expect_workers: config.expect_workers,
        expect_workers_max_wait: config.expect_workers_max_wait,
        _children: children,
    })
}

impl ClusterMaster {
    /// Wait until `--expect-workers` workers are connected (headless or
    /// autostarted master).
    pub async fn wait_for_workers(&self) -> Result<(), String> {
        let want = self.expect_workers;
        let started = Instant::now();
        let mut last = usize::MAX;
        loop {
            let have = self.master.worker_count();
            // Workers this process started that ended (they could not load
            // the plan, say) will never connect: the test runs its users on
            // the others, or, with none left, does not run at all.
            let ended = self._children.as_ref().map_or(0, |c| c.exited());
            let reachable = want.saturating_sub(ended);
            if reachable == 0 && have == 0 {
                return Err(format!(
                    "every worker process started by --processes exited before the test could start \
                     ({have} of the {want} expected workers connected); their errors are above"
                ));
            }
            if have >= reachable.max(1) {
                if have < want {
                    tracing::warn!(
                        "{ended} of the worker processes exited before the test started (their errors are above): \
                         the test runs on {have} of the {want} expected workers"
                    );
                }
                return Ok(());
            }
            if have != last {
                tracing::info!("Waiting for workers to be ready, {have} of {want} connected");
                last = have;
            }
            if let Some(max_wait) = self.expect_workers_max_wait
                && started.elapsed() > max_wait
            {
                return Err(format!(
                    "only {have} of the {want} expected workers connected within {} s (--expect-workers-max-wait)",
                    max_wait.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
