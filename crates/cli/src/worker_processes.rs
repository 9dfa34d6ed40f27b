//! `--processes N`: worker processes of this program on this machine,
//! started, supervised and ended with the process that started them.
//!
//! A worker process that is killed or crashes (ended by a signal), or that
//! fails after it had run for a while, is started again and rejoins the
//! master, which deals it users again; the master notes in the report that
//! the old one was lost, and this process logs why and (under a master)
//! adds the incident, its time and cause, to the results. One that fails at
//! once (it cannot load the plan, say) or with a configuration error (exit
//! code 2: a master certificate it does not trust) is not: it would fail
//! again. Nor is one started again more than [`MOST_RESTARTS`] times in
//! [`RESTART_WINDOW`] (a crash loop).

use std::collections::VecDeque;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarmer_engine::LockExt;

use crate::config::ChildWorkers;

/// A worker that fails with an error this long after it started has run,
/// and is started again (sooner: it failed to start).
const RAN_FOR: Duration = Duration::from_secs(10);

/// At most this many restarts of one worker within [`RESTART_WINDOW`].
const MOST_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(300);

/// How often the supervisor looks at its workers.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// One worker process and its history.
struct Slot {
    child: Child,
    started: Instant,
    restarts: VecDeque<Instant>,
    /// How it ended for good (not started again), if it did.
    ended: Option<ExitStatus>,
}

struct Supervised {
    slots: Mutex<Vec<Slot>>,
    /// Set when this process ends its workers: none is started again.
    closing: AtomicBool,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    /// Where incidents go besides the log (the master's results).
    note: Option<Incidents>,
}

/// Adds a line to the results (the master's notes).
pub type Incidents = Box<dyn Fn(String) + Send + Sync>;

/// The worker processes; waited for (5 s at most), then killed, when dropped.
pub struct Children {
    supervised: Arc<Supervised>,
    supervisor: Option<std::thread::JoinHandle<()>>,
}

impl Children {
    /// How many workers have ended for good.
    pub fn exited(&self) -> usize {
        self.supervised.slots.lock_or_recover().iter().filter(|s| s.ended.is_some()).count()
    }

    /// Wait until every worker has ended for good; the highest exit code.
    pub fn wait(&self) -> i32 {
        loop {
            {
                let slots = self.supervised.slots.lock_or_recover();
                if slots.iter().all(|s| s.ended.is_some()) {
                    return slots.iter().map(|s| s.ended.and_then(|e| e.code()).unwrap_or(1)).max().unwrap_or(0);
                }
            }
            std::thread::sleep(LOOK_EVERY);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.supervised.closing.store(true, Ordering::SeqCst);
        // The supervisor ends the workers before it returns: a worker it
        // started again gets its parent-death signal when that thread ends.
        match self.supervisor.take() {
            Some(supervisor) => {
                let _ = supervisor.join();
            }
            None => end_workers(&self.supervised),
        }
    }
}

/// Give the workers 5 s to end (they were told to quit, or their master
/// is gone), then kill those still running.
fn end_workers(supervised: &Supervised) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut slots = supervised.slots.lock_or_recover();
    for slot in slots.iter_mut() {
        while Instant::now() < deadline {
            match slot.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = slot.child.kill();
        let _ = slot.child.wait();
    }
}

/// Why a worker process ended, in words.
fn cause(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (_, Some(signal)) => {
            format!("killed by signal {signal}{}", if status.core_dumped() { " (crashed)" } else { "" })
        }
        (Some(code), None) => format!("exited with code {code}"),
        (None, None) => "ended".to_owned(),
    }
}

/// The exit code of a worker refused by what it was given (a usage or
/// configuration error, such as a master certificate it does not trust):
/// starting it again would fail again.
const CONFIGURATION_ERROR: i32 = 2;

/// Whether a worker that ended with `status` after `ran` is started again.
fn restartable(status: ExitStatus, ran: Duration) -> bool {
    status.signal().is_some() || (!status.success() && status.code() != Some(CONFIGURATION_ERROR) && ran >= RAN_FOR)
}

/// Look after the workers until this process ends them, then end them.
fn supervise(supervised: &Supervised) {
    watch_over(supervised);
    end_workers(supervised);
}

fn watch_over(supervised: &Supervised) {
    while !supervised.closing.load(Ordering::SeqCst) {
        std::thread::sleep(LOOK_EVERY);
        let incidents = look_once(supervised);
        if let Some(note) = &supervised.note {
            for incident in incidents {
                note(incident);
            }
        }
    }
}

