//! `grove-kv`: a replicated key-value store on grove-raft. It demonstrates and measures the
//! replication layer that Grove's root and cluster orchestrators run on.
//!
//! - `grove-kv serve`: one replica;
//! - `grove-kv local`: three replicas on loopback as child processes, with their status;
//! - `grove-kv put|get|status`: a client;
//! - `grove-kv bench`: write throughput and latency against grove-raft and etcd side by side.

mod bench;
mod local;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use grove_raft::client::GroupClient;
use grove_raft::kv::{KvCommand, KvQuery, KvStore};
use grove_raft::{parse_peers, Replica, ReplicaConfig, ReplicaStatus};

#[derive(Parser)]
#[command(name = "grove-kv", version, about = "A replicated key-value store on grove-raft")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one replica.
    Serve(ServeArgs),
    /// Run three replicas on loopback (child processes) until Ctrl-C.
    Local(local::LocalArgs),
    /// Write a key.
    Put {
        #[command(flatten)]
        target: Target,
        key: String,
        value: String,
    },
    /// Read a key (linearizable unless --stale).
    Get {
        #[command(flatten)]
        target: Target,
        key: String,
        #[arg(long)]
        stale: bool,
    },
    /// Show every replica's role, term, leader and log positions.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure write throughput and latency of grove-raft and etcd side by side.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Optional TOML file with a `ReplicaConfig`; flags and GROVE_* variables override it.
    #[arg(long, env = "GROVE_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "GROVE_GROUP")]
    group: Option<String>,
    #[arg(long, env = "GROVE_ID")]
    id: Option<u64>,
    /// Raft gRPC listen address.
    #[arg(long, env = "GROVE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    #[arg(long, env = "GROVE_ADVERTISE")]
    advertise: Option<String>,
    /// Initial voters: `1=127.0.0.1:21001,2=127.0.0.1:21002,...`.
    #[arg(long, env = "GROVE_PEERS")]
    peers: Option<String>,
    #[arg(long, env = "GROVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "GROVE_LOG_JSON")]
    log_json: bool,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Replica Raft addresses, comma-separated.
    #[arg(long, env = "GROVE_ENDPOINTS", default_value = "127.0.0.1:21001,127.0.0.1:21002,127.0.0.1:21003", value_delimiter = ',')]
    endpoints: Vec<String>,
    #[arg(long, env = "GROVE_GROUP", default_value = "kv")]
    group: String,
}

impl Target {
    fn client(&self) -> anyhow::Result<GroupClient> {
        Ok(GroupClient::new(&self.group, &self.endpoints, Duration::from_secs(5))?)
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Local(args) => {
            init_tracing(false);
            local::run(args).await
        }
        Command::Put { target, key, value } => {
            let r = target.client()?.write::<KvStore>(&KvCommand::Put { key, value }).await?;
            println!("ok (previous: {})", r.previous.as_deref().unwrap_or("none"));
            Ok(())
        }
        Command::Get { target, key, stale } => {
            let value: Option<String> = target.client()?.query(&KvQuery::Get { key: key.clone() }, stale).await?;
            match value {
                Some(v) => println!("{v}"),
                None => bail!("key {key:?} is not set"),
            }
            Ok(())
        }
        Command::Status { target, json } => {
            let statuses = statuses(&target.client()?).await;
            if json {
                let ok: Vec<&ReplicaStatus> = statuses.iter().filter_map(|(_, s)| s.as_ref().ok()).collect();
                println!("{}", serde_json::to_string_pretty(&ok)?);
            } else {
                print!("{}", status_table(&statuses));
            }
            Ok(())
        }
        Command::Bench(args) => {
            init_tracing(false);
            bench::run(args).await
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let mut config: ReplicaConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => ReplicaConfig::new("kv", 0, "127.0.0.1:21001".parse()?, ".grove/kv"),
    };
    if let Some(g) = args.group {
        config.group = g;
    }
    if let Some(id) = args.id {
        config.id = id;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if args.advertise.is_some() {
        config.advertise = args.advertise;
    }
    if let Some(p) = args.peers {
        config.peers = parse_peers(&p)?;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    let replica = Replica::<KvStore>::start(config).await?;
    shutdown_signal().await;
    replica.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn statuses(client: &GroupClient) -> Vec<(String, grove_raft::Result<ReplicaStatus>)> {
    let mut out = Vec::new();
    for endpoint in client.endpoints() {
        out.push((endpoint.to_string(), client.status_of(endpoint).await));
    }
    out
}

fn status_table(statuses: &[(String, grove_raft::Result<ReplicaStatus>)]) -> String {
    let mut out = format!(
        "{:<22} {:>3} {:<10} {:>5} {:>7} {:>9} {:>9} {:>9}  {}\n",
        "REPLICA", "ID", "ROLE", "TERM", "LEADER", "LAST-LOG", "COMMIT", "APPLIED", "MEMBERS"
    );
    for (endpoint, status) in statuses {
        match status {
            Ok(s) => {
                let members = s
                    .members
                    .iter()
                    .map(|m| format!("{}{}", m.id, if m.voter { "" } else { "(learner)" }))
                    .collect::<Vec<_>>()
                    .join(",");
                out += &format!(
                    "{:<22} {:>3} {:<10} {:>5} {:>7} {:>9} {:>9} {:>9}  {}\n",
                    endpoint,
                    s.id,
                    s.role,
                    s.term,
                    s.leader_id.map_or("-".to_string(), |l| l.to_string()),
                    s.last_log_index,
                    s.commit_index,
                    s.applied_index,
                    members
                );
            }
            Err(e) => out += &format!("{endpoint:<22} unreachable: {e}\n"),
        }
    }
    out
}
