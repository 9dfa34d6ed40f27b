//! The router: every path, under `--web-base-path`, behind the login check
//! when `--web-login` is on. Locust's paths keep Locust's methods; the ones
//! Locust 2.47 made POST-only (`/stop`, `/stats/reset`) accept GET too,
//! because older scripts use it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::api::{control, downloads, info, metrics, stats, stream};
use crate::auth;
use crate::pages;
use crate::state::AppState;

/// Largest request body accepted (a start form is a few hundred bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    let inner = Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login_page).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/assets/{file}", get(pages::asset))
        .route("/favicon.ico", get(pages::favicon))
        .route("/swarm", post(control::swarm))
        .route("/stop", get(control::stop).post(control::stop))
        .route("/stats/reset", get(control::reset).post(control::reset))
        .route("/stats/requests", get(stats::requests))
        .route("/stats/history", get(stats::history))
        .route("/stats/requests/csv", get(downloads::requests_csv))
        .route("/stats/failures/csv", get(downloads::failures_csv))
        .route("/stats/requests_full_history/csv", get(downloads::full_history_csv))
        .route("/exceptions/csv", get(downloads::exceptions_csv))
        .route("/stats/report", get(downloads::report))
        .route("/stats/json", get(downloads::json))
        .route("/exceptions", get(info::exceptions))
        .route("/tasks", get(info::tasks))
        .route("/logs", get(info::logs))
        .route("/worker-count", get(info::worker_count))
        .route("/openapi.json", get(info::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/stream", get(stream::stream))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(refuse_cross_site))
        .layer(middleware::from_fn_with_state(state.clone(), require_login))
        .layer(middleware::map_response(security_headers))
        .with_state(state.clone());
    let base = state.options.base_path.clone();
    if base.is_empty() {
        return inner;
    }
    let home = base.clone();
    Router::new()
        .route(&format!("{base}/"), get(move || async move { Redirect::temporary(&home) }))
        .nest(&base, inner)
        .fallback(not_found)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({ "success": false, "message": "no such page" }))).into_response()
}

/// No framing by other sites, no MIME sniffing, no referrer to other sites
/// (same-origin requests keep it, so they name their origin). There is
/// no CORS header, so other sites' pages cannot read the API's answers
/// (what they could still *send* is refused by [`refuse_cross_site`]).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// Paths that change something (start, stop, reset, log in or out).
const CHANGING: [&str; 5] = ["/swarm", "/stop", "/stats/reset", "/login", "/logout"];

/// Refuse requests that change something when a browser says another site
/// sent them (`Sec-Fetch-Site`, or an `Origin` other than this host): a
/// page elsewhere cannot start, stop or reset a test through a visitor's
/// browser. Scripts (curl, exporters) send neither header and are not
/// affected.
async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let changing = CHANGING.contains(&request.uri().path())
        && (request.method() != Method::GET || request.uri().path() != "/login");
    if changing {
        let headers = request.headers();
        // Browsers that send Sec-Fetch-Site are judged by it alone; older
        // ones by their Origin: another host, or `null` (a sandboxed frame,
        // a data: URL or a redirect chain elsewhere can send that; the UI's
        // own requests name their origin, as the referrer policy is
        // `same-origin`).
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let cross_fetch = matches!(fetch_site, Some("cross-site" | "same-site"));
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let cross_origin = fetch_site.is_none()
            && match (origin, host) {
                (Some("null"), _) => true,
                (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
                _ => false,
            };
        if cross_fetch || cross_origin {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(json!({ "success": false, "message": "refused: this request came from another site" })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// With `--web-login`: a valid session cookie or basic-auth header, else
/// the login page (a browser asking for the UI) or 401 (anything else).
async fn require_login(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.options.credentials.is_none() {
        return next.run(request).await;
    }
    // Under --web-base-path the router has already stripped the prefix.
    let relative = request.uri().path().to_owned();
    if relative == "/login" || relative == "/favicon.ico" {
        return next.run(request).await;
    }
    let headers = request.headers();
    let by_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(auth::session_cookie)
        .any(|token| state.sessions.is_valid(token));
    if by_cookie {
        return next.run(request).await;
    }
    // Checked only without a valid session (a password check costs two
    // hashes), in turn with every other check, as the login form's.
    if let Some(basic) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
        && state.check_password("basic auth", move |credentials| credentials.verify_basic(&basic)).await
    {
        return next.run(request).await;
    }
    let headers = request.headers();
    if request.method() == Method::GET && (relative == "/" || relative.is_empty()) {
        return Redirect::to(&state.path("/login")).into_response();
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "success": false, "message": "authentication required: log in or use basic auth" })),
    )
        .into_response();
    // The UI's own requests must not make the browser pop up its dialog.
    if !headers.contains_key("x-swarmer-ui") {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"swarmer\""));
    }
    response
}

#[cfg(test)]
mod tests {
    /// Every route of the router is in the OpenAPI description.
    #[test]
    fn openapi_describes_every_route() {
        let spec: serde_json::Value = serde_json::from_str(crate::api::info::OPENAPI).unwrap();
        let source = include_str!("routes.rs");
        let routes: Vec<&str> = source
            .split(".route(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|p| p.starts_with('/'))
            .collect();
        assert!(routes.len() > 20, "{routes:?}");
        for route in routes {
            assert!(spec["paths"].get(route).is_some(), "{route} is not in assets/openapi.json");
        }
    }
}
