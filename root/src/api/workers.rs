//! `GET /api/workers/`: every worker of every registered cluster, asked live from each cluster
//! tier's leader over the cluster gRPC (`ListWorkers`). Oakestra's System Manager has no such
//! route (workers are known only to their cluster); Grove's root can answer it because it holds
//! every cluster tier's endpoints.
//!
//! The clusters are asked at once, each call bounded by the cluster call timeout; a cluster that
//! does not answer is listed under `unreachable` with the reason, and the others still answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::Json;
use grove_proto::auth::with_bearer;
use grove_proto::cluster::cluster_client::ClusterClient;
use grove_proto::cluster::{ListWorkersRequest, WorkerSummary};
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::{Api, ApiError, Caller};

/// Lazily connected channels to cluster endpoints, reused across requests (the dispatcher's
/// [`crate::dispatcher::channel`] behind a lock).
#[derive(Default, Clone)]
pub struct ClusterChannels(Arc<Mutex<HashMap<String, Channel>>>);

impl ClusterChannels {
    fn get(&self, endpoint: &str, timeout: std::time::Duration) -> Result<Channel, String> {
        let mut map = self.0.lock().expect("channel map lock");
        crate::dispatcher::channel(&mut map, endpoint, timeout).ok_or_else(|| format!("{endpoint}: not a valid endpoint"))
    }
}

/// One worker as the route answers it.
pub fn worker_document(cluster_id: &str, cluster_name: &str, w: &WorkerSummary) -> Value {
    json!({
        "_id": w.id,
        "id": w.id,
        "hostname": w.hostname,
        "ip": w.ip,
        "cluster_id": cluster_id,
        "cluster_name": cluster_name,
        "active": w.active,
        "cpu_percent": w.cpu_percent,
        "memory_percent": w.memory_percent,
        "vcpus": w.vcpus,
        "memory": w.memory_mb,
        "virtualization": w.virtualization,
        "instances": w.instances,
        "registered_at_ms": w.registered_at_ms,
        "last_seen_ms_ago": w.last_seen_ms_ago,
    })
}

/// Ask every endpoint of one cluster at once; the leader's answer, or every endpoint's reason.
async fn ask(api: &Api, endpoints: &[String]) -> Result<Vec<WorkerSummary>, String> {
    if endpoints.is_empty() {
        return Err("the cluster registered no endpoints".into());
    }
    let timeout = api.settings.cluster_call_timeout;
    let token = api.settings.cluster_token.as_deref();
    let calls = endpoints.iter().map(|e| async move {
        let channel = api.cluster_channels.get(e, timeout)?;
        let mut client = ClusterClient::new(channel);
        match tokio::time::timeout(timeout, client.list_workers(with_bearer(ListWorkersRequest {}, token))).await {
            Ok(Ok(reply)) => Ok(reply.into_inner().workers),
            Ok(Err(status)) => Err(format!("{e}: {}", status.message())),
            Err(_) => Err(format!("{e}: no answer within {timeout:?}")),
        }
    });
    let mut reasons = Vec::new();
    for outcome in futures::future::join_all(calls).await {
        match outcome {
            Ok(workers) => return Ok(workers),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(reasons.join("; "))
}

pub async fn all(State(api): State<Api>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let clusters: Vec<(String, String, Vec<String>)> =
        api.read(|s| s.clusters.values().map(|c| (c.id.clone(), c.name.clone(), c.endpoints.clone())).collect()).await?;
    let asks = clusters.iter().map(|(id, name, endpoints)| {
        let api = &api;
        async move { (id, name, ask(api, endpoints).await) }
    });
    let mut workers = Vec::new();
    let mut unreachable = Vec::new();
    for (id, name, outcome) in futures::future::join_all(asks).await {
        match outcome {
            Ok(list) => workers.extend(list.iter().map(|w| worker_document(id, name, w))),
            Err(error) => unreachable.push(json!({ "cluster_id": id, "cluster_name": name, "error": error })),
        }
    }
    Ok(Json(json!({ "workers": workers, "unreachable": unreachable })))
}
