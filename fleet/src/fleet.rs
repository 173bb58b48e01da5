//! A fleet of simulated workers: registration of every worker over HTTP, one session task per
//! worker ([`crate::hollow_worker`]), fleet-wide counters and a ledger of every instance the
//! fleet was told to run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use grove_core::instance::InstanceKey;
use grove_core::node::NodeInfo;
use grove_core::status::Status;
use grove_core::worker_protocol::RegisterResponse;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{endpoint_host, endpoint_url};
use crate::hollow_worker::{self, WorkerSpec};
use crate::{FleetConfig, FleetError};

/// Event counters, shared by every session.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub registered: AtomicU64,
    pub connected: AtomicU64,
    pub deploys: AtomicU64,
    pub deletes: AtomicU64,
    pub created: AtomicU64,
    pub failed: AtomicU64,
    pub dead: AtomicU64,
    pub running: AtomicU64,
    pub reports: AtomicU64,
    pub publish_errors: AtomicU64,
    pub connection_errors: AtomicU64,
    pub bad_messages: AtomicU64,
}

/// A snapshot of the fleet's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Workers registered with the cluster.
    pub registered: u64,
    /// Workers with an MQTT session (ConnAck received) right now.
    pub connected: u64,
    /// `control/deploy` and `control/delete` commands received.
    pub deploys: u64,
    pub deletes: u64,
    /// Start-ups that succeeded (`CREATED`), failed to start (`FAILED`), or started and died
    /// (`DEAD`).
    pub created: u64,
    pub failed: u64,
    pub dead: u64,
    /// Instances running right now, fleet-wide.
    pub running: u64,
    /// Report rounds sent (one `information` + one `jobs/resources` each).
    pub reports: u64,
    /// Messages the MQTT client's queue refused (the session is behind or reconnecting).
    pub publish_errors: u64,
    /// MQTT sessions lost or refused.
    pub connection_errors: u64,
    /// Control messages that did not parse.
    pub bad_messages: u64,
}

/// What the fleet knows about one instance (job name + instance number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// The cluster's id of the worker that last received its deploy.
    pub worker: String,
    /// The last status that worker reported for it.
    pub status: Status,
    /// Deploy attempts (a repeated deploy of a starting or running instance does not count).
    pub deploys: u32,
}

/// What the sessions share.
pub(crate) struct Shared {
    pub config: FleetConfig,
    pub counters: Counters,
    pub ledger: Mutex<HashMap<InstanceKey, InstanceRecord>>,
    pub cancel: CancellationToken,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceKey, InstanceRecord>> {
        // A panic while holding the lock leaves a consistent map (every update is one insert).
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new deploy attempt of `key` on `worker`; returns its number (1, 2, …).
    pub(crate) fn begin_deploy(&self, key: &InstanceKey, worker: &str) -> u32 {
        let mut ledger = self.ledger();
        let r = ledger.entry(key.clone()).or_insert(InstanceRecord {
            worker: worker.to_owned(),
            status: Status::Creating,
            deploys: 0,
        });
        r.worker = worker.to_owned();
        r.deploys += 1;
        r.deploys
    }

    /// `worker` reported `status` for `key` (ignored when the instance has moved on).
    pub(crate) fn record(&self, key: &InstanceKey, worker: &str, status: Status) {
        if let Some(r) = self.ledger().get_mut(key) {
            if r.worker == worker {
                r.status = status;
            }
        }
    }

    pub(crate) fn set_connected(&self, flag: &mut bool, connected: bool) {
        if *flag != connected {
            *flag = connected;
            if connected {
                self.counters.connected.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.connected.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A running fleet of simulated workers (see the crate documentation).
pub struct Fleet {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    /// `(host, cluster id)` of every worker, in index order.
    workers: Vec<(String, String)>,
}

impl Fleet {
    /// Register every worker (at most `register_concurrency` at a time, each retried over the
    /// endpoints until `register_timeout`) and start its session as soon as it has its id.
    /// Returns when all are registered; sessions connect in the background (see
    /// [`Fleet::wait_connected`]).
    pub async fn start(config: FleetConfig) -> Result<Fleet, FleetError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.register_concurrency)
            .build()
            .map_err(|e| FleetError::Http(e.to_string()))?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            counters: Counters::default(),
            ledger: Mutex::default(),
            cancel: CancellationToken::new(),
        });
        let mut tasks = JoinSet::new();
        let mut workers = vec![(String::new(), String::new()); config.workers];
        let started = Instant::now();
        let mut registrations = futures::stream::iter(0..config.workers)
            .map(|i| {
                let http = http.clone();
                let config = &config;
                async move { (i, register(&http, config, i).await) }
            })
            .buffer_unordered(config.register_concurrency);
        while let Some((i, result)) = registrations.next().await {
            let (host, id, brokers) = match result {
                Ok(r) => r,
                Err(e) => {
                    shared.cancel.cancel();
                    tasks.shutdown().await;
                    return Err(e);
                }
            };
            shared.counters.registered.fetch_add(1, Ordering::Relaxed);
            let mut info = node_info(&config, &host);
            info.id = id.clone();
            let information = serde_json::to_string(&info)
                .map_err(|e| FleetError::Config(format!("Node JSON does not serialise: {e}")))?;
            // Spread the fleet's reports evenly over one period.
            let offset = config
                .report_period
                .mul_f64(i as f64 / config.workers as f64);
            let spec = WorkerSpec {
                host: host.clone(),
                id: id.clone(),
                brokers,
                offset,
                information,
            };
            tasks.spawn(hollow_worker::run(spec, shared.clone()));
            workers[i] = (host, id);
        }
        info!(
            workers = config.workers,
            took_ms = started.elapsed().as_millis() as u64,
            "fleet registered"
        );
        Ok(Fleet {
            shared,
            tasks,
            workers,
        })
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            registered: get(&c.registered),
            connected: get(&c.connected),
            deploys: get(&c.deploys),
            deletes: get(&c.deletes),
            created: get(&c.created),
            failed: get(&c.failed),
            dead: get(&c.dead),
            running: get(&c.running),
            reports: get(&c.reports),
            publish_errors: get(&c.publish_errors),
            connection_errors: get(&c.connection_errors),
            bad_messages: get(&c.bad_messages),
        }
    }

