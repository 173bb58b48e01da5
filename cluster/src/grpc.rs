//! The `Cluster` gRPC service the root dispatches to, served by every replica: `Deploy` and
//! `Undeploy` are committed through Raft (a follower forwards to the leader) and acknowledged
//! after commit. Both are idempotent on job id + instance number, so the root retries freely.
//!
//! Answers: `accepted = true` once committed; `accepted = false` with the reason when the state
//! machine refuses (the same on every replica: retrying will not help); `InvalidArgument` for a
//! malformed request (naming the field); `Unavailable` when nothing could be committed (no
//! quorum, or an outcome that cannot be known: retry).

use grove_core::job::Job;
use grove_proto::cluster::cluster_server::{Cluster as ClusterRpc, ClusterServer};
use grove_proto::cluster::{DeployRequest, DispatchAck, UndeployRequest};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::state::{ApplyResult, ClusterCommand};
use crate::Shared;

/// Largest request accepted (a job document).
const MAX_REQUEST: usize = 4 << 20;

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

#[tonic::async_trait]
impl ClusterRpc for Service {
    async fn deploy(&self, request: Request<DeployRequest>) -> Result<Response<DispatchAck>, Status> {
        let r = request.into_inner();
        let job = parse_deploy(&r)?;
        tracing::info!(job_id = %r.job_id, instance = r.instance_number, job_name = %job.job_name, "deploy from the root");
        let command = ClusterCommand::Deploy { job_id: r.job_id, instance_number: r.instance_number, job, at_ms: crate::now_ms() };
        answer(self.shared.replica.write(command).await)
    }

    async fn undeploy(&self, request: Request<UndeployRequest>) -> Result<Response<DispatchAck>, Status> {
        let r = request.into_inner();
        if r.job_id.trim().is_empty() {
            return Err(Status::invalid_argument("job_id: is required"));
        }
        tracing::info!(job_id = %r.job_id, instance = r.instance_number, "undeploy from the root");
        let command = ClusterCommand::Undeploy { job_id: r.job_id, instance_number: Some(r.instance_number), at_ms: crate::now_ms() };
        answer(self.shared.replica.write(command).await)
    }
}

/// Serve the `Cluster` service on `listener` until `stop`.
pub async fn serve(shared: Shared, listener: tokio::net::TcpListener, mut stop: watch::Receiver<bool>) {
    let service = ClusterServer::new(Service { shared }).max_decoding_message_size(MAX_REQUEST);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
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
