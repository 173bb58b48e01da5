//! `FakeCluster`: a test double of a cluster tier, speaking the real `grove.cluster.v1` gRPC.
//! It serves `Cluster.Deploy`/`Undeploy`/`Dispatch` (idempotent on job id + instance number, like the
//! real tier) and `ListWorkers` (from a list the test sets), registers with a list of root endpoints (failing over between them) and keeps a
//! report stream open that sends a full report (every held instance `RUNNING`) every period.
//! It counts every call so tests can check "exactly once in effect".
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_proto::cluster as pb;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

pub type Key = (String, u32);

#[derive(Default)]
pub struct Calls {
    /// Instances this fake cluster currently holds (deployed and not undeployed).
    pub held: BTreeSet<Key>,
    /// Deploy calls received per instance (retries and duplicates included).
    pub deploys: BTreeMap<Key, u32>,
    pub undeploys: BTreeMap<Key, u32>,
    /// `Dispatch` calls received (each carries many deploys and undeploys).
    pub dispatch_calls: u32,
    /// The last job document received per instance.
    pub documents: BTreeMap<Key, serde_json::Value>,
    /// What `ListWorkers` answers.
    pub workers: Vec<pb::WorkerSummary>,
}

#[derive(Clone)]
struct Service {
    calls: Arc<Mutex<Calls>>,
    token: Option<String>,
}

impl Service {
    fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let Some(t) = &self.token else { return Ok(()) };
        let given = metadata.get("authorization").and_then(|v| v.to_str().ok());
        if given == Some(format!("Bearer {t}").as_str()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong cluster token"))
        }
    }
}

impl Service {
    fn deploy_one(&self, r: pb::DeployRequest) -> Result<pb::DispatchAck, Status> {
        let doc: serde_json::Value = serde_json::from_str(&r.job_json).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = (r.job_id, r.instance_number);
        let mut c = self.calls.lock().unwrap();
        *c.deploys.entry(key.clone()).or_default() += 1;
        c.documents.insert(key.clone(), doc);
        c.held.insert(key);
        Ok(pb::DispatchAck { accepted: true, reason: String::new() })
    }

