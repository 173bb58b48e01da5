//! The `Cluster` gRPC service the root dispatches to, served by every replica: `Deploy` and
//! `Undeploy` are committed through Raft (a follower forwards to the leader) and acknowledged
//! after commit. Both are idempotent on job id + instance number, so the root retries freely.
//!
//! `Dispatch` carries many deploys and undeploys at once (how the root sends them): each item
//! is answered on its own as above, a malformed one refused alone (`accepted = false`, naming
//! the field); the items are committed concurrently and share log entries; if any could not be
//! committed the whole call answers `Unavailable` and the root sends it again (idempotent).
//!
//! `ListWorkers` is answered by the leader (it alone holds the workers' live resources, see
//! [`crate::soft`]); a follower answers `FailedPrecondition` naming the leader, and the root
//! tries the next endpoint. With a cluster token configured every call must carry it.
//!
//! Answers: `accepted = true` once committed; `accepted = false` with the reason when the state
//! machine refuses (the same on every replica: retrying will not help); `InvalidArgument` for a
//! malformed request (naming the field); `Unavailable` when nothing could be committed (no
//! quorum, or an outcome that cannot be known: retry).

use grove_core::job::Job;
use grove_proto::cluster::cluster_server::{Cluster as ClusterRpc, ClusterServer};
use grove_proto::cluster::{DeployRequest, DispatchAck, DispatchAcks, DispatchBatch, ListWorkersReply, ListWorkersRequest, UndeployRequest, WorkerSummary};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::soft::LeaderView;
use crate::state::{ApplyResult, ClusterCommand, ClusterState};
use crate::Shared;

/// Largest request accepted (a job document, or a batch of them).
const MAX_REQUEST: usize = 4 << 20;
/// Most items in one `Dispatch` call (the root sends at most 256).
pub const MAX_DISPATCH_BATCH: usize = 1024;

pub struct Service {
    shared: Shared,
}

