//! Starting, changing, stopping and resetting a test: Locust's `/swarm`,
//! `/stop` and `/stats/reset`, with the same form fields and answers.
//!
//! Unlike Locust, bad input never turns into a 500: every wrong field gets
//! a 400 whose JSON names it.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde_json::{Value, json};
use swarmer_engine::arrival::{parse_rate, parse_stages};
use swarmer_engine::timespan::parse_timespan;
use swarmer_engine::{ArrivalRate, RunnerState, StartError, TestSettings};

use crate::error::ApiError;
use crate::routes::BODY_LIMIT;
use crate::state::AppState;

/// The most users one form may ask for (a typo with extra zeros must not
/// freeze the runner that places them).
const MAX_USERS: usize = 10_000_000;

/// What a `/swarm` form asks for, checked.
#[derive(Debug, PartialEq)]
pub struct SwarmForm {
    /// With the form's run time, if given.
    pub settings: TestSettings,
    /// Values for the plan's own options, by option name.
    pub options: Vec<(String, String)>,
}

/// `POST /swarm`: `user_count`, `spawn_rate`, `host`, `run_time`,
/// `user_classes` (repeated; with `--class-picker`), and the plan's options.
pub async fn swarm(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body =
        body.map_err(|_| ApiError::bad_field("body", format!("larger than the {} KiB limit", BODY_LIMIT / 1024)))?;
    // A form in the body (urlencoded, or multipart as `curl -F` and a
    // browser's FormData send it), or (for curl one-liners) in the query string.
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let fields: Vec<(String, String)> = if body.is_empty() {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
    } else if let Ok(boundary) = multer::parse_boundary(content_type) {
        multipart_fields(body, boundary).await?
    } else {
        form_urlencoded::parse(&body).into_owned().collect()
    };
    let form = parse_swarm_form(&fields, &state)?;
    for (name, value) in &form.options {
        state.runner.plan().option_values.set(name, value.clone());
    }
    let picked = form.settings.classes.clone();
    let run_time = form.settings.run_time;
    // The test's host: the form's for a new test, else the one it keeps
    // (the runner applies the form's after this answer is made, and not
    // to a running test).
    let running = matches!(state.runner.state(), RunnerState::Spawning | RunnerState::Running);
    let host = form.settings.host.clone().filter(|_| !running).or_else(|| state.runner.host());
    state.start_test(form.settings).map_err(field_error)?;
    let mut answer = json!({
        "success": true,
        "message": "Swarming started",
        "host": host,
    });
    if let Some(run_time) = run_time {
        answer["run_time"] = json!(run_time.as_secs());
    }
    if let Some(mut classes) = picked {
        classes.sort();
        answer["user_classes"] = json!(classes);
    }
    Ok(Json(answer))
}

/// The text fields of a `multipart/form-data` body (files are refused).
async fn multipart_fields(body: Bytes, boundary: String) -> Result<Vec<(String, String)>, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(fields),
            Err(e) => return Err(ApiError::bad_field("body", format!("not a valid multipart form: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if field.file_name().is_some() {
            return Err(ApiError::bad_field(
                "body",
                format!("{name}: a file was sent; the form takes text fields only"),
            ));
        }
        let value = field.text().await.map_err(|e| ApiError::bad_field("body", format!("{name}: unreadable: {e}")))?;
        fields.push((name, value));
    }
}

/// Engine errors start with the field they are about (`host: …`).
/// The form field a refused start is about.
fn field_error(error: StartError) -> ApiError {
    let field = match &error {
        StartError::NoClassPicked | StartError::UnknownPicked { .. } => "user_classes",
        StartError::NoHost { .. } | StartError::NoHostForTest { .. } => "host",
        _ => "form",
    };
    ApiError::bad_field(field, error.to_string())
}

