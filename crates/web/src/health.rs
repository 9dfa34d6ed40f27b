//! Health checks of a worker, for Kubernetes probes (`--health-port`):
//! `GET /healthz` answers 200 while the worker's runtime answers at all
//! (liveness), `GET /readyz` 200 while it is connected to its master and
//! 503 while it is not (readiness).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::WebError;

/// The health checks, served until the returned task is aborted or the
/// runtime ends. `connected` says whether the worker has its master.
pub async fn serve_health(
    addr: SocketAddr,
    connected: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), WebError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| WebError::Bind { addr: addr.to_string(), source })?;
    let bound = listener.local_addr().map_err(|source| WebError::Bind { addr: addr.to_string(), source })?;
    let router =
        Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(ready)).with_state(connected);
    Ok((bound, tokio::spawn(crate::server::accept(listener, None, router))))
}

async fn ready(State(connected): State<watch::Receiver<bool>>) -> (StatusCode, &'static str) {
    if *connected.borrow() {
        (StatusCode::OK, "connected to the master\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to the master\n")
    }
}
