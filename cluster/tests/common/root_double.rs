//! `FakeRoot`: a test double of the root's `Root` gRPC service (proto `grove.cluster.v1`).
//! It registers clusters by name (a returning cluster keeps its id), acknowledges reports and
//! records everything it receives. `set_online(false)` makes it act unreachable: `Register`
//! fails with `Unavailable` and open report streams end with an error.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use grove_proto::cluster::root_server::{Root, RootServer};
use grove_proto::cluster::{ClusterReport, RegisterReply, RegisterRequest, ReportAck};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

#[derive(Default)]
pub struct Recorded {
    pub registrations: Vec<RegisterRequest>,
    pub reports: Vec<ClusterReport>,
}

#[derive(Clone)]
struct Service {
    recorded: Arc<Mutex<Recorded>>,
    online: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Root for Service {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<RegisterReply>, Status> {
        if !*self.online.borrow() {
            return Err(Status::unavailable("FakeRoot is offline"));
        }
        let r = request.into_inner();
        let id = format!("fake-{}", r.cluster_name);
        self.recorded.lock().unwrap().registrations.push(r);
        Ok(Response::new(RegisterReply { cluster_id: id }))
    }

    type ReportStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ReportAck, Status>> + Send>>;

    async fn report(&self, request: Request<Streaming<ClusterReport>>) -> Result<Response<Self::ReportStream>, Status> {
        if !*self.online.borrow() {
            return Err(Status::unavailable("FakeRoot is offline"));
        }
        let mut incoming = request.into_inner();
        let recorded = self.recorded.clone();
        let mut online = self.online.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = incoming.next() => match m {
                        Some(Ok(report)) => {
                            let sequence = report.sequence;
                            let full = report.full;
                            recorded.lock().unwrap().reports.push(report);
                            if full && tx.send(Ok(ReportAck { sequence })).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    _ = online.changed() => {
                        if !*online.borrow() {
                            let _ = tx.send(Err(Status::unavailable("FakeRoot went offline"))).await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// The running double.
pub struct FakeRoot {
    pub addr: SocketAddr,
    pub recorded: Arc<Mutex<Recorded>>,
    online: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRoot {
    /// Serve on `listener`.
    pub fn start(listener: tokio::net::TcpListener) -> FakeRoot {
        let addr = listener.local_addr().unwrap();
        let recorded: Arc<Mutex<Recorded>> = Arc::default();
        let (online, online_rx) = watch::channel(true);
        let service = Service { recorded: recorded.clone(), online: online_rx };
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder().add_service(RootServer::new(service)).serve_with_incoming(incoming).await;
        });
        FakeRoot { addr, recorded, online, task }
    }

    pub fn set_online(&self, online: bool) {
        self.online.send_replace(online);
    }

    pub fn registrations(&self) -> usize {
        self.recorded.lock().unwrap().registrations.len()
    }

    /// The last full report received after `after` reports, if any.
    pub fn last_full_report(&self) -> Option<ClusterReport> {
        self.recorded.lock().unwrap().reports.iter().rev().find(|r| r.full).cloned()
    }

    pub fn report_count(&self) -> usize {
        self.recorded.lock().unwrap().reports.len()
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        self.task.abort();
    }
}
