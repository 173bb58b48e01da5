//! The fleet against a real cluster tier: `grove-cluster` replicas in this process (port-0
//! listeners, no root, no cluster token), simulated workers registering over HTTP and holding
//! MQTT sessions with the replicas' embedded brokers, instances deployed through the `Cluster`
//! gRPC service as the root's dispatcher does.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use grove_cluster::{Cluster, ClusterConfig, Listeners};
use grove_core::status::Status;
use grove_fleet::{Fleet, FleetConfig};
use grove_proto::cluster::cluster_client::ClusterClient;
use grove_proto::cluster::{DeployRequest, UndeployRequest};
use serde_json::{json, Value};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(60);
const JOB_ID: &str = "65f0000000000000000000f1";
const JOB_NAME: &str = "fleet.test.svc.test";

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// In-process replicas of one cluster.
struct TestCluster {
    _dir: tempfile::TempDir,
    replicas: BTreeMap<u64, Cluster>,
    http: reqwest::Client,
}

impl TestCluster {
    async fn start(n: u64) -> TestCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG")
                    .unwrap_or_else(|_| "warn,openraft=error,rumqttd=error".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let bind = || async {
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port")
            };
            listeners.insert(
                id,
                Listeners {
                    raft: bind().await,
                    api: bind().await,
                    grpc: bind().await,
                },
            );
        }
        let peers: Vec<String> = listeners
            .iter()
            .map(|(id, l)| format!("{id}={}", l.raft.local_addr().expect("bound")))
            .collect();
        let mut replicas = BTreeMap::new();
        for (id, l) in listeners {
            let config = ClusterConfig {
                id,
                cluster_name: "fleet".into(),
                cluster_location: "48.1,11.6,1000".into(),
                data_dir: dir.path().join(format!("r{id}")),
                api_listen: "127.0.0.1:0".parse().expect("literal"),
                mqtt_listen: "127.0.0.1:0".parse().expect("literal"),
                raft_listen: "127.0.0.1:0".parse().expect("literal"),
                grpc_listen: "127.0.0.1:0".parse().expect("literal"),
                peers: peers.join(","),
                // Short enough that failed instances come back quickly; liveness as shipped.
                resend_after_ms: 2_000,
                redeploy_delay_ms: 300,
                ..ClusterConfig::default()
            };
            replicas.insert(id, Cluster::start(config, l).await.expect("replica starts"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        let tc = TestCluster {
            _dir: dir,
            replicas,
            http,
        };
        wait_for(
            "a leader every replica follows, with all endpoints announced",
            WAIT,
            || async {
                let views: Vec<Option<u64>> = tc
                    .replicas
                    .values()
                    .map(|r| r.replica().status().leader_id)
                    .collect();
                let first = views.first().copied().flatten()?;
                let announced = tc
                    .replicas
                    .values()
                    .all(|r| r.replica().read_local(|s| s.replicas.len()) == n as usize);
                (views.iter().all(|v| *v == Some(first)) && announced).then_some(first)
            },
        )
        .await;
        tc
    }

    fn apis(&self) -> Vec<String> {
        self.replicas
            .values()
            .map(|r| format!("http://{}", r.api_addr))
            .collect()
    }

    fn grpcs(&self) -> Vec<String> {
        self.replicas
            .values()
            .map(|r| format!("http://{}", r.grpc_addr))
            .collect()
    }

    fn brokers(&self) -> Vec<(String, u16)> {
        self.replicas
            .values()
            .map(|r| ("127.0.0.1".to_owned(), r.mqtt_addr.port()))
            .collect()
    }

    fn fleet_config(&self, workers: usize) -> FleetConfig {
        FleetConfig {
            cluster_endpoints: self.apis(),
            brokers: self.brokers(),
            workers,
            prefix: "t10-".into(),
            ..FleetConfig::default()
        }
    }

    /// `GET /api/cluster/instances` from the first replica that answers, by instance number.
    async fn instances(&self) -> Option<BTreeMap<u32, Value>> {
        for a in self.apis() {
            if let Ok(r) = self
                .http
                .get(format!("{a}/api/cluster/instances"))
                .send()
                .await
            {
                if r.status().is_success() {
                    let list: Vec<Value> = r.json().await.ok()?;
                    return Some(
                        list.into_iter()
                            .filter(|i| i["job_id"] == JOB_ID)
                            .filter_map(|i| Some((i["instance_number"].as_u64()? as u32, i)))
                            .collect(),
                    );
                }
            }
        }
        None
    }

    /// Wait until instances `0..n` all read RUNNING; returns the list.
    async fn wait_running(&self, n: u32) -> BTreeMap<u32, Value> {
        wait_for(
            &format!("{n} instances RUNNING at the cluster"),
            WAIT,
            || async {
                let all = self.instances().await?;
                ((0..n).all(|k| all.get(&k).is_some_and(|i| i["status"] == "RUNNING")))
                    .then_some(all)
            },
        )
        .await
    }

    async fn shutdown(self) {
        for (_, r) in self.replicas {
            r.shutdown().await;
        }
    }
}

/// `Cluster.Deploy` as the root's dispatcher calls it, on any replica, until accepted.
async fn deploy(endpoints: &[String], n: u32) {
    let job = json!({
        "_id": JOB_ID, "job_name": JOB_NAME, "image": "docker.io/library/busybox:latest",
        "virtualization": "docker", "vcpus": 1, "memory": 16, "port": "", "cmd": [], "environment": [],
        "instance_list": [{"instance_number": n}]
    });
    let request = DeployRequest {
        job_id: JOB_ID.into(),
        instance_number: n,
        job_json: job.to_string(),
    };
    wait_for(&format!("deploy of instance {n} accepted"), WAIT, || {
        let request = request.clone();
        async move {
            for e in endpoints {
                let Ok(Ok(mut c)) =
                    tokio::time::timeout(Duration::from_secs(5), ClusterClient::connect(e.clone()))
                        .await
                else {
                    continue;
                };
                match tokio::time::timeout(Duration::from_secs(5), c.deploy(request.clone())).await
                {
                    Ok(Ok(r)) if r.get_ref().accepted => return Some(()),
                    Ok(Ok(r)) => panic!("deploy refused: {}", r.get_ref().reason),
                    _ => continue,
                }
            }
            None
        }
    })
    .await
}

async fn undeploy(endpoints: &[String], n: u32) {
    wait_for(
        &format!("undeploy of instance {n} accepted"),
        WAIT,
        || async move {
            for e in endpoints {
                let Ok(Ok(mut c)) =
                    tokio::time::timeout(Duration::from_secs(5), ClusterClient::connect(e.clone()))
                        .await
                else {
                    continue;
                };
                if let Ok(Ok(r)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    c.undeploy(UndeployRequest {
                        job_id: JOB_ID.into(),
                        instance_number: n,
                    }),
                )
                .await
                {
                    if r.get_ref().accepted {
                        return Some(());
                    }
                }
            }
            None
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_instances_run_on_simulated_workers_and_deletes_undeploy_them() {
    let tc = TestCluster::start(3).await;
    let fleet = Fleet::start(FleetConfig {
        startup: Duration::from_millis(200),
        ..tc.fleet_config(20)
    })
    .await
    .expect("fleet registers");
    fleet
        .wait_connected(WAIT)
        .await
        .expect("every worker has an MQTT session");
    let ids: BTreeSet<String> = fleet.workers().iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        ids.len(),
        20,
        "20 distinct worker ids: {:?}",
        fleet.workers()
    );
    // The registrations were committed: every replica knows the 20 workers.
    for r in tc.replicas.values() {
        wait_for("the workers in every replica's state", WAIT, || async {
            (r.replica().read_local(|s| s.workers.len()) == 20).then_some(())
        })
        .await;
    }

    let grpc = tc.grpcs();
    for n in 0..40 {
        deploy(&grpc, n).await;
    }
    let placed = tc.wait_running(40).await;
    // Every RUNNING instance is on the simulated worker that was told to run it, and runs there.
    let mut used = BTreeSet::new();
    for (n, i) in &placed {
        let record = fleet
            .instance(JOB_NAME, *n)
            .unwrap_or_else(|| panic!("the fleet never received instance {n}"));
        assert_eq!(
            i["worker_id"].as_str(),
            Some(record.worker.as_str()),
            "instance {n}: {i}"
        );
        assert!(ids.contains(&record.worker));
        // CREATED once started; RUNNING if the cluster repeated the deploy (a resend).
        assert!(
            matches!(record.status, Status::Created | Status::Running),
            "instance {n}: {record:?}"
        );
        used.insert(record.worker);
    }
    assert!(
        used.len() > 1,
        "best fit spreads 40 instances over several workers: {used:?}"
    );
    let stats = fleet.stats();
    assert_eq!(
        (stats.running, stats.failed, stats.dead, stats.bad_messages),
        (40, 0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.created >= 40, "{stats:?}");

    // Deletes: the workers report UNDEPLOYED and stop listing the instances.
    for n in 0..5 {
        undeploy(&grpc, n).await;
    }
    wait_for(
        "5 instances undeployed on the simulated workers",
        WAIT,
        || async {
            let gone = (0..5).all(|n| {
                fleet
                    .instance(JOB_NAME, n)
                    .is_some_and(|r| r.status == Status::Undeployed)
            });
            (gone && fleet.stats().running == 35).then_some(())
        },
    )
    .await;
    assert!(fleet.stats().deletes >= 5);

    fleet.shutdown(Duration::from_secs(5)).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failing_deploy_is_reported_failed_and_placed_again() {
    let tc = TestCluster::start(1).await;
    let fleet = Fleet::start(FleetConfig {
        failure_rate: 1.0,
        dead_share: 0.0,
        ..tc.fleet_config(5)
    })
    .await
    .expect("fleet registers");
    fleet.wait_connected(WAIT).await.expect("connected");
    let grpc = tc.grpcs();
    for n in 0..3 {
        deploy(&grpc, n).await;
    }
    // The cluster sees FAILED and places each instance again, over and over.
    wait_for(
        "every instance deployed at least three times",
        WAIT,
        || async {
            (0..3)
                .all(|n| fleet.instance(JOB_NAME, n).is_some_and(|r| r.deploys >= 3))
                .then_some(())
        },
    )
    .await;
    let stats = fleet.stats();
    assert_eq!(
        (stats.created, stats.running, stats.dead),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.failed >= 9, "{stats:?}");
    let at_cluster = tc.instances().await.expect("the cluster answers");
    for n in 0..3 {
        let i = &at_cluster[&n];
        assert_ne!(i["status"], "RUNNING", "instance {n} never runs: {i}");
        assert!(
            i["placements"].as_u64().unwrap_or(0) >= 2,
            "instance {n} was placed again: {i}"
        );
    }
    fleet.shutdown(Duration::from_secs(5)).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_failure_rate_of_one_half_every_instance_ends_up_running() {
    let tc = TestCluster::start(1).await;
    let fleet = Fleet::start(FleetConfig {
        failure_rate: 0.5,
        dead_share: 0.5,
        seed: 8,
        ..tc.fleet_config(10)
    })
    .await
    .expect("fleet registers");
    fleet.wait_connected(WAIT).await.expect("connected");
    let grpc = tc.grpcs();
    for n in 0..20 {
        deploy(&grpc, n).await;
    }
    tc.wait_running(20).await;
    // Wait for the last CREATED to be counted (the status event and the report race the read).
    wait_for("20 instances running on the fleet", WAIT, || async {
        (fleet.stats().running == 20).then_some(())
    })
    .await;
    let stats = fleet.stats();
    let attempts: u32 = fleet.instances().iter().map(|(_, r)| r.deploys).sum();
    // 20 first attempts at one half: no failure at all would happen once in a million runs.
    assert!(stats.failed + stats.dead > 0, "{stats:?}");
    assert_eq!(
        u64::from(attempts),
        stats.created + stats.failed + stats.dead,
        "every attempt ends in exactly one outcome: {stats:?}"
    );
    assert!(
        fleet
            .instances()
            .iter()
            .all(|(_, r)| matches!(r.status, Status::Created | Status::Running)),
        "{:?}",
        fleet.instances()
    );
    fleet.shutdown(Duration::from_secs(5)).await;
    tc.shutdown().await;
}
