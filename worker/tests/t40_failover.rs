//! Registration retry across endpoints and MQTT broker failover, against test doubles: a
//! registration double, rumqttd brokers in child processes and an in-memory runtime double.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use grove_worker::runtime::Runtime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_broker_dies_worker_fails_over_and_keeps_reporting() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut broker_a = BrokerProcess::start();
    let broker_b = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker_a.port, 0).await;
    let mut config = test_config("failover", &cluster, dir.path());
    config.mqtt_brokers = vec![broker_a.addr(), broker_b.addr()];
    let runtime = Arc::new(RuntimeDouble::default());

    let obs_a = Observer::connect(broker_a.port, "a").await;
    let obs_b = Observer::connect(broker_b.port, "b").await;
    let worker = WorkerUnderTest::start_with(config, vec![runtime.clone() as Arc<dyn Runtime>]);

    let node = obs_a
        .wait_for("information on broker A", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;
    let job = "fo.test.svc.test";
    let t0 = Instant::now();
    obs_a.publish(&format!("nodes/{node}/control/deploy"), &deploy_message(job, 0, "img", &[], false)).await;
    obs_a.wait_status(&node, job, 0, "CREATED", t0).await;
    // A second instance is deployed and undeployed before the failover.
    obs_a.publish(&format!("nodes/{node}/control/deploy"), &deploy_message(job, 1, "img", &[], false)).await;
    obs_a.wait_status(&node, job, 1, "CREATED", t0).await;
    obs_a.publish(&format!("nodes/{node}/control/delete"), &delete_message(job, 1)).await;
    obs_a.wait_status(&node, job, 1, "UNDEPLOYED", t0).await;
    assert!(obs_b.seen().is_empty(), "worker talks to one broker at a time");

    // Kill the broker the worker is connected to. (The time is taken first: the worker may
    // fail over and report before `kill` returns.)
    let killed = Instant::now();
    broker_a.kill();

    // It reconnects to B, repeats the status of what it runs (full report) and keeps reporting.
    obs_b.wait_status(&node, job, 0, "RUNNING", killed).await;
    // The final status of the recently removed instance is repeated too, in case the event
    // died with broker A.
    obs_b.wait_status(&node, job, 1, "UNDEPLOYED", killed).await;
    let info_topic = format!("nodes/{node}/information");
    let res_topic = format!("nodes/{node}/jobs/resources");
    obs_b
        .wait_for("three information reports on B", WAIT, |seen| {
            (seen.iter().filter(|m| m.topic == info_topic).count() >= 3).then_some(())
        })
        .await;
    obs_b
        .wait_for("resources on B listing the instance", WAIT, |seen| {
            seen.iter()
                .find(|m| m.topic == res_topic && m.json["services"][0]["job_name"] == job)
                .map(|_| ())
        })
        .await;

    // Control messages through B work too (the subscriptions were renewed).
    let t1 = Instant::now();
    obs_b.publish(&format!("nodes/{node}/control/delete"), &delete_message(job, 0)).await;
    obs_b.wait_status(&node, job, 0, "UNDEPLOYED", t1).await;
    assert!(runtime.running.lock().unwrap().is_empty());
    assert_eq!(runtime.deploys.lock().unwrap().len(), 2, "failover must not redeploy");

    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_registration_retries_across_endpoints_with_backoff() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    // First endpoint: nothing listens. Second: answers 500 twice, then accepts.
    let dead = format!("127.0.0.1:{}", free_port());
    let cluster = ClusterDouble::start(broker.port, 2).await;
    let mut config = test_config("registration", &cluster, dir.path());
    config.cluster_endpoints = vec![dead, cluster.endpoint()];
    let obs = Observer::connect(broker.port, "reg").await;
    let worker = WorkerUnderTest::start_with(config, vec![Arc::new(RuntimeDouble::default()) as Arc<dyn Runtime>]);

    // Reports arrive, so registration succeeded and the broker was derived from the reply
    // (127.0.0.1 from the endpoint, port from MQTT_BROKER_PORT).
    let id = obs
        .wait_for("information after registration", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;
    let bodies = cluster.bodies();
    assert_eq!(bodies.len(), 3, "two refused attempts, then success");
    assert!(bodies.iter().all(|b| b["host"] == "grove-test-registration" && b["id"] == ""));
    assert_eq!(id, "65f000000000000000000000");
    // Every topic the worker uses carries the id the registration answered.
    assert!(obs.seen().iter().all(|m| m.topic.starts_with(&format!("nodes/{id}/"))));

    worker.stop().await;
}
