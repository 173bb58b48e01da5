//! The pull path for real: an image that is not in the namespace is fetched with the OCI
//! distribution protocol from a registry test double on 127.0.0.1, written to containerd's
//! content store, recorded, unpacked and run.

mod common;

use std::time::Instant;

use common::containerd::{busybox_image_two_gzip_layers, import_with_ctr, snapshot_names, socket_or_skip, Inspect, NamespaceGuard};
use common::registry_double::RegistryDouble;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_pulls_a_missing_image_from_a_registry_and_runs_it() {
    init_tracing();
    let Some(socket) = socket_or_skip("t30_pulls_a_missing_image_from_a_registry_and_runs_it") else { return };
    let dir = tempfile::tempdir().unwrap();
    // Two gzip layers, as real registries serve them: the diff ids differ from the blob digests.
    let image = busybox_image_two_gzip_layers("from-the-second-layer");
    let (index_digest, manifest_digest, config_digest) =
        (image.index_digest.clone(), image.manifest_digest.clone(), image.config_digest.clone());
    let layer_digests: Vec<String> = image.layers.iter().map(|l| l.digest.clone()).collect();
    let top_chain_id = image.top_chain_id();
    let registry = RegistryDouble::start("grove/busybox", "1", image).await;
    let reference = format!("{}/grove/busybox:1", registry.addr);

    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("pull", &cluster, dir.path());
    config.containerd_socket = socket.clone();
    let ns = config.containerd_namespace.clone();
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    let inspect = Inspect::connect(&socket, &ns).await;
    assert!(inspect.images().await.is_empty(), "namespace starts without images");

    let obs = Observer::connect(broker.port, "t30").await;
    let worker = WorkerUnderTest::start(config);
    let node = obs
        .wait_for("first information report", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;

    let t0 = Instant::now();
    let job = "pull.test.svc.test";
    obs.publish(
        &format!("nodes/{node}/control/deploy"),
        &deploy_message(job, 0, &reference, &["/bin/sh", "-c", "echo pulled-and-running; cat /etc/grove-layer2"], true),
    )
    .await;
    obs.wait_status(&node, job, 0, "COMPLETED", t0).await;

    // The registry served the index, the platform's manifest and both blobs.
    let requests = registry.requests();
    let mut expected_requests = vec![
        "grove/busybox/manifests/1".to_owned(),
        format!("grove/busybox/manifests/{manifest_digest}"),
        format!("grove/busybox/blobs/{config_digest}"),
    ];
    expected_requests.extend(layer_digests.iter().map(|d| format!("grove/busybox/blobs/{d}")));
    for expected in expected_requests {
        assert!(requests.contains(&expected), "registry never saw {expected}: {requests:?}");
    }
    // containerd now holds the image under its normalised name, pointing at the index.
    assert_eq!(inspect.images().await, vec![reference.clone()]);
    let out = std::process::Command::new("ctr")
        .arg("--address").arg(&socket).args(["--namespace", &ns, "images", "ls"])
        .output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&index_digest), "{listing}");
    let log = std::fs::read_to_string(dir.path().join(format!("{job}.instance.0"))).unwrap();
    assert!(log.contains("pulled-and-running") && log.contains("from-the-second-layer"), "{log}");
    // Both layers were unpacked into snapshots named by their chain ids.
    assert!(snapshot_names(&socket, &ns).contains(&top_chain_id), "no snapshot {top_chain_id}");

    // A second instance uses the image already present: no new manifest fetch by tag.
    let before = registry.requests().len();
    let t1 = Instant::now();
    obs.publish(
        &format!("nodes/{node}/control/deploy"),
        &deploy_message(job, 1, &reference, &["/bin/sh", "-c", "echo second"], true),
    )
    .await;
    obs.wait_status(&node, job, 1, "COMPLETED", t1).await;
    assert_eq!(registry.requests().len(), before, "present image must not be pulled again");

    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_uses_the_layers_containerd_unpacked_itself() {
    init_tracing();
    let Some(socket) = socket_or_skip("t31_uses_the_layers_containerd_unpacked_itself") else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("chainid", &cluster, dir.path());
    config.containerd_socket = socket.clone();
    let ns = config.containerd_namespace.clone();
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    // `ctr images import` unpacks with containerd's own code: its snapshot names are the
    // reference for our chain-id computation.
    let image = busybox_image_two_gzip_layers("unpacked-by-ctr");
    import_with_ctr(&socket, &ns, &image, "grove.test/layers:1", dir.path());
    let before = snapshot_names(&socket, &ns);
    assert!(before.contains(&image.top_chain_id()), "ctr named the top snapshot differently: {before:?}");

    let obs = Observer::connect(broker.port, "t31").await;
    let worker = WorkerUnderTest::start(config);
    let node = obs
        .wait_for("first information report", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;
    let job = "layers.test.svc.test";
    let t0 = Instant::now();
    obs.publish(
        &format!("nodes/{node}/control/deploy"),
        &deploy_message(job, 0, "grove.test/layers:1", &["/bin/sh", "-c", "cat /etc/grove-layer2; sleep 3600"], false),
    )
    .await;
    obs.wait_status(&node, job, 0, "CREATED", t0).await;
    // Exactly one new snapshot: the instance's writable layer. Nothing was unpacked again.
    let after = snapshot_names(&socket, &ns);
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert_eq!(new, vec![&format!("{job}.instance.0")]);
    let log = dir.path().join(format!("{job}.instance.0"));
    wait_until("second layer content in the log", WAIT, || {
        std::fs::read_to_string(&log).ok().filter(|s| s.contains("unpacked-by-ctr"))
    })
    .await;
    worker.stop().await;
}
