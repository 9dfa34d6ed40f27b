//! Many lightweight workers in one process, for measuring a master
//! (bench/cluster.sh): each connects, proves the token, and every second
//! sends a heartbeat and a realistic statistics report (`--names` request
//! names with a histogram each), as a real worker under load does.
//!
//! `simulated_workers --master 127.0.0.1:5557 --workers 100 --names 50 --seconds 30 --plan builtin:hello`
//! (token from SWARMER_CLUSTER_TOKEN).

use std::time::{Duration, Instant};

use swarmer_cluster::auth::{ClusterToken, nonce};
use swarmer_cluster::bundle::Bundle;
use swarmer_cluster::convert::delta_to_report;
use swarmer_cluster::proto::{self, cluster_client::ClusterClient, master_message, worker_message};
use swarmer_stats::{RequestSample, ShardRecorder};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn msg(kind: worker_message::Kind) -> proto::WorkerMessage {
    proto::WorkerMessage { kind: Some(kind) }
}

async fn worker(
    index: usize,
    master: String,
    token: ClusterToken,
    digest: String,
    names: usize,
    until: Instant,
) -> Result<u64, String> {
    let mut client = ClusterClient::connect(format!("http://{master}")).await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(64);
    let my_nonce = nonce();
    let hello = proto::Hello {
        protocol: swarmer_cluster::PROTOCOL,
        worker_id: format!("sim-{index}"),
        hostname: "sim".into(),
        cores: 1,
        plan_digest: digest,
        nonce: my_nonce.clone(),
    };
    tx.send(msg(worker_message::Kind::Hello(hello))).await.map_err(|e| e.to_string())?;
    let mut inbound = client.join(ReceiverStream::new(rx)).await.map_err(|e| e.to_string())?.into_inner();
    let Some(proto::MasterMessage { kind: Some(master_message::Kind::Challenge(c)) }) =
        inbound.message().await.map_err(|e| e.to_string())?
    else {
        return Err("no challenge".into());
    };
    let proof = token.worker_proof(&c.nonce, &my_nonce);
    tx.send(msg(worker_message::Kind::Proof(proto::Proof { proof }))).await.map_err(|e| e.to_string())?;
    let mut users = 0u32;
    let mut sent = 0u64;
    // Statistics carry the instance of the master that welcomed this worker.
    let mut instance = 0u64;
    let mut recorder = ShardRecorder::new(format!("sim-{index}"));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let names: Vec<String> = (0..names).map(|i| format!("/api/item/{i}")).collect();
    let mut rng = index as u64 * 7919 + 1;
    while Instant::now() < until {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(proto::MasterMessage { kind: Some(master_message::Kind::Welcome(w)) })) => instance = w.master_instance,
                Ok(Some(proto::MasterMessage { kind: Some(master_message::Kind::Assign(a)) })) => users = a.class_counts.iter().sum(),
                Ok(Some(proto::MasterMessage { kind: Some(master_message::Kind::Quit(_)) })) | Ok(None) | Err(_) => break,
                _ => {}
            },
            _ = tick.tick() => {
                // About 20 requests per name and second, times spread 1–500 ms.
                let now = swarmer_stats::unix_now();
                for name in &names {
                    for _ in 0..20 {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let rt = 1_000 + (rng >> 33) % 499_000;
                        let sample = RequestSample { method: "GET", name, response_time_us: Some(rt), ttfb_us: rt / 2, content_length: 512, error: None };
                        recorder.record(&sample, now);
                        sent += 1;
                    }
                }
                let report = delta_to_report(&recorder.take_delta(), 0, instance);
                let beat = proto::Heartbeat { state: "running".into(), user_count: users, cpu_percent: 50.0, rss_bytes: 50 << 20 };
                if tx.send(msg(worker_message::Kind::Heartbeat(beat))).await.is_err()
                    || tx.send(msg(worker_message::Kind::Stats(report))).await.is_err()
                {
                    break;
                }
            }
        }
    }
    Ok(sent)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let master = arg("--master", "127.0.0.1:5557");
    let workers: usize = arg("--workers", "100").parse().expect("--workers N");
    let names: usize = arg("--names", "50").parse().expect("--names N");
    let seconds: u64 = arg("--seconds", "30").parse().expect("--seconds S");
    let plan = arg("--plan", "builtin:hello");
    let token =
        ClusterToken::new(&std::env::var("SWARMER_CLUSTER_TOKEN").unwrap_or_default()).expect("SWARMER_CLUSTER_TOKEN");
    let digest = Bundle::named(&plan).digest();
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..workers)
        .map(|i| tokio::spawn(worker(i, master.clone(), token.clone(), digest.clone(), names, until)))
        .collect();
    let mut total = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => eprintln!("simulated worker failed: {e}"),
            Err(e) => eprintln!("simulated worker panicked: {e}"),
        }
    }
    println!("{total}");
}
