//! grove-cluster: the cluster orchestrator, run as three or more replicas of one Raft group.
//! Every replica registers workers, runs an MQTT broker and gateway and serves the `Cluster`
//! gRPC service; the leader alone schedules, judges liveness, reconciles and reports to the root.
//!
//! - [`state`]: the replicated state machine (workers, jobs, instances, replica endpoints);
//! - [`soft`]: the leader's soft view (last seen, attachment, resources, what was sent);
//! - [`messages`]: parsing what workers publish (contract §4.3);
//! - [`broker`]: the embedded rumqttd broker and its in-process link;
//! - [`gateway_worker`]: every replica's MQTT gateway (statuses committed, observations to
//!   the leader, publishing commands for workers attached here);
//! - [`delivery`]: getting commands to the replica whose broker holds a worker's session;
//! - [`scheduler_worker`], [`reconcile_worker`] (liveness and reconciliation),
//!   [`root_link_worker`]: the leader's loops;
//! - [`api`]: worker registration and the cluster's HTTP API (axum); [`grpc`]: the `Cluster`
//!   service the root dispatches to;
//! - [`config`]: [`ClusterConfig`]; [`Cluster`] / [`run`] start a replica.

pub mod api;
pub mod broker;
pub mod config;
pub mod delivery;
pub mod gateway_worker;
pub mod grpc;
pub mod messages;
pub mod reconcile_worker;
pub mod root_link_worker;
pub mod scheduler_worker;
pub mod soft;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use grove_raft::Replica;
use rand::RngCore;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::ClusterConfig;
use delivery::OutMessage;
use soft::LeaderView;
use state::{ClusterCommand, ClusterState, ReplicaEndpoints};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Raft(#[from] grove_raft::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("network: {0}")]
    Io(String),
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub mqtt_received: std::sync::atomic::AtomicU64,
    pub mqtt_published: std::sync::atomic::AtomicU64,
    /// Refused MQTT messages by reason.
    pub mqtt_rejected: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    pub status_updates_committed: std::sync::atomic::AtomicU64,
    /// Workers whose last message reached this replica's broker within the liveness timeout.
    pub attached_workers: std::sync::atomic::AtomicU64,
    pub workers_lost_total: std::sync::atomic::AtomicU64,
    pub commands_sent_total: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub fn reject(&self, reason: &'static str) {
        *self.mqtt_rejected.lock().expect("metrics lock").entry(reason).or_default() += 1;
    }
}

/// What every part of a replica shares. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    pub replica: Replica<ClusterState>,
    pub config: Arc<ClusterConfig>,
    /// This replica's endpoints as announced to the group.
    pub endpoints: ReplicaEndpoints,
    /// The broker port announced to workers.
    pub mqtt_port: u16,
    /// Messages for workers attached to this replica's broker (the gateway publishes them).
    pub outbox: mpsc::UnboundedSender<OutMessage>,
    /// Calls between the replicas of this tier (internal routes); see [`Shared::internal`].
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    view: Arc<Mutex<LeaderView>>,
    /// Wakes the leader's reconcile loop when observations bring instances newly running, so
    /// RUNNING is committed at once instead of at the next tick.
    pub running_news: Arc<tokio::sync::Notify>,
}

impl Shared {
    /// A call to another replica's internal route, carrying the cluster token when there is one.
    pub fn internal(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.config.cluster_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Fold a batch of observations into the leader's view, waking the reconcile loop when it
    /// lists instances not seen running before.
    pub fn observe(&self, batch: crate::soft::Observations) {
        let news = {
            let mut view = self.view();
            view.observe(batch, std::time::Instant::now());
            view.newly_running
        };
        if news {
            self.running_news.notify_one();
        }
    }

    /// The leader's soft view, reset when the term changed since its last use.
    pub fn view(&self) -> MutexGuard<'_, LeaderView> {
        let term = self.replica.metrics().borrow().current_term;
        let mut view = self.view.lock().expect("view lock");
        view.ensure_term(term, std::time::Instant::now());
        view
    }

    /// Is this replica's root link up (meaningful on the leader)?
    pub fn root_connected(&self) -> bool {
        self.view().root_connected
    }

    /// The API address of replica `id`, from the replicated endpoint table.
    pub fn api_of(&self, id: u64) -> Option<String> {
        self.replica.read_local(|s| s.replicas.get(&id).map(|e| e.api.clone()))
    }
}

/// A running cluster replica.
pub struct Cluster {
    pub shared: Shared,
    pub api_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// The listeners a replica serves on (tests bind port 0 first).
pub struct Listeners {
    pub raft: tokio::net::TcpListener,
    pub api: tokio::net::TcpListener,
    pub grpc: tokio::net::TcpListener,
}

impl Listeners {
    pub async fn bind(config: &ClusterConfig) -> Result<Listeners, Error> {
        let bind = |name: &'static str, addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Io(format!("cannot bind {name} {addr}: {e}")))
        };
        Ok(Listeners {
            raft: bind("raft_listen", config.raft_listen).await?,
            api: bind("api_listen", config.api_listen).await?,
            grpc: bind("grpc_listen", config.grpc_listen).await?,
        })
    }
}

