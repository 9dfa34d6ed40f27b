//! Swarmer's web surface: the UI a person runs a test from, the JSON API
//! that Locust's scripts and exporters already speak, Prometheus metrics,
//! a live push channel, and the HTML report.
//!
//! Map of the crate:
//! - [`WebServer`] (`server`): binds, serves HTTP or HTTPS (rustls), one
//!   tokio task per connection, all on the caller's runtime.
//! - `routes`: the router: which path goes to which handler, under
//!   `--web-base-path`, behind the login check.
//! - `state`: what every handler shares: the runner's handle, the options,
//!   the run-time timer of the current test, the live stream.
//! - `api::*`: one module per group of endpoints: `control` (start, stop,
//!   reset), `stats` (Locust's `/stats/requests` JSON), `downloads` (CSV and
//!   report files), `info` (tasks, exceptions, logs, OpenAPI), `metrics`
//!   (Prometheus text), `stream` (Server-Sent Events every second).
//! - [`auth`]: `--web-login`: hashed credentials, sessions, basic auth.
//! - `pages`: the embedded UI (HTML, JS, CSS and the vendored chart
//!   library), served from the binary: no Node.js needed to build or run.
//! - [`LogBuffer`] (`logs`): the last log lines, for `/logs`.
//!
//! What it does not do: run users or keep statistics (the engine does), or
//! decide when the process exits (the command line does).

mod api;
pub mod auth;
mod error;
mod health;
mod logs;
mod pages;
mod routes;
mod server;
mod start_error;
mod state;

pub use health::serve_health;
pub use logs::LogBuffer;
pub use server::{FormDefaults, TlsFiles, WebOptions, WebServer};
pub use start_error::{CredentialsError, WebError};