    fn undeploy_one(&self, r: pb::UndeployRequest) -> pb::DispatchAck {
        let key = (r.job_id, r.instance_number);
        let mut c = self.calls.lock().unwrap();
        *c.undeploys.entry(key.clone()).or_default() += 1;
        c.held.remove(&key);
        pb::DispatchAck { accepted: true, reason: String::new() }
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for Service {
    async fn deploy(&self, request: Request<pb::DeployRequest>) -> Result<Response<pb::DispatchAck>, Status> {
        self.check(request.metadata())?;
        self.deploy_one(request.into_inner()).map(Response::new)
    }

    async fn undeploy(&self, request: Request<pb::UndeployRequest>) -> Result<Response<pb::DispatchAck>, Status> {
        self.check(request.metadata())?;
        Ok(Response::new(self.undeploy_one(request.into_inner())))
    }

    async fn dispatch(&self, request: Request<pb::DispatchBatch>) -> Result<Response<pb::DispatchAcks>, Status> {
        self.check(request.metadata())?;
        let r = request.into_inner();
        self.calls.lock().unwrap().dispatch_calls += 1;
        let deploys = r.deploys.into_iter().map(|d| self.deploy_one(d)).collect::<Result<Vec<_>, _>>()?;
        let undeploys = r.undeploys.into_iter().map(|u| self.undeploy_one(u)).collect();
        Ok(Response::new(pb::DispatchAcks { deploys, undeploys }))
    }

    async fn list_workers(&self, request: Request<pb::ListWorkersRequest>) -> Result<Response<pb::ListWorkersReply>, Status> {
        self.check(request.metadata())?;
        let workers = self.calls.lock().unwrap().workers.clone();
        Ok(Response::new(pb::ListWorkersReply { cluster_id: String::new(), workers }))
    }
}

pub struct FakeCluster {
    pub name: String,
    pub endpoint: String,
    pub calls: Arc<Mutex<Calls>>,
    /// While set, no reports are sent (the root should find the cluster lost).
    pub silent: Arc<AtomicBool>,
    pub cluster_id: Arc<Mutex<Option<String>>>,
    stop: watch::Sender<bool>,
}

impl FakeCluster {
    /// Serve on loopback and start registering with `roots` (gRPC addresses), reporting
    /// `memory_mb` of free memory every `period`.
    pub async fn start(name: &str, roots: Vec<String>, memory_mb: u64, period: Duration, token: Option<String>) -> FakeCluster {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let calls = Arc::new(Mutex::new(Calls::default()));
        let (stop, stop_rx) = watch::channel(false);
        let service = Service { calls: calls.clone(), token: token.clone() };
        let mut server_stop = stop_rx.clone();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(pb::cluster_server::ClusterServer::new(service))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = server_stop.changed().await;
                })
                .await;
        });
        let fake = FakeCluster {
            name: name.to_owned(),
            endpoint: endpoint.clone(),
            calls: calls.clone(),
            silent: Arc::new(AtomicBool::new(false)),
            cluster_id: Arc::new(Mutex::new(None)),
            stop,
        };
        let reporter = Reporter {
            name: name.to_owned(),
            endpoint,
            roots,
            memory_mb,
            period,
            token,
            calls,
            silent: fake.silent.clone(),
            cluster_id: fake.cluster_id.clone(),
        };
        tokio::spawn(reporter.run(stop_rx));
        fake
    }

    pub fn held(&self) -> BTreeSet<Key> {
        self.calls.lock().unwrap().held.clone()
    }

    pub fn id(&self) -> Option<String> {
        self.cluster_id.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Reporter {
    name: String,
    endpoint: String,
    roots: Vec<String>,
    memory_mb: u64,
    period: Duration,
    token: Option<String>,
    calls: Arc<Mutex<Calls>>,
    silent: Arc<AtomicBool>,
    cluster_id: Arc<Mutex<Option<String>>>,
}

impl Reporter {
    fn request<T>(&self, m: T) -> Request<T> {
        let mut r = Request::new(m);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut next_root = 0usize;
        let mut sequence = 0u64;
        loop {
            if *stop.borrow() {
                return;
            }
            let root = self.roots[next_root % self.roots.len()].clone();
            next_root += 1;
            tokio::select! {
                _ = self.session(&root, &mut sequence) => {}
                _ = stop.changed() => return,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Register (when needed) and report until the stream breaks.
    async fn session(&self, root: &str, sequence: &mut u64) {
        let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{root}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
        else {
            return;
        };
        let mut client = pb::root_client::RootClient::new(channel);
        if self.cluster_id.lock().unwrap().is_none() {
            let req = pb::RegisterRequest {
                cluster_name: self.name.clone(),
                cluster_location: "48.1,11.6,1000".into(),
                endpoints: vec![self.endpoint.clone()],
                manager_port: 10100,
            };
            match client.register(self.request(req)).await {
                Ok(r) => *self.cluster_id.lock().unwrap() = Some(r.into_inner().cluster_id),
                Err(_) => return,
            }
        }
        let cluster_id = self.cluster_id.lock().unwrap().clone().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ClusterReport>(4);
        let Ok(acks) = client.report(self.request(tokio_stream::wrappers::ReceiverStream::new(rx))).await else { return };
        let mut acks = acks.into_inner();
        loop {
            if !self.silent.load(Ordering::SeqCst) {
                *sequence += 1;
                let held = self.calls.lock().unwrap().held.clone();
                let report = pb::ClusterReport {
                    cluster_id: cluster_id.clone(),
                    aggregate: Some(pb::Aggregate {
                        vcpus: 64,
                        memory_mb: self.memory_mb,
                        virtualization: vec!["docker".into()],
                        active_nodes: 1,
                        ..Default::default()
                    }),
                    instances: held
                        .into_iter()
                        .map(|(job_id, instance_number)| pb::InstanceStatus {
                            job_id,
                            instance_number,
                            status: "RUNNING".into(),
                            worker_id: "fake-worker".into(),
                            ..Default::default()
                        })
                        .collect(),
                    full: true,
                    sequence: *sequence,
                };
                if tx.send(report).await.is_err() {
                    return;
                }
                match tokio::time::timeout(Duration::from_secs(10), acks.message()).await {
                    Ok(Ok(Some(_ack))) => {}
                    Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                        // The root forgot us: register again.
                        *self.cluster_id.lock().unwrap() = None;
                        return;
                    }
                    _ => return,
                }
            }
            tokio::time::sleep(self.period).await;
        }
    }
}
