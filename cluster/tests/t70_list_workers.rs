//! `Cluster.ListWorkers` (what the root's `GET /api/workers/` asks): answered by the leader with
//! every registered worker and its live resources, refused by followers with a pointer to the
//! leader; with a cluster token configured, every call of the `Cluster` service must carry it.

mod common;

use std::time::Duration;

use common::{job_json, wait_for, NodeEngineDouble, TestCluster, WAIT};
use grove_proto::auth::with_bearer;
use grove_proto::cluster::cluster_client::ClusterClient;
use grove_proto::cluster::{DeployRequest, DispatchBatch, ListWorkersRequest, UndeployRequest};

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
    // Delivered through whichever replica holds the worker's session (an internal route that
    // needs the token too).
    wait_for("the instance running on the worker", WAIT, || async { (ne.running().len() == 1).then_some(()) }).await;

    // The routes between replicas refuse callers without the token: `deliver` publishes deploy
    // commands to workers.
    let http = reqwest::Client::new();
    let deliver = |token: Option<&str>| {
        let mut r = http.post(format!("{}/internal/v1/deliver", tc.api(leader))).json(&serde_json::json!({"messages": []}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for (token, status, message) in [
        (None, 401, "a \"Bearer <cluster token>\" header is required"),
        (Some("wrong"), 401, "the cluster token is wrong"),
        (Some(TOKEN), 200, ""),
    ] {
        let r = deliver(token).await.expect("answered");
        assert_eq!(r.status().as_u16(), status, "{token:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["message"].as_str().unwrap_or_default().contains(message), "{token:?}: {body}");
    }
    let r = http.get(format!("{}/internal/v1/root-link", tc.api(leader))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    drop(ne);
    tc.shutdown().await;
}

/// `Cluster.Dispatch`, how the root sends deploys and undeploys: through any replica, each item
/// answered in order, a malformed one refused alone, undeploys applied before deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_batch_is_answered_item_by_item_through_any_replica() {
    let tc = TestCluster::start(3, |_| {}).await;
    let leader = tc.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut client = ClusterClient::connect(tc.grpc(follower)).await.expect("connect");
    let job = "65f000000000000000000071";
    let deploy = |n| DeployRequest { job_id: job.into(), instance_number: n, job_json: job_json(job, "app.ns.batch.ns") };
    let undeploy = |n| UndeployRequest { job_id: job.into(), instance_number: n };
    let mut malformed = deploy(2);
    malformed.job_json = "{not json".into();

    // Instance 1 is undeployed and deployed in one batch (the root re-placed it here): it ends
    // deployed.
    let batch = DispatchBatch { deploys: vec![deploy(0), deploy(1), malformed], undeploys: vec![undeploy(1)] };
    let acks = client.dispatch(batch).await.expect("the follower answers").into_inner();
    assert_eq!(acks.deploys.iter().map(|a| a.accepted).collect::<Vec<_>>(), [true, true, false]);
    assert!(acks.deploys[2].reason.starts_with("job_json: not JSON"), "{}", acks.deploys[2].reason);
    assert_eq!(acks.undeploys.len(), 1);
    assert!(acks.undeploys[0].accepted, "{}", acks.undeploys[0].reason);

    let http = reqwest::Client::new();
    let apis: Vec<String> = (1..=3).map(|i| tc.api(i)).collect();
    let numbers = |list: Vec<serde_json::Value>| -> Vec<u64> {
        let mut n: Vec<u64> = list.iter().filter(|i| i["job_id"] == job && i["desired"] == "running").filter_map(|i| i["instance_number"].as_u64()).collect();
        n.sort();
        n
    };
    assert_eq!(numbers(common::instances(&http, &apis).await.expect("instances")), [0, 1], "acknowledged means committed");

    // The same batch again changes nothing (idempotent); an undeploy alone removes.
    let acks = client.dispatch(DispatchBatch { deploys: vec![deploy(0)], undeploys: vec![undeploy(1)] }).await.unwrap().into_inner();
    assert!(acks.deploys[0].accepted && acks.undeploys[0].accepted);
    assert_eq!(numbers(common::instances(&http, &apis).await.expect("instances")), [0]);

    // Too many items: refused as a whole, naming the rule.
    let e = client.dispatch(DispatchBatch { deploys: (0..1025).map(deploy).collect(), undeploys: vec![] }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("at most 1024 per call"), "{e}");
    tc.shutdown().await;
}
