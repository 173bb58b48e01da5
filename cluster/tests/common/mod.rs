//! Helpers and test doubles shared by the cluster's integration tests.
//!
//! - [`TestCluster`]: in-process replicas on port-0 listeners (brokers on free ports).
//! - [`ProcCluster`]: replicas as real `grove-cluster` processes, so a test can SIGKILL one
//!   (an in-process rumqttd broker cannot be stopped).
//! - [`NodeEngineDouble`]: a test double of Oakestra's Node Engine: registers over HTTP with the
//!   Node JSON, then speaks exactly its MQTT messages (information, job, resources with the
//!   upstream key names and types) with broker failover, and "runs" what it is told to.
//! - [`FakeRoot`]: a test double of the root's `Root` gRPC service (in `root_double.rs`).
#![allow(dead_code)]

pub mod root_double;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_cluster::{Cluster, ClusterConfig, Listeners};
use grove_core::node::NodeInfo;
use grove_proto::cluster::cluster_client::ClusterClient;
use grove_proto::cluster::{DeployRequest, UndeployRequest};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::time::Instant;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG").unwrap_or_else(|_| "warn,openraft=error,rumqttd=error".into()))
        .with_test_writer()
        .try_init();
}

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Test timings: a short liveness so the suite runs quickly; everything else as shipped.
pub fn test_config(dir: &std::path::Path, id: u64) -> ClusterConfig {
    ClusterConfig {
        id,
        cluster_name: "test".into(),
        cluster_location: "48.1,11.6,1000".into(),
        data_dir: dir.join(format!("r{id}")),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        mqtt_listen: "127.0.0.1:0".parse().unwrap(),
        raft_listen: "127.0.0.1:0".parse().unwrap(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        worker_liveness_ms: 3_000,
        resend_after_ms: 2_000,
        redeploy_delay_ms: 1_000,
        root_report_interval_ms: 200,
        root_full_report_interval_ms: 2_000,
        ..ClusterConfig::default()
    }
}

/// In-process replicas of one cluster.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub replicas: BTreeMap<u64, Cluster>,
}

impl TestCluster {
    pub async fn start(n: u64, tweak: impl Fn(&mut ClusterConfig)) -> TestCluster {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
            listeners.insert(id, Listeners { raft: bind().await, api: bind().await, grpc: bind().await });
        }
        let peers: Vec<String> = listeners.iter().map(|(id, l)| format!("{id}={}", l.raft.local_addr().unwrap())).collect();
        let mut replicas = BTreeMap::new();
        for (id, l) in listeners {
            let mut c = test_config(dir.path(), id);
            c.peers = peers.join(",");
            tweak(&mut c);
            replicas.insert(id, Cluster::start(c, l).await.expect("replica starts"));
        }
        let tc = TestCluster { dir, replicas };
        tc.leader().await;
        tc
    }

    pub fn api(&self, id: u64) -> String {
        format!("http://{}", self.replicas[&id].api_addr)
    }

    pub fn grpc(&self, id: u64) -> String {
        format!("http://{}", self.replicas[&id].grpc_addr)
    }

    pub fn mqtt(&self, id: u64) -> (String, u16) {
        ("127.0.0.1".into(), self.replicas[&id].mqtt_addr.port())
    }

    /// Wait for a leader every replica follows, and for every replica's endpoints to be known.
    pub async fn leader(&self) -> u64 {
        let n = self.replicas.len();
        wait_for("a leader every replica follows, with all endpoints announced", WAIT, || async {
            let views: Vec<Option<u64>> = self.replicas.values().map(|r| r.replica().status().leader_id).collect();
            let first = views.first().copied().flatten()?;
            let announced = self.replicas.values().all(|r| r.replica().read_local(|s| s.replicas.len()) == n);
            (views.iter().all(|v| *v == Some(first)) && announced).then_some(first)
        })
        .await
    }

    pub async fn shutdown(self) {
        for (_, r) in self.replicas {
            r.shutdown().await;
        }
    }
}

// ---- replicas as processes ------------------------------------------------------------------

/// A free port below Linux's ephemeral range (32768+), so no port-0 listener of a concurrently
/// running test takes it between our check and the child's bind.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The ports of one replica process.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub api: u16,
    pub mqtt: u16,
    pub raft: u16,
    pub grpc: u16,
}

/// Replicas as `grove-cluster` processes.
pub struct ProcCluster {
    pub dir: tempfile::TempDir,
    pub ports: BTreeMap<u64, Ports>,
    children: BTreeMap<u64, Child>,
    pub http: reqwest::Client,
    /// Extra TOML lines for every replica's configuration.
    extra: String,
}

