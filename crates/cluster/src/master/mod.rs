//! The master: serves the cluster port, and runs the loop behind an engine
//! [`RunnerHandle`] that turns "start N users" into each worker's share,
//! merges the workers' statistics exactly, watches their heartbeats and
//! moves a lost worker's users to the others at once.
//!
//! The master runs no users itself. Its state follows Locust's: ready →
//! spawning → running → stopping → stopped; it is "running" once every
//! worker reports its share running, "stopped" once every worker has
//! stopped and sent its last statistics.

mod incoming;
mod opening;
mod service;
mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmer_engine::{
    LocalRunner, LockExt, NodeRole, Plan, PlanSummary, RunnerChannels, RunnerHandle, RunnerOptions, RunnerState,
    StartError, StatsStore, TlsOptions, UsageMonitor, WorkerRoster,
};
use swarmer_stats::{History, RequestStats, unix_now};
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::auth::{ClusterTls, ClusterToken};
use crate::bundle::Bundle;
use crate::error::ClusterError;
use crate::proto::cluster_server::ClusterServer;
use service::ClusterService;
use state::MasterLoop;

/// How the master listens and judges its workers.
pub struct MasterOptions {
    /// `--master-bind-host` (empty or `*`: every interface).
    pub bind_host: String,
    /// `--master-bind-port` (0: any free port).
    pub bind_port: u16,
    /// The cluster's shared secret; a worker must prove it knows it before it may join.
    pub token: ClusterToken,
    /// TLS of the cluster port; without a certificate the port is not encrypted.
    pub tls: ClusterTls,
    /// A worker silent this long is missing and its users move.
    pub heartbeat_timeout: Duration,
    /// The plan as workers receive it (`-f -`) or must match.
    pub bundle: Bundle,
    /// The certificate files users present to and trust in the target,
    /// shipped to workers with the other client settings.
    pub client_tls: TlsOptions,
}

/// A running master.
pub struct Master {
    handle: RunnerHandle,
    addr: SocketAddr,
}

impl Master {
    /// Check the plan, bind the cluster port, start the loop. Errors name
    /// the flag or address at fault.
    pub async fn start(plan: Plan, runner: RunnerOptions, options: MasterOptions) -> Result<Master, ClusterError> {
        let classes = plan.info(&runner.classes, &runner.tags)?;
        if let Some(shape) = &runner.shape {
            let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
            shape.lock_or_recover().check(&names).map_err(|e| ClusterError::Start(StartError::Shape(e)))?;
        }
        let host = match options.bind_host.as_str() {
            "" | "*" => "0.0.0.0",
            h => h,
        };
        let bind = if host.contains(':') {
            format!("[{host}]:{}", options.bind_port)
        } else {
            format!("{host}:{}", options.bind_port)
        };
        let listener = match TcpListener::bind(&bind).await {
            Ok(listener) => listener,
            Err(source) => return Err(ClusterError::Bind { addr: bind, source }),
        };
        let addr = listener.local_addr().map_err(|source| ClusterError::Bind { addr: bind, source })?;
        let mut server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(2)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .max_concurrent_streams(Some(4));
        let acceptor = tls::acceptor(&options.tls)?;
        if acceptor.is_none() {
            tracing::warn!(
                "The cluster port is not encrypted (no --cluster-tls-cert): workers prove the token, but anyone on the \
                 network can read the traffic"
            );
        }
        let stats = Arc::new(Mutex::new(StatsStore::new(
            RunnerState::Ready,
            RequestStats::new(unix_now()),
            History::default(),
        )));
        let roster = WorkerRoster::default();
        let summary = PlanSummary {
            name: plan.name.clone(),
            options: plan.options.clone(),
            option_values: plan.option_values.clone(),
        };
        let RunnerChannels { handle, commands, events, host } =
            RunnerHandle::remote(stats.clone(), classes.clone(), runner.host.clone(), summary);
        let handle = handle.with_workers(roster.clone());
        // Bounded: a master that cannot keep up stops reading workers'
        // streams (HTTP/2 flow control holds their reports back) and asks
        // them to report less often, instead of queueing without end.
        let (worker_tx, worker_rx) = tokio::sync::mpsc::channel(state::EVENT_QUEUE);
        let digest = options.bundle.digest();
        let epoch = Arc::new(AtomicU64::new(0));
        let service = Arc::new(ClusterService {
            events: worker_tx,
            token: options.token.clone(),
            bundle: Arc::new(options.bundle),
            digest,
            options: plan.option_values.clone(),
            sessions: AtomicU64::new(0),
            epoch: epoch.clone(),
            stop_timeout: runner.stop_timeout,
            scope: crate::convert::test_scope(&runner.classes, &runner.tags),
            client: crate::client_settings::to_proto(&runner.client, &options.client_tls, options.tls.cert.is_some())?,
            // Never 0: a report without the field (an older worker) carries 0.
            instance: rand::random::<u64>().max(1),
        });
        // Workers send heartbeats and statistics, never bundles: a smaller
        // limit on what the master reads keeps unauthenticated peers from
        // making it buffer much.
        let svc = ClusterServer::new(service)
            .max_decoding_message_size(crate::MAX_REPORT_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
        let incoming = incoming::incoming(listener, incoming::Limits::for_this_process(), acceptor);
        tokio::spawn(async move {
            if let Err(e) = server.add_service(svc).serve_with_incoming(incoming).await {
                tracing::error!("the cluster server stopped: {e}");
            }
        });
        // The plan runs on the master too, without users: its test_start and
        // test_stop listeners and message handlers (role "master").
        let (message_tx, message_rx) = tokio::sync::mpsc::unbounded_channel();
        let control_options = RunnerOptions {
            // A plan with a process part runs its hooks there, without users.
            shards: if plan.process_host().is_some() { 0 } else { 1 },
            role: NodeRole::Master,
            message_out: Some(message_tx),
            stats: Some(stats.clone()),
            workers: Some(roster.clone()),
            host_required: false,
            delta_sink: None,
            // The master's own loop drives the load shape.
            shape: None,
            ..runner.clone()
        };
        let control = LocalRunner::start(plan.clone(), control_options).await?;
        let master = MasterLoop::new(
            plan,
            runner,
            classes,
            stats,
            roster,
            events,
            host,
            options.heartbeat_timeout,
            UsageMonitor::new(),
        );
        tokio::spawn(master.run(commands, worker_rx, control, message_rx, epoch));
        tracing::info!("Cluster master listening on {addr}");
        Ok(Master { handle, addr })
    }

    /// The handle surfaces control and read the distributed test through.
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// The cluster port's address, with the real port when `bind_port` was 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Workers connected and not missing.
    pub fn worker_count(&self) -> usize {
        worker_count(&self.handle)
    }
}

/// Workers of a master's handle that are connected and not missing.
pub fn worker_count(handle: &RunnerHandle) -> usize {
    handle.workers().map_or(0, WorkerRoster::live_count)
}
