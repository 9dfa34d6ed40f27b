//! The gRPC side of the master: one task per worker stream. It runs the
//! token handshake, checks the plan, welcomes the worker, then passes what
//! the worker says to the master's loop as [`WorkerEvent`]s. Nothing a
//! worker sends before it has proved the token reaches the loop.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::Stream;
use swarmer_engine::OptionValues;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::incoming::PeerInfo;
use crate::auth::{ClusterToken, nonce};
use crate::bundle::Bundle;
use crate::proto::{self, master_message, worker_message};

/// How long a connecting worker gets for each handshake step.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a worker's stream tells the master's loop.
#[derive(Debug)]
pub enum WorkerEvent {
    Joined { id: String, session: u64, cores: u32, hostname: String, tx: mpsc::UnboundedSender<proto::MasterMessage> },
    Heartbeat { id: String, session: u64, beat: proto::Heartbeat },
    Stats { id: String, session: u64, report: proto::StatsReport },
    Stopped { id: String, session: u64 },
    QuitAck { id: String, session: u64 },
    Custom { id: String, message: proto::CustomMessage },
    Gone { id: String, session: u64, reason: String },
    Leaving { id: String, session: u64, reason: String },
}

pub struct ClusterService {
    pub events: mpsc::Sender<WorkerEvent>,
    pub token: ClusterToken,
    pub bundle: Arc<Bundle>,
    pub digest: String,
    pub options: OptionValues,
    pub sessions: AtomicU64,
    /// The master's `--stop-timeout`, told to joining workers.
    pub stop_timeout: Duration,
    /// The master's statistics epoch (resets so far), told to joining workers.
    pub epoch: Arc<AtomicU64>,
    /// A number drawn when the master started, told to joining workers and
    /// carried by their statistics (see `Welcome.master_instance`).
    pub instance: u64,
    /// The classes and tags the test runs, told to joining workers.
    pub scope: proto::TestScope,
    /// The HTTP client settings users run with, told to joining workers.
    pub client: proto::ClientSettings,
}

type Outbound = Pin<Box<dyn Stream<Item = Result<proto::MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl proto::cluster_server::Cluster for Arc<ClusterService> {
    type JoinStream = Outbound;

    async fn join(
        &self,
        request: Request<Streaming<proto::WorkerMessage>>,
    ) -> Result<Response<Self::JoinStream>, Status> {
        // The connection's: its address, and what lifts its bounds once proved.
        let connection = request.extensions().get::<PeerInfo>().cloned();
        let inbound = request.into_inner();
        // Unbounded: control messages (assign, stop, quit) are never dropped;
        // a worker that stops reading is found by its missing heartbeats.
        let (tx, rx) = mpsc::unbounded_channel();
        let service = self.clone();
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move { service.session(connection, session, inbound, tx).await });
        Ok(Response::new(Box::pin(futures_util::StreamExt::map(UnboundedReceiverStream::new(rx), Ok))))
    }
}

fn message(kind: master_message::Kind) -> proto::MasterMessage {
    proto::MasterMessage { kind: Some(kind) }
}

/// A worker id as logged: quoted, its first 64 characters only (a refused
/// peer's text is not copied into the log whole).
fn shown_id(id: &str) -> String {
    match id.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &id[..cut], id.len()),
        None => format!("{id:?}"),
    }
}

impl ClusterService {
    async fn refuse(
        &self,
        tx: &mpsc::UnboundedSender<proto::MasterMessage>,
        peer: Option<SocketAddr>,
        who: &str,
        reason: &str,
    ) {
        let from = peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
        tracing::warn!("refused {who} from {from}: {reason}");
        let _ = tx.send(message(master_message::Kind::Reject(proto::Reject { reason: reason.to_owned() })));
    }