impl Cluster {
    /// Start on listeners the caller bound; the MQTT broker binds `config.mqtt_listen` itself.
    pub async fn start(config: ClusterConfig, listeners: Listeners) -> Result<Cluster, Error> {
        config.validate()?;
        let api_addr = listeners.api.local_addr().map_err(|e| Error::Io(e.to_string()))?;
        let grpc_addr = listeners.grpc.local_addr().map_err(|e| Error::Io(e.to_string()))?;

        tracing::info!(listen = %config.mqtt_listen, "starting the embedded MQTT broker");
        let (mqtt_listen, max_connections) = (config.mqtt_listen, config.mqtt_max_connections);
        let mut broker = tokio::task::spawn_blocking(move || broker::start(mqtt_listen, max_connections))
            .await
            .map_err(|e| Error::Io(format!("broker start panicked: {e}")))??;
        let link = broker.link.take().expect("a fresh broker has its link");

        let mut replica_config = config.replica_config()?;
        replica_config.listen = listeners.raft.local_addr().map_err(|e| Error::Io(e.to_string()))?;
        tracing::info!(id = config.id, group = %replica_config.group, raft = %replica_config.listen, "starting the cluster raft replica");
        let replica = Replica::<ClusterState>::start_with_listener(replica_config, listeners.raft).await?;

        let mqtt_port = config.mqtt_advertise_port.unwrap_or(broker.addr.port());
        let endpoints = ReplicaEndpoints {
            api: config::advertised(&config.api_advertise, api_addr),
            grpc: config::advertised(&config.grpc_advertise, grpc_addr),
            mqtt: format!("{}:{mqtt_port}", advertised_host(&config.api_advertise, api_addr)),
        };
        let http = reqwest::Client::builder()
            .timeout(config.call_timeout())
            .connect_timeout(config.call_timeout())
            .build()
            .map_err(|e| Error::Io(format!("http client: {e}")))?;
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let term = replica.metrics().borrow().current_term;
        let shared = Shared {
            replica: replica.clone(),
            config: Arc::new(config),
            endpoints,
            mqtt_port,
            outbox,
            http,
            metrics: Arc::new(Metrics::default()),
            view: Arc::new(Mutex::new(LeaderView::new(term, std::time::Instant::now()))),
            running_news: Arc::default(),
        };
        let c = &shared.config;

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        tasks.push(("announce", tokio::spawn(announce(shared.clone(), stop_rx.clone()))));
        tasks.push(("mqtt-gateway", tokio::spawn(gateway_worker::run(shared.clone(), link, outbox_rx, stop_rx.clone()))));
        tasks.push((
            "cluster-scheduler",
            tokio::spawn(scheduler_worker::run(shared.clone(), Duration::from_millis(c.scheduler_interval_ms), c.redeploy_delay_ms, stop_rx.clone())),
        ));
        tasks.push(("reconcile", tokio::spawn(reconcile_worker::run(shared.clone(), stop_rx.clone()))));
        tasks.push(("root-link", tokio::spawn(root_link_worker::run(shared.clone(), stop_rx.clone()))));
        let mut api_stop = stop_rx.clone();
        let api = api::Api::new(shared.clone());
        tasks.push((
            "http-api",
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = api_stop.changed().await;
                };
                if let Err(e) = api::serve(api, listeners.api, shutdown).await {
                    tracing::error!("HTTP API stopped: {e}");
                }
            }),
        ));
        tasks.push(("cluster-grpc", tokio::spawn(grpc::serve(shared.clone(), listeners.grpc, stop_rx.clone()))));
        tracing::info!(api = %api_addr, grpc = %grpc_addr, mqtt = %broker.addr, "cluster replica serving");
        Ok(Cluster { shared, api_addr, grpc_addr, mqtt_addr: broker.addr, stop, tasks })
    }

    pub fn replica(&self) -> &Replica<ClusterState> {
        &self.shared.replica
    }

    /// Stop the workers and servers (each with a deadline), then Raft. The broker thread
    /// cannot be stopped (rumqttd has no stop call); it ends with the process.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                tracing::warn!("task {name} did not stop within 5 s");
            }
        }
        self.shared.replica.shutdown().await;
    }
}

/// Commit this replica's endpoints, retrying until the group has a leader.
async fn announce(shared: Shared, mut stop: watch::Receiver<bool>) {
    let command = ClusterCommand::AnnounceReplica { id: shared.replica.id(), endpoints: shared.endpoints.clone() };
    let mut backoff = Duration::from_millis(100);
    loop {
        match shared.replica.write(command.clone()).await {
            Ok(_) => {
                tracing::info!(endpoints = ?shared.endpoints, "announced this replica's endpoints");
                return;
            }
            Err(e) => tracing::debug!("announcing endpoints: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Bind the configured addresses, serve until `shutdown` resolves, then stop in order.
pub async fn run(config: ClusterConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let listeners = Listeners::bind(&config).await?;
    let cluster = Cluster::start(config, listeners).await?;
    shutdown.await;
    tracing::info!("shutting down");
    cluster.shutdown().await;
    Ok(())
}

/// The host part others should dial (the advertised API host, or the bound IP).
fn advertised_host(advertise: &Option<String>, bound: SocketAddr) -> String {
    match advertise {
        Some(a) => a.rsplit_once(':').map_or(a.clone(), |(h, _)| h.to_owned()),
        None => bound.ip().to_string(),
    }
}

/// A new MongoDB-ObjectId-shaped id (24 hex digits: 4 bytes of seconds, 8 random bytes), the
/// shape Oakestra's workers and tools expect.
pub fn object_id() -> String {
    let secs = (now_ms() / 1000) as u32;
    let mut rest = [0u8; 8];
    rand::rng().fill_bytes(&mut rest);
    format!("{}{}", hex::encode(secs.to_be_bytes()), hex::encode(rest))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
