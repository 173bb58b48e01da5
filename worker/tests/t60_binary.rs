//! The real `grove-worker` binary: configured by file, env and flags, it registers, reports,
//! and stops cleanly on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::containerd::{socket_or_skip, NamespaceGuard};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_binary_layers_config_reports_and_stops_on_sigterm() {
    init_tracing();
    let Some(socket) = socket_or_skip("t60_binary_layers_config_reports_and_stops_on_sigterm") else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let ns = format!("grove-test-{}-binary", std::process::id());
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    let file = dir.path().join("worker.toml");
    std::fs::write(
        &file,
        format!(
            "cluster_endpoints = [\"{}\"]\ncontainerd_namespace = \"{ns}\"\nhostname = \"from-file\"\nlocation = \"from-file\"\nreport_interval_ms = 200\n",
            cluster.endpoint()
        ),
    )
    .unwrap();
    let obs = Observer::connect(broker.port, "t60").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_grove-worker"))
        .arg("--config")
        .arg(&file)
        .args(["--location", "from-flag"])
        .env("GROVE_HOSTNAME", "from-env")
        .env("GROVE_LOCATION", "from-env")
        .env("GROVE_CONTAINERD_SOCKET", &socket)
        .env("GROVE_LOG_DIRECTORY", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let info = obs
        .wait_for("information from the binary", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).map(|m| m.json.clone())
        })
        .await;
    assert_eq!(info["host"], "from-env", "env beats file");
    assert_eq!(info["system_info"]["location"], "from-flag", "flag beats env");
    assert_eq!(info["LogDirectory"], dir.path().display().to_string());

    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "worker did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
}
