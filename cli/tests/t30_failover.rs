//! Failover between endpoints: connection errors and 503s move on; writes that may have been
//! applied are never sent twice.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_dead_endpoint_and_a_replica_without_quorum_are_skipped() {
    let no_quorum = FakeRootApi::start().await;
    let healthy = FakeRootApi::start().await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    // Log in on the healthy one first (same token accepted by both fakes).
    let grove = Grove::new(&[dead.clone(), no_quorum.url(), healthy.url()]);
    let id = healthy.with(|s| {
        s.access_tokens.insert("shared".into());
        s.add_service("a.n.s.n", &["RUNNING"])
    });
    no_quorum.with(|s| s.unavailable = Some("the root has no quorum, nothing was changed; retry later".into()));
    std::fs::create_dir_all(grove.config_path().parent().unwrap()).unwrap();
    std::fs::write(grove.config_path(), "[session]\nusername = \"Admin\"\norganization = \"root\"\ntoken = \"shared\"\nrefresh_token = \"r\"\n").unwrap();

    let run = grove.run(&["service", "status", &id]).await;
    run.ok();
    assert!(run.stdout.contains("RUNNING"), "{}", run.stdout);
    assert_eq!(no_quorum.calls(), [format!("GET /api/service/{id}")], "the 503 replica was asked first");
    assert_eq!(healthy.calls(), [format!("GET /api/service/{id}")]);

    // A write that the server says changed nothing moves on too.
    let run = grove.run(&["service", "deploy", &id]).await;
    run.ok();
    assert_eq!(no_quorum.calls().last().unwrap(), &format!("POST /api/service/{id}/instance"));
    assert_eq!(healthy.calls().last().unwrap(), &format!("POST /api/service/{id}/instance"));
    assert_eq!(healthy.with(|s| s.services[&id]["instance_list"].as_array().unwrap().len()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_every_endpoint_down_names_each_failure() {
    let no_quorum = FakeRootApi::start().await;
    no_quorum.with(|s| s.unavailable = Some("the root has no quorum, nothing was changed; retry later".into()));
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let grove = Grove::new(&[dead.clone(), no_quorum.url()]);
    let run = grove.run(&["cluster", "list"]).await;
    run.failed();
    let err = run.stderr.trim();
    assert!(err.starts_with("grove: GET /api/clusters/ failed on every endpoint: "), "{err}");
    assert!(err.contains(&format!("{dead}: cannot connect (")), "{err}");
    assert!(err.contains(&format!("{}: HTTP 503: the root has no quorum, nothing was changed; retry later", no_quorum.url())), "{err}");
    assert_eq!(err.lines().count(), 1, "one sentence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t32_a_write_with_an_unknown_outcome_is_not_retried_elsewhere() {
    let unknown = FakeRootApi::start().await;
    let healthy = FakeRootApi::start().await;
    unknown.with(|s| s.unavailable = Some("the outcome is unknown: leader lost while committing".into()));
    let id = healthy.with(|s| {
        s.access_tokens.insert("shared".into());
        s.add_service("a.n.s.n", &[])
    });
    let grove = Grove::new(&[unknown.url(), healthy.url()]);
    std::fs::create_dir_all(grove.config_path().parent().unwrap()).unwrap();
    std::fs::write(grove.config_path(), "[session]\nusername = \"Admin\"\norganization = \"root\"\ntoken = \"shared\"\nrefresh_token = \"r\"\n").unwrap();

    let run = grove.run(&["service", "deploy", &id]).await;
    run.failed();
    assert!(run.stderr.contains(&format!("POST /api/service/{id}/instance: the outcome is unknown")), "{}", run.stderr);
    assert!(run.stderr.contains("check the state before retrying"), "{}", run.stderr);
    assert!(healthy.calls().is_empty(), "the deploy was not sent a second time");

    // A read is safe to repeat: it moves on.
    grove.run(&["service", "status", &id]).await.ok();
    assert_eq!(healthy.calls(), [format!("GET /api/service/{id}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t33_a_hanging_endpoint_times_out_and_the_next_answers() {
    // Accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}", hang.local_addr().unwrap());
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let healthy = FakeRootApi::start().await;
    healthy.with(|s| s.clusters.push(serde_json::json!({"_id": {"$oid": "c1"}, "cluster_name": "edge", "active": true})));
    let grove = Grove::new(&[hang_url.clone(), healthy.url()]);
    let started = std::time::Instant::now();
    let run = grove.run(&["cluster", "list", "--timeout", "1"]).await;
    run.ok();
    assert!(run.stdout.contains("edge"), "{}", run.stdout);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
}
