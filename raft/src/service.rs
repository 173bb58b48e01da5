//! The server side of the gRPC transport: every RPC first checks the group and the sender's
//! link (fault injection), decodes its payload with a bounded decoder, and answers malformed
//! input with `InvalidArgument` naming what did not decode.

use std::io::Cursor;
use std::sync::Arc;

use futures::StreamExt;
use grove_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use grove_proto::raft::{
    forward_reply, query_reply, ForwardReply, ForwardRequest, QueryReply, QueryRequest, RaftMessage, SnapshotChunk, StatusReply, StatusRequest,
};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::Snapshot;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};

use crate::app::StateMachine;
use crate::replica::Inner;
use crate::types::{codec, NodeId, SnapshotMeta, TypeConfig, Vote};

/// Largest snapshot a replica accepts.
const MAX_SNAPSHOT: u64 = 4 << 30;

/// Serve the replica's gRPC on its Raft runtime.
pub(crate) fn serve<S: StateMachine>(
    inner: Arc<Inner<S>>,
    listener: tokio::net::TcpListener,
    stop: oneshot::Receiver<()>,
) -> crate::Result<JoinHandle<()>> {
    let (group, id) = (inner.group.clone(), inner.id);
    // The listener was registered with the caller's runtime; move it to the Raft runtime's.
    let listener = listener.into_std().map_err(|e| crate::Error::Network(format!("raft listener: {e}")))?;
    let runtime = inner.runtime.handle().clone();
    let service = RaftServer::new(Service { inner })
        .max_decoding_message_size(crate::MAX_MESSAGE)
        .max_encoding_message_size(crate::MAX_MESSAGE);
    Ok(runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%group, id, "raft gRPC server cannot listen: {e}");
                return;
            }
        };
        let result = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(grove_proto::incoming(listener), async {
                let _ = stop.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(%group, id, "raft gRPC server failed: {e}");
        }
    }))
}

struct Service<S> {
    inner: Arc<Inner<S>>,
}

impl<S: StateMachine> Service<S> {
    /// Reject traffic for another group, and (fault injection) from a cut-off peer.
    fn admit(&self, group: &str, from: NodeId) -> Result<(), Status> {
        if group != self.inner.group {
            return Err(Status::failed_precondition(format!(
                "this replica belongs to raft group {:?}, not {group:?}",
                self.inner.group
            )));
        }
        if !self.inner.faults.allows(from) {
            return Err(Status::unavailable(format!("fault injection: link from node {from} is cut")));
        }
        Ok(())
    }

    fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Status> {
        codec::decode(what, bytes).map_err(Status::invalid_argument)
    }

    /// Encode openraft's answer; its only possible error is that this replica has stopped.
    fn answer<T: serde::Serialize>(result: Result<T, RaftError<NodeId>>) -> Result<Response<RaftMessage>, Status> {
        let result = result.map_err(|e| match e {
            RaftError::Fatal(f) => f,
            RaftError::APIError(never) => match never {},
        });
        Ok(Response::new(RaftMessage { group: String::new(), from: 0, payload: codec::encode(&result) }))
    }

