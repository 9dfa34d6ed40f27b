//! `GET /stats/requests` (Locust's JSON, field for field) and
//! `GET /stats/history` (the chart points since the test started, so a
//! reloaded page redraws its charts).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use swarmer_engine::{LockExt, WorkerRoster, unix_now};

use crate::state::AppState;

/// The `/stats/requests` answer, as the push stream also sends it.
pub fn requests_value(state: &AppState) -> Value {
    let workers = state.runner.workers().map(WorkerRoster::all);
    swarmer_report::live::requests_payload(&state.runner.stats().lock_or_recover(), workers.as_deref(), unix_now())
}

pub async fn requests(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(requests_value(&state))
}

pub async fn history(State(state): State<Arc<AppState>>) -> Json<Value> {
    let points = swarmer_report::live::history_payload(&state.runner.stats().lock_or_recover());
    Json(points)
}
