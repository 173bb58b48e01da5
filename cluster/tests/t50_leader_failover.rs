//! Kill the cluster leader while instances are being deployed: every placement committed
//! before the kill survives unchanged, and every acknowledged deploy ends up running exactly
//! once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{deploy, instances, wait_for, NodeEngineDouble, ProcCluster};
use serde_json::{json, Value};

const JOB: &str = "65f000000000000000000005";
const NAME: &str = "app.ns.lk.ns";
const COUNT: u32 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_deploy_keeps_every_placement() {
    let mut pc = ProcCluster::start(3).await;
    let long = Duration::from_secs(60);
    let leader = pc.leader().await;
    let apis: Vec<String> = pc.running().iter().map(|id| pc.api(*id)).collect();
    let mut brokers = pc.brokers();
    let a = NodeEngineDouble::start("edge-a", &apis, brokers.clone(), Duration::from_millis(500)).await;
    brokers.rotate_left(1);
    let b = NodeEngineDouble::start("edge-b", &apis, brokers, Duration::from_millis(500)).await;
    let http = reqwest::Client::new();

    let grpc = |pc: &ProcCluster| pc.running().iter().map(|id| pc.grpc(*id)).collect::<Vec<_>>();
    for n in 0..COUNT / 2 {
        deploy(&grpc(&pc), JOB, NAME, n).await;
    }
    // Placements committed before the kill.
    let before: BTreeMap<u64, String> = wait_for("the first half placed", long, || async {
        let list = instances(&http, &apis).await?;
        let placed: BTreeMap<u64, String> = list
            .iter()
            .filter(|i| i["worker_id"].as_str().is_some_and(|w| !w.is_empty()))
            .map(|i| (i["instance_number"].as_u64().unwrap(), i["worker_id"].as_str().unwrap().to_owned()))
            .collect();
        (placed.len() as u32 == COUNT / 2).then_some(placed)
    })
    .await;

    tracing::info!(leader, "killing the leader");
    pc.kill(leader);
    for n in COUNT / 2..COUNT {
        deploy(&grpc(&pc), JOB, NAME, n).await;
    }
    let new_leader = pc.leader().await;
    assert_ne!(new_leader, leader);

    let apis: Vec<String> = pc.running().iter().map(|id| pc.api(*id)).collect();
    let all: BTreeSet<(String, u32)> = (0..COUNT).map(|n| (NAME.to_string(), n)).collect();
    let done = tokio::time::timeout(long, async {
        loop {
            let (ra, rb) = (a.running(), b.running());
            let union: BTreeSet<_> = ra.union(&rb).cloned().collect();
            if union == all && ra.is_disjoint(&rb) {
                if let Some(list) = instances(&http, &apis).await {
                    if list.len() as u32 == COUNT && list.iter().all(|i| i["status"] == json!("RUNNING")) {
                        return list;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let list: Vec<Value> = match done {
        Ok(l) => l,
        Err(_) => panic!("not converged: a runs {:?}, b runs {:?}, instances {:#?}", a.running(), b.running(), instances(&http, &apis).await),
    };
    for i in &list {
        let n = i["instance_number"].as_u64().unwrap();
        if let Some(w) = before.get(&n) {
            assert_eq!(i["worker_id"], json!(w), "instance {n} kept its placement across the leader change");
        }
    }
    // No worker was falsely declared lost during the failover (grace period).
    let workers: Vec<Value> = http.get(format!("{}/api/cluster/workers", apis[0])).send().await.unwrap().json().await.unwrap();
    assert!(workers.iter().all(|w| w["lost"] == json!(false)), "{workers:?}");
}
