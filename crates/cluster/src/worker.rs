//! A worker: connects to the master, proves the token (and checks the
//! master's proof), gets the plan (`-f -`) or checks its own against the
//! master's, then runs the engine's `LocalRunner` with the share of users
//! the master assigns. Every second it sends a heartbeat (state, users, CPU,
//! memory) and the statistics its shards handed over; on stop and on quit
//! it flushes the shards first, so the master's totals hold every request.
//!
//! If the master goes away (stream closed, or no heartbeat for
//! `master_timeout`), the worker keeps its users running for that long,
//! then stops them, and keeps trying to reconnect; a master that refuses it
//! (wrong token, other plan) ends it with that reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmer_engine::{
    ArrivalRate, ArrivalSlice, ClientConfig, ClusterMessage, LocalRunner, LockExt, NodeRole, Notice, Plan, PlanError,
    RateStage, RunnerEvent, RunnerHandle, RunnerOptions, RunnerState, TestSettings, TlsOptions, UsageMonitor, WaitSpec,
};
use swarmer_stats::{StatsDelta, unix_now, until_second_fraction};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::auth::{ClusterTls, ClusterToken, nonce, read};
use crate::bundle::Bundle;
use crate::client_settings::{OwnClientFlags, apply as apply_client, describe as describe_client};
use crate::convert::delta_to_report;
use crate::error::{BundleError, ClusterError};
use crate::proto::{self, cluster_client::ClusterClient, master_message, worker_message};

/// The longest a report waits for the shards' flush (a master writes its
/// history half a second after the whole second).
const FLUSH_WAIT: Duration = Duration::from_millis(400);

/// Loads a plan by path or built-in name (the command line knows how),
/// given the client its users will run with (the master's settings, with
/// the worker's own flags): what the plan's top level connects to (gRPC
/// server reflection) trusts the same certificates.
pub type PlanLoader = Box<dyn Fn(&str, &Arc<ClientConfig>) -> Result<Plan, PlanError> + Send + Sync>;

/// How a worker finds and trusts its master.
pub struct WorkerOptions {
    /// Host name or address of the master (`--master-host`).
    pub master_host: String,
    /// The master's cluster port (`--master-port`).
    pub master_port: u16,
    /// The cluster's shared secret, proved to the master (never sent).
    pub token: ClusterToken,
    /// TLS to the master: a CA to trust, a client certificate, the name to expect.
    pub tls: ClusterTls,
    /// This worker's id (unique in the cluster; kept across reconnects).
    pub id: String,
    /// Cores this worker offers (the CLI passes its shard count); the master splits
    /// users in proportion.
    pub cores: u32,
    /// This worker's own plan, or `None` to run the master's (`-f -`).
    pub plan: Option<Bundle>,
    /// Where this worker's own plan is loaded from (its `-f`, any path).
    pub plan_path: Option<String>,
    /// Without the master this long, stop the users (and keep reconnecting).
    pub master_timeout: Duration,
    /// Shards and HTTP client settings of the local runner.
    pub runner: RunnerOptions,
    /// The worker's own certificate files for the target (`--ca-cert`,
    /// `--client-cert/--client-key`), used with the master's settings.
    pub client_tls: TlsOptions,
    /// Client settings this worker's own flags fixed (they win over the master's).
    pub own_client_flags: OwnClientFlags,
    /// Becomes `Some(reason)` when the worker is to leave on purpose (the
    /// process got SIGTERM): it stops its users, sends its last statistics,
    /// tells the master and returns.
    pub leave: watch::Receiver<Option<String>>,
    /// Set to whether the worker is connected to its master (for a
    /// readiness check).
    pub connected: watch::Sender<bool>,
}

/// Why a session with the master ended.
enum SessionEnd {
    Quit,
    Lost(String),
}