impl ProcCluster {
    pub async fn start(n: u64) -> ProcCluster {
        Self::start_with(n, "worker_liveness_ms = 4000\nresend_after_ms = 2000\nredeploy_delay_ms = 1000\n").await
    }

    /// Start with `extra` TOML lines in every replica's configuration.
    pub async fn start_with(n: u64, extra: &str) -> ProcCluster {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut ports = BTreeMap::new();
        let mut taken = BTreeSet::new();
        let mut pick = || loop {
            let p = free_port();
            if taken.insert(p) {
                return p;
            }
        };
        for id in 1..=n {
            ports.insert(id, Ports { api: pick(), mqtt: pick(), raft: pick(), grpc: pick() });
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut pc = ProcCluster { dir, ports, children: BTreeMap::new(), http, extra: extra.to_owned() };
        for id in 1..=n {
            pc.spawn(id);
        }
        pc
    }

    fn spawn(&mut self, id: u64) {
        let p = self.ports[&id];
        let peers: Vec<String> = self.ports.iter().map(|(i, p)| format!("{i}=127.0.0.1:{}", p.raft)).collect();
        let config = format!(
            r#"
id = {id}
cluster_name = "proc"
data_dir = "{dir}"
api_listen = "127.0.0.1:{api}"
mqtt_listen = "127.0.0.1:{mqtt}"
raft_listen = "127.0.0.1:{raft}"
grpc_listen = "127.0.0.1:{grpc}"
peers = "{peers}"
{extra}
"#,
            dir = self.dir.path().join(format!("r{id}")).display(),
            api = p.api,
            mqtt = p.mqtt,
            raft = p.raft,
            grpc = p.grpc,
            peers = peers.join(","),
            extra = self.extra,
        );
        let path = self.dir.path().join(format!("r{id}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("r{id}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_grove-cluster"))
            .arg("--config")
            .arg(&path)
            .env("GROVE_LOG", std::env::var("GROVE_LOG").unwrap_or_else(|_| "info,openraft=warn,rumqttd=warn".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn grove-cluster");
        self.children.insert(id, child);
    }

    pub fn api(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[&id].api)
    }

    pub fn grpc(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[&id].grpc)
    }

    pub fn brokers(&self) -> Vec<(String, u16)> {
        self.ports.values().map(|p| ("127.0.0.1".to_string(), p.mqtt)).collect()
    }

    pub fn running(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    /// SIGKILL a replica and reap it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        let r = self.http.get(format!("{}/api/cluster/status", self.api(id))).send().await.ok()?;
        r.json().await.ok()
    }

    /// Wait until every running replica names the same leader; return it.
    pub async fn leader(&self) -> u64 {
        wait_for("a leader every running replica follows", Duration::from_secs(60), || async {
            let mut leaders = BTreeSet::new();
            for id in self.running() {
                let s = self.status(id).await?;
                leaders.insert(s["leader_id"].as_u64()?);
            }
            let leader = *leaders.iter().next()?;
            (leaders.len() == 1 && self.children.contains_key(&leader)).then_some(leader)
        })
        .await
    }

    /// The log of replica `id` (for failure messages).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("r{id}.log"))).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for id in self.running() {
            self.kill(id);
        }
    }
}

// ---- talking to the cluster -------------------------------------------------------------------

/// A job document as the root sends it (contract §2.6).
pub fn job_json(job_id: &str, job_name: &str) -> String {
    json!({
        "_id": job_id,
        "job_name": job_name,
        "image": "docker.io/library/nginx:latest",
        "virtualization": "docker",
        "vcpus": 1,
        "memory": 100,
        "port": "",
        "cmd": [],
        "environment": [],
        "instance_list": [{"instance_number": 0}]
    })
    .to_string()
}

/// `Cluster.Deploy` as the root's dispatcher calls it, retried until accepted (the call is
/// idempotent), on the given endpoints in turn.
pub async fn deploy(endpoints: &[String], job_id: &str, job_name: &str, n: u32) {
    let request = DeployRequest { job_id: job_id.into(), instance_number: n, job_json: job_json(job_id, job_name) };
    wait_for(&format!("deploy {job_id}/{n} accepted"), WAIT, || {
        let request = request.clone();
        async move {
            for e in endpoints {
                let Ok(mut c) = ClusterClient::connect(e.clone()).await else { continue };
                match c.deploy(request.clone()).await {
                    Ok(r) if r.get_ref().accepted => return Some(()),
                    Ok(r) => panic!("deploy refused: {}", r.get_ref().reason),
                    Err(_) => continue,
                }
            }
            None
        }
    })
    .await
}

pub async fn undeploy(endpoints: &[String], job_id: &str, n: u32) {
    wait_for(&format!("undeploy {job_id}/{n} accepted"), WAIT, || async move {
        for e in endpoints {
            let Ok(mut c) = ClusterClient::connect(e.clone()).await else { continue };
            match c.undeploy(UndeployRequest { job_id: job_id.into(), instance_number: n }).await {
                Ok(r) if r.get_ref().accepted => return Some(()),
                _ => continue,
            }
        }
        None
    })
    .await
}

/// `GET /api/cluster/instances` from the first replica that answers.
pub async fn instances(http: &reqwest::Client, apis: &[String]) -> Option<Vec<Value>> {
    for a in apis {
        if let Ok(r) = http.get(format!("{a}/api/cluster/instances")).send().await {
            if r.status().is_success() {
                return r.json().await.ok();
            }
        }
    }
    None
}

// ---- the Node Engine test double --------------------------------------------------------------

/// What the double holds and saw.
#[derive(Debug, Default)]
pub struct EngineState {
    pub id: String,
    /// Instances it "runs": (job_name, instance) → virtualization.
    pub running: BTreeMap<(String, u32), String>,
    /// Every control message received: (topic suffix, payload).
    pub received: Vec<(String, Value)>,
    /// Brokers it connected to, in order (host:port).
    pub connections: Vec<String>,
    pub connected_to: Option<String>,
    pub online: bool,
}

/// Test double of Oakestra's Node Engine (see the module documentation).
pub struct NodeEngineDouble {
    pub host: String,
    pub state: Arc<Mutex<EngineState>>,
    task: tokio::task::JoinHandle<()>,
}

/// The Node JSON an upstream Node Engine sends (every key, Go's zero values).
pub fn node_json(host: &str) -> Value {
    let mut v = serde_json::to_value(NodeInfo {
        host: host.into(),
        ip: "127.0.0.1".into(),
        port: "3000".into(),
        cpu_percent: 3.5,
        vcpus: 4,
        architecture: "amd64".into(),
        memory_percent: 20.0,
        memory: 4096,
        virtualization: vec!["docker".into()],
        ..Default::default()
    })
    .unwrap();
    // Go's nil slices are null.
    v["supported_addons"] = Value::Null;
    v["csi_drivers"] = Value::Null;
    v
}

impl NodeEngineDouble {
    /// Register with the first API that answers, then connect to the brokers (in failover
    /// order) and report every `period`.
    pub async fn start(host: &str, apis: &[String], brokers: Vec<(String, u16)>, period: Duration) -> NodeEngineDouble {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let id = wait_for("registration", WAIT, || {
            let http = http.clone();
            async move {
                for a in apis {
                    let Ok(r) = http.post(format!("{a}/api/node/register")).json(&node_json(host)).send().await else { continue };
                    if !r.status().is_success() {
                        continue;
                    }
                    let body: Value = r.json().await.ok()?;
                    assert!(body["MQTT_BROKER_PORT"].is_string(), "MQTT_BROKER_PORT is a string: {body}");
                    return body["id"].as_str().map(str::to_owned);
                }
                None
            }
        })
        .await;
        let state = Arc::new(Mutex::new(EngineState { id: id.clone(), online: true, ..Default::default() }));
        let task = tokio::spawn(engine_loop(host.to_owned(), id, brokers, period, state.clone()));
        NodeEngineDouble { host: host.to_owned(), state, task }
    }

