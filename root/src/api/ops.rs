//! Operational routes: liveness, readiness, Prometheus metrics; and upstream's uploader.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::{Api, ApiError};

/// The process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// This replica knows a leader, holds the signing key and has applied the default admin: it
/// can serve every request (a load balancer routes to it).
pub async fn readyz(State(api): State<Api>) -> impl IntoResponse {
    let status = api.replica.status();
    let bootstrapped = api.replica.read_local(|s| s.bootstrapped);
    let reason = if status.leader_id.is_none() {
        "no known leader"
    } else if !api.has_key() {
        "signing key not loaded yet"
    } else if !bootstrapped {
        "default organization and admin not applied yet"
    } else {
        "ready"
    };
    let ready = reason == "ready";
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "ready": ready, "reason": reason, "id": status.id, "role": status.role, "leader_id": status.leader_id, "term": status.term });
    (code, Json(body))
}

/// `GET /api/raft/status`: every replica of the root tier as it reports itself (grove-raft's
/// status, asked over the Raft gRPC with a short timeout; `{"id", "addr", "error"}` for one that
/// does not answer). Cluster tiers are listed with their registered endpoints.
pub async fn raft_status(State(api): State<Api>, _caller: super::Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let own = api.replica.status();
    let addrs: Vec<String> = own.members.iter().map(|m| m.addr.clone()).collect();
    let client = grove_raft::client::GroupClient::new(crate::RAFT_GROUP, &addrs, std::time::Duration::from_secs(1))
        .map_err(|e| ApiError::Internal(format!("raft status client: {e}")))?;
    let replica = &api.replica;
    let asks = own.members.iter().map(|m| {
        let client = &client;
        async move {
            if m.id == own.id {
                return serde_json::to_value(replica.status()).unwrap_or_default();
            }
            match client.status_of(&m.addr).await {
                Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                Err(e) => json!({ "id": m.id, "addr": m.addr, "error": e.to_string() }),
            }
        }
    });
    let replicas = futures::future::join_all(asks).await;
    let clusters: Vec<serde_json::Value> = api.replica.read_local(|s| {
        s.clusters
            .values()
            .map(|c| json!({ "tier": "cluster", "group": format!("cluster-{}", c.name), "active": c.active, "endpoints": c.endpoints, "replicas": [] }))
            .collect()
    });
    let mut tiers = vec![json!({ "tier": "root", "group": crate::RAFT_GROUP, "replicas": replicas })];
    tiers.extend(clusters);
    Ok(Json(json!({ "tiers": tiers })))
}

/// Prometheus text format.
pub async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    let st = api.replica.status();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP grove_root_raft_is_leader 1 if this replica leads the root group.");
    let _ = writeln!(out, "# TYPE grove_root_raft_is_leader gauge");
    let _ = writeln!(out, "grove_root_raft_is_leader {}", u8::from(st.role == "leader"));
    for (name, value) in [("term", st.term), ("commit_index", st.commit_index), ("applied_index", st.applied_index), ("last_log_index", st.last_log_index)] {
        let _ = writeln!(out, "# TYPE grove_root_raft_{name} gauge");
        let _ = writeln!(out, "grove_root_raft_{name} {value}");
    }
    let counts = api.replica.read_local(|s| {
        let instances = || s.jobs.values().flat_map(|j| j.instances.values());
        [
            ("applications", s.applications.len()),
            ("services", s.jobs.len()),
            ("instances", instances().count()),
            ("clusters", s.clusters.len()),
            ("clusters_active", s.clusters.values().filter(|c| c.active).count()),
            // Dispatches committed but not acknowledged by their cluster yet.
            ("pending_deploys", instances().filter(|i| !i.cluster_id.is_empty() && !i.deploy_acked).count()),
            ("pending_undeploys", s.pending_undeploys.len()),
        ]
    });
    for (name, value) in counts {
        let _ = writeln!(out, "# TYPE grove_root_{name} gauge");
        let _ = writeln!(out, "grove_root_{name} {value}");
    }
    let requests = api.metrics.requests.lock().expect("metrics lock").clone();
    let _ = writeln!(out, "# HELP grove_root_http_requests_total HTTP requests answered, by method, route and status.");
    let _ = writeln!(out, "# TYPE grove_root_http_requests_total counter");
    for ((method, route, status), (count, _)) in &requests {
        let _ = writeln!(out, "grove_root_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}");
    }
    let _ = writeln!(out, "# TYPE grove_root_http_request_seconds_sum counter");
    for ((method, route, status), (_, seconds)) in &requests {
        let _ = writeln!(out, "grove_root_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {seconds}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Upstream stored uploaded SLA files on the server's disk; Grove keeps no files outside Raft.
pub async fn uploader() -> ApiError {
    ApiError::NotImplemented("the file uploader is not implemented in Grove; send the SLA as the request body of POST /api/application/".into())
}
