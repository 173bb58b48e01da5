//! Instances through the machine's real containerd, driven over MQTT like a cluster would.
//! Skipped loudly where no containerd socket exists.

mod common;

use std::time::Instant;

use common::containerd::{busybox_image, import_with_ctr, socket_or_skip, Inspect, NamespaceGuard, TASK_RUNNING};
use common::*;
use serde_json::Value;

const IMAGE: &str = "grove.test/busybox:1";

/// Every resources entry of `job` seen since `since`.
fn resources_entries(seen: &[Seen], node_id: &str, job: &str, since: Instant) -> Vec<Value> {
    let topic = format!("nodes/{node_id}/jobs/resources");
    seen.iter()
        .filter(|m| m.at >= since && m.topic == topic)
        .flat_map(|m| m.json["services"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["job_name"] == job)
        .collect()
}

async fn node_id(obs: &Observer) -> String {
    obs.wait_for("first information report", WAIT, |seen| {
        seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_deploy_runs_reports_logs_and_undeploys() {
    init_tracing();
    let Some(socket) = socket_or_skip("t20_deploy_runs_reports_logs_and_undeploys") else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("lifecycle", &cluster, dir.path());
    config.containerd_socket = socket.clone();
    let ns = config.containerd_namespace.clone();
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    import_with_ctr(&socket, &ns, &busybox_image(), IMAGE, dir.path());

    let obs = Observer::connect(broker.port, "t20").await;
    let worker = WorkerUnderTest::start(config);
    let node = node_id(&obs).await;
    let job = "app.test.svc.test";
    let task_id = format!("{job}.instance.0");
    let deploy = deploy_message(
        job,
        0,
        IMAGE,
        &["/bin/sh", "-c", "echo hello-grove $HOSTNAME $GROVE_TEST; while :; do :; done"],
        false,
    );

    let t0 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/deploy"), &deploy).await;
    obs.wait_status(&node, job, 0, "CREATED", t0).await;

    // RUNNING as the cluster sees it: a resources entry with real numbers from the cgroup.
    let entry = obs
        .wait_for("resources entry with cpu and memory", WAIT, |seen| {
            resources_entries(seen, &node, job, t0).into_iter().find(|e| {
                let cpu: f64 = e["cpu_percent"].as_str().unwrap().parse().unwrap();
                let mem: f64 = e["memory_percent"].as_str().unwrap().parse().unwrap();
                cpu > 1.0 && mem > 0.0
            })
        })
        .await;
    assert_eq!(entry["instance"], 0);
    assert_eq!(entry["virtualization"], "docker");

    let inspect = Inspect::connect(&socket, &ns).await;
    assert_eq!(inspect.containers().await, vec![task_id.clone()]);
    let (pid, status) = inspect.task(&task_id).await.expect("task exists");
    assert_eq!(status, TASK_RUNNING);

    // The instance's log file, with the injected hostname and the job's environment.
    let log = dir.path().join(&task_id);
    wait_until("log line", WAIT, || {
        std::fs::read_to_string(&log).ok().filter(|s| s.contains("hello-grove instance-0 1"))
    })
    .await;
    let logs_field = obs
        .wait_for("log tail in resources", WAIT, |seen| {
            resources_entries(seen, &node, job, t0).into_iter().find(|e| e["logs"].as_str().unwrap().contains("hello-grove"))
        })
        .await;
    assert!(logs_field["logs"].as_str().unwrap().contains("instance-0"));

    // The memory limit from the job (64 MB) is on the instance's cgroup.
    let rel = format!("grove/{ns}/{task_id}");
    let limit = std::fs::read_to_string(format!("/sys/fs/cgroup/memory/{rel}/memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/{rel}/memory.max")))
        .expect("instance cgroup has a memory limit file");
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    // …and the CPU limit from `vcpus` (1 core = quota of one period).
    let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{rel}/cpu.cfs_quota_us"))
        .map(|q| q.trim().to_owned())
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/{rel}/cpu.max")).map(|m| m.split_whitespace().next().unwrap_or("").to_owned()))
        .expect("instance cgroup has a cpu quota file");
    assert_eq!(quota, "100000");

    // A repeated deploy changes nothing.
    let t1 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/deploy"), &deploy).await;
    obs.wait_status(&node, job, 0, "RUNNING", t1).await;
    assert_eq!(inspect.containers().await, vec![task_id.clone()]);
    assert_eq!(inspect.task(&task_id).await.map(|t| t.0), Some(pid));

    // Undeploy: stop (the busy loop ignores SIGTERM as PID 1, so it is killed after the grace
    // period), delete, gone from containerd.
    let t2 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/delete"), &delete_message(job, 0)).await;
    obs.wait_status(&node, job, 0, "UNDEPLOYED", t2).await;
    assert!(t2.elapsed() >= std::time::Duration::from_millis(1_000), "killed only after the 1 s grace period");
    assert!(inspect.containers().await.is_empty());
    assert!(inspect.task(&task_id).await.is_none());
    // Later resource reports no longer list it.
    let t3 = Instant::now();
    obs.wait_for("resources report without the instance", WAIT, |seen| {
        seen.iter()
            .find(|m| m.at > t3 && m.topic == format!("nodes/{node}/jobs/resources"))
            .filter(|m| m.json["services"].as_array().unwrap().is_empty())
            .map(|_| ())
    })
    .await;

    // Deleting an unknown instance is harmless and still answered.
    let t4 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/delete"), &delete_message(job, 0)).await;
    obs.wait_status(&node, job, 0, "UNDEPLOYED", t4).await;

    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_exits_map_to_completed_dead_and_unsupported_fails() {
    init_tracing();
    let Some(socket) = socket_or_skip("t21_exits_map_to_completed_dead_and_unsupported_fails") else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("exits", &cluster, dir.path());
    config.containerd_socket = socket.clone();
    let ns = config.containerd_namespace.clone();
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    import_with_ctr(&socket, &ns, &busybox_image(), IMAGE, dir.path());

    let obs = Observer::connect(broker.port, "t21").await;
    let worker = WorkerUnderTest::start(config);
    let node = node_id(&obs).await;
    let deploy_topic = format!("nodes/{node}/control/deploy");
    let t0 = Instant::now();

    obs.publish(&deploy_topic, &deploy_message("ok.test.once.test", 0, IMAGE, &["/bin/sh", "-c", "echo done"], true)).await;
    obs.publish(&deploy_topic, &deploy_message("fail.test.once.test", 0, IMAGE, &["/bin/sh", "-c", "exit 1"], true)).await;
    obs.publish(&deploy_topic, &deploy_message("svc.test.exits.test", 3, IMAGE, &["/bin/true"], false)).await;
    // `privileged` widens the capability set (all of them) and the plain instance keeps the
    // default set; both print their effective capabilities.
    let mut privileged = deploy_message("priv.test.caps.test", 0, IMAGE, &["/bin/sh", "-c", "cat /proc/self/status"], true);
    privileged["privileged"] = true.into();
    obs.publish(&deploy_topic, &privileged).await;
    obs.publish(&deploy_topic, &deploy_message("plain.test.caps.test", 0, IMAGE, &["/bin/sh", "-c", "cat /proc/self/status"], true)).await;
    let mut unikernel = deploy_message("uk.test.kernel.test", 0, "https://example.invalid/kernel", &[], false);
    unikernel["virtualization"] = "unikernel".into();
    obs.publish(&deploy_topic, &unikernel).await;

    let completed = obs.wait_status(&node, "ok.test.once.test", 0, "COMPLETED", t0).await;
    assert_eq!(completed["status_detail"], "exit code 0");
    let dead = obs.wait_status(&node, "fail.test.once.test", 0, "DEAD", t0).await;
    assert_eq!(dead["status_detail"], "exit code 1");
    let dead = obs.wait_status(&node, "svc.test.exits.test", 3, "DEAD", t0).await;
    assert_eq!(dead["status_detail"], "exit code 0");
    let failed = obs.wait_status(&node, "uk.test.kernel.test", 0, "FAILED", t0).await;
    let reason = failed["status_detail"].as_str().unwrap();
    assert!(reason.contains("\"unikernel\"") && reason.contains("not supported"), "{reason}");

    // An instance that handles SIGTERM gets it before anything else on undeploy.
    let graceful = "term.test.svc.test";
    obs.publish(
        &deploy_topic,
        &deploy_message(graceful, 0, IMAGE, &["/bin/sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done"], false),
    )
    .await;
    obs.wait_status(&node, graceful, 0, "CREATED", t0).await;
    let graceful_log = dir.path().join(format!("{graceful}.instance.0"));
    wait_until("trap installed", WAIT, || std::fs::read_to_string(&graceful_log).ok().filter(|s| s.contains("ready"))).await;
    let t_del = Instant::now();
    obs.publish(&format!("nodes/{node}/control/delete"), &delete_message(graceful, 0)).await;
    obs.wait_status(&node, graceful, 0, "UNDEPLOYED", t_del).await;
    assert!(std::fs::read_to_string(&graceful_log).unwrap().contains("got-term"));
    assert!(
        !obs.seen().iter().any(|m| m.topic.ends_with("/job") && m.json["sname"] == graceful && m.json["status"] == "DEAD"),
        "an undeployed instance is not reported DEAD"
    );

    obs.wait_status(&node, "priv.test.caps.test", 0, "COMPLETED", t0).await;
    obs.wait_status(&node, "plain.test.caps.test", 0, "COMPLETED", t0).await;
    let cap_eff = |job: &str| {
        let status = std::fs::read_to_string(dir.path().join(format!("{job}.instance.0"))).unwrap();
        let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim().to_owned();
        u64::from_str_radix(&hex, 16).unwrap()
    };
    let (privileged_caps, plain_caps) = (cap_eff("priv.test.caps.test"), cap_eff("plain.test.caps.test"));
    assert_eq!(plain_caps.count_ones(), 14, "default capability set: {plain_caps:x}");
    assert!(privileged_caps.count_ones() >= 38, "privileged gets every capability: {privileged_caps:x}");
    const CAP_SYS_ADMIN: u32 = 21;
    assert!(privileged_caps & (1 << CAP_SYS_ADMIN) != 0 && plain_caps & (1 << CAP_SYS_ADMIN) == 0);

    // Exited instances are not restarted, and their containers are cleaned up.
    let inspect = Inspect::connect(&socket, &ns).await;
    let mut remaining = inspect.containers().await;
    let deadline = Instant::now() + WAIT;
    while !remaining.is_empty() {
        assert!(Instant::now() < deadline, "containers left behind: {remaining:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        remaining = inspect.containers().await;
    }
    // The one-shot's output reached its log file.
    let log = std::fs::read_to_string(dir.path().join("ok.test.once.test.instance.0")).unwrap();
    assert!(log.contains("done"));
    // No instance was started twice.
    let completions = obs
        .seen()
        .iter()
        .filter(|m| m.topic.ends_with("/job") && m.json["sname"] == "svc.test.exits.test" && m.json["status"] == "CREATED")
        .count();
    assert_eq!(completions, 1);

    worker.stop().await;
}
