//! `GET /stats/requests` (Locust's JSON, field for field) and
//! `GET /stats/history` (the chart points since the test started, so a
//! reloaded page redraws its charts).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use swarmer_engine::unix_now;

use crate::state::AppState;

/// The `/stats/requests` answer, as the push stream also sends it.
pub fn requests_value(state: &AppState) -> Value {
    match state.runner.stats().lock() {
        Ok(store) => swarmer_report::live::requests_payload(&store, unix_now()),
        Err(_) => json!({ "stats": [], "errors": [], "state": "missing", "user_count": 0 }),
    }
}

pub async fn requests(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(requests_value(&state))
}

pub async fn history(State(state): State<Arc<AppState>>) -> Json<Value> {
    let points = state.runner.stats().lock().map(|s| swarmer_report::live::history_payload(&s)).unwrap_or(json!([]));
    Json(points)
}
