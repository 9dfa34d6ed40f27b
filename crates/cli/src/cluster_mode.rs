//! Wiring the cluster crate into the command line: `--worker`, `--master`
//! (the runner behind the usual run loop), and `--processes` (child worker
//! processes on this machine).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swarmer_cluster::bundle::Bundle;
use swarmer_cluster::master::{Master, MasterOptions};
use swarmer_cluster::worker::{self, PlanLoader, WorkerOptions};
use swarmer_engine::{Plan, RunnerOptions};

use crate::args::RunArgs;

/// The plan a cluster process announces: its files, or its name.
pub fn bundle_for(spec: Option<&str>, program_plan: Option<&Plan>) -> Result<Bundle, String> {
    match (program_plan, spec) {
        (Some(plan), _) => Ok(Bundle::named(&plan.name)),
        (None, Some(spec)) if spec.ends_with(".lua") => Bundle::from_plan_file(std::path::Path::new(spec)),
        (None, Some(spec)) => Ok(Bundle::named(spec)),
        (None, None) => Err("no test plan given: use -f".into()),
    }
}

/// `--worker`: run until the master says quit. Returns the exit code.
pub async fn run_worker(
    program_plan: Option<Plan>,
    args: RunArgs,
    options: RunnerOptions,
    option_values: HashMap<String, String>,
) -> i32 {
    let cluster = &args.cluster;
    if let Some(n) = cluster.processes {
        // `--worker --processes N`: N worker processes, this one only waits.
        let token = match cluster.token() {
            Ok(t) => t.expose(),
            Err(e) => return fail(&e),
        };
        let port = cluster.master_port;
        let mut children = match spawn_workers(n, &args, &cluster.master_host, port, &token, program_plan.is_some()) {
            Ok(children) => children,
            Err(e) => return fail(&e),
        };
        let mut code = 0;
        for child in &mut children.0 {
            code = code.max(child.wait().ok().and_then(|s| s.code()).unwrap_or(1));
        }
        return code;
    }
    let spec = args.locustfile.as_deref();
    let own = if spec == Some("-") { None } else { Some(spec) };
    let plan = match own {
        None => None,
        Some(spec) => match bundle_for(spec, program_plan.as_ref()) {
            Ok(b) => Some(b),
            Err(e) => return fail(&e),
        },
    };
    let token = match cluster.token() {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let master_timeout = Duration::from_secs_f64(cluster.master_timeout);
    let cores = options.shards as u32;
    let loader: PlanLoader = Box::new(move |entry: &str| match &program_plan {
        Some(plan) => Ok(plan.clone()),
        None => crate::builtin::resolve_plan(Some(entry), option_values.clone()),
    });
    let id = worker::new_worker_id();
    crate::logging::set_node(format!("worker {id}"));
    let worker_options = WorkerOptions {
        master_host: cluster.master_host.clone(),
        master_port: cluster.master_port,
        token,
        tls: cluster.tls(),
        id,
        cores,
        plan,
        master_timeout,
        runner: options,
    };
    match worker::run(worker_options, loader).await {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> i32 {
    tracing::error!("{message}");
    eprintln!("swarmer: error: {message}");
    2
}

/// A master and the `--processes` workers it started (ended with it).
pub struct ClusterMaster {
    pub master: Master,
    _children: Option<Children>,
}

/// `--master` (or `--processes` without `--worker`): start the master.
pub async fn start_master(
    plan: Plan,
    args: &RunArgs,
    options: RunnerOptions,
    program_plan: bool,
) -> Result<ClusterMaster, String> {
    let cluster = &args.cluster;
    crate::logging::set_node("master");
    let token = match cluster.token() {
        Ok(t) => t,
        // Local children only: a fresh secret nobody else knows.
        Err(_) if cluster.processes.is_some() && !cluster.master => swarmer_cluster::auth::ClusterToken::random(),
        Err(e) => return Err(e),
    };
    let bundle = bundle_for(args.locustfile.as_deref(), program_plan.then_some(&plan))?;
    let master_options = MasterOptions {
        bind_host: if cluster.processes.is_some() && !cluster.master {
            "127.0.0.1".into()
        } else {
            cluster.master_bind_host.clone()
        },
        bind_port: if cluster.processes.is_some() && !cluster.master { 0 } else { cluster.master_bind_port },
        token: token.clone(),
        tls: cluster.tls(),
        heartbeat_timeout: Duration::from_secs_f64(cluster.heartbeat_timeout),
        bundle,
    };
    let master = Master::start(plan, options, master_options).await?;
    let children = match cluster.processes {
        Some(n) => {
            Some(spawn_workers(n, args, "127.0.0.1", master.local_addr().port(), &token.expose(), program_plan)?)
        }
        None => None,
    };
    Ok(ClusterMaster { master, _children: children })
}

/// Wait until `--expect-workers` workers are connected (headless master).
pub async fn wait_for_workers(master: &Master, args: &RunArgs) -> Result<(), String> {
    let want = args.cluster.expect_workers.max(1);
    let max_wait = args.cluster.expect_workers_max_wait;
    let started = Instant::now();
    let mut last = usize::MAX;
    loop {
        let have = master.worker_count();
        if have >= want {
            return Ok(());
        }
        if have != last {
            tracing::info!("Waiting for workers to be ready, {have} of {want} connected");
            last = have;
        }
        if max_wait > 0 && started.elapsed() > Duration::from_secs(max_wait) {
            return Err(format!(
                "only {have} of the {want} expected workers connected within {max_wait} s (--expect-workers-max-wait)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Child worker processes; waited for (5 s at most), then killed, when dropped.
pub struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.0 {
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Start `n` workers (-1: one per core) connected to `host:port`.
#[allow(unsafe_code)] // prctl(PR_SET_PDEATHSIG) in the child, below
pub fn spawn_workers(
    n: i64,
    args: &RunArgs,
    host: &str,
    port: u16,
    token: &str,
    program_plan: bool,
) -> Result<Children, String> {
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let count = match n {
        -1 => cores,
        n if n >= 1 => n as usize,
        n => return Err(format!("--processes {n}: expected a number of processes, or -1 for one per core")),
    };
    let exe = std::env::current_exe().map_err(|e| format!("--processes: cannot find this program: {e}"))?;
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        let mut command = Command::new(&exe);
        command
            .args(["--worker", "--master-host", host, "--master-port", &port.to_string()])
            .args(["--shards", &args.shards.unwrap_or(1).to_string(), "-L", &args.loglevel])
            .env("SWARMER_CLUSTER_TOKEN", token)
            .env_remove("SWARMER_MASTER")
            .env_remove("SWARMER_PROCESSES")
            .env_remove("SWARMER_CONFIG")
            .stdin(Stdio::null());
        if !program_plan {
            command.args(["-f", "-"]);
        }
        // The children end with this process, even if it is killed (the
        // other libc call of the workspace: std has no parent-death signal).
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
        // no memory of the parent; it runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        if let Some(ca) = &args.cluster.cluster_ca {
            command.arg("--cluster-ca").arg(ca);
        }
        if let Some(name) = &args.cluster.cluster_server_name {
            command.args(["--cluster-server-name", name]);
        }
        children.push(command.spawn().map_err(|e| format!("--processes: could not start a worker: {e}"))?);
    }
    tracing::info!("Started {count} worker processes");
    Ok(Children(children))
}