/// Run until the master says quit. Errors are fatal refusals (wrong token,
/// a master that cannot prove the token, another plan, a plan that fails).
pub async fn run(mut options: WorkerOptions, load: PlanLoader) -> Result<(), ClusterError> {
    let _cleanup = PlanDirCleanup(vec![plan_dir(&options.id), client_dir(&options.id)]);
    let mut runner: Option<Runner> = None;
    let (message_tx, mut messages) = mpsc::unbounded_channel();
    let mut reports = Reports::default();
    let mut lost_since: Option<Instant> = None;
    let mut attempts = 0u64;
    // Tries in a row that met a certificate this worker does not trust.
    let mut untrusted = 0u64;
    let url = format!(
        "{}://{}:{}",
        if options.tls.is_enabled() { "https" } else { "http" },
        options.master_host,
        options.master_port
    );
    loop {
        match connect(&options, &url).await {
            Ok(Connected { client_tx, inbound, welcome }) => {
                attempts = 0;
                untrusted = 0;
                tracing::info!("Connected to the master at {url} as worker {}", options.id);
                let digest = plan_digest(&options, &welcome);
                let setup = run_setup(&digest, &welcome);
                if let Some(old) = runner.take_if(|r| r.setup != setup) {
                    // A master restarted with another plan or other settings:
                    // never run stale code, nor another test than the master's.
                    if old.digest != digest {
                        tracing::warn!(
                            "The master runs another plan now (digest {} instead of {}): loading it",
                            short(&digest),
                            short(&old.digest)
                        );
                    } else {
                        tracing::warn!("The master runs the plan with other settings now: starting again with them");
                    }
                    old.handle.quit().await;
                }
                if runner.is_none() {
                    match start_runner(&options, &welcome, &load, message_tx.clone()).await {
                        Ok((handle, deltas)) => runner = Some(Runner { handle, deltas, digest, setup }),
                        Err(e) => {
                            // Tell the master why, rather than only vanishing.
                            let reason = format!("cannot run the plan: {e}");
                            let leaving = proto::Leaving { reason };
                            let _ = client_tx.send(msg(worker_message::Kind::Leaving(leaving))).await;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            return Err(e);
                        }
                    }
                }
                let Runner { handle, deltas, .. } = runner.as_mut().expect("started above");
                if matches!(handle.state(), RunnerState::Spawning | RunnerState::Running) {
                    // Users from before the break: the master (maybe a new one)
                    // assigns this worker's share again if its test runs.
                    tracing::info!("Back with the master: stopping the users from before until it assigns a share");
                    handle.stop();
                }
                let new_master = reports.master_instance.is_some_and(|known| known != welcome.master_instance);
                if new_master {
                    // What was recorded for the previous master is not this one's.
                    tracing::info!("This is a new master: statistics recorded for the previous one are dropped");
                }
                if new_master || welcome.stats_epoch != reports.epoch {
                    // A new master, or the master reset its statistics while
                    // this worker was away.
                    handle.reset_stats();
                    while deltas.try_recv().is_ok() {}
                    reports.epoch = welcome.stats_epoch;
                }
                if reports.master_instance != Some(welcome.master_instance) {
                    reports.assigned = 0;
                }
                reports.master_instance = Some(welcome.master_instance);
                let mut leave = options.leave.clone();
                options.connected.send_replace(true);
                let ended =
                    session(&options, handle, deltas, &mut messages, &mut reports, client_tx, inbound, &mut leave)
                        .await;
                options.connected.send_replace(false);
                match ended {
                    SessionEnd::Quit => return Ok(()),
                    SessionEnd::Lost(reason) => {
                        tracing::warn!("Lost the master: {reason}; reconnecting");
                        lost_since = Some(Instant::now());
                    }
                }
            }
            Err(Failure::Refused(error)) => return Err(error),
            Err(Failure::Retry(reason)) => {
                // (A mismatch may also show as a broken pipe, the alert
                // unread: only a connection that works clears the count.)
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(10) {
                    tracing::warn!("Could not reach the master at {url}: {reason} (retrying every second)");
                }
            }
            Err(Failure::Untrusted(problem, reason)) => {
                untrusted += 1;
                let (what, hint) = problem.said(&url);
                if untrusted >= MOST_UNTRUSTED {
                    return Err(ClusterError::Tls(format!("{what} ({reason}), {untrusted} times in a row: {hint}")));
                }
                if untrusted == 1 {
                    tracing::error!("{what}: {reason}; {hint}");
                }
            }
        }
        if let (Some(since), Some(Runner { handle, .. })) = (lost_since, &runner)
            && since.elapsed() >= options.master_timeout
            && matches!(handle.state(), RunnerState::Spawning | RunnerState::Running)
        {
            tracing::warn!(
                "No master for {:.0?}: stopping this worker's users; waiting for the master to come back",
                options.master_timeout
            );
            handle.stop();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            Ok(asked) = options.leave.wait_for(Option::is_some) => {
                drop(asked);
                // Leaving while the master is away: stop the users; their
                // statistics have no master to go to.
                if let Some(Runner { handle, .. }) = &runner {
                    handle.quit().await;
                }
                tracing::info!("Leaving without a master to tell");
                return Ok(());
            }
        }
    }
}

