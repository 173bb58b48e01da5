//! Clusters as the root sees them, and the HTTP routes stock Oakestra components call.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::{json_body, Api, ApiError};
use crate::state::{ClusterAggregate, RootCommand};

pub async fn all(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    Ok(Json(api.read(|s| s.clusters.values().map(|c| c.document()).collect::<Vec<_>>().into()).await?))
}

/// Clusters the leader considers alive (reported within the cluster timeout).
pub async fn active(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    Ok(Json(api.read(|s| s.clusters.values().filter(|c| c.active).map(|c| c.document()).collect::<Vec<_>>().into()).await?))
}

/// The aggregate fields of a cluster report (contract §3.2), read leniently.
pub fn parse_aggregate(body: &Value) -> ClusterAggregate {
    let f = |k: &str| body.get(k).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0.0);
    let strings = |k: &str| -> Vec<String> {
        body.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v.get("csi_driver_name").and_then(Value::as_str).map(str::to_owned)))
                    .collect()
            })
            .unwrap_or_default()
    };
    ClusterAggregate {
        cpu_percent: f("cpu_percent"),
        memory_percent: f("memory_percent"),
        vcpus: f("vcpus").max(0.0) as u32,
        memory: f("memory").max(0.0) as u64,
        vgpus: f("vgpus").max(0.0) as u32,
        virtualization: strings("virtualization"),
        supported_addons: strings("supported_addons"),
        csi_drivers: strings("csi_drivers"),
        gpu_drivers: strings("gpu_drivers"),
        active_nodes: f("active_nodes").max(0.0) as u32,
    }
}

/// A stock Oakestra cluster manager's periodic report: the aggregate is committed (the
/// cluster's `jobs[]` status mirroring is done by Grove's gRPC report stream, not here).
pub async fn information(
    State(api): State<Api>,
    Path(cluster_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("body: must be a JSON object".into()));
    }
    if body.get("jobs").is_none() {
        return Err(ApiError::BadRequest("jobs: is required".into()));
    }
    let aggregate = parse_aggregate(&body);
    api.write(RootCommand::ReportCluster { id: cluster_id, aggregate, at_ms: crate::ids::now_ms() }).await?;
    Ok(Json(json!("ok")))
}

/// Upstream's external scheduler posted its results here; Grove's root scheduler runs inside
/// the leader and commits placements itself.
pub async fn result_deploy() -> ApiError {
    ApiError::NotImplemented("Grove's root scheduler is built into the root leader; it takes no external results".into())
}
