//! `grove-local`: run Grove's whole topology on this machine, on loopback, until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use grove_local::{containerd_socket, Layout, Tier, Topology};

#[derive(Parser)]
#[command(name = "grove-local", about = "Run three root replicas, two clusters of three replicas and two workers on loopback (Ctrl-C stops them)")]
struct Args {
    /// Data directories and logs.
    #[arg(long, default_value = ".grove/local")]
    dir: PathBuf,
    /// Directory holding grove-root, grove-cluster and grove-worker (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// First port of the layout (see `grove_local` for the rest).
    #[arg(long, default_value_t = 10000)]
    base_port: u16,
    #[arg(long, default_value_t = 2)]
    clusters: u16,
    /// Workers (0: none). They need a containerd socket.
    #[arg(long, default_value_t = 2)]
    workers: u16,
    /// Start from empty data directories.
    #[arg(long)]
    clean: bool,
    /// Give up waiting for the topology after this many seconds.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("binary directory")?.to_path_buf(),
    };
    let mut workers = args.workers;
    if workers > 0 && containerd_socket().is_none() {
        eprintln!(
            "grove-local: no containerd socket at {}; starting without workers (install containerd or Docker to run containers)",
            grove_local::CONTAINERD_SOCKETS.join(" or ")
        );
        workers = 0;
    }
    if args.clean && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("removing {}", args.dir.display()))?;
    }
    let layout = Layout { base_port: args.base_port, clusters: args.clusters, workers, ..Layout::default() };
    let mut topology = Topology::new(layout.clone(), &args.dir, &bin_dir)?;
    topology.start_all()?;
    eprintln!("grove-local: starting {} processes (logs in {})", topology.members.len(), topology.dir.join("logs").display());
    let took = match topology.wait_ready(Duration::from_secs(args.ready_timeout)).await {
        Ok(t) => t,
        Err(e) => {
            topology.stop_all();
            return Err(e);
        }
    };
    let root_leader = topology.leader(Tier::Root).await.unwrap_or_default();
    let endpoints = layout.root_urls().join(",");
    println!("Grove is ready ({:.1} s).", took.as_secs_f64());
    println!();
    println!("  root API (any replica)   {}   leader: {root_leader}", layout.root_urls().join(" "));
    for c in 0..layout.clusters {
        let leader = topology.leader(Tier::Cluster(c)).await.unwrap_or_default();
        let mqtt: Vec<String> = (0..layout.cluster_replicas).map(|r| layout.cluster_mqtt(c, r).to_string()).collect();
        println!(
            "  {} registration        {}   MQTT {}   leader: {leader}",
            Layout::cluster_name(c),
            layout.cluster_urls(c).join(" "),
            mqtt.join(",")
        );
    }
    for w in 0..layout.workers {
        println!("  worker-{}                 attached to {} (containerd namespace {})", w + 1, Layout::cluster_name(w % layout.clusters), layout.worker_namespace(w));
    }
    println!("  data and logs            {}", topology.dir.display());
    println!();
    println!("Log in as Admin / Admin, then deploy the example (the grove CLI is next to this binary):");
    println!();
    println!("  export GROVE_ENDPOINTS={endpoints}");
    println!("  grove login -p Admin");
    println!("  grove app create -f examples/hello.json");
    println!("  grove service list");
    println!("  grove service deploy <service id>");
    println!("  grove status --watch");
    println!();
    println!("Ctrl-C stops everything.");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("grove-local: stopping workers, clusters, then roots");
    topology.stop_all();
    Ok(())
}
