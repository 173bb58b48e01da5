//! The one place where errors become HTTP answers.
//!
//! Bodies are `{"code": <status>, "status": "<reason phrase>", "message": "<why>"}` (the
//! `code`/`status` pair is what flask-smorest answers upstream; `message` is what its custom
//! decorators answer). Authentication failures also carry flask-jwt-extended's `msg`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use grove_core::sla::SlaErrors;
use serde_json::json;

use crate::auth::AuthError;
use crate::state::ApplyError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed, expired or wrongly signed token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role or identity does not allow it (403).
    #[error("You have not enough permissions!")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An SLA that breaks the rules; `status` is 422 or 400 depending on the route (as upstream).
    #[error("{errors}")]
    InvalidSla { status: StatusCode, errors: SlaErrors },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    NotImplemented(String),
    /// No quorum or no leader: nothing was changed (503, `"outcome": "not_applied"`).
    #[error("{0}")]
    Unavailable(String),
    /// A write whose outcome cannot be known: it may have been applied (503,
    /// `"outcome": "unknown"`; a client must read before retrying).
    #[error("{0}")]
    Indeterminate(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::InvalidSla { status, .. } => *status,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) | ApiError::Indeterminate(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        let mut body = json!({
            "code": status.as_u16(),
            "status": status.canonical_reason().unwrap_or(""),
            "message": message,
        });
        match &self {
            ApiError::Unauthorized(m) => body["msg"] = json!(m),
            ApiError::Unavailable(_) => body["outcome"] = json!("not_applied"),
            ApiError::Indeterminate(_) => body["outcome"] = json!("unknown"),
            ApiError::InvalidSla { errors, .. } => {
                body["errors"] = errors
                    .errors()
                    .iter()
                    .map(|e| json!({ "field": if e.path.is_empty() { "(document)" } else { e.path.as_str() }, "rule": e.rule.to_string() }))
                    .collect();
            }
            _ => {}
        }
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "{message}");
        }
        (status, Json(body)).into_response()
    }
}

impl From<grove_raft::Error> for ApiError {
    fn from(e: grove_raft::Error) -> Self {
        use grove_raft::Error as E;
        match e {
            E::Unavailable { .. } => ApiError::Unavailable(format!("the root has no quorum, nothing was changed; retry later ({e})")),
            E::Indeterminate { .. } => ApiError::Indeterminate(format!("the outcome is unknown: {e}")),
            E::Stopped { .. } => ApiError::Indeterminate(format!("this replica is shutting down; the outcome is unknown: {e}")),
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

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Key(m) => ApiError::Internal(format!("signing key: {m}")),
            AuthError::Expired => ApiError::Unauthorized("Token has expired".into()),
            AuthError::Invalid(m) => ApiError::Unauthorized(format!("Missing authentication token ({m})")),
            AuthError::WrongType(m) => ApiError::Unauthorized(m),
        }
    }
}
