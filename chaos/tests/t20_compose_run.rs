//! A short chaos run against `docker-compose.ha.yml`: three roots and a cluster of three in
//! containers behind HAProxy, two containerised workers on this machine's containerd, under a
//! fixed-seed plan of kills (`docker kill` / `docker start`), pauses (`docker pause`) and
//! minority and majority partitions (iptables in the containers' network namespaces), with the
//! register and deployment workloads running through the replicas and the root balancer. Any
//! violation fails the build; the report stays in `target/chaos-compose-ci`. Skipped loudly
//! without root, Docker, a compose tool, a containerd socket, `ctr`, `nsenter` or `iptables`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grove_chaos::history::FaultKind;
use grove_chaos::nemesis::Family;
use grove_chaos::run::{run_compose, RunConfig};
use grove_chaos::target::Compose;

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/t20_compose_run-<hash> → target/<profile>
    std::env::current_exe().unwrap().parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn skip(reason: &str) {
    let banner = "!".repeat(100);
    // Straight to file descriptor 2: libtest's capture of `eprintln!` would hide it.
    let _ = std::io::stderr().write_all(format!("\n{banner}\n!!! SKIPPED t20_compose_run: {reason}\n{banner}\n").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_compose_chaos_run_finds_no_violation() {
    let bins = bin_dir();
    if let Some(missing) = ["grove-root", "grove-cluster", "grove-worker"].iter().find(|b| !bins.join(b).exists()) {
        return skip(&format!("no {missing} in {} (cargo nextest run --workspace builds it)", bins.display()));
    }
    if let Some(why) = Compose::unavailable() {
        return skip(&why);
    }
    let out = bins.join("chaos-compose-ci");
    let seed = 20_261_128;
    let cfg = RunConfig {
        duration: Duration::from_secs(60),
        seed,
        families: vec![Family::Kill, Family::Pause, Family::Partition],
        out: out.clone(),
        register_clients: 4,
        deployment_clients: 2,
        registers: 3,
        bin_dir: bins,
        base_port: 0,
        settle_bound: Duration::from_secs(60),
        command_line: format!("grove-chaos run --topology compose --duration 60s --seed {seed} --nemesis kill,pause,partition"),
    };
    let result = run_compose(cfg).await.expect("the compose chaos run completes");
    eprintln!("{}", std::fs::read_to_string(out.join("summary.md")).unwrap_or_default());
    assert!(result.violations.is_empty(), "violations:\n{}", result.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"));

    let count = |kinds: &[FaultKind]| result.faults.iter().filter(|f| kinds.contains(&f.kind)).count();
    assert!(count(&[FaultKind::KillLeader, FaultKind::KillReplica]) >= 4, "kills: {:?}", result.faults);
    assert!(count(&[FaultKind::Pause]) >= 1, "pauses: {:?}", result.faults);
    assert!(count(&[FaultKind::PartitionMinority, FaultKind::PartitionMajority]) >= 1, "partitions: {:?}", result.faults);
    assert!(result.checked_register_ops >= 100, "enough register operations to check: {}", result.checked_register_ops);
    for file in ["history.jsonl", "summary.md", "timeline.png"] {
        assert!(out.join(file).exists(), "{file} is written");
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
    assert!(summary.contains("compose"), "the summary names the topology");
}
