//! `grove-chaos`: run Grove under faults and check that nothing acknowledged was lost.
//!
//! ```text
//! grove-chaos run --topology processes --duration 150s --seed 1 \
//!     --nemesis kill,pause,partition,worker-kill --out chaos-out
//! grove-chaos run --topology compose --duration 150s --seed 1 --out chaos-compose
//! grove-chaos check --out chaos-out      # check a recorded history.jsonl again
//! ```
//!
//! `run` flags: `--topology processes|compose`, `--duration` (how long the nemesis runs),
//! `--seed` (the fault plan and the clients' choices), `--nemesis` (fault families),
//! `--out` (report directory), `--register-clients`, `--deployment-clients`, `--registers`,
//! `--bin-dir` (grove-root, grove-cluster, grove-worker; default beside this binary),
//! `--base-port` (processes only: the layout's first port), `--settle-bound` (how long the
//! system may take to converge after the last fault).
//!
//! Both topologies need root and a containerd socket. `processes` starts the tiers' binaries
//! in network namespaces. `compose` brings up `docker-compose.ha.yml` as its own project
//! (`grove-chaos-<pid>`, free host ports, containerd namespaces `grove-chaos-compose-<pid>-wN`)
//! with images `grove/*:grove-chaos` built by `scripts/build-images.sh` from `--bin-dir` when
//! missing or older than the binaries; it needs Docker, `docker-compose` (or `docker compose`),
//! `ctr`, `nsenter` and `iptables`, and is torn down (`down -v`) when the run ends. Clients
//! use every root replica by container IP and the root balancer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use grove_chaos::history::Event;
use grove_chaos::nemesis::Family;
use grove_chaos::run::RunConfig;

#[derive(Parser)]
#[command(name = "grove-chaos", about = "Kill, pause and partition Grove's replicas under load, then check the history")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum TopologyKind {
    /// Three roots, a cluster of three, two workers: processes in network namespaces.
    Processes,
    /// `docker-compose.ha.yml`: the same shape in containers, behind HAProxy.
    Compose,
}

#[derive(Subcommand)]
enum Command {
    /// Start a topology, run the workloads under the nemesis, check, report into --out.
    Run {
        #[arg(long, value_enum, default_value = "processes")]
        topology: TopologyKind,
        /// How long the nemesis runs (`90s`, `10m`, `1h`).
        #[arg(long, default_value = "150s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fault families, comma separated: kill, pause, partition, worker-kill.
        #[arg(long, default_value = "kill,pause,partition,worker-kill", value_delimiter = ',')]
        nemesis: Vec<Family>,
        #[arg(long, default_value = "chaos-out")]
        out: PathBuf,
        /// Register-workload clients.
        #[arg(long, default_value_t = 4)]
        register_clients: u32,
        /// Deployment-workload clients.
        #[arg(long, default_value_t = 2)]
        deployment_clients: u32,
        #[arg(long, default_value_t = 3)]
        registers: usize,
        /// Where grove-root, grove-cluster and grove-worker are (default: beside this binary).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The process topology's first port (unused by compose, which picks free ports).
        #[arg(long, default_value_t = 30_000)]
        base_port: u16,
        /// How long the system may take to converge after the last fault.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        settle_bound: Duration,
    },
    /// Check the register history of an earlier run again (linearizability).
    Check {
        #[arg(long, default_value = "chaos-out")]
        out: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a number with s, m or h (e.g. 90s)"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "ms" => Ok(Duration::from_millis(n)),
        other => Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { topology, duration, seed, nemesis, out, register_clients, deployment_clients, registers, bin_dir, base_port, settle_bound } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?.parent().context("the binary's directory")?.to_path_buf(),
            };
            let command_line = std::env::args().collect::<Vec<_>>().join(" ");
            let cfg = RunConfig { duration, seed, families: nemesis, out, register_clients, deployment_clients, registers, bin_dir, base_port, settle_bound, command_line };
            // Ctrl-C or SIGTERM drops the run: its topology (processes, namespaces, containers,
            // containerd namespaces) is stopped and removed on the way out.
            let run = async {
                match topology {
                    TopologyKind::Processes => grove_chaos::run::run_processes(cfg).await,
                    TopologyKind::Compose => grove_chaos::run::run_compose(cfg).await,
                }
            };
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let result = tokio::select! {
                r = run => r?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted; the topology was stopped and removed"),
                _ = term.recv() => bail!("terminated; the topology was stopped and removed"),
            };
            println!(
                "{} operations ({} register operations checked), {} faults; report in {}",
                result.ops,
                result.checked_register_ops,
                result.faults.len(),
                result.out.display()
            );
            if !result.violations.is_empty() {
                for v in &result.violations {
                    eprintln!("{v}");
                }
                bail!("{} violation(s); see {}/summary.md", result.violations.len(), result.out.display());
            }
            println!("PASS: no violations");
        }
        Command::Check { out } => {
            let events = grove_chaos::report::read_history(&out.join("history.jsonl"))?;
            let ops: Vec<_> = events.into_iter().filter_map(|e| if let Event::Op(o) = e { Some(o) } else { None }).collect();
            let initial = ops
                .iter()
                .filter_map(|o| o.call.register())
                .map(|k| (k.to_owned(), Some("init".to_owned())))
                .collect();
            let r = grove_chaos::check::linearizable::check_registers(&ops, &initial, 10_000_000);
            for v in &r.violations {
                eprintln!("{v}");
            }
            println!("{} register operations checked, {} violation(s), {} undecided", r.checked_ops, r.violations.len(), r.undecided.len());
            if !r.violations.is_empty() || !r.undecided.is_empty() {
                bail!("the history is not linearizable (or not decided)");
            }
        }
    }
    Ok(())
}