fn parse_swarm_form(fields: &[(String, String)], state: &AppState) -> Result<SwarmForm, ApiError> {
    let one = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned());
    let users = match one("user_count") {
        None => return Err(ApiError::bad_field("user_count", "missing: how many users to run")),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= MAX_USERS => n,
            Ok(_) => return Err(ApiError::bad_field("user_count", format!("at most {MAX_USERS} users, got {v}"))),
            Err(_) => {
                return Err(ApiError::bad_field(
                    "user_count",
                    format!("expected a whole number of users (0 or more), got {v:?}"),
                ));
            }
        },
    };
    let spawn_rate = match one("spawn_rate") {
        None => return Err(ApiError::bad_field("spawn_rate", "missing: how many users to start per second")),
        Some(v) => match v.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => r,
            _ => {
                return Err(ApiError::bad_field(
                    "spawn_rate",
                    format!("expected a positive number of users per second, got {v:?}"),
                ));
            }
        },
    };
    let host = match one("host") {
        None => None,
        Some(h) if h.is_empty() => Some(String::new()),
        Some(h) => {
            let h = h.replace(['<', '>'], "");
            if !(h.starts_with("http://") || h.starts_with("https://")) || h.len() <= "https://".len() {
                return Err(ApiError::bad_field("host", format!("expected an http:// or https:// URL, got {h:?}")));
            }
            Some(h.trim_end_matches('/').to_owned())
        }
    };
    let run_time = match one("run_time").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(parse_timespan(&v).map_err(|_| {
            ApiError::bad_field("run_time", format!("expected a duration such as 20, 20s, 3m, 2h or 1h20m, got {v:?}"))
        })?),
    };
    let classes = if state.options.class_picker {
        let picked: Vec<String> = fields
            .iter()
            .filter(|(k, _)| k == "user_classes")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .collect();
        (!picked.is_empty()).then_some(picked)
    } else {
        None
    };
    let mut options = Vec::new();
    for option in &state.runner.plan().options {
        let key = option.name.replace('-', "_");
        if let Some(value) = one(&option.name).or_else(|| one(&key)) {
            option
                .check(&value)
                .map_err(|e| ApiError { field: None, ..ApiError::bad_field("option", e.to_string()) })?;
            options.push((option.name.clone(), value));
        }
    }
    let arrival = parse_arrival(&one, users)?;
    let settings = TestSettings {
        users,
        spawn_rate,
        host,
        classes,
        class_counts: None,
        class_mix: None,
        run_time,
        wait_times: None,
        shape_step: None,
        arrival,
        arrival_slice: None,
    };
    Ok(SwarmForm { settings, options })
}

/// The form's arrival rate (`arrival_rate`, optional `arrival_stages` and
/// `max_users`); `user_count` is then the pre-allocated users. `None`
/// when `arrival_rate` is empty: users are kept busy (Locust's model).
fn parse_arrival(one: &dyn Fn(&str) -> Option<String>, users: usize) -> Result<Option<Box<ArrivalRate>>, ApiError> {
    let Some(rate) = one("arrival_rate").filter(|v| !v.is_empty()) else { return Ok(None) };
    let start_rate = parse_rate(&rate).map_err(|e| ApiError::bad_field("arrival_rate", e.0))?;
    let stages = match one("arrival_stages").filter(|v| !v.is_empty()) {
        Some(text) => parse_stages(&text).map_err(|e| ApiError::bad_field("arrival_stages", e.0))?,
        None => Vec::new(),
    };
    let max_users = match one("max_users").filter(|v| !v.is_empty()) {
        None => users,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= MAX_USERS => n,
            _ => {
                return Err(ApiError::bad_field(
                    "max_users",
                    format!("expected a whole number of users up to {MAX_USERS}, got {v:?}"),
                ));
            }
        },
    };
    let arrival = ArrivalRate { start_rate, stages, pre_allocated: users, max_users };
    arrival.check().map_err(|e| ApiError::bad_field("max_users", e.0))?;
    Ok(Some(Box::new(arrival)))
}

/// `GET|POST /stop`.
pub async fn stop(State(state): State<Arc<AppState>>) -> Json<Value> {
    state.stop_test();
    Json(json!({ "success": true, "message": "Test stopped" }))
}

/// `GET|POST /stats/reset`: forget every statistic so far, exactly.
pub async fn reset(State(state): State<Arc<AppState>>) -> &'static str {
    state.runner.reset_stats();
    "ok"
}
