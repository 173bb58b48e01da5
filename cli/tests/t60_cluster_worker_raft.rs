//! `cluster list`, `worker list` (a route the root lacks) and `raft status`.

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
        run.stderr.contains("does not list workers: GET /api/workers/ answered HTTP 404 (the route is missing)"),
        "{}",
        run.stderr
    );
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
