//! Deploy-to-running benchmark (issue 6): starts the local topology from the binaries in
//! `--bin-dir`, measures how long the topology takes to become ready, then deploys the example
//! application's service `--deployments` times, one instance at a time, and measures from
//! `POST /api/service/<id>/instance` to the instance reading `RUNNING` through the API (polled
//! every 10 ms). Each instance is undeployed before the next, so the worker is never loaded with
//! earlier ones. Needs a containerd socket and the example image (scripts/example-image.sh).
//!
//! ```text
//! cargo build --release -p grove-root -p grove-cluster -p grove-worker
//! cargo run --release -p grove-local --example deploy_bench -- --bin-dir target/release --deployments 100
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use grove_local::{containerd_socket, Layout, Topology};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bin_dir: PathBuf,
    #[arg(long, default_value_t = 100)]
    deployments: usize,
    #[arg(long, default_value_t = 40000)]
    base_port: u16,
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if containerd_socket().is_none() {
        bail!("no containerd socket: the benchmark runs real containers");
    }
    let layout = Layout { base_port: args.base_port, clusters: 1, workers: 1, namespace_prefix: "grove-bench".into(), ..Layout::default() };
    let namespace = layout.worker_namespace(0);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/example-image.sh");
    anyhow::ensure!(std::process::Command::new(&script).arg(&namespace).status()?.success(), "scripts/example-image.sh failed");
    let dir = tempfile::tempdir()?;
    let mut topo = Topology::new(layout.clone(), dir.path(), &args.bin_dir)?;
    let started = Instant::now();
    topo.start_all()?;
    let ready = topo.wait_ready(Duration::from_secs(60)).await?;
    println!("ready after {:.2} s (processes started at t=0; {} processes)", ready.as_secs_f64(), topo.members.len());
    let _ = started;

    let base = layout.root_urls()[0].clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let login: Value = http.post(format!("{base}/api/auth/login")).json(&json!({"username":"Admin","password":"Admin"})).send().await?.json().await?;
    let token = login["token"].as_str().context("token")?.to_owned();
    let sla: Value = serde_json::from_str(&std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.json"))?)?;
    let apps: Value = http.post(format!("{base}/api/application/")).bearer_auth(&token).json(&sla).send().await?.json().await?;
    let service = apps[0]["microservices"][0].as_str().context("service id")?.to_owned();

    let mut times = Vec::new();
    for _ in 0..args.deployments {
        let t0 = Instant::now();
        let r: Value = http.post(format!("{base}/api/service/{service}/instance")).bearer_auth(&token).send().await?.json().await?;
        let n = r["instance_number"].as_u64().context("instance number")?;
        loop {
            let doc: Value = http.get(format!("{base}/api/service/{service}")).bearer_auth(&token).send().await?.json().await?;
            let running = doc["instance_list"].as_array().is_some_and(|l| l.iter().any(|i| i["instance_number"] == n && i["status"] == "RUNNING"));
            if running {
                break;
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "instance {n} not RUNNING after 30 s: {doc}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(t0.elapsed());
        http.delete(format!("{base}/api/service/{service}/instance/{n}")).bearer_auth(&token).send().await?;
    }
    times.sort();
    println!(
        "deploy to RUNNING over {} deployments: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        times.len(),
        quantile(&times, 0.5),
        quantile(&times, 0.99),
        times.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    );
    let _ = http.delete(format!("{base}/api/service/{service}/instance/-1")).bearer_auth(&token).send().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    topo.stop_all();
    Ok(())
}