fn answer(result: Result<ApplyResult, grove_raft::Error>) -> Result<Response<DispatchAck>, Status> {
    match result {
        Ok(Ok(_)) => Ok(Response::new(DispatchAck { accepted: true, reason: String::new() })),
        Ok(Err(e)) => Ok(Response::new(DispatchAck { accepted: false, reason: e.to_string() })),
        Err(e) if e.is_retryable() => Err(Status::unavailable(format!("the cluster has no quorum, nothing was changed; retry: {e}"))),
        Err(e @ grove_raft::Error::Indeterminate { .. }) => Err(Status::unavailable(format!("outcome unknown, retry (the call is idempotent): {e}"))),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

/// The `Deploy` command of a request, or `InvalidArgument` naming the field.
fn deploy_command(r: DeployRequest, at_ms: u64) -> Result<ClusterCommand, Status> {
    let job = parse_deploy(&r)?;
    tracing::debug!(job_id = %r.job_id, instance = r.instance_number, job_name = %job.job_name, "deploy from the root");
    Ok(ClusterCommand::Deploy { job_id: r.job_id, instance_number: r.instance_number, job, at_ms })
}

/// The `Undeploy` command of a request, or `InvalidArgument` naming the field.
fn undeploy_command(r: UndeployRequest, at_ms: u64) -> Result<ClusterCommand, Status> {
    if r.job_id.trim().is_empty() {
        return Err(Status::invalid_argument("job_id: is required"));
    }
    tracing::debug!(job_id = %r.job_id, instance = r.instance_number, "undeploy from the root");
    Ok(ClusterCommand::Undeploy { job_id: r.job_id, instance_number: Some(r.instance_number), at_ms })
}

/// The job document of a `DeployRequest`, or `InvalidArgument` naming the field.
pub fn parse_deploy(r: &DeployRequest) -> Result<Job, Status> {
    if r.job_id.trim().is_empty() {
        return Err(Status::invalid_argument("job_id: is required"));
    }
    let value: serde_json::Value = serde_json::from_str(&r.job_json).map_err(|e| Status::invalid_argument(format!("job_json: not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Status::invalid_argument("job_json: must be a JSON object (the job document)"));
    }
    let job: Job = serde_json::from_value(value).map_err(|e| Status::invalid_argument(format!("job_json: {e}")))?;
    if job.job_name.is_empty() {
        return Err(Status::invalid_argument("job_json.job_name: is required"));
    }
    Ok(job)
}

impl Service {
    /// Commit every command at once (concurrent writes share the leader's log entries) and
    /// answer each in order; a malformed item is refused alone. `Unavailable` when any could
    /// not be committed.
    async fn commit_all(&self, commands: impl Iterator<Item = Result<ClusterCommand, Status>>) -> Result<Vec<DispatchAck>, Status> {
        let writes = commands.map(|command| async move {
            match command {
                Ok(command) => answer(self.shared.replica.write(command).await).map(Response::into_inner),
                Err(invalid) => Ok(DispatchAck { accepted: false, reason: invalid.message().to_owned() }),
            }
        });
        futures::future::join_all(writes).await.into_iter().collect()
    }
}

#[tonic::async_trait]
impl ClusterRpc for Service {
    async fn deploy(&self, request: Request<DeployRequest>) -> Result<Response<DispatchAck>, Status> {
        let command = deploy_command(request.into_inner(), crate::now_ms())?;
        answer(self.shared.replica.write(command).await)
    }

    async fn undeploy(&self, request: Request<UndeployRequest>) -> Result<Response<DispatchAck>, Status> {
        let command = undeploy_command(request.into_inner(), crate::now_ms())?;
        answer(self.shared.replica.write(command).await)
    }

    async fn dispatch(&self, request: Request<DispatchBatch>) -> Result<Response<DispatchAcks>, Status> {
        let r = request.into_inner();
        let items = r.deploys.len() + r.undeploys.len();
        if items > MAX_DISPATCH_BATCH {
            return Err(Status::invalid_argument(format!("deploys, undeploys: {items} items, at most {MAX_DISPATCH_BATCH} per call")));
        }
        tracing::info!(deploys = r.deploys.len(), undeploys = r.undeploys.len(), "dispatch from the root");
        let at_ms = crate::now_ms();
        // Undeploys first: an instance the root re-placed here while the undeploy of its old
        // copy was still owed must end up deployed.
        let undeploys = self.commit_all(r.undeploys.into_iter().map(|u| undeploy_command(u, at_ms))).await?;
        let deploys = self.commit_all(r.deploys.into_iter().map(|d| deploy_command(d, at_ms))).await?;
        Ok(Response::new(DispatchAcks { deploys, undeploys }))
    }

    async fn list_workers(&self, _request: Request<ListWorkersRequest>) -> Result<Response<ListWorkersReply>, Status> {
        let replica = &self.shared.replica;
        if !replica.is_leader() {
            let leader = replica.status().leader_id.map_or_else(|| "none is known".to_owned(), |id| format!("it is replica {id}"));
            return Err(Status::failed_precondition(format!("only the cluster leader lists workers; ask another endpoint ({leader})")));
        }
        // Wait for the read index (every registration acknowledged before this call), then read
        // the state, which can only be newer, under the view: view before state, the lock order
        // of the leader's loops.
        replica.read_linearizable(|_| ()).await.map_err(|e| Status::unavailable(format!("the cluster cannot serve a consistent read: {e}")))?;
        let view = self.shared.view();
        let (cluster_id, workers) = replica.read_local(|s| (s.cluster_id.clone(), worker_summaries(s, &view, std::time::Instant::now())));
        Ok(Response::new(ListWorkersReply { cluster_id, workers }))
    }
}

/// Every registered worker with the live resources of the leader's view (registration values
/// for a worker not heard from since this leader started), in id order.
pub fn worker_summaries(state: &ClusterState, view: &LeaderView, now: std::time::Instant) -> Vec<WorkerSummary> {
    let mut placed: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for i in state.instances.values().filter(|i| !i.worker_id.is_empty()) {
        *placed.entry(i.worker_id.as_str()).or_default() += 1;
    }
    state
        .workers
        .values()
        .map(|w| {
            let live = view.workers.get(&w.id);
            let d = live.and_then(|l| l.dynamic.as_ref());
            WorkerSummary {
                id: w.id.clone(),
                hostname: w.host.clone(),
                ip: d.map(|d| d.ip.clone()).filter(|ip| !ip.is_empty()).unwrap_or_else(|| w.info.ip.clone()),
                active: !w.lost,
                cpu_percent: d.map_or(w.info.cpu_percent, |d| d.cpu_percent),
                memory_percent: d.map_or(w.info.memory_percent, |d| d.memory_percent),
                vcpus: d.map_or(w.info.vcpus, |d| d.vcpus),
                memory_mb: d.map_or(w.info.memory, |d| d.memory),
                virtualization: w.info.virtualization.clone(),
                instances: placed.get(w.id.as_str()).copied().unwrap_or(0),
                registered_at_ms: w.registered_at_ms,
                last_seen_ms_ago: live.map(|l| now.saturating_duration_since(l.last_seen).as_millis() as u64),
            }
        })
        .collect()
}

/// Serve the `Cluster` service on `listener` until `stop`.
pub async fn serve(shared: Shared, listener: tokio::net::TcpListener, mut stop: watch::Receiver<bool>) {
    let check = grove_proto::auth::TokenCheck::new(shared.config.cluster_token.clone());
    let service = tonic::service::interceptor::InterceptedService::new(ClusterServer::new(Service { shared }).max_decoding_message_size(MAX_REQUEST), check);
    let incoming = grove_proto::incoming(listener);
    let result = tonic::transport::Server::builder()
        .timeout(std::time::Duration::from_secs(30))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!("cluster gRPC server failed: {e}");
    }
}
