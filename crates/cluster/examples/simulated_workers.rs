//! Many lightweight workers in one process, for measuring a master
//! (bench/cluster.sh): each connects, proves the token, and every second
//! sends a heartbeat and a realistic statistics report (`--names` request
//! names with a histogram each, about 20 requests a name), as a real worker
//! under load does; a report every few seconds when the master asks for
//! fewer (backpressure).
//!
//! The reports are made once, before the workers start (a few distinct
//! ones, their times moved to the second they are sent), so that a
//! thousand workers fit on a small machine next to the master; the
//! connections are spread over loopback addresses (127.0.0.1, .2, ...),
//! 200 each, below the master's bound per address. What it prints is the
//! requests of the reports sent within the test the master started (after
//! its statistics reset, before it stopped), which the master's total
//! must equal.
//!
//! `simulated_workers --master 127.0.0.1:5557 --workers 100 --names 50 --seconds 30 --plan builtin:hello`
//! (token from SWARMER_CLUSTER_TOKEN).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmer_cluster::auth::{ClusterToken, nonce};
use swarmer_cluster::bundle::Bundle;
use swarmer_cluster::convert::delta_to_report;
use swarmer_cluster::proto::{self, cluster_client::ClusterClient, master_message, worker_message};
use swarmer_stats::{RequestSample, ShardRecorder};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// Distinct reports the workers take turns sending.
const TEMPLATES: usize = 8;
/// Connections per loopback address.
const PER_ADDRESS: usize = 200;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn msg(kind: worker_message::Kind) -> proto::WorkerMessage {
    proto::WorkerMessage { kind: Some(kind) }
}

/// A second's report of `names` names, about 20 requests each, with
/// response times spread over 1–500 ms.
fn template(seed: u64, names: usize) -> proto::StatsReport {
    let mut recorder = ShardRecorder::new(format!("sim-template-{seed}"));
    let now = swarmer_stats::unix_now();
    let mut rng = seed * 7919 + 1;
    for i in 0..names {
        let name = format!("/api/item/{i}");
        for _ in 0..20 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let rt = 1_000 + (rng >> 33) % 499_000;
            let sample = RequestSample {
                method: "GET",
                name: &name,
                response_time_us: Some(rt),
                ttfb_us: rt / 2,
                content_length: 512,
                error: None,
            };
            recorder.record(&sample, now);
        }
    }
    delta_to_report(&recorder.take_delta(), 0, 0)
}

/// `template` as sent now: its times moved to this second.
fn retimed(template: &proto::StatsReport, epoch: u64, instance: u64, sequence: u64) -> proto::StatsReport {
    let mut report = template.clone();
    let now = swarmer_stats::unix_now();
    let second = now as u64;
    report.epoch = epoch;
    report.master_instance = instance;
    report.assign_sequence = sequence;
    for entry in &mut report.entries {
        entry.start_time = now;
        entry.last_request_timestamp = Some(now);
        for count in &mut entry.per_second {
            count.second = second;
        }
    }
    report
}

async fn worker(
    index: usize,
    master: String,
    token: ClusterToken,
    digest: String,
    templates: Arc<Vec<proto::StatsReport>>,
    until: Instant,
) -> Result<u64, String> {
    let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (index / PER_ADDRESS) as u8));
    let channel = Endpoint::from_shared(format!("http://{master}"))
        .map_err(|e| e.to_string())?
        .local_address(Some(local))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut client = ClusterClient::new(channel);
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
    // What the reports carry: the master that welcomed this worker, its
    // statistics epoch, the assignment they follow.
    let (mut instance, mut epoch, mut sequence) = (0u64, 0u64, 0u64);
    let mut running = false;
    // Report every this many seconds, as the master asks (backpressure);
    // a report then stands for all of them.
    let (mut every, mut since_report) = (1u32, 0u32);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut turn = index;
    while Instant::now() < until {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(proto::MasterMessage { kind: Some(kind) })) => match kind {
                    master_message::Kind::Welcome(w) => (instance, epoch) = (w.master_instance, w.stats_epoch),
                    master_message::Kind::ResetStats(r) => {
                        epoch = r.epoch;
                        sent = 0;
                    }
                    master_message::Kind::Assign(a) => {
                        users = a.class_counts.iter().sum();
                        sequence = a.sequence;
                        running = true;
                    }
                    master_message::Kind::Stop(_) => {
                        running = false;
                        users = 0;
                        let _ = tx.send(msg(worker_message::Kind::Stopped(proto::Stopped {}))).await;
                    }
                    master_message::Kind::Quit(_) => break,
                    master_message::Kind::Heartbeat(h) => {
                        every = h.report_every_seconds.clamp(1, swarmer_cluster::MAX_REPORT_EVERY_SECONDS);
                    }
                    _ => {}
                },
                Ok(_) | Err(_) => break,
            },
            _ = tick.tick() => {
                let state = if running { "running" } else { "ready" };
                let beat = proto::Heartbeat { state: state.into(), user_count: users, cpu_percent: 50.0, rss_bytes: 50 << 20, ..Default::default() };
                if tx.send(msg(worker_message::Kind::Heartbeat(beat))).await.is_err() {
                    break;
                }
                if !running || instance == 0 {
                    continue;
                }
                since_report += 1;
                if since_report < every {
                    continue;
                }
                since_report = 0;
                turn += 1;
                let report = retimed(&templates[turn % templates.len()], epoch, instance, sequence);
                let requests: u64 = report.entries.iter().map(|e| e.num_requests).sum();
                if tx.send(msg(worker_message::Kind::Stats(report))).await.is_err() {
                    break;
                }
                sent += requests;
            }
        }
    }
    Ok(sent)
}

fn main() {
    let master = arg("--master", "127.0.0.1:5557");
    let workers: usize = arg("--workers", "100").parse().expect("--workers N");
    let names: usize = arg("--names", "50").parse().expect("--names N");
    let seconds: u64 = arg("--seconds", "30").parse().expect("--seconds S");
    let threads: usize = arg("--threads", "2").parse().expect("--threads N");
    let plan = arg("--plan", "builtin:hello");
    let token =
        ClusterToken::new(&std::env::var("SWARMER_CLUSTER_TOKEN").unwrap_or_default()).expect("SWARMER_CLUSTER_TOKEN");
    let digest = Bundle::named(&plan).digest();
    let templates: Arc<Vec<_>> = Arc::new((0..TEMPLATES as u64).map(|seed| template(seed, names)).collect());
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("a runtime");
    let total = runtime.block_on(async move {
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for i in 0..workers {
            tasks.push(tokio::spawn(worker(
                i,
                master.clone(),
                token.clone(),
                digest.clone(),
                templates.clone(),
                until,
            )));
            // Joins spread over a moment, as real workers' do.
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut total = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(n)) => total += n,
                Ok(Err(e)) => eprintln!("simulated worker failed: {e}"),
                Err(e) => eprintln!("simulated worker panicked: {e}"),
            }
        }
        total
    });
    println!("{total}");
}