enum Failure {
    Refused(ClusterError),
    Retry(String),
    /// The certificates do not match: which side refused, and the error.
    Untrusted(Mismatch, String),
}

/// Which side of the TLS handshake refused the other's certificate.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mismatch {
    /// The master's certificate is not one this worker trusts.
    MasterNotTrusted,
    /// The master wants a client certificate signed by its CA, and this
    /// worker has none, or another.
    WorkerRefused,
}

impl Mismatch {
    /// What happened, and what to do about it.
    fn said(self, url: &str) -> (String, &'static str) {
        match self {
            Mismatch::MasterNotTrusted => (
                format!("the master at {url} presents a certificate this worker does not trust"),
                "give the CA that signed the master's --cluster-tls-cert with --cluster-ca, and \
                 --cluster-server-name if the certificate names another host",
            ),
            Mismatch::WorkerRefused => (
                format!("the master at {url} does not accept this worker's client certificate (or its lack of one)"),
                "give this worker --cluster-tls-cert and --cluster-tls-key signed by the CA the master was given \
                 with --cluster-ca",
            ),
        }
    }
}

/// Tries in a row with a master certificate this worker does not trust
/// (about a second apart) before it gives up: long enough for a master
/// whose certificate is being replaced, short enough that a worker
/// configured with the wrong CA says so and stops instead of retrying
/// for ever.
const MOST_UNTRUSTED: u64 = 10;

fn refused(reason: String) -> Failure {
    Failure::Refused(ClusterError::Refused(reason))
}

struct Connected {
    client_tx: mpsc::Sender<proto::WorkerMessage>,
    inbound: tonic::Streaming<proto::MasterMessage>,
    welcome: proto::Welcome,
}

fn msg(kind: worker_message::Kind) -> proto::WorkerMessage {
    proto::WorkerMessage { kind: Some(kind) }
}

async fn channel(options: &WorkerOptions, url: &str) -> Result<Channel, Failure> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| {
            Failure::Refused(ClusterError::MasterHost { host: options.master_host.clone(), reason: e.to_string() })
        })?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(5));
    if options.tls.is_enabled() {
        let mut tls = ClientTlsConfig::new()
            .domain_name(options.tls.server_name.clone().unwrap_or_else(|| options.master_host.clone()));
        if let Some(ca) = &options.tls.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca, "--cluster-ca").map_err(Failure::Refused)?));
        }
        if let (Some(cert), Some(key)) = (&options.tls.cert, &options.tls.key) {
            let identity = Identity::from_pem(
                read(cert, "--cluster-tls-cert").map_err(Failure::Refused)?,
                read(key, "--cluster-tls-key").map_err(Failure::Refused)?,
            );
            tls = tls.identity(identity);
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| Failure::Refused(ClusterError::Tls(e.to_string())))?;
    }
    endpoint.connect().await.map_err(|e| transport_failure(&e, describe(&e)))
}

