//! `grove-cluster`: one replica of a Grove cluster orchestrator. Configuration layers: built-in
//! defaults < TOML file (`--config`) < environment `GROVE_*` < flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use grove_cluster::ClusterConfig;

#[derive(Parser, Debug)]
#[command(name = "grove-cluster", version, about = "Grove cluster orchestrator replica (worker registration on :10100, MQTT on :10003)")]
struct Args {
    /// TOML file with any field of the configuration.
    #[arg(long, env = "GROVE_CONFIG")]
    config: Option<PathBuf>,
    /// Node id in the cluster's Raft group (1, 2, 3, ...).
    #[arg(long, env = "GROVE_ID")]
    id: Option<u64>,
    /// The cluster's name (the root knows it by this name; the Raft group is cluster-<name>).
    #[arg(long, env = "GROVE_CLUSTER_NAME")]
    cluster_name: Option<String>,
    /// Oakestra's cluster_location, "lat,long[,radius]".
    #[arg(long, env = "GROVE_CLUSTER_LOCATION")]
    cluster_location: Option<String>,
    #[arg(long, env = "GROVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Worker registration and cluster API (default 0.0.0.0:10100).
    #[arg(long, env = "GROVE_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// host:port other replicas use to reach the API (default: api_listen).
    #[arg(long, env = "GROVE_API_ADVERTISE")]
    api_advertise: Option<String>,
    /// Embedded MQTT broker (default 0.0.0.0:10003).
    #[arg(long, env = "GROVE_MQTT_LISTEN")]
    mqtt_listen: Option<SocketAddr>,
    /// Broker port announced to workers (default: the bound port).
    #[arg(long, env = "GROVE_MQTT_ADVERTISE_PORT")]
    mqtt_advertise_port: Option<u16>,
    /// Raft gRPC (default 0.0.0.0:10110).
    #[arg(long, env = "GROVE_RAFT_LISTEN")]
    raft_listen: Option<SocketAddr>,
    #[arg(long, env = "GROVE_RAFT_ADVERTISE")]
    raft_advertise: Option<String>,
    /// Initial voters: 1=host:10110,2=host:10111,3=host:10112.
    #[arg(long, env = "GROVE_PEERS")]
    peers: Option<String>,
    /// The Cluster gRPC service the root dispatches to (default 0.0.0.0:10120).
    #[arg(long, env = "GROVE_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    #[arg(long, env = "GROVE_GRPC_ADVERTISE")]
    grpc_advertise: Option<String>,
    /// Root gRPC endpoints, comma-separated (host:50052,...). Empty: run without a root.
    #[arg(long, env = "GROVE_ROOT_ENDPOINTS", value_delimiter = ',')]
    root_endpoints: Option<Vec<String>>,
    /// The deployment's cluster token (the root's GROVE_CLUSTER_TOKEN): presented to the root
    /// and required from it.
    #[arg(long, env = "GROVE_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
    /// Milliseconds of silence after which a worker is lost (default 6000).
    #[arg(long, env = "GROVE_WORKER_LIVENESS_MS")]
    worker_liveness_ms: Option<u64>,
    /// Log as JSON lines.
    #[arg(long, env = "GROVE_LOG_JSON")]
    log_json: bool,
}

fn load(args: &Args) -> anyhow::Result<ClusterConfig> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => ClusterConfig::default(),
    };
    macro_rules! set {
        ($($field:ident),*) => {$(
            if let Some(v) = &args.$field {
                c.$field = v.clone();
            }
        )*};
    }
    set!(id, cluster_name, cluster_location, data_dir, api_listen, mqtt_listen, raft_listen, peers, grpc_listen, root_endpoints, worker_liveness_ms);
    if let Some(v) = &args.api_advertise {
        c.api_advertise = Some(v.clone());
    }
    if let Some(v) = args.mqtt_advertise_port {
        c.mqtt_advertise_port = Some(v);
    }
    if let Some(v) = &args.raft_advertise {
        c.raft_advertise = Some(v.clone());
    }
    if let Some(v) = &args.grpc_advertise {
        c.grpc_advertise = Some(v.clone());
    }
    if let Some(v) = args.cluster_token.as_ref().filter(|v| !v.is_empty()) {
        c.cluster_token = Some(v.clone());
    }
    c.root_endpoints.retain(|e| !e.trim().is_empty());
    c.validate()?;
    Ok(c)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG").unwrap_or_else(|_| "info,openraft=warn,rumqttd=warn".into());
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
    grove_cluster::run(config, shutdown).await?;
    Ok(())
}