    async fn session(
        self: Arc<Self>,
        connection: Option<PeerInfo>,
        session: u64,
        mut inbound: Streaming<proto::WorkerMessage>,
        tx: mpsc::UnboundedSender<proto::MasterMessage>,
    ) {
        let peer = connection.as_ref().map(|c| c.remote);
        // 1. Hello.
        let hello = match step(&mut inbound).await {
            Ok(Some(worker_message::Kind::Hello(h))) => h,
            Ok(_) => return self.refuse(&tx, peer, "a connection", "the first message was not a hello").await,
            Err(e) => return self.refuse(&tx, peer, "a connection", &e).await,
        };
        let who = format!("worker {}", shown_id(&hello.worker_id));
        if hello.protocol != crate::PROTOCOL {
            let reason = format!("protocol version {} (this master speaks {})", hello.protocol, crate::PROTOCOL);
            return self.refuse(&tx, peer, &who, &reason).await;
        }
        if hello.worker_id.is_empty() || hello.worker_id.len() > 200 || hello.nonce.len() < 16 {
            return self.refuse(&tx, peer, &who, "malformed hello").await;
        }
        // 2. Prove the token to the worker, then have it prove the token.
        let master_nonce = nonce();
        let proof = self.token.master_proof(&hello.nonce, &master_nonce);
        let challenge = proto::Challenge { nonce: master_nonce.clone(), proof };
        if tx.send(message(master_message::Kind::Challenge(challenge))).is_err() {
            return;
        }
        match step(&mut inbound).await {
            Ok(Some(worker_message::Kind::Proof(p)))
                if self.token.check_worker_proof(&master_nonce, &hello.nonce, &p.proof) =>
            {
                if let Some(connection) = &connection {
                    connection.prove();
                }
            }
            Ok(Some(worker_message::Kind::Proof(_))) => {
                return self.refuse(&tx, peer, &who, "wrong cluster token").await;
            }
            Ok(_) => return self.refuse(&tx, peer, &who, "no token proof").await,
            Err(e) => return self.refuse(&tx, peer, &who, &e).await,
        }
        // 3. Same plan?
        if !hello.plan_digest.is_empty() && hello.plan_digest != self.digest {
            let reason = format!(
                "its plan differs from the master's (digest {} vs {}): run the same plan, or start the worker with -f - to receive the master's",
                short(&hello.plan_digest),
                short(&self.digest)
            );
            return self.refuse(&tx, peer, &who, &reason).await;
        }
        let welcome = proto::Welcome {
            plan: hello.plan_digest.is_empty().then(|| self.bundle.to_proto()),
            options: self.options.snapshot().into_iter().collect(),
            stats_epoch: self.epoch.load(Ordering::Relaxed),
            master_instance: self.instance,
            stop_timeout_seconds: Some(self.stop_timeout.as_secs_f64()),
            scope: Some(self.scope.clone()),
            client: Some(self.client.clone()),
        };
        if tx.send(message(master_message::Kind::Welcome(welcome))).is_err() {
            return;
        }
        let id = hello.worker_id.clone();
        let joined =
            WorkerEvent::Joined { id: id.clone(), session, cores: hello.cores.max(1), hostname: hello.hostname, tx };
        if self.events.send(joined).await.is_err() {
            return;
        }
        // 4. The worker's life.
        let reason = loop {
            let event = match next(&mut inbound).await {
                Ok(Some(worker_message::Kind::Heartbeat(beat))) => {
                    WorkerEvent::Heartbeat { id: id.clone(), session, beat }
                }
                Ok(Some(worker_message::Kind::Stats(report))) if report.master_instance != self.instance => {
                    tracing::warn!(
                        "worker {id}: statistics recorded for another master ({} requests) dropped",
                        report.entries.iter().map(|e| e.num_requests).sum::<u64>()
                    );
                    continue;
                }
                Ok(Some(worker_message::Kind::Stats(report))) => WorkerEvent::Stats { id: id.clone(), session, report },
                Ok(Some(worker_message::Kind::Stopped(_))) => WorkerEvent::Stopped { id: id.clone(), session },
                Ok(Some(worker_message::Kind::QuitAck(_))) => WorkerEvent::QuitAck { id: id.clone(), session },
                Ok(Some(worker_message::Kind::Leaving(l))) => {
                    WorkerEvent::Leaving { id: id.clone(), session, reason: l.reason }
                }
                Ok(Some(worker_message::Kind::Custom(mut m))) => {
                    m.worker_id = id.clone();
                    WorkerEvent::Custom { id: id.clone(), message: m }
                }
                Ok(Some(other)) => {
                    tracing::warn!("worker {id}: unexpected message {other:?} ignored");
                    continue;
                }
                Ok(None) => break "disconnected".to_string(),
                Err(e) => break e,
            };
            if self.events.send(event).await.is_err() {
                return;
            }
        };
        let _ = self.events.send(WorkerEvent::Gone { id, session, reason }).await;
    }
}

fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

/// The next message of a handshake step, which must come in time.
async fn step(inbound: &mut Streaming<proto::WorkerMessage>) -> Result<Option<worker_message::Kind>, String> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, next(inbound)).await.unwrap_or_else(|_| Err("handshake timed out".into()))
}

/// The next message's content (heartbeats watch the pace after the handshake).
async fn next(inbound: &mut Streaming<proto::WorkerMessage>) -> Result<Option<worker_message::Kind>, String> {
    match inbound.message().await {
        Ok(Some(m)) => m.kind.map(Some).ok_or_else(|| "an empty message".to_string()),
        Ok(None) => Ok(None),
        Err(status) => Err(format!("stream error: {}", status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::shown_id;

    #[test]
    fn a_long_worker_id_is_cut_in_the_log() {
        assert_eq!(shown_id("w-1"), "\"w-1\"");
        let long = "x".repeat(10_000);
        let shown = shown_id(&long);
        assert!(shown.len() < 100 && shown.ends_with("... (10000 bytes)"), "{shown}");
    }
}