/// A transport error as a failure: a certificate mismatch, or one to retry.
fn transport_failure(e: &(dyn std::error::Error + 'static), said: String) -> Failure {
    match certificate_mismatch(e) {
        Some(mismatch) => Failure::Untrusted(mismatch, said),
        None => Failure::Retry(said),
    }
}

/// Whether `e` comes from a certificate one side did not accept: this
/// worker the master's, or the master this worker's (a TLS alert it sent;
/// with TLS 1.3 it comes after the handshake, on the first request). An
/// I/O error holds it as its inner error, not as its source.
fn certificate_mismatch(e: &(dyn std::error::Error + 'static)) -> Option<Mismatch> {
    use rustls::AlertDescription as Alert;
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| {
        let inner =
            e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref).map(|i| i as &dyn std::error::Error);
        const REFUSED: [Alert; 7] = [
            Alert::CertificateRequired,
            Alert::BadCertificate,
            Alert::UnknownCA,
            Alert::UnsupportedCertificate,
            Alert::CertificateRevoked,
            Alert::CertificateExpired,
            Alert::CertificateUnknown,
        ];
        [Some(e), inner].into_iter().flatten().find_map(|e| match e.downcast_ref::<rustls::Error>() {
            Some(rustls::Error::InvalidCertificate(_)) => Some(Mismatch::MasterNotTrusted),
            Some(rustls::Error::AlertReceived(alert)) if REFUSED.contains(alert) => Some(Mismatch::WorkerRefused),
            // The HTTP/2 layer may pass the alert on as text only.
            _ => {
                let text = e.to_string();
                let alert = text.strip_prefix("received fatal alert: ")?;
                REFUSED.iter().any(|a| format!("{a:?}") == alert).then_some(Mismatch::WorkerRefused)
            }
        })
    })
}

/// An error and its sources, each said once (an error's text often
/// repeats its source's).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = s.source();
    }
    text
}

async fn connect(options: &WorkerOptions, url: &str) -> Result<Connected, Failure> {
    let channel = channel(options, url).await?;
    let mut client = ClusterClient::new(channel)
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
    let (client_tx, rx) = mpsc::channel(256);
    let worker_nonce = nonce();
    let hello = proto::Hello {
        protocol: crate::PROTOCOL,
        worker_id: options.id.clone(),
        hostname: hostname(),
        cores: options.cores,
        plan_digest: options.plan.as_ref().map(Bundle::digest).unwrap_or_default(),
        nonce: worker_nonce.clone(),
    };
    client_tx.send(msg(worker_message::Kind::Hello(hello))).await.map_err(|_| Failure::Retry("closed".into()))?;
    let mut inbound = client
        .join(ReceiverStream::new(rx))
        .await
        .map_err(|status| {
            // A status's own text repeats its source's in Debug form.
            let said = std::error::Error::source(&status).map_or_else(|| status.message().to_owned(), describe);
            transport_failure(&status, said)
        })?
        .into_inner();
    let next = |m: Result<Option<proto::MasterMessage>, tonic::Status>| match m {
        Ok(Some(proto::MasterMessage { kind: Some(kind) })) => Ok(kind),
        Ok(_) => Err(Failure::Retry("the master closed the stream".into())),
        Err(status) => Err(Failure::Retry(status.message().to_owned())),
    };
    let challenge = match next(inbound.message().await)? {
        master_message::Kind::Challenge(c) => c,
        master_message::Kind::Reject(r) => {
            return Err(refused(format!("the master refused this worker: {}", r.reason)));
        }
        other => return Err(refused(format!("the master answered {other:?} instead of proving the token"))),
    };
    if !options.token.check_master_proof(&worker_nonce, &challenge.nonce, &challenge.proof) {
        return Err(refused(format!(
            "the server at {url} did not prove the cluster token: refusing to run its plan (wrong --cluster-token?)"
        )));
    }
    let proof = options.token.worker_proof(&challenge.nonce, &worker_nonce);
    client_tx
        .send(msg(worker_message::Kind::Proof(proto::Proof { proof })))
        .await
        .map_err(|_| Failure::Retry("closed".into()))?;
    match next(inbound.message().await)? {
        master_message::Kind::Welcome(welcome) => Ok(Connected { client_tx, inbound, welcome }),
        master_message::Kind::Reject(r) => Err(refused(format!("the master refused this worker: {}", r.reason))),
        other => Err(refused(format!("the master answered {other:?} instead of a welcome"))),
    }
}

