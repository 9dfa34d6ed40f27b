//! The web UI's start-up errors, typed; each message names the flag or
//! file that is wrong.

use std::path::PathBuf;

use thiserror::Error;

/// Why the web UI did not start.
#[derive(Debug, Error)]
pub enum WebError {
    /// `--web-base-path` is not of the form `/path`.
    #[error("--web-base-path {0:?}: expected a path that starts with a slash and does not end with one, e.g. /swarmer")]
    BasePath(String),
    /// The address could not be bound.
    #[error("web UI: could not listen on {addr}: {source}")]
    Bind {
        /// `host:port` as tried.
        addr: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A TLS file (`--tls-cert`, `--tls-key`) cannot be used.
    #[error("{flag} {}: {reason}", path.display())]
    TlsFile {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and key do not make a TLS configuration.
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(String),
}

/// A login account list (`--web-login-file`, `--web-auth`) that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CredentialsError {
    /// A line is not `user:password`, or one of the two is empty.
    #[error("{source_name}:{line}: {reason}")]
    BadLine {
        /// Where the accounts came from.
        source_name: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: &'static str,
    },
    /// No account at all.
    #[error("{0}: no user:password line")]
    Empty(String),
}
