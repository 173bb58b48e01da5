//! The root and its cluster tiers over the real `grove.cluster.v1` gRPC, with `FakeCluster`
//! test doubles: registration, dispatch of deploys and undeploys, statuses reported back, lost
//! clusters, and dispatches that survive the root leader's death.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake_cluster::{FakeCluster, Key};
use common::*;
use grove_proto::cluster as pb;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const PERIOD: Duration = Duration::from_millis(200);

fn cluster_endpoints(t: &TestRoots) -> Vec<String> {
    t.roots.values().map(|r| r.cluster_addr.to_string()).collect()
}

async fn leader(t: &TestRoots) -> u64 {
    wait_for("a leader", Duration::from_secs(15), || async { t.roots.iter().find(|(_, r)| r.replica.is_leader()).map(|(id, _)| *id) }).await
}

/// Create an application with one service; its id.
async fn service(t: &TestRoots, via: u64, token: &str, app: &str) -> String {
    let (s, b) = t.call(via, Method::POST, "/api/application/", Some(token), Some(sla(app, &["web"]))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b[0]["microservices"][0].as_str().unwrap().to_owned()
}

async fn deploy(t: &TestRoots, via: u64, token: &str, job_id: &str) -> u32 {
    let (s, b) = t.call(via, Method::POST, &format!("/api/service/{job_id}/instance"), Some(token), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["message"], "ok");
    b["instance_number"].as_u64().expect("the new instance's number") as u32
}

/// The instance list of a service as replica `id` answers it.
async fn instances(t: &TestRoots, id: u64, token: &str, job_id: &str) -> Vec<Value> {
    let (s, b) = t.call(id, Method::GET, &format!("/api/service/{job_id}"), Some(token), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["instance_list"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn deploys_reach_the_cluster_and_statuses_come_back_to_every_replica() {
    let t = TestRoots::start(3).await;
    let token = t.admin(1).await;
    // The cluster registers through whichever replica answers first (any may).
    let mut roots = cluster_endpoints(&t);
    roots.rotate_left(1);
    let edge = FakeCluster::start("edge", roots, 8192, PERIOD, None).await;
    wait_for("the cluster to register and report", Duration::from_secs(20), || async {
        let (_, b) = t.call(1, Method::GET, "/api/clusters/active", None, None).await;
        b.as_array().filter(|a| a.len() == 1 && a[0]["memory_in_mb"] == 8192).map(|_| ())
    })
    .await;

    let job_id = service(&t, 2, &token, "shop").await;
    let n = deploy(&t, 3, &token, &job_id).await;
    let key: Key = (job_id.clone(), n);
    wait_for("the deploy to reach the cluster", Duration::from_secs(20), || async { edge.held().contains(&key).then_some(()) }).await;
    {
        let calls = edge.calls.lock().unwrap();
        let doc = &calls.documents[&key];
        assert_eq!(doc["_id"], job_id.as_str(), "the job document of contract §2.6, _id as a string");
        assert_eq!(doc["job_name"], "shop.test.web.test");
        assert_eq!(doc["instance_list"].as_array().unwrap().len(), 1);
    }
    // The cluster's RUNNING report reaches every replica, with the reported fields.
    for id in 1..=3 {
        wait_for("RUNNING on every replica", Duration::from_secs(20), || async {
            let list = instances(&t, id, &token, &job_id).await;
            list.iter().find(|i| i["instance_number"] == n && i["status"] == "RUNNING" && i["worker_id"] == "fake-worker").map(|_| ())
        })
        .await;
    }
    let cluster_id = edge.id().unwrap();
    let list = instances(&t, 1, &token, &job_id).await;
    assert_eq!(list[0]["cluster_id"], cluster_id.as_str());

    // Undeploy: the cluster gets the call, and the root stops owing it.
    let (s, b) = t.call(1, Method::DELETE, &format!("/api/service/{job_id}/instance/{n}"), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    wait_for("the undeploy to reach the cluster", Duration::from_secs(20), || async { (!edge.held().contains(&key)).then_some(()) }).await;
    let leader = leader(&t).await;
    wait_for("the undeploy acknowledged", Duration::from_secs(20), || async {
        t.roots[&leader].replica.read_local(|s| s.pending_undeploys.is_empty()).then_some(())
    })
    .await;
    assert_eq!(edge.calls.lock().unwrap().undeploys.get(&key), Some(&1));
    let (_, metrics) = t.call(leader, Method::GET, "/metrics", None, None).await;
    let text = metrics.as_str().unwrap();
    for line in ["grove_root_clusters_active 1", "grove_root_pending_deploys 0", "grove_root_pending_undeploys 0"] {
        assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
    }
    drop(edge);
    t.shutdown().await;
}

#[tokio::test]
async fn registration_errors_name_the_field_and_the_token_is_checked() {
    let t = TestRoots::start_with(1, |c| c.cluster_token = Some("cluster-secret".into())).await;
    let addr = format!("http://{}", t.roots[&1].cluster_addr);
    let mut client = pb::root_client::RootClient::connect(addr).await.unwrap();
    let register = |name: &str, endpoints: Vec<String>, token: Option<&str>| {
        let mut r = tonic::Request::new(pb::RegisterRequest { cluster_name: name.into(), cluster_location: String::new(), endpoints, manager_port: 10100 });
        if let Some(t) = token {
            r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    };
    let e = client.register(register("edge", vec!["127.0.0.1:1".into()], None)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = client.register(register("edge", vec!["127.0.0.1:1".into()], Some("wrong"))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = client.register(register("edge one", vec!["127.0.0.1:1".into()], Some("cluster-secret"))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("cluster_name"), "{}", e.message());
    let e = client.register(register("edge", vec!["no-port".into()], Some("cluster-secret"))).await.unwrap_err();
    assert!(e.message().starts_with("endpoints[0]"), "{}", e.message());
    // Nothing was registered by the refused calls; a good one is, and again keeps its id.
    let (_, b) = t.call(1, Method::GET, "/api/clusters/", None, None).await;
    assert_eq!(b.as_array().unwrap().len(), 0);
    let id1 = client.register(register("edge", vec!["127.0.0.1:1".into()], Some("cluster-secret"))).await.unwrap().into_inner().cluster_id;
    let id2 = client.register(register("edge", vec!["127.0.0.1:2".into()], Some("cluster-secret"))).await.unwrap().into_inner().cluster_id;
    assert_eq!(id1, id2);
    // A report for an unknown cluster, or with a bad status, ends the stream with the reason.
    let reports = |r: pb::ClusterReport| {
        let mut req = tonic::Request::new(tokio_stream::iter(vec![r]));
        req.metadata_mut().insert("authorization", "Bearer cluster-secret".parse().unwrap());
        req
    };
    let mut acks = client.report(reports(pb::ClusterReport { cluster_id: "nope".into(), sequence: 1, ..Default::default() })).await.unwrap().into_inner();
    assert_eq!(acks.message().await.unwrap_err().code(), tonic::Code::NotFound);
    let bad = pb::InstanceStatus { job_id: "j".into(), status: "ALIVE".into(), ..Default::default() };
    let mut acks = client.report(reports(pb::ClusterReport { cluster_id: id1.clone(), instances: vec![bad], sequence: 1, ..Default::default() })).await.unwrap().into_inner();
    let e = acks.message().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("instances[0].status"), "{}", e.message());
    let mut acks = client.report(reports(pb::ClusterReport { cluster_id: id1, sequence: 7, ..Default::default() })).await.unwrap().into_inner();
    assert_eq!(acks.message().await.unwrap().unwrap().sequence, 7);
    t.shutdown().await;
}

#[tokio::test]
async fn a_lost_cluster_is_replaced_and_its_copies_undeployed_when_it_returns() {
    let t = TestRoots::start_with(3, |c| c.cluster_lost_after_ms = 1500).await;
    let token = t.admin(1).await;
    // `big` has the most free memory, so both instances go there first.
    let big = FakeCluster::start("big", cluster_endpoints(&t), 16384, PERIOD, None).await;
    let small = FakeCluster::start("small", cluster_endpoints(&t), 4096, PERIOD, None).await;
    wait_for("both clusters active", Duration::from_secs(20), || async {
        let (_, b) = t.call(1, Method::GET, "/api/clusters/active", None, None).await;
        (b.as_array().map_or(0, |a| a.iter().filter(|c| c["memory_in_mb"].as_u64() > Some(0)).count()) == 2).then_some(())
    })
    .await;
    let job_id = service(&t, 1, &token, "video").await;
    let keys: BTreeSet<Key> = [deploy(&t, 1, &token, &job_id).await, deploy(&t, 2, &token, &job_id).await].into_iter().map(|n| (job_id.clone(), n)).collect();
    wait_for("both instances on big", Duration::from_secs(20), || async { (big.held() == keys).then_some(()) }).await;

    // `big` goes silent: lost, and its instances move to `small`.
    big.silent.store(true, Ordering::SeqCst);
    wait_for("the instances re-placed on small", Duration::from_secs(30), || async { (small.held() == keys).then_some(()) }).await;
    let (_, active) = t.call(2, Method::GET, "/api/clusters/active", None, None).await;
    let names: Vec<&str> = active.as_array().unwrap().iter().map(|c| c["cluster_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["small"]);
    let small_id = small.id().unwrap();
    wait_for("statuses from small", Duration::from_secs(20), || async {
        let list = instances(&t, 3, &token, &job_id).await;
        list.iter().all(|i| i["cluster_id"] == small_id.as_str() && i["status"] == "RUNNING").then_some(())
    })
    .await;
    // `big` returns: its stale copies are undeployed, once each, and nothing moves back.
    big.silent.store(false, Ordering::SeqCst);
    wait_for("big's copies undeployed", Duration::from_secs(30), || async { big.held().is_empty().then_some(()) }).await;
    let calls = big.calls.lock().unwrap();
    for k in &keys {
        assert_eq!(calls.deploys.get(k), Some(&1), "{k:?} deployed once on big");
        assert!(calls.undeploys.contains_key(k), "{k:?} undeployed on big");
    }
    drop(calls);
    assert_eq!(small.held(), keys);
    drop((big, small));
    t.shutdown().await;
}

#[tokio::test]
async fn every_committed_dispatch_survives_the_root_leaders_death() {
    let mut t = TestRoots::start(3).await;
    let token = t.admin(1).await;
    let edge = FakeCluster::start("edge", cluster_endpoints(&t), 1 << 30, PERIOD, None).await;
    wait_for("the cluster active", Duration::from_secs(20), || async {
        let (_, b) = t.call(1, Method::GET, "/api/clusters/active", None, None).await;
        b.as_array().filter(|a| a.len() == 1 && a[0]["memory_in_mb"].as_u64() > Some(0)).map(|_| ())
    })
    .await;
    let job_id = service(&t, 1, &token, "burst").await;
    let old_leader = leader(&t).await;

    // Clients on every replica deploy instances while the leader dies.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for c in 0..6usize {
        let (http, token, job_id, stop) = (t.http.clone(), token.clone(), job_id.clone(), stop_rx.clone());
        let base = t.url((c % 3) as u64 + 1, "");
        clients.push(tokio::spawn(async move {
            let mut acked = 0u32;
            while !*stop.borrow() {
                match http.post(format!("{base}/api/service/{job_id}/instance")).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == StatusCode::OK => acked += 1,
                    Ok(r) => assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "only 503 while there is no leader"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await, // the dead replica
                }
            }
            acked
        }));
    }
    let t0 = std::time::Instant::now();
    wait_for("deploys before the kill", Duration::from_secs(30), || async { (edge.held().len() >= 50).then_some(()) }).await;
    eprintln!("{:?} killing the leader", t0.elapsed());
    t.roots.remove(&old_leader).unwrap().shutdown().await;
    let new_leader = leader(&t).await;
    assert_ne!(new_leader, old_leader);
    eprintln!("{:?} new leader", t0.elapsed());
    let before = edge.held().len();
    wait_for("deploys after the failover", Duration::from_secs(30), || async { (edge.held().len() >= before + 50).then_some(()) }).await;
    eprintln!("{:?} stopping the clients", t0.elapsed());
    stop_tx.send(true).unwrap();
    let mut acked = 0;
    for c in clients {
        acked += c.await.unwrap();
    }

    // Every instance the root holds reaches the cluster, and the cluster holds nothing else.
    let survivor = new_leader;
    let placed: BTreeSet<Key> = instances(&t, survivor, &token, &job_id)
        .await
        .iter()
        .map(|i| (job_id.clone(), i["instance_number"].as_u64().unwrap() as u32))
        .collect();
    assert!(placed.len() as u32 >= acked, "{} instances < {acked} acknowledged", placed.len());
    eprintln!("{:?} {} instances, {acked} acknowledged", t0.elapsed(), placed.len());
    wait_for("the cluster to hold exactly the root's instances", Duration::from_secs(30), || async { (edge.held() == placed).then_some(()) }).await;
    eprintln!("{:?} the cluster holds them", t0.elapsed());
    // The burst travelled in batches: fewer calls than dispatches.
    let (calls, dispatches) = {
        let c = edge.calls.lock().unwrap();
        (c.dispatch_calls, c.deploys.values().sum::<u32>())
    };
    eprintln!("{dispatches} deploys in {calls} calls");
    assert!(calls < dispatches, "{dispatches} deploys arrived in {calls} calls: no call carried more than one");
    wait_for("every deploy acknowledged", Duration::from_secs(30), || async {
        t.roots[&survivor].replica.read_local(|s| s.jobs[&job_id].instances.values().all(|i| i.deploy_acked)).then_some(())
    })
    .await;
    drop(edge);
    t.shutdown().await;
}

#[tokio::test]
async fn workers_are_listed_from_every_cluster_and_unreachable_ones_are_named() {
    let t = TestRoots::start_with(1, |c| c.cluster_token = Some("cluster-secret".into())).await;
    let token = t.admin(1).await;
    let secret = Some("cluster-secret".to_owned());
    let edge = FakeCluster::start("edge", cluster_endpoints(&t), 8192, PERIOD, secret.clone()).await;
    let far = FakeCluster::start("far", cluster_endpoints(&t), 8192, PERIOD, secret).await;
    let worker = |id: &str, instances: u32| pb::WorkerSummary {
        id: id.into(),
        hostname: format!("host-{id}"),
        ip: "10.0.0.9".into(),
        active: true,
        vcpus: 4,
        memory_mb: 3000,
        instances,
        last_seen_ms_ago: Some(120),
        ..Default::default()
    };
    edge.calls.lock().unwrap().workers = vec![worker("w1", 2), worker("w2", 0)];
    wait_for("both clusters registered", Duration::from_secs(20), || async {
        let (_, b) = t.call(1, Method::GET, "/api/clusters/active", None, None).await;
        b.as_array().filter(|a| a.len() == 2).map(|_| ())
    })
    .await;

    let (s, b) = t.call(1, Method::GET, "/api/workers/", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = t.call(1, Method::GET, "/api/workers/", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["unreachable"], serde_json::json!([]), "{b}");
    let workers = b["workers"].as_array().unwrap();
    let ids: Vec<&str> = workers.iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["w1", "w2"], "{b}");
    assert_eq!(workers[0]["cluster_name"], "edge");
    assert_eq!(workers[0]["cluster_id"], serde_json::json!(edge.id().unwrap()));
    assert_eq!(workers[0]["hostname"], "host-w1");
    assert_eq!(workers[0]["instances"], 2);
    assert_eq!(workers[0]["memory"], 3000);
    assert_eq!(workers[0]["last_seen_ms_ago"], 120);

    // A cluster that does not answer is named with the reason; the others still answer.
    far.stop();
    let b = wait_for("the stopped cluster listed as unreachable", Duration::from_secs(20), || async {
        let (s, b) = t.call(1, Method::GET, "/api/workers/", Some(&token), None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        (b["unreachable"].as_array().is_some_and(|u| !u.is_empty())).then_some(b)
    })
    .await;
    assert_eq!(b["workers"].as_array().unwrap().len(), 2, "{b}");
    let unreachable = b["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1, "{b}");
    assert_eq!(unreachable[0]["cluster_name"], "far");
    assert!(unreachable[0]["error"].as_str().unwrap().starts_with(&far.endpoint), "{b}");
    t.shutdown().await;
}