/// Restart the workers that ended and should run again; what happened,
/// for the results.
fn look_once(supervised: &Supervised) -> Vec<String> {
    let mut incidents = Vec::new();
    let mut slots = supervised.slots.lock_or_recover();
    for (index, slot) in slots.iter_mut().enumerate() {
        if slot.ended.is_some() || supervised.closing.load(Ordering::SeqCst) {
            continue;
        }
        let Ok(Some(status)) = slot.child.try_wait() else { continue };
        let (pid, ran, number) = (slot.child.id(), slot.started.elapsed(), index + 1);
        while slot.restarts.front().is_some_and(|at| at.elapsed() > RESTART_WINDOW) {
            slot.restarts.pop_front();
        }
        // "Worker process 2 (pid 123) killed by signal 9 (crashed) after 12.3 s"
        let what = format!("Worker process {number} (pid {pid}) {} after {:.1} s", cause(status), ran.as_secs_f64());
        let when = swarmer_stats::utc_timestamp(swarmer_stats::unix_now());
        if !restartable(status, ran) {
            if !status.success() {
                tracing::warn!("{what}; not started again");
                incidents.push(format!("{what}, at {when}; not started again."));
            }
            slot.ended = Some(status);
            continue;
        }
        if slot.restarts.len() >= MOST_RESTARTS {
            let why = format!(
                "its {} restart in {} minutes: not started again",
                MOST_RESTARTS + 1,
                RESTART_WINDOW.as_secs() / 60
            );
            tracing::error!("{what}, {why}");
            incidents.push(format!("{what}, at {when}, {why}."));
            slot.ended = Some(status);
            continue;
        }
        match (supervised.command)().spawn() {
            Ok(child) => {
                tracing::warn!(
                    "{what}; started it again (pid {}): it rejoins the master and takes users again",
                    child.id()
                );
                incidents.push(format!("{what}, at {when}; started again (pid {}).", child.id()));
                slot.child = child;
                slot.started = Instant::now();
                slot.restarts.push_back(Instant::now());
            }
            Err(e) => {
                tracing::error!("{what}; could not start it again: {e}");
                incidents.push(format!("{what}, at {when}; could not start it again: {e}."));
                slot.ended = Some(status);
            }
        }
    }
    incidents
}

/// `path` from the working directory, when it is relative.
fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Start `children.count` workers connected to `host:port`, supervised;
/// incidents (a worker killed, crashed or failed) also go to `note`.
pub fn spawn_workers(
    children_config: &ChildWorkers,
    host: &str,
    port: u16,
    token: &str,
    program_plan: bool,
    note: Option<Incidents>,
) -> Result<Children, String> {
    let exe = std::env::current_exe().map_err(|e| format!("--processes: cannot find this program: {e}"))?;
    let (config, host, token) = (children_config.clone(), host.to_owned(), token.to_owned());
    let command = Box::new(move || worker_command(&exe, &config, &host, port, &token, program_plan));
    let mut slots = Vec::with_capacity(children_config.count);
    for _ in 0..children_config.count {
        let child = command().spawn().map_err(|e| format!("--processes: could not start a worker: {e}"))?;
        slots.push(Slot { child, started: Instant::now(), restarts: VecDeque::new(), ended: None });
    }
    tracing::info!("Started {} worker processes", children_config.count);
    let supervised = Arc::new(Supervised { slots: Mutex::new(slots), closing: AtomicBool::new(false), command, note });
    let watched = supervised.clone();
    let supervisor = std::thread::Builder::new()
        .name("swarmer-supervisor".into())
        .spawn(move || supervise(&watched))
        .map_err(|e| format!("--processes: could not start the supervisor: {e}"))?;
    Ok(Children { supervised, supervisor: Some(supervisor) })
}

/// The command line of one worker process.
#[allow(unsafe_code)] // prctl(PR_SET_PDEATHSIG) in the child, below
fn worker_command(
    exe: &std::path::Path,
    children_config: &ChildWorkers,
    host: &str,
    port: u16,
    token: &str,
    program_plan: bool,
) -> Command {
    let mut command = Command::new(exe);
    command
        .args(["--worker", "--master-host", host, "--master-port", &port.to_string()])
        .args(["--shards", &children_config.shards.to_string(), "-L", children_config.log_level.as_str()])
        .env("SWARMER_CLUSTER_TOKEN", token)
        .env_remove("SWARMER_MASTER")
        .env_remove("SWARMER_PROCESSES")
        .env_remove("SWARMER_CONFIG")
        .env_remove("SWARMER_HEALTH_PORT")
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
    let lua_memory = children_config.lua_memory_limit.map_or_else(|| "none".to_owned(), |b| b.to_string());
    command.args(["--lua-memory-limit", &lua_memory]);
    command.env_remove("SWARMER_MEMORY_LIMIT");
    if let Some(bytes) = children_config.memory_limit {
        command.args(["--memory-limit", &bytes.to_string()]);
    }
    if let Some(ca) = &children_config.cluster_ca {
        command.arg("--cluster-ca").arg(ca);
    }
    if let Some(name) = &children_config.cluster_server_name {
        command.args(["--cluster-server-name", name]);
    }
    if let Some((cert, key)) = &children_config.client_cert {
        // Absolute: a child reading the plan from the master works in
        // the plan's folder.
        command.arg("--client-cert").arg(absolute(cert)).arg("--client-key").arg(absolute(key));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn killed_or_crashed_workers_and_late_failures_are_restarted_early_failures_and_quits_are_not() {
        let signalled = ExitStatus::from_raw(libc::SIGKILL);
        let failed = ExitStatus::from_raw(1 << 8);
        let quit = ExitStatus::from_raw(0);
        assert!(restartable(signalled, Duration::ZERO));
        assert!(restartable(failed, RAN_FOR));
        assert!(!restartable(failed, Duration::from_secs(1)), "it could not start: it would fail again");
        assert!(!restartable(quit, RAN_FOR * 10));
        let refused = ExitStatus::from_raw(CONFIGURATION_ERROR << 8);
        assert!(!restartable(refused, RAN_FOR * 10), "a configuration error would come again");
        assert_eq!(cause(signalled), "killed by signal 9");
        assert_eq!(cause(failed), "exited with code 1");
    }
}