async fn start_runner(
    options: &WorkerOptions,
    welcome: &proto::Welcome,
    load: &PlanLoader,
    messages: mpsc::UnboundedSender<ClusterMessage>,
) -> Result<(RunnerHandle, mpsc::UnboundedReceiver<StatsDelta>), ClusterError> {
    let entry = match (&options.plan, &welcome.plan) {
        (Some(own), _) => options.plan_path.clone().unwrap_or_else(|| own.entry.clone()),
        (None, Some(shipped)) => {
            let bundle = Bundle::from_proto(shipped)?;
            let dir = plan_dir(&options.id);
            fresh_private_dir(&dir)?;
            let entry = bundle.write_to(&dir)?;
            // The plan runs from its bundle's root, as the master's plan ran
            // from its working directory (modules there are found).
            std::env::set_current_dir(&dir).map_err(|source| BundleError::Io { path: dir.clone(), source })?;
            tracing::info!("Received the plan {} ({} files) into {}", bundle.entry, bundle.files.len(), dir.display());
            entry
        }
        (None, None) => return Err(ClusterError::NoPlan),
    };
    let client = match &welcome.client {
        Some(shipped) => {
            // Certificates the master sent go into a folder of this worker's own.
            let private = client_dir(&options.id);
            fresh_private_dir(&private)?;
            let current = &options.runner.client;
            Arc::new(apply_client(shipped, current, &options.client_tls, options.own_client_flags, &private)?)
        }
        None => options.runner.client.clone(),
    };
    let plan = load(&entry, &client)?;
    for (name, value) in &welcome.options {
        plan.option_values.set(name, value.clone());
    }
    let (sink, deltas) = mpsc::unbounded_channel();
    // The master's --stop-timeout governs the whole test, as in Locust (the
    // first master's, should this worker later join another).
    let stop_timeout = welcome
        .stop_timeout_seconds
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .unwrap_or(options.runner.stop_timeout);
    // The master's classes and tags, so that its shares (counts by the
    // position of each class among those picked) mean the same classes here.
    let (classes, tags) = match &welcome.scope {
        Some(scope) => crate::convert::scope_filters(scope),
        None => (options.runner.classes.clone(), options.runner.tags.clone()),
    };
    if !classes.is_empty() || !tags.is_noop() {
        tracing::info!(
            "Running the master's selection: classes {classes:?}, tags {:?}, excluded tags {:?}",
            tags.include,
            tags.exclude
        );
    }
    tracing::info!("Users run with {}", describe_client(&client));
    let runner_options = RunnerOptions {
        stop_timeout,
        classes,
        tags,
        client,
        delta_sink: Some(sink),
        host_required: false,
        node: options.id.clone(),
        role: NodeRole::Worker(options.id.clone()),
        message_out: Some(messages),
        ..options.runner.clone()
    };
    let handle = LocalRunner::start(plan, runner_options).await?;
    Ok((handle, deltas))
}

/// An empty folder at `dir` that only this user can read (0700): a plan's
/// data files may be private. An earlier plan's files there are removed.
fn fresh_private_dir(dir: &Path) -> Result<(), BundleError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| BundleError::Io { path: dir.to_path_buf(), source };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(io)
}

/// Removes the folders of received plans and certificates when the worker ends.
struct PlanDirCleanup(Vec<PathBuf>);

