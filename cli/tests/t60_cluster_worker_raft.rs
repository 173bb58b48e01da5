//! `cluster list`, `worker list` (from Grove's root, and the fallback for a stock Oakestra root)
//! and `raft status`.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_cluster_list_needs_no_login() {
    let root = FakeRootApi::start().await;
    root.with(|s| {
        s.clusters.push(json!({"_id": {"$oid": "c1"}, "cluster_name": "edge-a", "cluster_location": "48.1,11.6,1000", "active": true,
            "active_nodes": 2, "cpu_percent": 12.5, "memory_percent": 40, "vcpus": 8, "memory": 16000}));
    });
    let grove = Grove::new(&[root.url()]);
    let run = grove.run(&["cluster", "list"]).await;
    run.ok();
    let row: Vec<&str> = run.stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["c1", "edge-a", "48.1,11.6,1000", "yes", "2", "12.5", "40", "8", "16000"]);
    assert_eq!(root.requests()[0].bearer, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t61_worker_list_names_the_missing_route_and_shows_what_exists() {
    let root = FakeRootApi::start().await;
    root.with(|s| s.clusters.push(json!({"_id": {"$oid": "c1"}, "cluster_name": "edge-a", "active_nodes": 3})));
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let run = grove.run(&["worker", "list"]).await;
    run.failed();
    let row: Vec<&str> = run.stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["c1", "edge-a", "3"]);
    assert!(
        run.stderr.contains("does not list workers: GET /api/workers/ answered HTTP 404 (the route is missing: a stock Oakestra root)"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t64_worker_list_shows_every_worker_and_names_unreachable_clusters() {
    let root = FakeRootApi::start().await;
    root.with(|s| {
        s.workers = Some(json!({
            "workers": [
                {"id": "w1", "hostname": "edge-node-1", "cluster_id": "c1", "cluster_name": "edge-a", "ip": "10.0.0.5", "active": true,
                 "instances": 2, "cpu_percent": 12.5, "memory_percent": 40, "vcpus": 4, "memory": 3900},
                {"id": "w2", "hostname": "edge-node-2", "cluster_id": "c1", "cluster_name": "edge-a", "ip": "10.0.0.6", "active": false,
                 "instances": 0, "cpu_percent": 0, "memory_percent": 0, "vcpus": 2, "memory": 1000}],
            "unreachable": [{"cluster_id": "c2", "cluster_name": "edge-b", "error": "c2-1:10120: no answer within 2s"}]
        }))
    });
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let run = grove.run(&["worker", "list"]).await;
    run.failed();
    let rows: Vec<Vec<&str>> = run.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["WORKER", "ID", "HOSTNAME", "CLUSTER", "ADDRESS", "ACTIVE", "INSTANCES", "CPU", "%", "MEM", "%", "VCPUS", "MEMORY", "MB"]);
    assert_eq!(rows[1], ["w1", "edge-node-1", "edge-a", "10.0.0.5", "yes", "2", "12.5", "40", "4", "3900"]);
    assert_eq!(rows[2], ["w2", "edge-node-2", "edge-a", "10.0.0.6", "no", "0", "0", "0", "2", "1000"]);
    assert!(
        run.stderr.contains("the workers of 1 cluster(s) are not listed, the root could not reach them: edge-b (c2-1:10120: no answer within 2s)"),
        "{}",
        run.stderr
    );
    let bearer = root.requests().into_iter().find(|r| r.path == "/api/workers/").and_then(|r| r.bearer);
    assert!(bearer.is_some(), "worker list sends the session's token");

    root.with(|s| s.workers = Some(json!({"workers": [], "unreachable": []})));
    let run = grove.run(&["worker", "list"]).await;
    run.ok();
    assert_eq!(run.stdout.trim(), "No workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t62_raft_status_asks_every_endpoint_when_the_root_has_no_tier_view() {
    let leader = FakeRootApi::start().await;
    let follower = FakeRootApi::start().await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    leader.with(|s| {
        s.readyz = Some(json!({"ready": true, "reason": "ready", "role": "leader", "leader_id": 1, "term": 4}));
        s.metrics = "grove_root_raft_is_leader 1\ngrove_root_raft_term 4\ngrove_root_raft_commit_index 120\ngrove_root_raft_applied_index 120\ngrove_root_raft_last_log_index 121\n".into();
    });
    follower.with(|s| {
        s.readyz = Some(json!({"ready": true, "reason": "ready", "role": "follower", "leader_id": 1, "term": 4}));
        s.metrics = "grove_root_raft_commit_index 118\ngrove_root_raft_applied_index 117\ngrove_root_raft_last_log_index 121\n".into();
    });
    let grove = Grove::new(&[leader.url(), follower.url(), dead.clone()]);
    let run = grove.run(&["raft", "status"]).await;
    run.ok();
    let rows: Vec<Vec<&str>> = run.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["TIER", "GROUP", "REPLICA", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "LOG", "NOTE"]);
    assert_eq!(rows[1], ["root", "root", leader.url().as_str(), "leader", "4", "1", "120", "120", "121"]);
    assert_eq!(rows[2], ["root", "root", follower.url().as_str(), "follower", "4", "1", "118", "117", "121"]);
    assert_eq!(rows[3][..4], ["root", "root", dead.as_str(), "unreachable"]);
    assert!(run.stdout.lines().nth(3).unwrap().contains("Connection refused"), "{}", run.stdout);
    assert!(run.stderr.contains("does not serve GET /api/raft/status (HTTP 404), so cluster tiers are not visible"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t63_raft_status_shows_every_tier_when_the_root_serves_it() {
    let root = FakeRootApi::start().await;
    root.with(|s| {
        s.raft_status = Some(json!({"tiers": [
            {"tier": "root", "group": "root", "replicas": [
                {"id": 1, "address": "root-1:10010", "role": "leader", "term": 2, "leader_id": 1, "commit_index": 50, "applied_index": 50, "last_log_index": 50},
                {"id": 2, "address": "root-2:10010", "role": "follower", "term": 2, "leader_id": 1, "commit_index": 50, "applied_index": 49, "last_log_index": 50}]},
            {"tier": "cluster", "group": "cluster-edge", "replicas": [
                {"id": 1, "addr": "edge-1:10110", "role": "follower", "term": 5, "leader_id": 3, "commit_index": 7, "applied_index": 7, "last_log_index": 7},
                {"id": 2, "error": "unreachable: connection refused"}]}
        ]}))
    });
    let grove = Grove::new(&[root.url()]);
    let run = grove.run(&["raft", "status"]).await;
    run.ok();
    let rows: Vec<Vec<&str>> = run.stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["root", "root", "1", "root-1:10010", "leader", "2", "1", "50", "50", "50"]);
    assert_eq!(rows[1], ["root", "root", "2", "root-2:10010", "follower", "2", "1", "50", "49", "50"]);
    assert_eq!(rows[2], ["cluster", "cluster-edge", "1", "edge-1:10110", "follower", "5", "3", "7", "7", "7"]);
    assert_eq!(rows[3][..4], ["cluster", "cluster-edge", "2", "-"]);
    assert!(run.stdout.lines().nth(4).unwrap().ends_with("unreachable: connection refused"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "no fallback note: {}", run.stderr);
}
