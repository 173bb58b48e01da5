//! Worker registration (`POST /api/node/register`, contract §4.2) and the operational routes on
//! a single replica; malformed registration bodies get clear errors and change nothing.

mod common;

use common::{node_json, TestCluster};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_an_upsert_by_hostname_and_answers_the_broker_port() {
    let tc = TestCluster::start(1, |_| {}).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/node/register", tc.api(1));

    let r = http.post(&url).json(&node_json("edge-1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 24, "an ObjectId-shaped id: {first}");
    assert_eq!(first["MQTT_BROKER_PORT"], json!(tc.replicas[&1].mqtt_addr.port().to_string()), "the port is a string");
    assert_eq!(first.as_object().unwrap().len(), 2, "exactly id and MQTT_BROKER_PORT: {first}");

    // Same hostname, same id; another hostname, another id.
    let again: Value = http.post(&url).json(&node_json("edge-1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], json!(id));
    let other: Value = http.post(&url).json(&node_json("edge-2")).send().await.unwrap().json().await.unwrap();
    assert_ne!(other["id"], json!(id));

    let workers: Vec<Value> = http.get(format!("{}/api/cluster/workers", tc.api(1))).send().await.unwrap().json().await.unwrap();
    assert_eq!(workers.len(), 2);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_registration_bodies_get_clear_errors() {
    let tc = TestCluster::start(1, |c| c.max_body_bytes = 64 * 1024).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/node/register", tc.api(1));
    let post = |body: Vec<u8>| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["message"].as_str().unwrap_or_default().to_owned())
        }
    };
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"".to_vec(), 400, "request body is empty"),
        (b"{not json".to_vec(), 400, "not valid JSON"),
        (b"[1,2]".to_vec(), 400, "must be a JSON object"),
        (json!({"vcpus": 4}).to_string().into_bytes(), 400, "host: is required"),
        (json!({"host": 5}).to_string().into_bytes(), 400, "host: must be a string"),
        (json!({"host": "h", "vcpus": "four"}).to_string().into_bytes(), 400, "vcpus:"),
        (json!({"host": "h", "memory": -3}).to_string().into_bytes(), 400, "memory:"),
        (json!({"host": "h", "virtualization": "docker"}).to_string().into_bytes(), 400, "virtualization:"),
        (vec![b' '; 100 * 1024], 413, "size limit"),
    ];
    for (body, code, needle) in cases {
        let (status, message) = post(body).await;
        assert_eq!(status, code, "{needle}: {message}");
        assert!(message.contains(needle), "expected {needle:?} in {message:?}");
    }
    let workers: Vec<Value> = http.get(format!("{}/api/cluster/workers", tc.api(1))).send().await.unwrap().json().await.unwrap();
    assert!(workers.is_empty(), "nothing was registered: {workers:?}");
    // The replica still serves.
    assert_eq!(http.post(&url).json(&node_json("ok")).send().await.unwrap().status(), 200);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_health_readiness_and_metrics() {
    let tc = TestCluster::start(1, |_| {}).await;
    let http = reqwest::Client::new();
    let status: Value = http.get(format!("{}/api/cluster/status", tc.api(1))).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["cluster_name"], json!("test"));
    assert_eq!(status["connected_to_root"], json!(false), "no root configured");
    assert!(status["cluster_id"].is_string());
    assert_eq!(http.get(format!("{}/healthz", tc.api(1))).send().await.unwrap().status(), 200);
    let ready = http.get(format!("{}/readyz", tc.api(1))).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http.get(format!("{}/metrics", tc.api(1))).send().await.unwrap().text().await.unwrap();
    for name in ["grove_cluster_raft_is_leader 1", "grove_cluster_workers 0", "grove_cluster_instances{status=\"RUNNING\"} 0", "grove_cluster_mqtt_received_total"] {
        assert!(metrics.contains(name), "{name} in:\n{metrics}");
    }
    tc.shutdown().await;
}
