//! Test doubles and helpers shared by the worker's integration tests.
//!
//! - [`ClusterDouble`]: an axum server standing in for the cluster's `POST /api/node/register`.
//! - [`BrokerProcess`]: a rumqttd broker in a child process (the test binary re-executed), so
//!   a test can kill it for real.
//! - [`Observer`]: an MQTT client that records everything under `nodes/#` and publishes
//!   control messages.
//! - [`RuntimeDouble`]: an in-memory runtime for tests about MQTT and registration.
//! - containerd helpers: socket discovery (loud skip), a busybox OCI image built in the test,
//!   import with `ctr`, a namespace guard that cleans up.
#![allow(dead_code)]

pub mod containerd;
pub mod registry_double;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use futures::future::BoxFuture;
use futures::FutureExt;
use grove_core::instance::InstanceKey;
use grove_worker::runtime::{ExitOutcome, FoundInstance, FoundState, InstanceSpec, InstanceUsage, Runtime};
use grove_worker::{Result as WResult, WorkerConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG").unwrap_or_else(|_| "info".into()))
        .with_test_writer()
        .try_init();
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free port below Linux's ephemeral range (32768+), so that no port-0 listener or outgoing
/// connection of a concurrently running test takes it between our check and the child's bind.
pub fn free_port_below_ephemeral() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `cond` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_until<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- registration double ----------------------------------------------------------------

#[derive(Default)]
struct ClusterState {
    bodies: Vec<Value>,
    fail_first: usize,
    broker_port: u16,
    ids: HashMap<String, String>,
}

/// Test double of the cluster's registration endpoint (contract §4.1): answers
/// `{"id", "MQTT_BROKER_PORT"}`; the same host always gets the same id.
pub struct ClusterDouble {
    pub addr: SocketAddr,
    state: Arc<Mutex<ClusterState>>,
    task: tokio::task::JoinHandle<()>,
}

async fn register_handler(State(state): State<Arc<Mutex<ClusterState>>>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut s = state.lock().unwrap();
    s.bodies.push(body.clone());
    if s.fail_first > 0 {
        s.fail_first -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"message": "test double: failing on purpose"})));
    }
    let host = body["host"].as_str().unwrap_or_default().to_owned();
    let n = s.ids.len();
    let id = s.ids.entry(host).or_insert_with(|| format!("65f0000000000000000000{n:02}")).clone();
    let port = s.broker_port.to_string();
    (StatusCode::OK, Json(json!({"id": id, "MQTT_BROKER_PORT": port})))
}

impl ClusterDouble {
    /// Starts the double; it answers with `broker_port` and fails the first `fail_first` calls.
    pub async fn start(broker_port: u16, fail_first: usize) -> Self {
        let state = Arc::new(Mutex::new(ClusterState { fail_first, broker_port, ..Default::default() }));
        let app = Router::new().route("/api/node/register", post(register_handler)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Every registration body received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().bodies.clone()
    }
}

impl Drop for ClusterDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- broker in a child process ------------------------------------------------------------

const BROKER_PORT_ENV: &str = "GROVE_TEST_BROKER_PORT";

/// Body of the child process: runs rumqttd on the port from the environment, forever.
/// Invoked by [`BrokerProcess::start`]; does nothing in a normal test run.
#[test]
#[ignore = "helper: runs an MQTT broker when re-executed by BrokerProcess"]
fn mqtt_broker_helper_process() {
    let Ok(port) = std::env::var(BROKER_PORT_ENV) else { return };
    // Die with the test that started us.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let config = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 4194304
max_inflight_count = 200
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&config).expect("broker config");
    let mut broker = rumqttd::Broker::new(config);
    broker.start().expect("broker runs");
}

/// A rumqttd broker (test double of a cluster replica's broker) in a child process.
pub struct BrokerProcess {
    pub port: u16,
    child: Option<Child>,
}

