//! `grove raft status`: role, term, leader and indexes of every replica of every tier.
//!
//! The root is asked for `GET /api/raft/status` (every tier's replicas, as the root leader
//! knows them). Where the root does not serve it, each endpoint given to the CLI is asked
//! about itself (`/readyz`: role, term, leader; `/metrics`: commit, applied, last log index),
//! which covers the root tier only.

use futures::future::join_all;
use reqwest::Method;
use serde_json::Value;

use crate::client::http_error;
use crate::model::str_of;
use crate::table::Table;
use crate::{CliError, Ctx};

pub const RAFT_STATUS_ROUTE: &str = "/api/raft/status";

/// One replica's line of the table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaRow {
    pub tier: String,
    pub group: String,
    pub replica: String,
    pub role: String,
    pub term: String,
    pub leader: String,
    pub commit: String,
    pub applied: String,
    pub last_log: String,
    pub note: String,
}

pub fn render(rows: &[ReplicaRow]) -> String {
    let mut t = Table::new(["TIER", "GROUP", "REPLICA", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST LOG", "NOTE"]);
    for r in rows {
        t.row([&r.tier, &r.group, &r.replica, &r.role, &r.term, &r.leader, &r.commit, &r.applied, &r.last_log, &r.note].map(|s| s.to_string()));
    }
    t.render()
}

fn cell(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Rows from the `GET /api/raft/status` document:
/// `{"tiers":[{"tier","group","replicas":[{"id","address","role","term","leader_id",
/// "commit_index","applied_index","last_log_index","error"}]}]}`; a replica may be grove-raft's
/// `ReplicaStatus` as it serialises (`addr`, `group`).
pub fn rows_from_document(doc: &Value) -> Vec<ReplicaRow> {
    let mut out = Vec::new();
    for tier in doc.get("tiers").and_then(Value::as_array).into_iter().flatten() {
        for r in tier.get("replicas").and_then(Value::as_array).into_iter().flatten() {
            let id = cell(r, "id");
            // grove-raft's ReplicaStatus says `addr` and carries its `group`: accepted as they are.
            let address = Some(str_of(r, "address")).filter(|a| !a.is_empty()).unwrap_or_else(|| str_of(r, "addr"));
            let group = if tier.get("group").is_some() { cell(tier, "group") } else { cell(r, "group") };
            out.push(ReplicaRow {
                tier: cell(tier, "tier"),
                group,
                replica: if address.is_empty() { id } else { format!("{id} {address}") },
                role: cell(r, "role"),
                term: cell(r, "term"),
                leader: cell(r, "leader_id"),
                commit: cell(r, "commit_index"),
                applied: cell(r, "applied_index"),
                last_log: cell(r, "last_log_index"),
                note: str_of(r, "error"),
            });
        }
    }
    out
}

/// A gauge of Prometheus text: `name value`.
pub fn gauge(metrics: &str, name: &str) -> Option<String> {
    metrics.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(name)).then(|| parts.next().map(str::to_owned)).flatten()
    })
}

/// One root replica from its own `/readyz` and `/metrics`.
pub fn row_from_replica(endpoint: &str, readyz: Option<&Value>, metrics: Option<&str>, error: Option<String>) -> ReplicaRow {
    let mut row = ReplicaRow { tier: "root".into(), group: "root".into(), replica: endpoint.into(), ..Default::default() };
    let dash = || "-".to_owned();
    match readyz {
        Some(r) => {
            row.role = cell(r, "role");
            row.term = cell(r, "term");
            row.leader = cell(r, "leader_id");
            if r.get("ready").and_then(Value::as_bool) == Some(false) {
                row.note = format!("not ready: {}", str_of(r, "reason"));
            }
        }
        None => (row.role, row.term, row.leader) = ("unreachable".into(), dash(), dash()),
    }
    let m = metrics.unwrap_or("");
    row.commit = gauge(m, "grove_root_raft_commit_index").unwrap_or_else(dash);
    row.applied = gauge(m, "grove_root_raft_applied_index").unwrap_or_else(dash);
    row.last_log = gauge(m, "grove_root_raft_last_log_index").unwrap_or_else(dash);
    if let Some(e) = error {
        row.note = e;
    }
    row
}

