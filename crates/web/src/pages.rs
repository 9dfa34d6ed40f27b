//! The embedded UI: the page, its script and styles, the vendored chart
//! library, and the login page. Everything is compiled into the binary
//! (`include_str!`), so `cargo build` alone gives a working UI.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use swarmer_engine::LockExt;
use swarmer_report::html::{CHARTS_JS, UPLOT_CSS, UPLOT_JS, UPLOT_LICENSE, escape, script_json};

use crate::auth::{self, COOKIE};
use crate::state::AppState;

const INDEX: &str = include_str!("../assets/index.html");
const LOGIN: &str = include_str!("../assets/login.html");
const APP_JS: &str = include_str!("../assets/app.js");
const WORKER_CHARTS_JS: &str = include_str!("../assets/worker-charts.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const FAVICON: &str = include_str!("../assets/favicon.svg");

/// `GET /`: the page, with what it needs to know embedded as JSON.
pub async fn index(State(state): State<Arc<AppState>>) -> Html<String> {
    let plan = state.runner.plan();
    let values = plan.option_values.snapshot();
    let options: Vec<_> = plan
        .options
        .iter()
        .map(|o| {
            json!({
                "name": o.name,
                "help": o.help,
                "kind": o.kind.as_str(),
                "default": o.default,
                "choices": o.choices,
                "value": values.get(&o.name),
            })
        })
        .collect();
    let classes: Vec<_> = state
        .runner
        .classes()
        .iter()
        .map(|c| json!({ "name": c.name, "weight": c.weight, "fixed_count": c.fixed_count, "host": c.host }))
        .collect();
    let defaults = &state.options.defaults;
    let config = json!({
        "base": state.options.base_path,
        "version": env!("CARGO_PKG_VERSION"),
        "plan": plan.name,
        "host": state.runner.host(),
        "classes": classes,
        "class_picker": state.options.class_picker,
        "options": options,
        "defaults": {
            "users": defaults.users,
            "spawn_rate": defaults.spawn_rate,
            "run_time": defaults.run_time.map(|d| d.as_secs()),
        },
        "login": state.options.credentials.is_some(),
        "full_history": state.options.full_history_csv.is_some(),
        "is_distributed": state.runner.workers().is_some(),
        "shape": state.runner.stats().lock_or_recover().shape_name.clone(),
    });
    Html(
        INDEX
            .replace("{{BASE}}", &escape(&state.options.base_path))
            .replace("{{TITLE}}", &escape(&format!("Swarmer: {}", plan.name)))
            .replace("{{CONFIG}}", &script_json(&config)),
    )
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "charts.js" => (CHARTS_JS, "text/javascript; charset=utf-8"),
        "worker-charts.js" => (WORKER_CHARTS_JS, "text/javascript; charset=utf-8"),
        "uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        "uPlot-LICENSE.txt" => (UPLOT_LICENSE, "text/plain; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// `GET /favicon.ico`: the UI's icon (an SVG, which browsers take at this
/// path too).
pub async fn favicon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=86400")], FAVICON).into_response()
}

#[derive(Deserialize)]
pub struct LoginQuery {
    error: Option<String>,
}

/// `GET /login`: the login form (or the UI, when login is off).
pub async fn login_page(State(state): State<Arc<AppState>>, Query(query): Query<LoginQuery>) -> Response {
    if state.options.credentials.is_none() {
        return Redirect::to(&home(&state)).into_response();
    }
    let error =
        if query.error.is_some() { "<p class=\"error\" role=\"alert\">Wrong user name or password.</p>" } else { "" };
    Html(LOGIN.replace("{{BASE}}", &escape(&state.options.base_path)).replace("{{ERROR}}", error)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

/// How long a wrong password waits before its answer (slows guessing).
pub(crate) const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(400);

/// `POST /login`: check, open a session, set its cookie.
pub async fn login_submit(State(state): State<Arc<AppState>>, Form(form): Form<LoginForm>) -> Response {
    if state.options.credentials.is_none() {
        return Redirect::to(&home(&state)).into_response();
    }
    let what = format!("form, user {:?}", form.username);
    let (user, password) = (form.username, form.password);
    if !state.check_password(&what, move |credentials| credentials.verify(&user, &password)).await {
        return Redirect::to(&state.path("/login?error=1")).into_response();
    }
    let token = state.sessions.open();
    let cookie = format!(
        "{COOKIE}={token}; Path={}; HttpOnly; SameSite=Strict{}",
        cookie_path(&state),
        if state.tls { "; Secure" } else { "" }
    );
    let mut response = Redirect::to(&home(&state)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /logout`: end the session.
pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    for token in headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).filter_map(auth::session_cookie)
    {
        state.sessions.close(token);
    }
    let mut response = Redirect::to(&state.path("/login")).into_response();
    let expired = format!("{COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0", cookie_path(&state));
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn home(state: &AppState) -> String {
    if state.options.base_path.is_empty() { "/".into() } else { state.options.base_path.clone() }
}

fn cookie_path(state: &AppState) -> String {
    home(state)
}
