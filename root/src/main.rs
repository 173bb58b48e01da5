//! `grove-root`: one replica of Grove's root orchestrator. Configuration layers: built-in
//! defaults < TOML file (`--config`) < environment `GROVE_*` < flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use grove_root::RootConfig;

#[derive(Parser, Debug)]
#[command(name = "grove-root", version, about = "Grove root orchestrator replica (Oakestra System Manager API on :10000)")]
struct Args {
    /// TOML file with any field of the configuration.
    #[arg(long, env = "GROVE_CONFIG")]
    config: Option<PathBuf>,
    /// Node id in the root Raft group (1, 2, 3, ...).
    #[arg(long, env = "GROVE_ID")]
    id: Option<u64>,
    #[arg(long, env = "GROVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// REST API address (default 0.0.0.0:10000).
    #[arg(long, env = "GROVE_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// Cluster-facing gRPC address (default 0.0.0.0:50052).
    #[arg(long, env = "GROVE_CLUSTER_LISTEN")]
    cluster_listen: Option<SocketAddr>,
    /// Raft gRPC address (default 0.0.0.0:10010).
    #[arg(long, env = "GROVE_RAFT_LISTEN")]
    raft_listen: Option<SocketAddr>,
    #[arg(long, env = "GROVE_RAFT_ADVERTISE")]
    raft_advertise: Option<String>,
    /// Initial voters: 1=host:10010,2=host:10011,3=host:10012.
    #[arg(long, env = "GROVE_PEERS")]
    peers: Option<String>,
    /// Password of the default Admin user (first start only).
    #[arg(long, env = "GROVE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    #[arg(long, env = "GROVE_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    /// Token clusters must present on the cluster gRPC (and that the root presents to them).
    #[arg(long, env = "GROVE_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "GROVE_LOG_JSON")]
    log_json: bool,
}

fn load(args: &Args) -> anyhow::Result<RootConfig> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => RootConfig::default(),
    };
    if let Some(v) = args.id {
        c.id = v;
    }
    if let Some(v) = &args.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = args.api_listen {
        c.api_listen = v;
    }
    if let Some(v) = args.cluster_listen {
        c.cluster_listen = v;
    }
    if let Some(v) = args.raft_listen {
        c.raft_listen = v;
    }
    if let Some(v) = &args.raft_advertise {
        c.raft_advertise = Some(v.clone());
    }
    if let Some(v) = &args.peers {
        c.peers = v.clone();
    }
    if let Some(v) = &args.admin_password {
        c.admin_password = Some(v.clone());
    }
    if let Some(v) = &args.admin_password_file {
        c.admin_password_file = Some(v.clone());
    }
    if let Some(v) = args.cluster_token.as_ref().filter(|v| !v.is_empty()) {
        c.cluster_token = Some(v.clone());
    }
    Ok(c)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG").unwrap_or_else(|_| "info,openraft=warn".into());
    if args.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = load(&args)?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    grove_root::run(config, shutdown).await?;
    Ok(())
}
