//! The cluster's HTTP API on every replica (Oakestra's port 10100): worker registration,
//! cluster status, health, readiness, metrics, and the routes between replicas.

mod error;
pub mod internal;
pub mod nodes;
pub mod ops;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

pub use error::ApiError;

use crate::Shared;

/// The API's state.
#[derive(Clone)]
pub struct Api {
    pub shared: Shared,
}

impl Api {
    pub fn new(shared: Shared) -> Api {
        Api { shared }
    }
}

/// A request body: 413 when over the limit.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("request body exceeds the size limit (max_body_bytes)".into())
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })
}

/// A request body as JSON: 400 naming line and column when it is not JSON.
pub fn body_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("request body is empty; expected a JSON object".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))
}

pub fn router(api: Api) -> Router {
    let limit = api.shared.config.max_body_bytes;
    Router::new()
        .route("/api/node/register", post(nodes::register))
        .route("/api/cluster/status", get(ops::cluster_status))
        .route("/api/cluster/workers", get(ops::workers))
        .route("/api/cluster/instances", get(ops::instances))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(
            Router::new()
                .route("/internal/v1/observations", post(internal::observations))
                .route("/internal/v1/deliver", post(internal::deliver))
                .route("/internal/v1/root-link", get(internal::root_link))
                .route_layer(axum::middleware::from_fn_with_state(api.clone(), internal::require_token)),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve(api: Api, listener: tokio::net::TcpListener, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    // TCP_NODELAY on every connection: an answer must not wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
    });
    axum::serve(listener, router(api)).with_graceful_shutdown(shutdown).await
}
