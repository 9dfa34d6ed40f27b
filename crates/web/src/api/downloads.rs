//! Files to download: Locust's CSV endpoints (same headers, CRLF lines),
//! the final statistics as JSON, and the HTML report.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use swarmer_engine::{LockExt, StatsStore, unix_now};
use swarmer_report::html::{ReportMeta, render};

use crate::error::ApiError;
use crate::state::AppState;

/// `Locust_2026-11-27-09h01_plan.lua_example.com_requests.csv`: the test's
/// start (UTC), the plan, the host, what the file holds. The parts and the
/// `Locust_` prefix are Locust's own, so that scripts which pick up
/// Locust's downloads by name (`Locust_*_requests.csv`) find these too.
fn file_name(state: &AppState, store: &StatsStore, suffix: &str, extension: &str) -> String {
    let stamp = swarmer_report::csv::utc_timestamp(store.test_started.unwrap_or_else(|| store.stats.start_time()));
    // 2026-11-27T09:01:02Z → 2026-11-27-09h01
    let stamp = format!("{}-{}h{}", &stamp[..10], &stamp[11..13], &stamp[14..16]);
    let safe = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') { c } else { '_' }).collect()
    };
    let host =
        state.runner.host().map(|h| format!("_{}", safe(h.split("://").nth(1).unwrap_or(&h)))).unwrap_or_default();
    let suffix = if suffix.is_empty() { String::new() } else { format!("_{suffix}") };
    format!("Locust_{stamp}_{}{host}{suffix}.{extension}", safe(&state.runner.plan().name))
}

fn attachment(body: String, content_type: &'static str, name: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response()
}

fn download(
    state: &AppState,
    suffix: &str,
    extension: &str,
    content_type: &'static str,
    make: impl Fn(&StatsStore) -> String,
) -> Response {
    let store = state.runner.stats().lock_or_recover();
    attachment(make(&store), content_type, file_name(state, &store, suffix, extension))
}

fn csv_download(state: &AppState, suffix: &str, make: impl Fn(&StatsStore) -> String) -> Response {
    download(state, suffix, "csv", "text/csv; charset=utf-8", make)
}

pub async fn requests_csv(State(state): State<Arc<AppState>>) -> Response {
    csv_download(&state, "requests", |s| swarmer_report::csv::stats_csv(&s.stats))
}

pub async fn failures_csv(State(state): State<Arc<AppState>>) -> Response {
    csv_download(&state, "failures", |s| swarmer_report::csv::failures_csv(&s.stats))
}

pub async fn exceptions_csv(State(state): State<Arc<AppState>>) -> Response {
    csv_download(&state, "exceptions", |s| swarmer_report::csv::exceptions_csv(&s.stats))
}

/// The `--csv-full-history` file as written so far (Locust serves it only
/// then, too).
pub async fn full_history_csv(State(state): State<Arc<AppState>>) -> Response {
    let Some(path) = state.options.full_history_csv.clone() else {
        return ApiError::not_found("the full history is kept only with --csv PREFIX --csv-full-history")
            .into_response();
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let name = file_name(&state, &state.runner.stats().lock_or_recover(), "requests_full_history", "csv");
            attachment(text, "text/csv; charset=utf-8", name)
        }
        Err(e) => ApiError::not_found(format!("{}: {e}", path.display())).into_response(),
    }
}

/// `GET /stats/json`: the statistics as `--json` prints them.
pub async fn json(State(state): State<Arc<AppState>>) -> Response {
    download(&state, "", "json", "application/json", |s| swarmer_report::json::stats_json(&s.stats))
}

#[derive(Deserialize)]
pub struct ReportQuery {
    download: Option<String>,
}

/// `GET /stats/report[?download=1]`: the HTML report.
pub async fn report(State(state): State<Arc<AppState>>, Query(query): Query<ReportQuery>) -> Response {
    let store = state.runner.stats().lock_or_recover();
    let host = state.runner.host();
    // The thresholds' verdicts as the run last judged them.
    let meta = ReportMeta {
        plan: &state.runner.plan().name,
        host: host.as_deref(),
        classes: state.runner.classes(),
        thresholds: &store.thresholds,
    };
    let html = render(&store, &meta, unix_now());
    if query.download.is_some_and(|d| !d.is_empty()) {
        let name = file_name(&state, &store, "", "html");
        return attachment(html, "text/html; charset=utf-8", name);
    }
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}