impl BrokerProcess {
    pub fn start() -> Self {
        // A port can still be taken between our check and the broker's bind; then the broker
        // never listens, and we try again on another port.
        for _ in 0..5 {
            let port = free_port_below_ephemeral();
            let exe = std::env::current_exe().unwrap();
            let mut child = Command::new(exe)
                .args(["--exact", "common::mqtt_broker_helper_process", "--ignored", "--nocapture", "--test-threads=1"])
                .env(BROKER_PORT_ENV, port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn broker process");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { port, child: Some(child) };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no MQTT broker came up after 5 attempts");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- observer -----------------------------------------------------------------------------

/// One message seen by an [`Observer`].
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub json: Value,
    pub at: Instant,
}

/// An MQTT client on one broker that records `nodes/#` and can publish control messages.
pub struct Observer {
    client: AsyncClient,
    seen: Arc<Mutex<Vec<Seen>>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    pub async fn connect(port: u16, name: &str) -> Self {
        let mut opts = MqttOptions::new(format!("observer-{name}-{port}"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let notify = Arc::new(Notify::new());
        let (subacked_tx, subacked_rx) = tokio::sync::oneshot::channel();
        let mut subacked_tx = Some(subacked_tx);
        client.subscribe("nodes/#", QoS::AtLeastOnce).await.unwrap();
        let (s2, n2) = (seen.clone(), notify.clone());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subacked_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let json = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        s2.lock().unwrap().push(Seen { topic: p.topic.clone(), json, at: Instant::now() });
                        n2.notify_waiters();
                    }
                    Ok(_) => {}
                    // The broker may have been killed on purpose; back off a little.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, subacked_rx).await.expect("observer subscribed").unwrap();
        Self { client, seen, notify, task }
    }

    pub async fn publish(&self, topic: &str, body: &Value) {
        self.client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(body).unwrap()).await.unwrap();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `f` finds something in the recorded messages.
    pub async fn wait_for<T>(&self, what: &str, timeout: Duration, f: impl Fn(&[Seen]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if let Some(v) = f(&self.seen.lock().unwrap()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let topics: Vec<String> = self.seen().iter().rev().take(10).map(|s| format!("{} {}", s.topic, s.json)).collect();
                panic!("timed out after {timeout:?} waiting for {what}; last messages: {topics:#?}");
            }
        }
    }

    /// Waits for a status event of `instance` of `job` with `status` on `nodes/<id>/job`.
    pub async fn wait_status(&self, node_id: &str, job: &str, instance: u32, status: &str, since: Instant) -> Value {
        let topic = format!("nodes/{node_id}/job");
        self.wait_for(&format!("{job}.instance.{instance} {status}"), WAIT, |seen| {
            seen.iter()
                .find(|s| s.at >= since && s.topic == topic && s.json["sname"] == job && s.json["instance"] == instance && s.json["status"] == status)
                .map(|s| s.json.clone())
        })
        .await
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- worker under test -------------------------------------------------------------------

/// A worker running in this process through its library entry point.
pub struct WorkerUnderTest {
    cancel: CancellationToken,
    handle: Option<tokio::task::JoinHandle<WResult<()>>>,
}

impl WorkerUnderTest {
    pub fn start(config: WorkerConfig) -> Self {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(grove_worker::run(config, cancel.clone()));
        Self { cancel, handle: Some(handle) }
    }

    pub fn start_with(config: WorkerConfig, runtimes: Vec<Arc<dyn Runtime>>) -> Self {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(grove_worker::run_with_runtimes(config, runtimes, cancel.clone()));
        Self { cancel, handle: Some(handle) }
    }

    /// Stops the worker and asserts that it shut down cleanly within a deadline.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let h = self.handle.take().unwrap();
        let r = tokio::time::timeout(WAIT, h).await.expect("worker stopped within deadline");
        r.expect("worker task did not panic").expect("worker returned Ok");
    }
}

impl Drop for WorkerUnderTest {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A test config: fast reports, short grace period, given endpoints.
pub fn test_config(name: &str, cluster: &ClusterDouble, log_dir: &std::path::Path) -> WorkerConfig {
    WorkerConfig {
        cluster_endpoints: vec![cluster.endpoint()],
        hostname: format!("grove-test-{name}"),
        public_ip: "127.0.0.1".into(),
        report_interval_ms: 300,
        stop_grace_period_ms: 1_000,
        request_timeout_ms: 5_000,
        max_backoff_ms: 500,
        log_directory: log_dir.to_owned(),
        containerd_namespace: format!("grove-test-{}-{name}", std::process::id()),
        ..WorkerConfig::default()
    }
}

/// A deploy message as Oakestra's cluster manager sends it: the job document with every key
/// the worker reads (contract §4.3) plus `instance_number`.
pub fn deploy_message(job_name: &str, instance: u32, image: &str, cmd: &[&str], one_shot: bool) -> Value {
    json!({
        "_id": "65f0c0ffee00000000000001",
        "job_name": job_name,
        "instance_number": instance,
        "image": image,
        "cmd": cmd,
        "environment": ["GROVE_TEST=1"],
        "port": "",
        "status": "NODE_SCHEDULED",
        "status_detail": "",
        "virtualization": "docker",
        "platform": "",
        "vtpus": 0,
        "vgpus": 0,
        "vcpus": 1,
        "memory": 64,
        "vm_images": [],
        "arch": [],
        "volumes": [],
        "storage": 0,
        "one_shot": one_shot,
        "privileged": false,
        "applicationID": "65f0c0ffee00000000000000",
        "app_name": "app",
        "app_ns": "test",
        "service_name": "svc",
        "service_ns": "test",
        "next_instance_progressive_number": instance + 1,
        "instance_list": []
    })
}

pub fn delete_message(job_name: &str, instance: u32) -> Value {
    json!({"job_name": job_name, "virtualization": "docker", "instance_number": instance})
}

// ---- runtime double ----------------------------------------------------------------------

/// In-memory test double of a runtime: "runs" instances as table entries.
#[derive(Default)]
pub struct RuntimeDouble {
    pub running: Mutex<HashMap<InstanceKey, grove_core::job::Job>>,
    pub deploys: Mutex<Vec<InstanceKey>>,
}

impl Runtime for RuntimeDouble {
    fn name(&self) -> &'static str {
        "runtime-double"
    }
    fn virtualizations(&self) -> Vec<String> {
        vec!["docker".into()]
    }
    fn deploy<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, WResult<()>> {
        async move {
            self.deploys.lock().unwrap().push(spec.key.clone());
            self.running.lock().unwrap().insert(spec.key.clone(), spec.job.clone());
            Ok(())
        }
        .boxed()
    }
    fn undeploy<'a>(&'a self, key: &'a InstanceKey, _grace: Duration) -> BoxFuture<'a, WResult<()>> {
        async move {
            self.running.lock().unwrap().remove(key);
            Ok(())
        }
        .boxed()
    }
    fn wait_exit<'a>(&'a self, _key: &'a InstanceKey) -> BoxFuture<'a, WResult<ExitOutcome>> {
        futures::future::pending().boxed()
    }
    fn cleanup<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, WResult<()>> {
        async move {
            self.running.lock().unwrap().remove(key);
            Ok(())
        }
        .boxed()
    }
    fn list(&self) -> BoxFuture<'_, WResult<Vec<FoundInstance>>> {
        async move {
            Ok(self
                .running
                .lock()
                .unwrap()
                .iter()
                .map(|(k, j)| FoundInstance { key: k.clone(), job: j.clone(), state: FoundState::Running })
                .collect())
        }
        .boxed()
    }
    fn usage<'a>(&'a self, _key: &'a InstanceKey) -> BoxFuture<'a, WResult<InstanceUsage>> {
        async move { Ok(InstanceUsage { cpu_time_ns: 1_000, memory_bytes: 1 << 20 }) }.boxed()
    }
    fn disk_usage<'a>(&'a self, _key: &'a InstanceKey) -> BoxFuture<'a, WResult<u64>> {
        async move { Ok(4096) }.boxed()
    }
}
