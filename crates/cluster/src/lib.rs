//! Distributed runs: a master that dispatches users and merges statistics,
//! and workers that run the users (Locust's `--master` / `--worker`).
//!
//! Map of the crate:
//! - `proto` (generated from `proto/cluster.proto`, the versioned schema)
//!   and `convert`: statistics deltas to and from protocol messages,
//!   histograms as HdrHistogram V2 bytes so the master merges them exactly.
//! - [`auth`]: the shared cluster token, proved both ways with HMAC over
//!   fresh nonces (the token never crosses the wire), and TLS settings.
//! - `assign`: which worker runs how many users of which class (weighted by
//!   cores, `fixed_count` honoured cluster-wide).
//! - [`bundle`]: the plan shipped to `-f -` workers (every Lua module and
//!   data file next to the plan) and its digest.
//! - [`master`]: the gRPC server and the master's loop behind an engine
//!   [`swarmer_engine::RunnerHandle`], so the web UI and the console drive a
//!   cluster exactly as they drive one process.
//! - [`worker`]: connects, proves the token, runs the engine's
//!   `LocalRunner` with its share of the users, reports every second,
//!   reconnects when the master goes away.
//!
//! What it does not do: parse flags, or load plans (the caller passes a
//! loader), or serve the UI.

pub mod assign;
pub mod auth;
pub mod bundle;
pub mod convert;
pub mod master;
pub mod worker;

/// The generated protocol types and gRPC client/server.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("swarmer.cluster.v1");
}

/// Protocol version sent in `Hello`; a master refuses other versions.
pub const PROTOCOL: u32 = 1;
/// Largest protocol message accepted (a plan bundle with its data files).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Largest message a master reads from a worker (a second of statistics).
pub const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;
