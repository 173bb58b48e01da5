//! Three `grove-cluster` processes. Killing the replica whose broker holds a worker's session:
//! the worker reconnects to another replica's broker, commands issued during and after the
//! failover are delivered, and no instance is lost or duplicated.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{deploy, instances, wait_for, NodeEngineDouble, ProcCluster};
use serde_json::json;

const JOB: &str = "65f000000000000000000004";
const NAME: &str = "app.ns.fo.ns";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_replica_holding_a_session_loses_nothing() {
    let mut pc = ProcCluster::start(3).await;
    let long = Duration::from_secs(60);
    let leader = pc.leader().await;
    let apis: Vec<String> = pc.running().iter().map(|id| pc.api(*id)).collect();
    // Replica 1's broker first for worker x, replica 2's for worker y; both list all three.
    let mut brokers = pc.brokers();
    let x = NodeEngineDouble::start("edge-x", &apis, brokers.clone(), Duration::from_millis(500)).await;
    brokers.rotate_left(1);
    let y = NodeEngineDouble::start("edge-y", &apis, brokers, Duration::from_millis(500)).await;
    let x_broker = format!("127.0.0.1:{}", pc.ports[&1].mqtt);
    wait_for("x attached to replica 1", long, || async { (x.connected_to().as_deref() == Some(x_broker.as_str())).then_some(()) }).await;

    let grpc = |pc: &ProcCluster| pc.running().iter().map(|id| pc.grpc(*id)).collect::<Vec<_>>();
    for n in 0..4 {
        deploy(&grpc(&pc), JOB, NAME, n).await;
    }
    wait_for("the first instances running", long, || async { (x.running().len() + y.running().len() == 4).then_some(()) }).await;

    // Kill the replica holding x's session (it may or may not be the leader).
    tracing::info!(leader, "killing replica 1");
    pc.kill(1);
    for n in 4..8 {
        deploy(&grpc(&pc), JOB, NAME, n).await;
    }
    wait_for("x reconnected to another broker", long, || async {
        x.connected_to().filter(|b| *b != x_broker).map(|_| ())
    })
    .await;
    pc.leader().await;
    for n in 8..12 {
        deploy(&grpc(&pc), JOB, NAME, n).await;
    }

    let apis: Vec<String> = pc.running().iter().map(|id| pc.api(*id)).collect();
    let http = reqwest::Client::new();
    let all: BTreeSet<(String, u32)> = (0..12).map(|n| (NAME.to_string(), n)).collect();
    let result = tokio::time::timeout(long, async {
        loop {
            let (rx, ry) = (x.running(), y.running());
            let union: BTreeSet<_> = rx.union(&ry).cloned().collect();
            let list = instances(&http, &apis).await.unwrap_or_default();
            let placed_where_running = list.iter().all(|i| {
                let key = (i["job_name"].as_str().unwrap_or_default().to_string(), i["instance_number"].as_u64().unwrap_or(99) as u32);
                let holder = if rx.contains(&key) { x.id() } else { y.id() };
                i["worker_id"] == json!(holder) && i["status"] == json!("RUNNING")
            });
            if union == all && rx.is_disjoint(&ry) && list.len() == 12 && placed_where_running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if result.is_err() {
        panic!(
            "not converged: x runs {:?}, y runs {:?}, instances {:#?}\nreplica 2 log:\n{}",
            x.running(),
            y.running(),
            instances(&http, &apis).await,
            pc.log(2)
        );
    }
}
