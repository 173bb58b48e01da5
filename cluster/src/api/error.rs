//! The one place where errors become HTTP answers: `{"code", "status", "message"}` like the
//! root's API, with the status code the error calls for.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::ApplyError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message names the field and the rule (400).
    #[error("{0}")]
    BadRequest(String),
    /// A route between replicas called without the cluster token (401).
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// No quorum, no leader, not the leader, or an outcome that cannot be known (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "{message}");
        }
        let body = json!({ "code": status.as_u16(), "status": status.canonical_reason().unwrap_or(""), "message": message });
        (status, Json(body)).into_response()
    }
}

impl From<grove_raft::Error> for ApiError {
    fn from(e: grove_raft::Error) -> Self {
        use grove_raft::Error as E;
        match e {
            E::Unavailable { .. } => ApiError::Unavailable(format!("the cluster has no quorum, nothing was changed; retry later ({e})")),
            E::Indeterminate { .. } => ApiError::Unavailable(format!("the outcome is unknown, retry: {e}")),
            E::Stopped { .. } => ApiError::Unavailable(format!("this replica is shutting down: {e}")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::NotFound(m) => ApiError::NotFound(m),
            ApplyError::Conflict(m) => ApiError::Conflict(m),
            ApplyError::Invalid(m) => ApiError::BadRequest(m),
        }
    }
}
