//! The CI chaos run: the process topology (three roots, a cluster of three, two workers, each
//! in its own network namespace) under a fixed-seed plan of leader kills in both tiers,
//! minority and majority partitions, pauses and a worker kill, with the register and
//! deployment workloads running. Any violation fails the build; the report stays in
//! `target/chaos-ci` for a person to look at.

use std::path::{Path, PathBuf};
use std::time::Duration;

use grove_chaos::history::FaultKind;
use grove_chaos::nemesis::Family;
use grove_chaos::run::{run_processes, RunConfig};

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/t10_short_run-<hash> → target/<profile>
    std::env::current_exe().unwrap().parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn skip(reason: &str) {
    let banner = "!".repeat(100);
    eprintln!("\n{banner}\n!!! SKIPPED t10_short_run: {reason}\n{banner}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_finds_no_violation() {
    let bins = bin_dir();
    if ["grove-root", "grove-cluster", "grove-worker"].iter().any(|b| !bins.join(b).exists()) {
        return skip(&format!("the tiers' binaries are not in {} (cargo nextest run --workspace builds them)", bins.display()));
    }
    if let Some(why) = grove_local::netns::Net::unavailable() {
        return skip(&format!("partitions need network namespaces: {why}"));
    }
    if grove_local::containerd_socket().is_none() {
        return skip("no containerd socket on this machine (the deployment workload runs real containers)");
    }
    let out = bins.join("chaos-ci");
    let seed = 20_261_128;
    let cfg = RunConfig {
        duration: Duration::from_secs(150),
        seed,
        families: vec![Family::Kill, Family::Pause, Family::Partition, Family::WorkerKill],
        out: out.clone(),
        register_clients: 4,
        deployment_clients: 2,
        registers: 3,
        bin_dir: bins,
        base_port: 30_000 + (std::process::id() % 20) as u16 * 400,
        settle_bound: Duration::from_secs(60),
        command_line: format!("grove-chaos run --topology processes --duration 150s --seed {seed} --nemesis kill,pause,partition,worker-kill"),
    };
    let result = run_processes(cfg).await.expect("the chaos run completes");
    eprintln!("{}", std::fs::read_to_string(out.join("summary.md")).unwrap_or_default());
    assert!(result.violations.is_empty(), "violations:\n{}", result.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"));

    let count = |kind: FaultKind, tier: &str| result.faults.iter().filter(|f| f.kind == kind && f.tier.starts_with(tier)).count();
    let kills = count(FaultKind::KillLeader, "");
    assert!(kills >= 20, "at least 20 leader kills, got {kills}");
    assert!(count(FaultKind::KillLeader, "root") >= 5 && count(FaultKind::KillLeader, "cluster") >= 5, "leader kills in both tiers");
    assert!(count(FaultKind::PartitionMinority, "") >= 1 && count(FaultKind::PartitionMajority, "") >= 1, "partitions");
    assert!(count(FaultKind::Pause, "") >= 2, "pauses");
    assert!(result.checked_register_ops >= 500, "enough register operations to check: {}", result.checked_register_ops);
    for file in ["history.jsonl", "summary.md", "timeline.png"] {
        assert!(out.join(file).exists(), "{file} is written");
    }
}
