//! Routes between the replicas of one cluster tier (JSON over the API port, each call bounded
//! by the caller's `call_timeout_ms`):
//! - `POST /internal/v1/observations`: a gateway's batch for the leader's soft state; a replica
//!   that does not lead answers 503 and the gateway tries the current leader next time.
//! - `POST /internal/v1/deliver`: the leader hands messages for workers attached to this
//!   replica's broker; only `nodes/<id>/control/{deploy,delete,error}` topics are accepted.
//! - `GET /internal/v1/root-link`: whether this replica (if it leads) is connected to the root.
//!
//! With a cluster token configured, every one of them requires `authorization: Bearer <token>`
//! (401 otherwise): `deliver` publishes deploy commands to workers, which nobody else may do.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::{body_bytes, Api, ApiError};
use crate::delivery::Delivery;
use crate::soft::Observations;

/// The cluster token check in front of every internal route.
pub async fn require_token(State(api): State<Api>, request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let header = request.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match grove_proto::auth::check(api.shared.config.cluster_token.as_deref(), header) {
        Ok(()) => next.run(request).await,
        Err(reason) => axum::response::IntoResponse::into_response(ApiError::Unauthorized(reason.to_owned())),
    }
}

pub async fn observations(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let bytes = body_bytes(body)?;
    let batch: Observations = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("observations: {e}")))?;
    if !api.shared.replica.is_leader() {
        return Err(ApiError::Unavailable("this replica does not lead the cluster".into()));
    }
    let n = batch.workers.len();
    api.shared.observe(batch);
    Ok(Json(json!({ "accepted": n })))
}

pub async fn deliver(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let bytes = body_bytes(body)?;
    let delivery: Delivery = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("delivery: {e}")))?;
    for (i, m) in delivery.messages.iter().enumerate() {
        m.check().map_err(|e| ApiError::BadRequest(format!("messages[{i}].{e}")))?;
    }
    let n = delivery.messages.len();
    for m in delivery.messages {
        api.shared.outbox.send(m).map_err(|_| ApiError::Unavailable("the MQTT gateway has stopped".into()))?;
    }
    Ok(Json(json!({ "published": n })))
}

pub async fn root_link(State(api): State<Api>) -> Json<Value> {
    let leader = api.shared.replica.is_leader();
    let connected = leader && api.shared.root_connected();
    Json(json!({ "leader": leader, "connected_to_root": connected }))
}
