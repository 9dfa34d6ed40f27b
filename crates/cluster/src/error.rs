//! The cluster's errors, typed: a caller can tell a refusal (wrong token,
//! another plan) from a bad flag or a port that cannot be bound; each
//! message names the flag, file or address at fault.

use std::path::PathBuf;

use swarmer_engine::{PlanError, StartError};
use thiserror::Error;

use crate::auth::MIN_TOKEN_LEN;

/// Why a master or a worker stopped or did not start.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The master's cluster port could not be bound.
    #[error("--master-bind-port: could not listen on {addr}: {source}")]
    Bind {
        /// `host:port` as tried.
        addr: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A file named by a flag could not be read.
    #[error("{flag} {}: {source}", path.display())]
    File {
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Only one of `--cluster-tls-cert` and `--cluster-tls-key` was given.
    #[error("--cluster-tls-cert and --cluster-tls-key go together")]
    TlsPair,
    /// The TLS files do not make a TLS configuration.
    #[error("cluster TLS: {0}")]
    Tls(String),
    /// `--master-host` does not make an address.
    #[error("--master-host {host}: {reason}")]
    MasterHost {
        /// The host given.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The master refused this worker, or could not prove the token: the
    /// worker must not run its plan.
    #[error("{0}")]
    Refused(String),
    /// The master sent neither a plan nor a name of one.
    #[error("the master sent no plan")]
    NoPlan,
    /// The plan shipped by the master is not acceptable.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The plan does not build.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The runner under the master or the worker did not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// A plan bundle that cannot be made, received or written.
#[derive(Debug, Error)]
pub enum BundleError {
    /// The plan's path names no file.
    #[error("{}: not a file", .0.display())]
    NotAFile(PathBuf),
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The plan's folder holds too much to ship.
    #[error(
        "{}: the plan's folder holds more than {limit_mib} MiB of plan and data files; move the plan to a folder of its own",
        dir.display()
    )]
    TooLarge {
        /// The plan's folder.
        dir: PathBuf,
        /// The limit, MiB.
        limit_mib: u64,
    },
    /// A file the plan needs lies outside the plan's folder.
    #[error(
        "{}: outside the plan's folder {}: -f - workers only get files from that folder (move it there, \
         or give workers their own copy of the plan)",
        file.display(),
        folder.display()
    )]
    OutsidePlanFolder {
        /// The file.
        file: PathBuf,
        /// The plan's folder.
        folder: PathBuf,
    },
    /// A received file's path would leave the folder it is written to.
    #[error("plan bundle: refusing the path {0:?}")]
    UnsafePath(String),
    /// A received entry's path would leave the folder it is written to.
    #[error("plan bundle: refusing the entry {0:?}")]
    UnsafeEntry(String),
    /// A received bundle's digest does not match its files.
    #[error("plan bundle: the digest does not match its content")]
    Digest,
}

/// A cluster token too short to be a secret.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("the cluster token must have at least {MIN_TOKEN_LEN} characters")]
pub struct TokenTooShort;

/// A worker's statistics report that does not hold together.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("entry {method} {name}: {reason}")]
pub struct ReportError {
    /// The entry's method.
    pub method: String,
    /// The entry's name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}
