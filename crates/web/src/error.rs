//! Errors a handler answers with: bad input names the field (400), a
//! missing login is 401, a missing file 404. Never a panic.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error response with a JSON body `{success: false, message, field}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub field: Option<&'static str>,
    pub message: String,
}

impl ApiError {
    /// 400: `field` was missing or wrong; `message` says what was expected.
    pub fn bad_field(field: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, field: Some(field), message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, field: None, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match self.field {
            Some(field) if !self.message.starts_with(field) => format!("{field}: {}", self.message),
            _ => self.message,
        };
        (self.status, Json(json!({ "success": false, "message": message, "field": self.field }))).into_response()
    }
}