    pub fn id(&self) -> String {
        self.state.lock().unwrap().id.clone()
    }

    pub fn running(&self) -> BTreeSet<(String, u32)> {
        self.state.lock().unwrap().running.keys().cloned().collect()
    }

    pub fn received(&self, kind: &str) -> Vec<Value> {
        self.state.lock().unwrap().received.iter().filter(|(k, _)| k == kind).map(|(_, v)| v.clone()).collect()
    }

    pub fn connected_to(&self) -> Option<String> {
        self.state.lock().unwrap().connected_to.clone()
    }

    /// Go silent (disconnect, stop reporting) or come back, keeping what it runs.
    pub fn set_online(&self, online: bool) {
        self.state.lock().unwrap().online = online;
    }
}

impl Drop for NodeEngineDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn engine_loop(host: String, id: String, brokers: Vec<(String, u16)>, period: Duration, state: Arc<Mutex<EngineState>>) {
    let mut index = 0usize;
    loop {
        while !state.lock().unwrap().online {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (bhost, bport) = brokers[index % brokers.len()].clone();
        index += 1;
        let mut opts = MqttOptions::new(format!("{id}-ne"), bhost.clone(), bport);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(true);
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut tick = tokio::time::interval(period);
        let mut connected = false;
        loop {
            tokio::select! {
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        for t in ["deploy", "delete"] {
                            client.try_subscribe(format!("nodes/{id}/control/{t}"), QoS::AtLeastOnce).unwrap();
                        }
                        let mut s = state.lock().unwrap();
                        s.connections.push(format!("{bhost}:{bport}"));
                        s.connected_to = Some(format!("{bhost}:{bport}"));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let kind = p.topic.rsplit('/').next().unwrap_or_default().to_owned();
                        on_control(&client, &id, &kind, payload, &state);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        state.lock().unwrap().connected_to = None;
                        tokio::time::sleep(Duration::from_millis(if connected { 50 } else { 200 })).await;
                        break;
                    }
                },
                _ = tick.tick(), if connected => {
                    if !state.lock().unwrap().online {
                        let _ = client.try_disconnect();
                        state.lock().unwrap().connected_to = None;
                        break;
                    }
                    report(&client, &host, &id, &state);
                }
            }
        }
    }
}