pub async fn status(ctx: &mut Ctx<'_>) -> Result<(), CliError> {
    let token = ctx.client.session().map(|s| s.token);
    let answer = ctx.client.send(Method::GET, RAFT_STATUS_ROUTE, None, token.as_deref(), true).await?;
    if answer.is_success() {
        let doc = answer.json(&Method::GET, RAFT_STATUS_ROUTE)?;
        if ctx.json {
            ctx.print_json(&doc);
        } else {
            ctx.print(&render(&rows_from_document(&doc)));
        }
        return Ok(());
    }
    if !matches!(answer.status, 404 | 405) {
        return Err(http_error(&Method::GET, RAFT_STATUS_ROUTE, &answer));
    }
    let missing_at = answer.endpoint.clone();

    // Fall back: ask every endpoint about itself.
    let endpoints = ctx.client.endpoints().to_vec();
    let client = &ctx.client;
    let rows: Vec<ReplicaRow> = join_all(endpoints.iter().map(|ep| async move {
        let (readyz, metrics) = tokio::join!(client.get_from(ep, "/readyz"), client.get_from(ep, "/metrics"));
        let ready_json = readyz.as_ref().ok().and_then(|a| serde_json::from_slice::<Value>(&a.body).ok());
        let metrics_text = metrics.as_ref().ok().filter(|a| a.is_success()).map(|a| String::from_utf8_lossy(&a.body).into_owned());
        let error = match (&readyz, &ready_json) {
            (Err(e), _) => Some(e.clone()),
            (Ok(a), None) => Some(format!("/readyz answered HTTP {} without JSON", a.status)),
            _ => None,
        };
        row_from_replica(ep, ready_json.as_ref(), metrics_text.as_deref(), error)
    }))
    .await;
    if ctx.json {
        let docs: Vec<Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"tier": r.tier, "replica": r.replica, "role": r.role, "term": r.term, "leader_id": r.leader,
                    "commit_index": r.commit, "applied_index": r.applied, "last_log_index": r.last_log, "note": r.note})
            })
            .collect();
        ctx.print_json(&Value::Array(docs));
    } else {
        ctx.print(&render(&rows));
    }
    ctx.note(&format!(
        "note: only the root replicas named by --endpoints are shown, each asked about itself (/readyz, /metrics): \
         the root at {missing_at} does not serve GET {RAFT_STATUS_ROUTE} (HTTP {}), so cluster tiers are not visible",
        answer.status
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gauges_are_read_from_prometheus_text() {
        let m = "# TYPE grove_root_raft_commit_index gauge\ngrove_root_raft_commit_index 42\ngrove_root_raft_term 3\n";
        assert_eq!(gauge(m, "grove_root_raft_commit_index").as_deref(), Some("42"));
        assert_eq!(gauge(m, "grove_root_raft_term").as_deref(), Some("3"));
        assert_eq!(gauge(m, "grove_root_raft_applied_index"), None);
    }

    #[test]
    fn a_replica_row_from_readyz_and_metrics() {
        let r = json!({"ready": true, "reason": "ready", "role": "follower", "leader_id": 2, "term": 7});
        let m = "grove_root_raft_commit_index 10\ngrove_root_raft_applied_index 9\ngrove_root_raft_last_log_index 11\n";
        let row = row_from_replica("http://a:1", Some(&r), Some(m), None);
        assert_eq!(
            (row.role.as_str(), row.term.as_str(), row.leader.as_str(), row.commit.as_str(), row.applied.as_str(), row.last_log.as_str()),
            ("follower", "7", "2", "10", "9", "11")
        );
        let down = row_from_replica("http://b:1", None, None, Some("Connection refused".into()));
        assert_eq!((down.role.as_str(), down.commit.as_str(), down.note.as_str()), ("unreachable", "-", "Connection refused"));
        let not_ready = row_from_replica("http://c:1", Some(&json!({"ready": false, "reason": "no known leader", "role": "candidate", "leader_id": null, "term": 8})), None, None);
        assert_eq!((not_ready.leader.as_str(), not_ready.note.as_str()), ("-", "not ready: no known leader"));
    }

    #[test]
    fn the_every_tier_document_becomes_one_row_per_replica() {
        let doc = json!({"tiers": [
            {"tier": "root", "group": "root", "replicas": [
                {"id": 1, "address": "root-1:10010", "role": "leader", "term": 3, "leader_id": 1, "commit_index": 5, "applied_index": 5, "last_log_index": 5}]},
            {"tier": "cluster", "group": "edge-a", "replicas": [
                {"id": 2, "role": "follower", "term": 2, "leader_id": 1, "commit_index": 9, "applied_index": 9, "last_log_index": 9},
                {"id": 3, "error": "unreachable"}]},
            {"tier": "cluster", "replicas": [
                {"group": "cluster-edge-b", "id": 1, "addr": "10.0.0.5:10110", "role": "leader", "term": 9, "leader_id": 1,
                 "last_log_index": 4, "commit_index": 4, "applied_index": 4, "members": []}]}
        ]});
        let rows = rows_from_document(&doc);
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].replica.as_str(), rows[0].role.as_str()), ("1 root-1:10010", "leader"));
        assert_eq!((rows[1].tier.as_str(), rows[1].group.as_str(), rows[1].commit.as_str()), ("cluster", "edge-a", "9"));
        assert_eq!((rows[2].role.as_str(), rows[2].note.as_str()), ("-", "unreachable"));
        assert_eq!((rows[3].group.as_str(), rows[3].replica.as_str(), rows[3].term.as_str()), ("cluster-edge-b", "1 10.0.0.5:10110", "9"));
        let table = render(&rows);
        assert!(table.starts_with("TIER     GROUP           REPLICA"), "{table}");
        assert_eq!(table.lines().count(), 5);
    }
}
