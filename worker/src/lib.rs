//! grove-worker: the node engine. It registers with a cluster, keeps an MQTT session to one of
//! the cluster's brokers (failing over to the next), runs instances through containerd and
//! reports node and instance resources, speaking Oakestra's worker contract (§4–5) unchanged.
//!
//! - [`config`]: the layered configuration and the CLI.
//! - [`registration`]: `POST /api/node/register` with retry across endpoints.
//! - [`mqtt_worker`]: MQTT session, broker failover, control message parsing.
//! - [`report_worker`]: periodic and full reports.
//! - [`engine`]: the instance table; deploy, delete, exit handling, restart recovery.
//! - [`runtime`]: the [`runtime::Runtime`] trait and the containerd runtime.
//! - [`node_info`]: the node's own resources (sysinfo) as Node JSON.
//!
//! Boot order (one log line per step): runtimes → node info → registration → recovery of
//! earlier instances → MQTT and reporter tasks. Shutdown cancels every task and waits for
//! them with a deadline; instances keep running (a restarted worker adopts them).

pub mod config;
pub mod engine;
pub mod error;
pub mod mqtt_worker;
pub mod node_info;
pub mod registration;
pub mod report_worker;
pub mod runtime;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

pub use config::WorkerConfig;
pub use error::{Result, WorkerError};

use crate::engine::{Engine, EngineSettings};
use crate::mqtt_worker::{ConnState, MqttSettings};
use crate::runtime::containerd::ContainerdRuntime;
use crate::runtime::Runtime;

/// How long shutdown waits for the worker's tasks.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The broker list: configured brokers, or every cluster endpoint's host with the port the
/// registration answered, starting with the endpoint that answered.
pub fn broker_list(config: &WorkerConfig, reg: &registration::Registration) -> Result<Vec<(String, u16)>> {
    if !config.mqtt_brokers.is_empty() {
        return Ok(config.mqtt_brokers.iter().filter_map(|b| config::parse_host_port(b)).collect());
    }
    let port = reg.response.broker_port().ok_or_else(|| WorkerError::NoBroker {
        message: format!("registration answered MQTT_BROKER_PORT {:?}", reg.response.mqtt_broker_port),
    })?;
    let n = config.cluster_endpoints.len();
    let mut out = Vec::new();
    for i in 0..n {
        let ep = &config.cluster_endpoints[(reg.endpoint_index + i) % n];
        if let Some(host) = registration::endpoint_host(ep) {
            if !out.iter().any(|(h, _)| h == &host) {
                out.push((host, port));
            }
        }
    }
    if out.is_empty() {
        return Err(WorkerError::NoBroker { message: "no host in cluster_endpoints".into() });
    }
    Ok(out)
}

/// Runs the worker until `shutdown` fires, with the containerd runtime.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    info!(namespace = %config.containerd_namespace, endpoints = ?config.cluster_endpoints, "grove-worker starting");
    let containerd = ContainerdRuntime::connect(&config).await?;
    run_with_runtimes(config, vec![Arc::new(containerd)], shutdown).await
}

/// Runs the worker until `shutdown` fires, with the given runtimes (tests pass doubles).
pub async fn run_with_runtimes(
    config: WorkerConfig,
    runtimes: Vec<Arc<dyn Runtime>>,
    shutdown: CancellationToken,
) -> Result<()> {
    config.validate()?;
    let virtualizations: Vec<String> = runtimes.iter().flat_map(|r| r.virtualizations()).collect();
    info!(virtualization = ?virtualizations, "runtimes ready");

    let mut sampler = node_info::NodeSampler::new(&config, virtualizations)?;
    let node = sampler.sample();
    info!(host = %node.host, ip = %node.ip, vcpus = node.vcpus, memory_mb = node.memory, "node sampled");

    let Some(reg) = registration::register(
        &config.cluster_endpoints,
        &node,
        config.request_timeout(),
        config.max_backoff(),
        &shutdown,
    )
    .await?
    else {
        info!("shutdown before registration completed");
        return Ok(());
    };
    let node_id = reg.response.id.clone();
    sampler.set_node_id(&node_id);
    let brokers = broker_list(&config, &reg)?;
    info!(node_id = %node_id, brokers = ?brokers, "MQTT brokers");

    let (publisher, outbox) = mqtt_worker::outbox();
    let engine_cancel = shutdown.child_token();
    let engine = Engine::new(
        EngineSettings {
            node_id: node_id.clone(),
            public_ip: sampler.current_ip().to_owned(),
            log_directory: config.log_directory.clone(),
            stop_grace_period: config.stop_grace_period(),
            total_memory: sampler.total_memory(),
        },
        runtimes,
        publisher.clone(),
        engine_cancel,
    );
    engine.recover().await;
    info!(instances = engine.instances().len(), "recovered instances from the runtime");

    let tasks = TaskTracker::new();
    let (state_tx, state_rx) = watch::channel(ConnState::default());
    let (control_tx, mut control_rx) = mpsc::channel(64);
    let mqtt_settings = MqttSettings {
        node_id: node_id.clone(),
        brokers,
        keep_alive: Duration::from_secs(config.mqtt_keep_alive_secs),
        connect_timeout: config.request_timeout(),
        max_backoff: config.max_backoff(),
    };
    tasks.spawn(
        mqtt_worker::mqtt_worker(mqtt_settings, outbox, control_tx, state_tx, shutdown.child_token())
            .instrument(tracing::info_span!("mqtt_worker", node_id = %node_id)),
    );
    tasks.spawn(
        report_worker::report_worker(
            engine.clone(),
            sampler,
            publisher,
            node_id.clone(),
            state_rx,
            config.report_interval(),
            shutdown.child_token(),
        )
        .instrument(tracing::info_span!("report_worker", node_id = %node_id)),
    );
    {
        let engine = engine.clone();
        let cancel = shutdown.child_token();
        tasks.spawn(
            async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        c = control_rx.recv() => match c {
                            Some(c) => engine.handle(c),
                            None => break,
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("control_dispatch", node_id = %node_id)),
        );
    }
    info!("grove-worker running");

    shutdown.cancelled().await;
    info!("grove-worker stopping");
    tasks.close();
    engine.shutdown(SHUTDOWN_DEADLINE).await;
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tasks.wait()).await.is_err() {
        warn!("worker tasks did not stop within {SHUTDOWN_DEADLINE:?}");
    }
    info!("grove-worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use grove_core::worker_protocol::RegisterResponse;

    fn reg(index: usize, port: &str) -> registration::Registration {
        registration::Registration {
            response: RegisterResponse { id: "w".into(), mqtt_broker_port: port.into() },
            endpoint_index: index,
        }
    }

    #[test]
    fn brokers_follow_the_endpoints_starting_with_the_one_that_answered() {
        let config = WorkerConfig {
            cluster_endpoints: vec!["10.0.0.1:10100".into(), "http://10.0.0.2:10100".into(), "10.0.0.3:10100".into()],
            ..WorkerConfig::default()
        };
        assert_eq!(
            broker_list(&config, &reg(1, "10003")).unwrap(),
            vec![("10.0.0.2".into(), 10003), ("10.0.0.3".into(), 10003), ("10.0.0.1".into(), 10003)]
        );
        assert!(broker_list(&config, &reg(0, "not a port")).is_err());
    }

    #[test]
    fn configured_brokers_win() {
        let config = WorkerConfig { mqtt_brokers: vec!["b1:1883".into(), "b2:1884".into()], ..WorkerConfig::default() };
        assert_eq!(broker_list(&config, &reg(0, "")).unwrap(), vec![("b1".into(), 1883), ("b2".into(), 1884)]);
    }
}
