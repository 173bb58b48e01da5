//! A test double of Oakestra's Node Engine (exact upstream messages) gets instances deployed
//! and deleted; malformed MQTT payloads and unregistered workers are refused without harm.

mod common;

use std::time::Duration;

use common::{deploy, instances, undeploy, wait_for, NodeEngineDouble, RawMqtt, TestCluster, WAIT};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_engine_gets_instances_deployed_and_deleted() {
    let tc = TestCluster::start(1, |_| {}).await;
    let http = reqwest::Client::new();
    let apis = vec![tc.api(1)];
    let grpc = vec![tc.grpc(1)];
    let ne = NodeEngineDouble::start("edge-1", &apis, vec![tc.mqtt(1)], Duration::from_millis(500)).await;

    deploy(&grpc, "65f000000000000000000001", "app.ns.web.ns", 0).await;
    deploy(&grpc, "65f000000000000000000001", "app.ns.web.ns", 1).await;
    wait_for("both instances on the worker", WAIT, || async { (ne.running().len() == 2).then_some(()) }).await;

    // The deploy message: the job document plus instance_number (int) and _id (string).
    let d = ne.received("deploy");
    let first = &d[0];
    assert_eq!(first["_id"], json!("65f000000000000000000001"));
    assert_eq!(first["job_name"], json!("app.ns.web.ns"));
    assert!(first["instance_number"].is_u64());
    for key in ["image", "virtualization", "vcpus", "memory", "cmd", "environment", "port", "one_shot", "privileged", "status"] {
        assert!(first.get(key).is_some(), "deploy payload has {key}: {first}");
    }
    assert!(first.get("instance_list").is_none(), "the root's instance_list is not forwarded");

    // CREATED from the worker, then RUNNING from its resource reports.
    wait_for("both instances RUNNING on the worker", WAIT, || async {
        let list = instances(&http, &apis).await?;
        let ok = list.len() == 2 && list.iter().all(|i| i["status"] == json!("RUNNING") && i["worker_id"] == json!(ne.id()) && i["publicip"] == json!("127.0.0.1"));
        ok.then_some(())
    })
    .await;

    // Undeploy: the worker gets control/delete with exactly {job_name, virtualization, instance_number}.
    undeploy(&grpc, "65f000000000000000000001", 1).await;
    wait_for("instance 1 deleted on the worker", WAIT, || async { (ne.running().len() == 1).then_some(()) }).await;
    let del = ne.received("delete");
    assert_eq!(del[0], json!({"job_name": "app.ns.web.ns", "virtualization": "docker", "instance_number": 1}));
    wait_for("instance 1 forgotten after UNDEPLOYED", WAIT, || async {
        let list = instances(&http, &apis).await?;
        (list.len() == 1 && list[0]["instance_number"] == json!(0)).then_some(())
    })
    .await;
    // Deploys are idempotent: the same call again changes nothing.
    deploy(&grpc, "65f000000000000000000001", "app.ns.web.ns", 0).await;
    assert_eq!(instances(&http, &apis).await.unwrap().len(), 1);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mqtt_payloads_and_unknown_workers_are_refused() {
    let tc = TestCluster::start(1, |_| {}).await;
    let http = reqwest::Client::new();
    let apis = vec![tc.api(1)];
    let (host, port) = tc.mqtt(1);
    let ne = NodeEngineDouble::start("edge-1", &apis, vec![tc.mqtt(1)], Duration::from_millis(500)).await;
    let id = ne.id();
    deploy(&[tc.grpc(1)], "65f000000000000000000002", "app.ns.db.ns", 0).await;
    wait_for("the instance RUNNING", WAIT, || async {
        let list = instances(&http, &apis).await?;
        (list.first()?["status"] == json!("RUNNING")).then_some(())
    })
    .await;

    // A stranger on the registered worker's topics and an unregistered worker.
    let raw = RawMqtt::connect(&host, port, "intruder", &["nodes/ghost/control/#"]).await;
    let garbage: Vec<(String, Vec<u8>)> = vec![
        (format!("nodes/{id}/job"), b"{not json".to_vec()),
        (format!("nodes/{id}/job"), json!({"sname": "app.ns.db.ns", "status": "EXPLODED", "instance": 0}).to_string().into_bytes()),
        (format!("nodes/{id}/job"), json!({"sname": "app.ns.db.ns", "status": "DEAD", "instance": "zero"}).to_string().into_bytes()),
        (format!("nodes/{id}/jobs/resources"), json!({"services": "all of them"}).to_string().into_bytes()),
        (format!("nodes/{id}/jobs/resources"), json!({"services": [{"job_name": "x", "instance": 0, "cpu_percent": "hot"}]}).to_string().into_bytes()),
        (format!("nodes/{id}/information"), json!([1, 2, 3]).to_string().into_bytes()),
        (format!("nodes/{id}/information"), vec![0xff, 0xfe, 0x00]),
        ("nodes/ghost/information".to_string(), common::node_json("ghost").to_string().into_bytes()),
    ];
    for (topic, payload) in garbage {
        raw.publish(&topic, payload).await;
    }
    wait_for("the unregistered worker told so on control/error", WAIT, || async {
        let seen = raw.seen_on("nodes/ghost/control/error");
        (seen.first()? == &json!({"message": "Node not registered to the cluster"})).then_some(())
    })
    .await;
    let metrics = wait_for("the refusals counted", WAIT, || async {
        let m = http.get(format!("{}/metrics", tc.api(1))).send().await.ok()?.text().await.ok()?;
        m.contains("grove_cluster_mqtt_rejected_total{reason=\"malformed_payload\"} 7").then_some(m)
    })
    .await;
    assert!(metrics.contains("grove_cluster_mqtt_rejected_total{reason=\"unregistered_worker\"} 1"), "{metrics}");

    // State is intact and the replica keeps working.
    let list: Vec<Value> = instances(&http, &apis).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], json!("RUNNING"));
    deploy(&[tc.grpc(1)], "65f000000000000000000002", "app.ns.db.ns", 1).await;
    wait_for("a second instance after the garbage", WAIT, || async { (ne.running().len() == 2).then_some(()) }).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reporting_an_unknown_instance_gets_a_delete() {
    let tc = TestCluster::start(1, |_| {}).await;
    let ne = NodeEngineDouble::start("edge-1", &[tc.api(1)], vec![tc.mqtt(1)], Duration::from_millis(300)).await;
    // The worker "runs" something the cluster never asked for (left over from before).
    ne.state.lock().unwrap().running.insert(("old.app.x.y".into(), 3), "docker".into());
    wait_for("the leftover deleted", WAIT, || async {
        let d = ne.received("delete");
        d.iter().any(|m| m == &json!({"job_name": "old.app.x.y", "virtualization": "docker", "instance_number": 3})).then_some(())
    })
    .await;
    assert!(ne.running().is_empty());
    tc.shutdown().await;
}