/// Upstream's reports: `information` (the Node JSON) and `jobs/resources` with string-typed
/// numbers.
fn report(client: &AsyncClient, host: &str, id: &str, state: &Arc<Mutex<EngineState>>) {
    let mut info = node_json(host);
    info["id"] = json!(id);
    let _ = client.try_publish(format!("nodes/{id}/information"), QoS::AtLeastOnce, false, info.to_string());
    let services: Vec<Value> = state
        .lock()
        .unwrap()
        .running
        .iter()
        .map(|((job, n), virt)| {
            json!({"cpu_percent": "0.50", "memory_percent": "1.2500", "disk": "4096", "logs": "", "job_name": job, "virtualization": virt, "instance": n})
        })
        .collect();
    let _ = client.try_publish(format!("nodes/{id}/jobs/resources"), QoS::AtLeastOnce, false, json!({ "services": services }).to_string());
}

fn status(client: &AsyncClient, id: &str, job: &str, n: u32, status: &str) {
    let body = json!({"sname": job, "status": status, "status_detail": "", "instance": n, "publicip": "127.0.0.1"});
    let _ = client.try_publish(format!("nodes/{id}/job"), QoS::AtLeastOnce, false, body.to_string());
}

fn on_control(client: &AsyncClient, id: &str, kind: &str, payload: Value, state: &Arc<Mutex<EngineState>>) {
    let job = payload["job_name"].as_str().unwrap_or_default().to_owned();
    let n = payload["instance_number"].as_u64().unwrap_or(u64::MAX) as u32;
    let virt = payload["virtualization"].as_str().unwrap_or("docker").to_owned();
    {
        let mut s = state.lock().unwrap();
        s.received.push((kind.to_owned(), payload.clone()));
        match kind {
            "deploy" => {
                s.running.insert((job.clone(), n), virt);
            }
            "delete" => {
                s.running.remove(&(job.clone(), n));
            }
            _ => return,
        }
    }
    status(client, id, &job, n, if kind == "deploy" { "CREATED" } else { "UNDEPLOYED" });
}

/// A raw MQTT client for sending arbitrary payloads and watching control topics.
pub struct RawMqtt {
    pub client: AsyncClient,
    pub seen: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawMqtt {
    pub async fn connect(host: &str, port: u16, client_id: &str, subscribe: &[&str]) -> RawMqtt {
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let filters: Vec<String> = subscribe.iter().map(|s| s.to_string()).collect();
        let c2 = client.clone();
        let s2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            c2.subscribe(f.clone(), QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) | Ok(Event::Incoming(Packet::PingResp)) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        s2.lock().unwrap().push((p.topic.clone(), v));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        if subscribe.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {}).await;
        } else {
            tokio::time::timeout(WAIT, ready_rx).await.expect("subscribed").unwrap();
        }
        RawMqtt { client, seen, task }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }

    pub fn seen_on(&self, topic: &str) -> Vec<Value> {
        self.seen.lock().unwrap().iter().filter(|(t, _)| t == topic).map(|(_, v)| v.clone()).collect()
    }
}

impl Drop for RawMqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}
