//! Worker silence: the worker is marked lost within the configured time, its instances are
//! placed on another worker; when it returns, its stale instances are deleted.

mod common;

use std::time::Duration;

use common::{deploy, instances, wait_for, NodeEngineDouble, TestCluster, WAIT};
use serde_json::json;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_worker_instances_move_and_return_is_cleaned_up() {
    let tc = TestCluster::start(1, |_| {}).await;
    let liveness = Duration::from_millis(tc.replicas[&1].shared.config.worker_liveness_ms);
    let http = reqwest::Client::new();
    let apis = vec![tc.api(1)];
    let period = Duration::from_millis(500);
    let a = NodeEngineDouble::start("edge-a", &apis, vec![tc.mqtt(1)], period).await;
    let b = NodeEngineDouble::start("edge-b", &apis, vec![tc.mqtt(1)], period).await;
    deploy(&[tc.grpc(1)], "65f000000000000000000003", "app.ns.svc.ns", 0).await;
    let key = ("app.ns.svc.ns".to_string(), 0);
    let (holder, other) = wait_for("the instance running on one worker", WAIT, || async {
        if a.running().contains(&key) {
            Some((&a, &b))
        } else if b.running().contains(&key) {
            Some((&b, &a))
        } else {
            None
        }
    })
    .await;
    wait_for("RUNNING committed", WAIT, || async { (instances(&http, &apis).await?[0]["status"] == json!("RUNNING")).then_some(()) }).await;

    // The holder goes silent (it keeps its instance, as a partitioned worker would).
    let silent_since = Instant::now();
    holder.set_online(false);
    wait_for("the instance running on the other worker", WAIT, || async { other.running().contains(&key).then_some(()) }).await;
    let moved_after = silent_since.elapsed();
    assert!(moved_after >= liveness.saturating_sub(period), "not before the liveness timeout: {moved_after:?}");
    assert!(moved_after <= liveness + Duration::from_secs(4), "detection plus re-placement took {moved_after:?}");
    let workers: Vec<serde_json::Value> = http.get(format!("{}/api/cluster/workers", tc.api(1))).send().await.unwrap().json().await.unwrap();
    let lost: Vec<&str> = workers.iter().filter(|w| w["lost"] == json!(true)).filter_map(|w| w["host"].as_str()).collect();
    assert_eq!(lost, [holder.host.as_str()]);
    wait_for("RUNNING on the new worker", WAIT, || async {
        let i = instances(&http, &apis).await?;
        (i[0]["worker_id"] == json!(other.id()) && i[0]["status"] == json!("RUNNING")).then_some(())
    })
    .await;
    assert!(holder.running().contains(&key), "the silent worker still holds its copy");

    // It comes back: its copy is deleted, the new placement stays.
    holder.set_online(true);
    wait_for("the returning worker's stale copy deleted", WAIT, || async { holder.running().is_empty().then_some(()) }).await;
    wait_for("the worker no longer lost", WAIT, || async {
        let w: Vec<serde_json::Value> = http.get(format!("{}/api/cluster/workers", tc.api(1))).send().await.ok()?.json().await.ok()?;
        w.iter().all(|w| w["lost"] == json!(false)).then_some(())
    })
    .await;
    assert!(other.running().contains(&key));
    let i = instances(&http, &apis).await.unwrap();
    assert_eq!((i.len(), i[0]["worker_id"].clone()), (1, json!(other.id())));
    tc.shutdown().await;
}