impl Drop for PlanDirCleanup {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where the plan the master ships is written.
fn plan_dir(id: &str) -> PathBuf {
    private_dir("plan", id)
}

/// Where the certificates the master sends are written.
fn client_dir(id: &str) -> PathBuf {
    private_dir("client", id)
}

/// `swarmer-KIND-ID` in the temporary folder, the id made safe for a path.
fn private_dir(kind: &str, id: &str) -> PathBuf {
    let safe: String = id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    std::env::temp_dir().join(format!("swarmer-{kind}-{safe}"))
}

#[allow(clippy::too_many_arguments)]
async fn session(
    options: &WorkerOptions,
    handle: &RunnerHandle,
    deltas: &mut mpsc::UnboundedReceiver<StatsDelta>,
    messages: &mut mpsc::UnboundedReceiver<ClusterMessage>,
    reports: &mut Reports,
    tx: mpsc::Sender<proto::WorkerMessage>,
    mut inbound: tonic::Streaming<proto::MasterMessage>,
    leave: &mut watch::Receiver<Option<String>>,
) -> SessionEnd {
    let mut events = handle.subscribe();
    // Reports go at whole seconds of the wall clock, every shard flushed
    // first: a master's history rows (written half a second later) each
    // hold one second of this worker's requests, not none or two.
    let first = tokio::time::Instant::now() + until_second_fraction(0.0);
    let mut tick = tokio::time::interval_at(first, Duration::from_secs(1));
    let mut usage = UsageMonitor::new();
    let mut last_master = Instant::now();
    let mut stop_requested = false;
    let mut since_report = 0;
    loop {
        tokio::select! {
            Ok(asked) = leave.wait_for(Option::is_some) => {
                // Let go of the channel's value before waiting on anything.
                let reason = asked.clone().unwrap_or_default();
                drop(asked);
                // Stop the users (within the stop timeout), send everything
                // they recorded, then say goodbye on the same stream.
                handle.quit().await;
                send_stats(deltas, &tx, reports).await;
                let _ = tx.send(msg(worker_message::Kind::Leaving(proto::Leaving { reason: reason.clone() }))).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                tracing::info!("Left the master ({reason}); this worker reported {} requests in all", reports.requests);
                return SessionEnd::Quit;
            }
            message = inbound.message() => {
                let kind = match message {
                    Ok(Some(proto::MasterMessage { kind: Some(kind) })) => kind,
                    Ok(Some(_)) => continue,
                    Ok(None) => return SessionEnd::Lost("the master closed the stream".into()),
                    Err(status) => return SessionEnd::Lost(status.message().to_owned()),
                };
                last_master = Instant::now();
                match kind {
                    master_message::Kind::Assign(a) => {
                        stop_requested = false;
                        // What was recorded before the new load goes first,
                        // so the master can tell a phase's requests apart.
                        // (At least one report, empty if need be, says the
                        // Assign was taken after these.)
                        // The flush is asked for first, so the shards take
                        // it before the new load; the new load does not wait.
                        let flushed = a.flush_first.then(|| handle.request_flush());
                        let settings = TestSettings {
                            spawn_rate: a.spawn_rate,
                            host: Some(a.host),
                            class_counts: Some(a.class_counts.iter().map(|n| *n as usize).collect()),
                            wait_times: Some(wait_times(a.wait_times)),
                            arrival_slice: a.arrival.as_ref().map(|part| ArrivalSlice {
                                first: part.slice_first,
                                total: part.slice_total,
                                began_ago: Duration::try_from_secs_f64(part.began_seconds_ago).unwrap_or_default(),
                            }),
                            arrival: a.arrival.map(arrival_rate),
                            ..Default::default()
                        };
                        if let Err(e) = handle.start_test(settings) {
                            tracing::error!("cannot run the assigned users: {e}");
                        }
                        reports.assigned = a.sequence;
                        if let Some(flushed) = flushed {
                            let _ = flushed.await;
                            if !send_stats(deltas, &tx, reports).await {
                                let empty = StatsDelta::default();
                                send_stats_of(&empty, &tx, reports).await;
                            }
                        }
                    }
                    master_message::Kind::Stop(_) => {
                        stop_requested = true;
                        if matches!(handle.state(), RunnerState::Ready | RunnerState::Stopped) {
                            report_stopped(handle, deltas, &tx, reports).await;
                        } else {
                            handle.stop();
                        }
                    }
                    master_message::Kind::Quit(_) => {
                        handle.quit().await;
                        send_stats(deltas, &tx, reports).await;
                        let _ = tx.send(msg(worker_message::Kind::QuitAck(proto::QuitAck {}))).await;
                        // Let the last messages leave before the process ends.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        tracing::info!(
                            "The master asked this worker to quit; it reported {} requests in all",
                            reports.requests
                        );
                        return SessionEnd::Quit;
                    }
                    master_message::Kind::ResetStats(r) => {
                        if r.epoch != reports.epoch {
                            handle.reset_stats();
                            reports.epoch = r.epoch;
                            while deltas.try_recv().is_ok() {}
                        }
                    }
                    master_message::Kind::Custom(m) => {
                        let data = String::from_utf8_lossy(&m.data).into_owned();
                        handle.deliver_message(ClusterMessage { kind: m.r#type, data, peer: "master".into() });
                    }
                    master_message::Kind::Heartbeat(beat) => {
                        let every = beat.report_every_seconds.clamp(1, crate::MAX_REPORT_EVERY_SECONDS);
                        if every != reports.every {
                            tracing::info!("The master asks for statistics every {every} s");
                            reports.every = every;
                        }
                        let client_id = options.id.clone();
                        handle.notify(Notice::HeartbeatReceived { client_id, timestamp: unix_now() });
                    }
                    other => tracing::debug!("unexpected message from the master: {other:?}"),
                }
            }
            Some(message) = messages.recv() => {
                let custom = proto::CustomMessage {
                    r#type: message.kind,
                    data: message.data.into_bytes(),
                    worker_id: options.id.clone(),
                };
                if tx.send(msg(worker_message::Kind::Custom(custom))).await.is_err() {
                    return SessionEnd::Lost("the stream to the master closed".into());
                }
            }
            event = events.recv() => {
                if let Ok(RunnerEvent::TestStopped) = event {
                    // Stopped by the master, or by a user (StopTest): either
                    // way the master hears it after the last statistics.
                    let _ = stop_requested;
                    report_stopped(handle, deltas, &tx, reports).await;
                }
            }
            _ = tick.tick() => {
                if last_master.elapsed() > options.master_timeout {
                    return SessionEnd::Lost(format!("no heartbeat for {:.0?}", options.master_timeout));
                }
                let u = usage.sample().unwrap_or_default();
                let (state, users, cap) = {
                    let store = handle.stats().lock_or_recover();
                    (store.state, store.user_count, store.user_cap)
                };
                let beat = proto::Heartbeat {
                    state: state.as_str().into(),
                    user_count: users as u32,
                    cpu_percent: u.cpu_percent,
                    rss_bytes: u.rss_bytes,
                    user_cap: cap.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                    ..Default::default()
                };
                if tx.send(msg(worker_message::Kind::Heartbeat(beat))).await.is_err() {
                    return SessionEnd::Lost("the stream to the master closed".into());
                }
                // Every second, or every few when the master asks for fewer
                // reports: what was recorded meanwhile goes as one report.
                since_report += 1;
                if since_report < reports.every {
                    continue;
                }
                since_report = 0;
                // Bounded: shards too busy to answer soon report next time.
                let _ = tokio::time::timeout(FLUSH_WAIT, handle.flush()).await;
                send_stats(deltas, &tx, reports).await;
            }
        }
    }
}

/// Flush the shards, send every statistic, then say stopped.
async fn report_stopped(
    handle: &RunnerHandle,
    deltas: &mut mpsc::UnboundedReceiver<StatsDelta>,
    tx: &mpsc::Sender<proto::WorkerMessage>,
    reports: &mut Reports,
) {
    handle.flush().await;
    send_stats(deltas, tx, reports).await;
    let _ = tx.send(msg(worker_message::Kind::Stopped(proto::Stopped {}))).await;
}

/// Send what is waiting in `deltas`, merged into one report; whether
/// there was anything.
async fn send_stats(
    deltas: &mut mpsc::UnboundedReceiver<StatsDelta>,
    tx: &mpsc::Sender<proto::WorkerMessage>,
    reports: &mut Reports,
) -> bool {
    let Ok(mut merged) = deltas.try_recv() else { return false };
    while let Ok(delta) = deltas.try_recv() {
        merged.absorb(delta);
    }
    send_stats_of(&merged, tx, reports).await;
    true
}

/// Report one delta; false when the stream is gone.
async fn send_stats_of(delta: &StatsDelta, tx: &mpsc::Sender<proto::WorkerMessage>, reports: &mut Reports) -> bool {
    let mut report = delta_to_report(delta, reports.epoch, reports.master_instance.unwrap_or_default());
    report.assign_sequence = reports.assigned;
    if tx.send(msg(worker_message::Kind::Stats(report))).await.is_err() {
        return false;
    }
    reports.requests += delta.num_requests();
    true
}

/// What this worker has reported: the statistics epoch its reports carry
/// (it survives reconnects, so reports recorded meanwhile keep it) and how
/// many requests they held in all.
struct Reports {
    epoch: u64,
    /// The master of the current (or last) session.
    master_instance: Option<u64>,
    requests: u64,
    /// The latest Assign (its sequence) from the current master.
    assigned: u64,
    /// Send statistics every this many seconds (the master's latest ask).
    every: u32,
}

impl Default for Reports {
    fn default() -> Self {
        Self { epoch: 0, master_instance: None, requests: 0, assigned: 0, every: 1 }
    }
}

/// The worker's runner and the plan it runs.
struct Runner {
    handle: RunnerHandle,
    deltas: mpsc::UnboundedReceiver<StatsDelta>,
    /// The digest of the plan it was started with.
    digest: String,
    /// The plan and the master's settings it was started with ([`run_setup`]).
    setup: String,
}

/// Everything a runner takes from a welcome: the plan's digest, the plan
/// options, the stop timeout, the test scope and the client settings.
fn run_setup(digest: &str, welcome: &proto::Welcome) -> String {
    let mut plan_options: Vec<_> = welcome.options.iter().collect();
    plan_options.sort();
    format!("{digest} {plan_options:?} {:?} {:?} {:?}", welcome.stop_timeout_seconds, welcome.scope, welcome.client)
}

/// The digest of the plan a session runs: this worker's own, or the one
/// the master shipped.
fn plan_digest(options: &WorkerOptions, welcome: &proto::Welcome) -> String {
    match (&options.plan, &welcome.plan) {
        (Some(own), _) => own.digest(),
        (None, Some(shipped)) => shipped.digest.clone(),
        (None, None) => String::new(),
    }
}

/// The first characters of a digest, for a log line.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// This machine's name, for the master's log.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// A worker id: host, process, and a random suffix (Locust's shape).
pub fn new_worker_id() -> String {
    use rand::Rng;
    format!("{}_{}_{:08x}", hostname(), std::process::id(), rand::thread_rng().r#gen::<u32>())
}

/// The wait times a master assigned, by class name; one it wrote that
/// does not read is left out (the class waits as the plan says) and logged.
fn wait_times(given: std::collections::HashMap<String, String>) -> std::collections::BTreeMap<String, WaitSpec> {
    given
        .into_iter()
        .filter_map(|(class, text)| match WaitSpec::parse(&text) {
            Ok(spec) => Some((class, spec)),
            Err(e) => {
                tracing::error!("the master's wait time for class {class}: {e}");
                None
            }
        })
        .collect()
}

/// The arrival rate of a worker's part, as the master sent it.
fn arrival_rate(part: proto::ArrivalAssign) -> Box<ArrivalRate> {
    Box::new(ArrivalRate {
        start_rate: part.start_rate,
        stages: part
            .stages
            .iter()
            .map(|s| RateStage {
                duration: Duration::try_from_secs_f64(s.seconds).unwrap_or_default(),
                target: s.target,
            })
            .collect(),
        pre_allocated: part.pre_allocated as usize,
        max_users: part.max_users as usize,
    })
}
