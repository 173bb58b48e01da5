//! `Cluster.ListWorkers` (what the root's `GET /api/workers/` asks): answered by the leader with
//! every registered worker and its live resources, refused by followers with a pointer to the
//! leader; with a cluster token configured, every call of the `Cluster` service must carry it.

mod common;

use std::time::Duration;

use common::{job_json, wait_for, NodeEngineDouble, TestCluster, WAIT};
use grove_proto::auth::with_bearer;
use grove_proto::cluster::cluster_client::ClusterClient;
use grove_proto::cluster::{DeployRequest, ListWorkersRequest};

const TOKEN: &str = "7e57-cluster-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_lists_workers_and_every_call_needs_the_token() {
    let tc = TestCluster::start(3, |c| c.cluster_token = Some(TOKEN.into())).await;
    let apis: Vec<String> = (1..=3).map(|i| tc.api(i)).collect();
    let ne = NodeEngineDouble::start("edge-1", &apis, vec![tc.mqtt(1), tc.mqtt(2), tc.mqtt(3)], Duration::from_millis(200)).await;
    let leader = tc.leader().await;
    let client = |id: u64| {
        let url = tc.grpc(id);
        async move { ClusterClient::connect(url).await.expect("connect") }
    };

    // No token, or a wrong one: refused before anything runs.
    let e = client(leader).await.list_workers(ListWorkersRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let e = client(leader).await.list_workers(with_bearer(ListWorkersRequest {}, Some("wrong"))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let deploy = DeployRequest { job_id: "65f000000000000000000070".into(), instance_number: 0, job_json: job_json("65f000000000000000000070", "app.ns.lw.ns") };
    let e = client(leader).await.deploy(deploy.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "a deploy without the token changes nothing: {e}");

    // Followers point at the leader.
    for id in (1..=3).filter(|id| *id != leader) {
        let e = client(id).await.list_workers(with_bearer(ListWorkersRequest {}, Some(TOKEN))).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(e.message().contains(&format!("only the cluster leader lists workers; ask another endpoint (it is replica {leader})")), "{e}");
    }

    // The leader: the registered worker, heard from, with its resources; then its instance.
    let list = |c: ClusterClient<tonic::transport::Channel>| async move {
        let mut c = c;
        c.list_workers(with_bearer(ListWorkersRequest {}, Some(TOKEN))).await.expect("the leader answers").into_inner()
    };
    let reply = wait_for("the worker's first report at the leader", WAIT, || async {
        let reply = list(client(leader).await).await;
        (reply.workers.len() == 1 && reply.workers[0].last_seen_ms_ago.is_some()).then_some(reply)
    })
    .await;
    let w = &reply.workers[0];
    assert_eq!((w.id.as_str(), w.hostname.as_str(), w.ip.as_str()), (ne.id().as_str(), "edge-1", "127.0.0.1"));
    assert!(w.active);
    assert_eq!(w.vcpus, 4);
    assert_eq!(w.virtualization, ["docker"]);
    assert_eq!(w.instances, 0);
    assert!(w.last_seen_ms_ago.unwrap() < WAIT.as_millis() as u64);

    let ack = client(leader).await.deploy(with_bearer(deploy, Some(TOKEN))).await.expect("deploy with the token").into_inner();
    assert!(ack.accepted, "{}", ack.reason);
    wait_for("the instance placed on the worker", WAIT, || async { (list(client(leader).await).await.workers[0].instances == 1).then_some(()) }).await;
    drop(ne);
    tc.shutdown().await;
}
