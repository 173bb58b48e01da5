//! The link to the root, against `FakeRoot` (a test double of the root's `Root` service): the
//! cluster keeps serving workers while the root is unreachable, registers when it appears,
//! and resynchronises the root's view with a full report after every outage.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::root_double::FakeRoot;
use common::{deploy, wait_for, NodeEngineDouble, TestCluster, WAIT};
use serde_json::{json, Value};

const JOB: &str = "65f000000000000000000006";
const NAME: &str = "app.ns.rl.ns";

/// The root's view after applying `reports` in order (a full report replaces the view, an
/// incremental one updates it; `UNDEPLOYED` removes): instance number → status.
fn root_view(reports: &[grove_proto::cluster::ClusterReport]) -> BTreeMap<u32, String> {
    let mut view = BTreeMap::new();
    for r in reports {
        if r.full {
            view.clear();
        }
        for i in &r.instances {
            if i.status == "UNDEPLOYED" {
                view.remove(&i.instance_number);
            } else {
                view.insert(i.instance_number, i.status.clone());
            }
        }
    }
    view
}

fn all_running(view: &BTreeMap<u32, String>, expected: &[u32]) -> bool {
    view.keys().copied().collect::<Vec<_>>() == expected && view.values().all(|s| s == "RUNNING")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_unreachable_then_returning_converges() {
    // Reserve the root's address; nothing listens there yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let root_addr = reserved.local_addr().unwrap();
    drop(reserved);
    // Full reports only when a link (re)starts, so changes must travel in incremental reports.
    let tc = TestCluster::start(3, |c| {
        c.root_endpoints = vec!["127.0.0.1:1".into(), root_addr.to_string()];
        c.root_full_report_interval_ms = 600_000;
    })
    .await;
    let http = reqwest::Client::new();
    let apis: Vec<String> = (1..=3).map(|i| tc.api(i)).collect();
    let grpc: Vec<String> = (1..=3).map(|i| tc.grpc(i)).collect();

    // No root: workers register, deploys from the (test's) dispatcher still run.
    let ne = NodeEngineDouble::start("edge-1", &apis, vec![tc.mqtt(1), tc.mqtt(2), tc.mqtt(3)], Duration::from_millis(300)).await;
    deploy(&grpc, JOB, NAME, 0).await;
    wait_for("instance 0 running without a root", WAIT, || async { (ne.running().len() == 1).then_some(()) }).await;
    let status: Value = http.get(format!("{}/api/cluster/status", apis[1])).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["connected_to_root"], json!(false));

    // The root appears (the first endpoint stays dead: the link moves on to the second).
    let root = FakeRoot::start(tokio::net::TcpListener::bind(root_addr).await.unwrap());
    wait_for("registration, and the root's view: instance 0 RUNNING", WAIT, || async {
        let rec = root.recorded.lock().unwrap();
        (!rec.registrations.is_empty() && rec.reports.first()?.full && all_running(&root_view(&rec.reports), &[0])).then_some(())
    })
    .await;
    let reg = root.recorded.lock().unwrap().registrations[0].clone();
    assert_eq!(reg.cluster_name, "test");
    assert_eq!(reg.cluster_location, "48.1,11.6,1000");
    assert_eq!(reg.endpoints.len(), 3, "every replica's Cluster endpoint: {:?}", reg.endpoints);
    let report = root.last_full_report().unwrap();
    assert_eq!(report.cluster_id, "fake-test");
    let agg = report.aggregate.clone().unwrap();
    assert_eq!((agg.active_nodes, agg.vcpus, agg.memory_mb), (1, 4, 4096));
    assert_eq!(agg.virtualization, ["docker"]);
    for id in &apis {
        wait_for("every replica shows the root link and the cluster id", WAIT, || async {
            let s: Value = http.get(format!("{id}/api/cluster/status")).send().await.ok()?.json().await.ok()?;
            (s["connected_to_root"] == json!(true) && s["cluster_id"] == json!("fake-test")).then_some(())
        })
        .await;
    }

    // Incremental reports carry changes as they happen.
    deploy(&grpc, JOB, NAME, 1).await;
    wait_for("the root's view: instances 0 and 1 RUNNING", WAIT, || async {
        let rec = root.recorded.lock().unwrap();
        all_running(&root_view(&rec.reports), &[0, 1]).then_some(())
    })
    .await;

    // The root goes away; the cluster keeps working; when it returns, a full report converges.
    root.set_online(false);
    wait_for("the leader notices the root is gone", WAIT, || async {
        let s: Value = http.get(format!("{}/api/cluster/status", apis[0])).send().await.ok()?.json().await.ok()?;
        (s["connected_to_root"] == json!(false)).then_some(())
    })
    .await;
    deploy(&grpc, JOB, NAME, 2).await;
    wait_for("instance 2 running while the root is away", WAIT, || async { (ne.running().len() == 3).then_some(()) }).await;
    let registrations = root.registrations();
    let reports = root.report_count();
    root.set_online(true);
    wait_for("a full report after the outage, and the root's view: all three RUNNING", WAIT, || async {
        let rec = root.recorded.lock().unwrap();
        let after = &rec.reports[reports..];
        (after.first()?.full && all_running(&root_view(&rec.reports), &[0, 1, 2])).then_some(())
    })
    .await;
    let rec = root.recorded.lock().unwrap();
    let resync = &rec.reports[reports];
    let mut listed: Vec<u32> = resync.instances.iter().map(|i| i.instance_number).collect();
    listed.sort_unstable();
    assert_eq!(listed, [0, 1, 2], "the resync lists every instance, including the one deployed during the outage");
    drop(rec);
    assert!(root.registrations() > registrations, "the cluster registered again");
    tc.shutdown().await;
}
