//! Read-only views: `/exceptions`, `/tasks` (current task ratios),
//! `/logs`, `/worker-count` and the OpenAPI description of this API.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use swarmer_engine::LockExt;

use crate::state::AppState;

/// The OpenAPI 3 description of every endpoint (kept next to the router;
/// a test checks that every route is described).
pub const OPENAPI: &str = include_str!("../../assets/openapi.json");

pub async fn exceptions(State(state): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = state
        .runner
        .stats()
        .lock_or_recover()
        .stats
        .exceptions()
        .map(|e| {
            let nodes: Vec<&str> = e.nodes.iter().map(String::as_str).collect();
            json!({ "count": e.count, "msg": e.msg, "traceback": e.traceback, "nodes": nodes.join(", ") })
        })
        .collect();
    Json(json!({ "exceptions": list }))
}

pub async fn tasks(State(state): State<Arc<AppState>>) -> Json<Value> {
    let counts = state.runner.stats().lock_or_recover().class_counts.clone();
    Json(swarmer_report::task_ratio::current_ratio_json(state.runner.classes(), &counts))
}

/// Locust's shape: this process's lines under "master", workers' by id.
pub async fn logs(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "master": state.options.logs.lines(), "workers": {} }))
}

pub async fn worker_count(State(state): State<Arc<AppState>>) -> Json<Value> {
    let count = state.runner.workers().map_or(0, swarmer_engine::WorkerRoster::live_count);
    Json(json!({ "worker_count": count }))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