    /// `(hostname, cluster id)` of every worker.
    pub fn workers(&self) -> &[(String, String)] {
        &self.workers
    }

    pub fn config(&self) -> &FleetConfig {
        &self.shared.config
    }

    /// What the fleet knows about one instance.
    pub fn instance(&self, job_name: &str, instance_number: u32) -> Option<InstanceRecord> {
        self.shared
            .ledger()
            .get(&InstanceKey::new(job_name, instance_number))
            .cloned()
    }

    /// Every instance the fleet was told to deploy.
    pub fn instances(&self) -> Vec<(InstanceKey, InstanceRecord)> {
        let mut all: Vec<_> = self
            .shared
            .ledger()
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Wait until every worker has an MQTT session.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<Duration, FleetError> {
        let n = self.workers.len() as u64;
        let started = Instant::now();
        loop {
            let connected = self.stats().connected;
            if connected >= n {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(FleetError::Timeout {
                    what: format!("MQTT sessions of all {n} workers ({connected} connected)"),
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Disconnect every worker and wait for the sessions to end, at most `deadline`.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.shared.cancel.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all).await.is_err() {
            warn!(
                left = self.tasks.len(),
                "fleet sessions did not end in time; aborting them"
            );
            self.tasks.shutdown().await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// The Node JSON of worker `host`, as a Node Engine fills it (Go's zero values elsewhere).
pub fn node_info(config: &FleetConfig, host: &str) -> NodeInfo {
    NodeInfo {
        host: host.into(),
        ip: "127.0.0.1".into(),
        port: "3000".into(),
        cpu_percent: 2.0,
        vcpus: config.vcpus,
        architecture: grove_core::node::goarch(std::env::consts::ARCH).into(),
        memory_percent: 10.0,
        memory: config.memory_mb,
        virtualization: vec!["docker".into()],
        system_info: [
            ("kernel_version", "simulated"),
            ("os_version", "grove-fleet load generator"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect(),
        ..Default::default()
    }
}

/// Register worker `i`: endpoint `i mod len` first, then the others, round after round with
/// back-off until `register_timeout`. Returns `(host, id, brokers in failover order)`.
async fn register(
    http: &reqwest::Client,
    config: &FleetConfig,
    i: usize,
) -> Result<(String, String, Vec<(String, u16)>), FleetError> {
    let host = format!("{}{i}", config.prefix);
    let body = node_info(config, &host);
    let deadline = Instant::now() + config.register_timeout;
    let n = config.cluster_endpoints.len();
    let mut backoff = Duration::from_millis(100);
    let mut last_error = String::from("no attempt");
    loop {
        for k in 0..n {
            let endpoint = &config.cluster_endpoints[(i + k) % n];
            match register_once(http, endpoint, &body).await {
                Ok(reply) => {
                    let brokers = if config.brokers.is_empty() {
                        let port = reply
                            .broker_port()
                            .ok_or_else(|| FleetError::Registration {
                                host: host.clone(),
                                timeout: config.register_timeout,
                                last_error: format!(
                                    "{endpoint} answered MQTT_BROKER_PORT {:?}, not a port",
                                    reply.mqtt_broker_port
                                ),
                            })?;
                        let broker_host =
                            endpoint_host(endpoint).unwrap_or_else(|| "127.0.0.1".into());
                        vec![(broker_host, port)]
                    } else {
                        let b = &config.brokers;
                        (0..b.len()).map(|j| b[(i + j) % b.len()].clone()).collect()
                    };
                    return Ok((host, reply.id, brokers));
                }
                Err(e) => last_error = format!("{endpoint}: {e}"),
            }
        }
        if Instant::now() + backoff > deadline {
            return Err(FleetError::Registration {
                host,
                timeout: config.register_timeout,
                last_error,
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn register_once(
    http: &reqwest::Client,
    endpoint: &str,
    node: &NodeInfo,
) -> Result<RegisterResponse, String> {
    let url = format!("{}/api/node/register", endpoint_url(endpoint));
    let resp = http
        .post(&url)
        .json(node)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    let reply: RegisterResponse = resp
        .json()
        .await
        .map_err(|e| format!("unreadable reply: {e}"))?;
    if reply.id.is_empty() {
        return Err("reply without a worker id".into());
    }
    Ok(reply)
}
