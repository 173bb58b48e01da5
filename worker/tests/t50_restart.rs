//! A worker restarted while an instance runs finds it in its containerd namespace, reports it,
//! and does not start a second copy.

mod common;

use std::time::Instant;

use common::containerd::{busybox_image, import_with_ctr, socket_or_skip, Inspect, NamespaceGuard, TASK_RUNNING, TASK_STOPPED};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_restarted_worker_adopts_its_running_instance() {
    init_tracing();
    let Some(socket) = socket_or_skip("t50_restarted_worker_adopts_its_running_instance") else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("restart", &cluster, dir.path());
    config.containerd_socket = socket.clone();
    let ns = config.containerd_namespace.clone();
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    import_with_ctr(&socket, &ns, &busybox_image(), "grove.test/busybox:1", dir.path());
    let inspect = Inspect::connect(&socket, &ns).await;

    let obs = Observer::connect(broker.port, "t50").await;
    let first = WorkerUnderTest::start(config.clone());
    let node = obs
        .wait_for("first information report", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;
    let job = "rs.test.svc.test";
    let task_id = format!("{job}.instance.2");
    let deploy = deploy_message(job, 2, "grove.test/busybox:1", &["/bin/sleep", "3600"], false);
    let t0 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/deploy"), &deploy).await;
    obs.wait_status(&node, job, 2, "CREATED", t0).await;
    let (pid, status) = inspect.task(&task_id).await.expect("task exists");
    assert_eq!(status, TASK_RUNNING);

    // Stop the worker: the instance keeps running.
    first.stop().await;
    assert_eq!(inspect.task(&task_id).await, Some((pid, TASK_RUNNING)));

    // A new worker process (same host, same namespace) adopts it.
    let restarted = Instant::now();
    let second = WorkerUnderTest::start(config);
    let status = obs.wait_status(&node, job, 2, "RUNNING", restarted).await;
    assert_eq!(status["publicip"], "127.0.0.1");
    let res_topic = format!("nodes/{node}/jobs/resources");
    obs.wait_for("resources listing the adopted instance", WAIT, |seen| {
        seen.iter()
            .find(|m| m.at > restarted && m.topic == res_topic && m.json["services"][0]["job_name"] == job)
            .map(|_| ())
    })
    .await;
    assert_eq!(cluster.bodies().len(), 2, "the restarted worker registered again");

    // The cluster re-sends the deploy (as reconciliation would): still one container, same pid.
    let t1 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/deploy"), &deploy).await;
    obs.wait_status(&node, job, 2, "RUNNING", t1).await;
    assert_eq!(inspect.containers().await, vec![task_id.clone()]);
    assert_eq!(inspect.task(&task_id).await, Some((pid, TASK_RUNNING)));
    let created_events = obs
        .seen()
        .iter()
        .filter(|m| m.topic.ends_with("/job") && m.json["sname"] == job && m.json["status"] == "CREATED")
        .count();
    assert_eq!(created_events, 1, "the instance was created exactly once");

    // The adopted instance is fully managed: its exit watcher and undeploy work.
    let t2 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/delete"), &delete_message(job, 2)).await;
    obs.wait_status(&node, job, 2, "UNDEPLOYED", t2).await;
    assert!(inspect.containers().await.is_empty());
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t51_instance_that_died_while_the_worker_was_down_is_reported_dead() {
    init_tracing();
    let Some(socket) = socket_or_skip("t51_instance_that_died_while_the_worker_was_down_is_reported_dead") else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("died", &cluster, dir.path());
    config.containerd_socket = socket.clone();
    let ns = config.containerd_namespace.clone();
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    import_with_ctr(&socket, &ns, &busybox_image(), "grove.test/busybox:1", dir.path());
    let inspect = Inspect::connect(&socket, &ns).await;

    let obs = Observer::connect(broker.port, "t51").await;
    let first = WorkerUnderTest::start(config.clone());
    let node = obs
        .wait_for("first information report", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;
    let job = "died.test.svc.test";
    let task_id = format!("{job}.instance.0");
    let t0 = Instant::now();
    obs.publish(
        &format!("nodes/{node}/control/deploy"),
        &deploy_message(job, 0, "grove.test/busybox:1", &["/bin/sleep", "3600"], false),
    )
    .await;
    obs.wait_status(&node, job, 0, "CREATED", t0).await;
    first.stop().await;

    // While no worker runs, the instance is killed.
    inspect.kill(&task_id).await;
    let deadline = Instant::now() + WAIT;
    while inspect.task(&task_id).await.map(|t| t.1) != Some(TASK_STOPPED) {
        assert!(Instant::now() < deadline, "task did not stop");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The restarted worker reports it DEAD with its exit code and removes its leftovers.
    let restarted = Instant::now();
    let second = WorkerUnderTest::start(config);
    let dead = obs.wait_status(&node, job, 0, "DEAD", restarted).await;
    assert_eq!(dead["status_detail"], "exit code 137");
    let deadline = Instant::now() + WAIT;
    while !inspect.containers().await.is_empty() {
        assert!(Instant::now() < deadline, "dead container left behind");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    second.stop().await;
}