    async fn receive_snapshot(&self, mut stream: Streaming<SnapshotChunk>) -> Result<(Vote, Snapshot<TypeConfig>), Status> {
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("snapshot stream is empty"))??;
        self.admit(&first.group, first.from)?;
        let header = first.header.ok_or_else(|| Status::invalid_argument("first snapshot chunk has no header"))?;
        if header.size > MAX_SNAPSHOT {
            return Err(Status::invalid_argument(format!("snapshot of {} bytes exceeds the limit of {MAX_SNAPSHOT}", header.size)));
        }
        let vote: Vote = Self::decode("snapshot vote", &header.vote)?;
        let meta: SnapshotMeta = Self::decode("snapshot metadata", &header.meta)?;
        let mut data = Vec::with_capacity(header.size.min(64 << 20) as usize);
        data.extend_from_slice(&first.data);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if data.len() as u64 + chunk.data.len() as u64 > header.size {
                return Err(Status::invalid_argument(format!("snapshot data exceeds its declared size of {} bytes", header.size)));
            }
            data.extend_from_slice(&chunk.data);
        }
        if data.len() as u64 != header.size {
            return Err(Status::invalid_argument(format!(
                "snapshot truncated: {} of {} bytes arrived",
                data.len(),
                header.size
            )));
        }
        if Sha256::digest(&data).as_slice() != header.sha256.as_slice() {
            return Err(Status::invalid_argument("snapshot data does not match its SHA-256"));
        }
        // Check that the application can read it before openraft installs it: a snapshot that
        // fails there would stop this replica.
        if let Err(e) = S::restore(&data) {
            return Err(Status::invalid_argument(format!("snapshot {} does not decode: {e}", meta.snapshot_id)));
        }
        Ok((vote, Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[tonic::async_trait]
impl<S: StateMachine> RaftRpc for Service<S> {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        self.admit(&m.group, m.from)?;
        let rpc: AppendEntriesRequest<TypeConfig> = Self::decode("append-entries request", &m.payload)?;
        let result = self.inner.raft.append_entries(rpc).await;
        if matches!(result, Ok(ref r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            // Accepted from the current leader (entries or a heartbeat).
            self.inner.contact.touch();
        }
        Self::answer(result)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        self.admit(&m.group, m.from)?;
        let rpc: VoteRequest<NodeId> = Self::decode("vote request", &m.payload)?;
        Self::answer(self.inner.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftMessage>, Status> {
        let (vote, snapshot) = self.receive_snapshot(request.into_inner()).await?;
        let id = snapshot.meta.snapshot_id.clone();
        let result = self.inner.raft.install_full_snapshot(vote, snapshot).await;
        if let Err(e) = &result {
            tracing::warn!(group = %self.inner.group, id = self.inner.id, snapshot = %id, "installing a snapshot failed: {e}");
        }
        Ok(Response::new(RaftMessage { group: String::new(), from: 0, payload: codec::encode(&result) }))
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        let m = request.into_inner();
        self.admit(&m.group, m.from)?;
        let op = m.op.ok_or_else(|| Status::invalid_argument("forward request names no operation"))?;
        let result = if m.from == 0 {
            // A client outside the group: route it to the leader ourselves.
            let deadline = tokio::time::Instant::now() + self.inner_timeout();
            match self.inner.route_leader_op(op, deadline).await {
                Ok(reply) => reply,
                Err(e) => error_reply(e),
            }
        } else {
            // A peer forwarded it: answer as leader, or redirect; never forward again.
            let deadline = tokio::time::Instant::now() + self.inner_timeout();
            let leads = self.inner.raft.metrics().borrow().current_leader == Some(self.inner.id);
            if leads {
                self.inner.on_leader(op, deadline).await
            } else {
                self.inner.redirect(None)
            }
        };
        Ok(Response::new(ForwardReply { result: Some(result) }))
    }

    async fn query(&self, request: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        let m = request.into_inner();
        self.admit(&m.group, 0)?;
        let query = m.query;
        let answer = if m.stale {
            Ok(self.inner.state.read().expect("state lock").app.query(&query))
        } else {
            self.inner.read_linearizable(|s: &S| s.query(&query)).await
        };
        let result = match answer {
            Ok(Ok(bytes)) => query_reply::Result::Answer(bytes),
            Ok(Err(message)) => query_reply::Result::Failure(grove_proto::raft::Failure {
                kind: grove_proto::raft::failure::Kind::Invalid as i32,
                message,
            }),
            Err(e) => query_reply::Result::Failure(failure_of(e)),
        };
        Ok(Response::new(QueryReply { result: Some(result) }))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let m = request.into_inner();
        if !m.group.is_empty() {
            self.admit(&m.group, m.from)?;
        }
        let status = if m.digest { self.inner.status_with_digest() } else { self.inner.status() };
        let json = serde_json::to_string(&status).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(StatusReply { json }))
    }
}

impl<S: StateMachine> Service<S> {
    fn inner_timeout(&self) -> std::time::Duration {
        self.inner.request_timeout()
    }
}

/// Map a routing error into the reply a remote caller decodes back into the same error.
pub(crate) fn error_reply(e: crate::Error) -> forward_reply::Result {
    forward_reply::Result::Failure(failure_of(e))
}

pub(crate) fn failure_of(e: crate::Error) -> grove_proto::raft::Failure {
    use grove_proto::raft::failure::Kind;
    let kind = match &e {
        crate::Error::Unavailable { .. } => Kind::Unavailable,
        crate::Error::Indeterminate { .. } => Kind::Indeterminate,
        crate::Error::Rejected(_) | crate::Error::Membership(_) => Kind::Rejected,
        crate::Error::Codec { .. } | crate::Error::Config(_) => Kind::Invalid,
        crate::Error::Stopped { .. } => Kind::Stopped,
        _ => Kind::Unavailable,
    };
    let message = match e {
        crate::Error::Rejected(m) => m,
        crate::Error::Unavailable { reason, .. } | crate::Error::Indeterminate { reason, .. } => reason,
        other => other.to_string(),
    };
    grove_proto::raft::Failure { kind: kind as i32, message }
}
