//! grove-root: the root orchestrator, run as three or more replicas of one Raft group. Every
//! replica serves the whole API; the leader alone schedules.
//!
//! - [`state`]: the replicated state machine (users, organizations, applications, services and
//!   instances, clusters, the signing key);
//! - [`api`]: the Oakestra System Manager REST API (axum), errors mapped in [`api::error`];
//! - [`auth`]: password hashes and RS256 tokens;
//! - [`scheduler_worker`]: the leader's placement loop over core's scheduler;
//! - [`cluster_service`]: the cluster-facing gRPC (registration, report streams), every replica;
//! - [`dispatcher`]: the leader's delivery of deploys and undeploys to cluster tiers;
//! - [`cluster_liveness`]: the leader's detection of lost clusters;
//! - `bootstrap_worker`: signing key and default admin at start;
//! - [`config`]: [`RootConfig`]; [`Root`] / [`run`] start a replica.

pub mod api;
pub mod auth;
mod bootstrap_worker;
pub mod cluster_liveness;
pub mod cluster_service;
pub mod config;
pub mod dispatcher;
pub mod ids;
pub mod scheduler_worker;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use grove_raft::Replica;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::RootConfig;
use state::RootState;

/// The Raft group name of the root tier.
pub const RAFT_GROUP: &str = "root";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Raft(#[from] grove_raft::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("network: {0}")]
    Io(String),
}

/// The sockets of one replica, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub raft: tokio::net::TcpListener,
    pub api: tokio::net::TcpListener,
    pub cluster: tokio::net::TcpListener,
}

impl Listeners {
    /// Bind the configured addresses.
    pub async fn bind(config: &RootConfig) -> Result<Listeners, Error> {
        async fn bind(what: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Io(format!("cannot bind {what} {addr}: {e}")))
        }
        Ok(Listeners {
            raft: bind("raft_listen", config.raft_listen).await?,
            api: bind("api_listen", config.api_listen).await?,
            cluster: bind("cluster_listen", config.cluster_listen).await?,
        })
    }
}

/// A running root replica: Raft, the REST API, the cluster gRPC and the background workers.
pub struct Root {
    pub replica: Replica<RootState>,
    pub api: api::Api,
    pub api_addr: SocketAddr,
    pub cluster_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Root {
    /// Start on listeners the caller bound.
    pub async fn start(config: RootConfig, listeners: Listeners) -> Result<Root, Error> {
        let Listeners { raft: raft_listener, api: api_listener, cluster: cluster_listener } = listeners;
        let admin_password = config.admin_password()?;
        if admin_password == config::DEFAULT_ADMIN_PASSWORD {
            tracing::warn!("the default admin password is configured; set admin_password or admin_password_file");
        }
        let mut replica_config = config.replica_config()?;
        replica_config.listen = raft_listener.local_addr().map_err(|e| Error::Io(e.to_string()))?;
        tracing::info!(id = config.id, raft = %replica_config.listen, "starting the root raft replica");
        let replica = Replica::<RootState>::start_with_listener(replica_config, raft_listener).await?;
        let settings = api::ApiSettings {
            max_body_bytes: config.max_body_bytes,
            access_token_ttl: Duration::from_secs(config.access_token_ttl_secs),
            refresh_token_ttl: Duration::from_secs(config.refresh_token_ttl_secs),
            password_hash_iterations: config.password_hash_iterations,
            cluster_token: config.cluster_token.clone(),
            cluster_call_timeout: Duration::from_millis(config.dispatch_timeout_ms.max(100)),
        };
        let api = api::Api::new(replica.clone(), settings);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(("bootstrap", tokio::spawn(bootstrap_worker::run(api.clone(), admin_password, stop_rx.clone()))));
        tasks.push((
            "root-scheduler",
            tokio::spawn(scheduler_worker::run(replica.clone(), Duration::from_millis(config.scheduler_interval_ms.max(10)), stop_rx.clone())),
        ));
        tasks.push((
            "dispatcher",
            tokio::spawn(dispatcher::run(
                replica.clone(),
                dispatcher::DispatchSettings {
                    interval: Duration::from_millis(config.dispatch_interval_ms.max(10)),
                    call_timeout: Duration::from_millis(config.dispatch_timeout_ms.max(100)),
                    cluster_token: config.cluster_token.clone(),
                },
                stop_rx.clone(),
            )),
        ));
        tasks.push((
            "cluster-liveness",
            tokio::spawn(cluster_liveness::run(replica.clone(), Duration::from_millis(config.cluster_lost_after_ms.max(100)), stop_rx.clone())),
        ));
        let cluster_addr = cluster_listener.local_addr().map_err(|e| Error::Io(e.to_string()))?;
        let mut grpc_stop = stop_rx.clone();
        let service = grove_proto::cluster::root_server::RootServer::with_interceptor(
            cluster_service::ClusterService::new(replica.clone(), stop_rx.clone()),
            grove_proto::auth::TokenCheck::new(config.cluster_token.clone()),
        );
        tasks.push((
            "cluster-grpc",
            tokio::spawn(async move {
                let incoming = grove_proto::incoming(cluster_listener);
                let shutdown = async move {
                    let _ = grpc_stop.changed().await;
                };
                let served = tonic::transport::Server::builder()
                    .timeout(Duration::from_secs(30))
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await;
                if let Err(e) = served {
                    tracing::error!("cluster gRPC stopped: {e}");
                }
            }),
        ));
        let api_addr = api_listener.local_addr().map_err(|e| Error::Io(e.to_string()))?;
        let mut api_stop = stop_rx.clone();
        let server_api = api.clone();
        tasks.push((
            "rest-api",
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = api_stop.changed().await;
                };
                if let Err(e) = api::serve(server_api, api_listener, shutdown).await {
                    tracing::error!("REST API stopped: {e}");
                }
            }),
        ));
        tracing::info!(api = %api_addr, cluster_grpc = %cluster_addr, "root replica serving");
        Ok(Root { replica, api, api_addr, cluster_addr, stop, tasks })
    }

    /// Stop the workers and the API (each with a deadline), then Raft.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                tracing::warn!("task {name} did not stop within 5 s");
            }
        }
        self.replica.shutdown().await;
    }
}

/// Bind the configured addresses, serve until `shutdown` resolves, then stop in order.
pub async fn run(config: RootConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let listeners = Listeners::bind(&config).await?;
    let root = Root::start(config, listeners).await?;
    shutdown.await;
    tracing::info!("shutting down");
    root.shutdown().await;
    Ok(())
}
