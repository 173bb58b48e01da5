//! Operational routes: `GET /api/cluster/status` (contract §4.1), liveness, readiness and
//! Prometheus metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use grove_core::status::Status;
use serde_json::{json, Value};

use super::Api;

/// `{cluster_name, cluster_id, connected_to_root}` plus this replica's view of the group.
/// A follower asks the leader whether the root link is up (bounded by `call_timeout_ms`).
pub async fn cluster_status(State(api): State<Api>) -> Json<Value> {
    let shared = &api.shared;
    let st = shared.replica.status();
    let connected = if shared.replica.is_leader() {
        shared.root_connected()
    } else {
        leader_root_link(&api, st.leader_id).await
    };
    let (cluster_id, workers, lost, instances) = shared.replica.read_local(|s| {
        (s.cluster_id.clone(), s.workers.len(), s.workers.values().filter(|w| w.lost).count(), s.instances.len())
    });
    Json(json!({
        "cluster_name": shared.config.cluster_name,
        "cluster_id": cluster_id,
        "connected_to_root": connected,
        "replica_id": st.id,
        "role": st.role,
        "leader_id": st.leader_id,
        "workers": workers,
        "workers_lost": lost,
        "instances": instances,
    }))
}

async fn leader_root_link(api: &Api, leader: Option<u64>) -> bool {
    let Some(addr) = leader.and_then(|l| api.shared.api_of(l)) else { return false };
    let Ok(resp) = api.shared.internal(reqwest::Method::GET, format!("http://{addr}/internal/v1/root-link")).send().await else { return false };
    resp.json::<Value>().await.ok().and_then(|v| v["connected_to_root"].as_bool()).unwrap_or(false)
}

/// The process is alive.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// This replica knows a leader: it can register workers and take deploys.
pub async fn readyz(State(api): State<Api>) -> impl IntoResponse {
    let st = api.shared.replica.status();
    let ready = st.leader_id.is_some();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let reason = if ready { "ready" } else { "no known leader" };
    (code, Json(json!({ "ready": ready, "reason": reason, "role": st.role, "leader_id": st.leader_id, "term": st.term })))
}

/// Prometheus text format.
pub async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    let shared = &api.shared;
    let m = &shared.metrics;
    let st = shared.replica.status();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP grove_cluster_{name} {help}\n# TYPE grove_cluster_{name} gauge\ngrove_cluster_{name} {value}");
    };
    gauge("raft_is_leader", "1 if this replica leads the cluster group.", f64::from(u8::from(st.role == "leader")));
    gauge("raft_term", "Current Raft term.", st.term as f64);
    gauge("raft_commit_index", "Highest committed log index known here.", st.commit_index as f64);
    gauge("raft_applied_index", "Highest log index applied here.", st.applied_index as f64);
    let (workers, lost, by_status) = shared.replica.read_local(|s| {
        let mut by_status: std::collections::BTreeMap<String, u64> = Status::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
        for i in s.instances.values() {
            *by_status.entry(i.status.clone()).or_default() += 1;
        }
        (s.workers.len(), s.workers.values().filter(|w| w.lost).count(), by_status)
    });
    gauge("workers", "Registered workers.", workers as f64);
    gauge("workers_lost", "Registered workers marked lost.", lost as f64);
    gauge("attached_workers", "Workers attached to this replica's MQTT broker.", m.attached_workers.load(Ordering::Relaxed) as f64);
    let _ = writeln!(out, "# HELP grove_cluster_instances Instances by status.\n# TYPE grove_cluster_instances gauge");
    for (status, n) in by_status {
        let _ = writeln!(out, "grove_cluster_instances{{status=\"{status}\"}} {n}");
    }
    for (name, help, value) in [
        ("mqtt_received_total", "MQTT messages the gateway received.", m.mqtt_received.load(Ordering::Relaxed)),
        ("mqtt_published_total", "MQTT messages the gateway published.", m.mqtt_published.load(Ordering::Relaxed)),
        ("status_updates_committed_total", "Worker status events committed through this replica.", m.status_updates_committed.load(Ordering::Relaxed)),
        ("workers_lost_total", "Workers this replica (as leader) declared lost.", m.workers_lost_total.load(Ordering::Relaxed)),
        ("commands_sent_total", "Deploy/delete commands this replica (as leader) delivered.", m.commands_sent_total.load(Ordering::Relaxed)),
    ] {
        let _ = writeln!(out, "# HELP grove_cluster_{name} {help}\n# TYPE grove_cluster_{name} counter\ngrove_cluster_{name} {value}");
    }
    let _ = writeln!(out, "# HELP grove_cluster_mqtt_rejected_total MQTT messages refused, by reason.\n# TYPE grove_cluster_mqtt_rejected_total counter");
    for (reason, n) in m.mqtt_rejected.lock().expect("metrics lock").iter() {
        let _ = writeln!(out, "grove_cluster_mqtt_rejected_total{{reason=\"{reason}\"}} {n}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// `GET /api/cluster/workers`: registered workers (linearizable read).
pub async fn workers(State(api): State<Api>) -> Result<Json<Value>, super::ApiError> {
    let list = api
        .shared
        .replica
        .read_linearizable(|s| {
            s.workers
                .values()
                .map(|w| json!({ "id": w.id, "host": w.host, "ip": w.info.ip, "lost": w.lost, "registered_at_ms": w.registered_at_ms, "virtualization": w.info.virtualization }))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(Value::Array(list)))
}

/// `GET /api/cluster/instances`: every instance with placement, status and desired state
/// (linearizable read).
pub async fn instances(State(api): State<Api>) -> Result<Json<Value>, super::ApiError> {
    let list = api
        .shared
        .replica
        .read_linearizable(|s| {
            s.instances
                .iter()
                .map(|(key, i)| serde_json::to_value(i).map(|mut v| {
                    v["_id"] = json!(key);
                    v
                }))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(|e| super::ApiError::Internal(e.to_string()))?;
    Ok(Json(Value::Array(list)))
}
