//! A client of a Raft group from outside it (node id 0): the `grove-kv` command, the benchmark
//! and tests use it. It sends each call to one replica (which routes it to the leader) and moves
//! to the next endpoint only when the replica could not be reached, so a call is never sent twice
//! once it may have been delivered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use grove_proto::raft::forward_reply::Result as Reply;
use grove_proto::raft::forward_request::Op;
use grove_proto::raft::raft_client::RaftClient;
use grove_proto::raft::{query_reply, Failure, ForwardRequest, QueryRequest, StatusRequest};
use tonic::transport::{Channel, Endpoint};

use crate::{Error, ReplicaStatus, Result, StateMachine};

#[derive(Clone)]
pub struct GroupClient {
    group: String,
    endpoints: Vec<(String, RaftClient<Channel>)>,
    next: std::sync::Arc<AtomicUsize>,
    timeout: Duration,
}

impl GroupClient {
    /// A client for `group` at `endpoints` ("host:port" of the replicas' Raft listeners).
    /// `timeout` bounds every call (the replicas bound their own routing by their request
    /// timeout; give this one a little more).
    pub fn new(group: impl Into<String>, endpoints: &[String], timeout: Duration) -> Result<GroupClient> {
        if endpoints.is_empty() {
            return Err(Error::Config("endpoints: at least one replica address is needed".into()));
        }
        let endpoints = endpoints
            .iter()
            .map(|addr| {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| Error::Config(format!("endpoint {addr:?}: {e}")))?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(timeout)
                    .tcp_nodelay(true);
                let client = RaftClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(crate::MAX_MESSAGE)
                    .max_encoding_message_size(crate::MAX_MESSAGE);
                Ok((addr.clone(), client))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupClient { group: group.into(), endpoints, next: Default::default(), timeout })
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|(a, _)| a.as_str())
    }

    /// Commit a command of state machine `S` and decode its response.
    pub async fn write<S: StateMachine>(&self, command: &S::Command) -> Result<S::Response> {
        let bytes = crate::app::encode_json("encode the command", command)?;
        let answer = self.write_raw(bytes).await?;
        crate::app::decode_json("decode the response", &answer)
    }

    /// Commit an encoded command; returns the encoded response.
    pub async fn write_raw(&self, command: Vec<u8>) -> Result<Vec<u8>> {
        let request = ForwardRequest { group: self.group.clone(), from: 0, op: Some(Op::Write(command)) };
        self.on_any(true, |mut client| {
            let request = request.clone();
            async move { client.forward(request).await.map(|r| r.into_inner().result) }
        })
        .await
        .and_then(|reply| match reply {
            Some(Reply::Written(w)) => Ok(w.response),
            Some(Reply::Failure(f)) => Err(self.failure(f)),
            other => Err(Error::Indeterminate { group: self.group.clone(), reason: format!("unexpected reply {other:?}") }),
        })
    }

    /// A linearizable (or, with `stale`, local) query of state machine `S`.
    pub async fn query<Q: serde::Serialize, A: serde::de::DeserializeOwned>(&self, query: &Q, stale: bool) -> Result<A> {
        let bytes = crate::app::encode_json("encode the query", query)?;
        let request = QueryRequest { group: self.group.clone(), query: bytes, stale };
        let reply = self
            .on_any(false, |mut client| {
                let request = request.clone();
                async move { client.query(request).await.map(|r| r.into_inner().result) }
            })
            .await?;
        match reply {
            Some(query_reply::Result::Answer(bytes)) => crate::app::decode_json("decode the answer", &bytes),
            Some(query_reply::Result::Failure(f)) => Err(self.failure(f)),
            None => Err(Error::Unavailable { group: self.group.clone(), reason: "empty query reply".into() }),
        }
    }

    /// The status of the replica at `endpoint`.
    pub async fn status_of(&self, endpoint: &str) -> Result<ReplicaStatus> {
        let (_, client) = self
            .endpoints
            .iter()
            .find(|(a, _)| a == endpoint)
            .ok_or_else(|| Error::Config(format!("{endpoint} is not one of this client's endpoints")))?;
        let mut client = client.clone();
        let reply = tokio::time::timeout(self.timeout, client.status(StatusRequest { group: self.group.clone(), digest: false, from: 0 }))
            .await
            .map_err(|_| Error::Network(format!("{endpoint}: no answer within {:?}", self.timeout)))?
            .map_err(|s| Error::Network(format!("{endpoint}: {}: {}", s.code(), s.message())))?;
        serde_json::from_str(&reply.into_inner().json)
            .map_err(|e| Error::Codec { action: "decode the replica status", reason: e.to_string() })
    }

    /// Call `f` on one replica after another until one could be reached. For a write, a
    /// replica that may have received the request ends the search (its answer or an
    /// indeterminate error is returned).
    async fn on_any<T, F, Fut>(&self, write: bool, f: F) -> Result<T>
    where
        F: Fn(RaftClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..self.endpoints.len() {
            let (addr, client) = &self.endpoints[(start + i) % self.endpoints.len()];
            match tokio::time::timeout(self.timeout, f(client.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(s)) if s.code() == tonic::Code::Unavailable && !s.message().contains("fault injection") => {
                    last = format!("{addr}: {}", s.message());
                }
                Ok(Err(s)) if write => {
                    return Err(Error::Indeterminate { group: self.group.clone(), reason: format!("{addr}: {}: {}", s.code(), s.message()) })
                }
                Ok(Err(s)) => last = format!("{addr}: {}: {}", s.code(), s.message()),
                Err(_) if write => {
                    return Err(Error::Indeterminate { group: self.group.clone(), reason: format!("{addr}: no answer within {:?}", self.timeout) })
                }
                Err(_) => last = format!("{addr}: no answer within {:?}", self.timeout),
            }
        }
        Err(Error::Unavailable { group: self.group.clone(), reason: format!("no replica could be reached (last: {last})") })
    }

    fn failure(&self, f: Failure) -> Error {
        Error::from_failure(&self.group, f)
    }
}
