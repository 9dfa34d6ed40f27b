//! The distributed-run flags (Locust's names) and turning them into the
//! cluster crate's options.

use std::path::PathBuf;

use clap::Args;
use swarmer_cluster::auth::{ClusterTls, ClusterToken};

use crate::args::parse_positive_timeout;

/// Options of master and worker processes.
#[derive(Debug, Args, Clone, Default)]
pub struct ClusterArgs {
    /// Run as the master of a distributed test: workers connect to it and run the users.
    #[arg(long = "master", env = "SWARMER_MASTER", conflicts_with = "worker")]
    pub master: bool,

    /// Interface the master listens on for workers (default: every interface).
    #[arg(long = "master-bind-host", env = "SWARMER_MASTER_BIND_HOST", default_value = "*")]
    pub master_bind_host: String,

    /// Port the master listens on for workers.
    #[arg(long = "master-bind-port", env = "SWARMER_MASTER_BIND_PORT", default_value_t = 5557)]
    pub master_bind_port: u16,

    /// Headless master: wait for this many workers before starting.
    #[arg(long = "expect-workers", env = "SWARMER_EXPECT_WORKERS", default_value_t = 1)]
    pub expect_workers: usize,

    /// Seconds to wait for --expect-workers before giving up (0: forever).
    #[arg(long = "expect-workers-max-wait", env = "SWARMER_EXPECT_WORKERS_MAX_WAIT", default_value_t = 0)]
    pub expect_workers_max_wait: u64,

    /// Run as a worker: connect to the master and run the users it assigns (-f - runs the master's plan).
    #[arg(long = "worker", env = "SWARMER_WORKER")]
    pub worker: bool,

    /// Host of the master (for --worker).
    #[arg(long = "master-host", env = "SWARMER_MASTER_HOST", default_value = "127.0.0.1")]
    pub master_host: String,

    /// Port of the master (for --worker).
    #[arg(long = "master-port", env = "SWARMER_MASTER_PORT", default_value_t = 5557)]
    pub master_port: u16,

    /// Start N worker processes on this machine (-1: one per core); without --worker this process is their master.
    #[arg(long = "processes", env = "SWARMER_PROCESSES", allow_negative_numbers = true, value_parser = parse_processes)]
    pub processes: Option<i64>,

    /// Shared secret of the cluster (at least 16 characters; prefer the environment variable or --cluster-token-file).
    #[arg(long = "cluster-token", env = "SWARMER_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,

    /// File holding the cluster's shared secret.
    #[arg(long = "cluster-token-file", env = "SWARMER_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: Option<PathBuf>,

    /// Master: certificate chain (PEM) to serve the cluster port over TLS. Worker: client certificate for mutual TLS.
    #[arg(long = "cluster-tls-cert", env = "SWARMER_CLUSTER_TLS_CERT", requires = "cluster_tls_key")]
    pub cluster_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --cluster-tls-cert.
    #[arg(long = "cluster-tls-key", env = "SWARMER_CLUSTER_TLS_KEY", requires = "cluster_tls_cert")]
    pub cluster_tls_key: Option<PathBuf>,

    /// Worker: CA (PEM) the master's certificate must chain to (turns TLS on). Master: require worker certificates from this CA.
    #[arg(long = "cluster-ca", env = "SWARMER_CLUSTER_CA")]
    pub cluster_ca: Option<PathBuf>,

    /// Worker: the name the master's certificate must carry (default: --master-host).
    #[arg(long = "cluster-server-name", env = "SWARMER_CLUSTER_SERVER_NAME")]
    pub cluster_server_name: Option<String>,

    /// Files or folders (relative to the plan's folder) to ship to -f - workers besides what the plan loads, e.g. data it opens while running.
    #[arg(long = "plan-files", env = "SWARMER_PLAN_FILES", value_name = "PATH", num_args = 1.., value_delimiter = ',')]
    pub plan_files: Vec<PathBuf>,

    /// Master: seconds without a heartbeat before a worker is missing and its users move.
    #[arg(long = "heartbeat-timeout", env = "SWARMER_HEARTBEAT_TIMEOUT", default_value_t = 3.0, value_parser = parse_positive_timeout)]
    pub heartbeat_timeout: f64,

    /// Worker: seconds without the master before its users stop (it keeps reconnecting).
    #[arg(long = "master-timeout", env = "SWARMER_MASTER_TIMEOUT", default_value_t = 10.0, value_parser = parse_positive_timeout)]
    pub master_timeout: f64,

    /// Worker: serve health checks on this port, all interfaces (GET /healthz: the
    /// worker answers; GET /readyz: it is connected to its master), for Kubernetes probes.
    #[arg(long = "health-port", env = "SWARMER_HEALTH_PORT", value_name = "PORT")]
    pub health_port: Option<u16>,
}

impl ClusterArgs {
    /// The cluster token from the flag, the environment or the file.
    pub fn token(&self) -> Result<ClusterToken, String> {
        let text = match (&self.cluster_token, &self.cluster_token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|e| format!("--cluster-token-file {}: {e}", path.display()))?
            }
            (None, None) => {
                return Err("a distributed run needs a shared secret: --cluster-token-file FILE, \
                            SWARMER_CLUSTER_TOKEN, or --cluster-token"
                    .into());
            }
        };
        ClusterToken::new(&text).map_err(|e| format!("--cluster-token: {e}"))
    }

    pub fn tls(&self) -> ClusterTls {
        ClusterTls {
            cert: self.cluster_tls_cert.clone(),
            key: self.cluster_tls_key.clone(),
            ca: self.cluster_ca.clone(),
            server_name: self.cluster_server_name.clone(),
        }
    }
}

/// `--processes`: a number of processes, or -1 for one per core.
fn parse_processes(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>().map_err(|e| e.to_string())? {
        n if n == -1 || n >= 1 => Ok(n),
        _ => Err("expected a number of processes, or -1 for one per core".to_owned()),
    }
}
