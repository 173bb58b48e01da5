//! The client side of the gRPC transport: openraft's `RaftNetwork` over tonic, one lazily
//! connected channel per peer, every call bounded by openraft's deadline, and fault injection
//! for tests and the chaos harness.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_proto::raft::raft_client::RaftClient;
use grove_proto::raft::{RaftMessage, SnapshotChunk, SnapshotHeader};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{AnyError, OptionalSend, Snapshot};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint};

use crate::types::{codec, Command, Node, NodeId, TypeConfig, Vote};

/// Snapshot data is streamed in chunks of this size.
pub(crate) const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Command bytes one append-entries call carries at most (a single larger entry goes alone).
/// Openraft bounds every append-entries call by the heartbeat interval, so a call must be small
/// enough to be sent, stored and synced in that time even on a loaded machine, or a lagging
/// follower could never catch up.
const APPEND_BYTES: usize = 1 << 20;

/// Command bytes carried by `entry`.
fn entry_bytes(entry: &crate::types::Entry) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(Command::One(bytes)) => bytes.len(),
        openraft::EntryPayload::Normal(Command::Batch(commands)) => commands.iter().map(Vec::len).sum(),
        _ => 0,
    }
}

/// How many of `entries` to send when all of them exceed [`APPEND_BYTES`] (`None`: all).
fn entries_within_budget(entries: &[crate::types::Entry]) -> Option<u64> {
    let mut total = 0;
    for (i, entry) in entries.iter().enumerate() {
        total += entry_bytes(entry);
        if total > APPEND_BYTES {
            return Some(i.max(1) as u64);
        }
    }
    None
}

/// Deliberate network faults of one replica: an isolated replica neither sends to nor accepts
/// Raft traffic from its peers; a blocked peer is cut off in both directions. Client calls from
/// outside the group (node id 0) still arrive, so an isolated replica can be seen refusing them.
#[derive(Debug, Default)]
pub struct NetworkFaults {
    isolated: AtomicBool,
    blocked: Mutex<BTreeSet<NodeId>>,
}

impl NetworkFaults {
    /// Cut this replica off from every peer.
    pub fn isolate(&self) {
        self.isolated.store(true, Ordering::SeqCst);
    }

    /// Cut this replica off from one peer (call on both sides for a symmetric cut).
    pub fn block(&self, peer: NodeId) {
        self.blocked.lock().expect("faults lock").insert(peer);
    }

    /// Remove every fault.
    pub fn heal(&self) {
        self.isolated.store(false, Ordering::SeqCst);
        self.blocked.lock().expect("faults lock").clear();
    }

    /// May this replica exchange Raft traffic with `peer`? Node id 0 is an outside client.
    pub fn allows(&self, peer: NodeId) -> bool {
        peer == 0 || (!self.isolated.load(Ordering::SeqCst) && !self.blocked.lock().expect("faults lock").contains(&peer))
    }
}

/// Channels to peers, shared by the Raft network and leader forwarding.
#[derive(Clone)]
pub(crate) struct Peers {
    inner: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
}

impl Peers {
    pub fn new(connect_timeout: Duration) -> Peers {
        Peers { inner: Arc::default(), connect_timeout }
    }

    /// A client for `addr` ("host:port"), connecting lazily on first use.
    pub fn client(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        let mut map = self.inner.lock().expect("peers lock");
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
                    .connect_timeout(self.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5));
                let c = endpoint.connect_lazy();
                map.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(RaftClient::new(channel).max_decoding_message_size(crate::MAX_MESSAGE).max_encoding_message_size(crate::MAX_MESSAGE))
    }
}

/// Creates one [`PeerNetwork`] per replication target.
pub(crate) struct NetworkFactory {
    pub group: String,
    pub id: NodeId,
    pub peers: Peers,
    pub faults: Arc<NetworkFaults>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerNetwork {
        PeerNetwork {
            group: self.group.clone(),
            from: self.id,
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            faults: self.faults.clone(),
        }
    }
}

pub(crate) struct PeerNetwork {
    group: String,
    from: NodeId,
    target: NodeId,
    addr: String,
    peers: Peers,
    faults: Arc<NetworkFaults>,
}

/// Why an RPC to a peer failed, before openraft's error types are chosen.
enum CallError {
    /// Not sent, or the peer is down: back off before retrying.
    Unreachable(String),
    /// Sent but failed: retry.
    Network(String),
}

impl PeerNetwork {
    fn client(&self) -> Result<RaftClient<Channel>, CallError> {
        if !self.faults.allows(self.target) {
            return Err(CallError::Unreachable(format!("fault injection: link to node {} is cut", self.target)));
        }
        self.peers.client(&self.addr).map_err(CallError::Unreachable)
    }

    fn message<T: serde::Serialize>(&self, rpc: &T) -> RaftMessage {
        RaftMessage { group: self.group.clone(), from: self.from, payload: codec::encode(rpc) }
    }

    /// Decode the peer's `Result<Resp, Fatal>` payload (the only error openraft's replication
    /// RPCs can return is that the peer has stopped).
    fn reply<Resp>(&self, what: &str, reply: Result<tonic::Response<RaftMessage>, tonic::Status>) -> Result<Result<Resp, Fatal<NodeId>>, CallError>
    where
        Resp: serde::de::DeserializeOwned,
    {
        let message = reply.map_err(|s| status_error(self.target, s))?.into_inner();
        codec::decode(what, &message.payload).map_err(CallError::Network)
    }
}

fn status_error(target: NodeId, status: tonic::Status) -> CallError {
    let text = format!("node {target}: {}: {}", status.code(), status.message());
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => CallError::Unreachable(text),
        _ => CallError::Network(text),
    }
}

fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, Node, E> {
    match e {
        CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&AnyError::error(m))),
        CallError::Network(m) => RPCError::Network(NetworkError::new(&AnyError::error(m))),
    }
}

async fn bounded<T>(ttl: Duration, target: NodeId, fut: impl std::future::Future<Output = Result<T, CallError>>) -> Result<T, CallError> {
    tokio::time::timeout(ttl, fut)
        .await
        .unwrap_or_else(|_| Err(CallError::Unreachable(format!("node {target}: no answer within {ttl:?}"))))
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        if let Some(fit) = entries_within_budget(&rpc.entries).filter(|n| (*n as usize) < rpc.entries.len()) {
            // Openraft sends the first `fit` entries at once, and keeps the hint for a while.
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit)));
        }
        let result = bounded(option.hard_ttl(), self.target, async {
            let mut client = self.client()?;
            let reply = client.append_entries(self.message(&rpc)).await;
            self.reply::<AppendEntriesResponse<NodeId>>("append-entries reply", reply)
        })
        .await
        .map_err(rpc_error)?;
        result.map_err(|f| RPCError::RemoteError(RemoteError::new(self.target, RaftError::Fatal(f))))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let result = bounded(option.hard_ttl(), self.target, async {
            let mut client = self.client()?;
            let reply = client.vote(self.message(&rpc)).await;
            self.reply::<VoteResponse<NodeId>>("vote reply", reply)
        })
        .await
        .map_err(rpc_error)?;
        result.map_err(|f| RPCError::RemoteError(RemoteError::new(self.target, RaftError::Fatal(f))))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: openraft::raft::InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        openraft::raft::InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // Grove sends snapshots whole, as a stream (see `full_snapshot`); openraft never calls
        // this chunk-by-chunk variant when `generic-snapshot-data` is enabled.
        Err(RPCError::Network(NetworkError::new(&AnyError::error("chunked install_snapshot is not used by grove-raft"))))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let data = snapshot.snapshot.into_inner();
        let header = SnapshotHeader {
            vote: codec::encode(&vote),
            meta: codec::encode(&snapshot.meta),
            size: data.len() as u64,
            sha256: Sha256::digest(&data).to_vec(),
        };
        let (group, from) = (self.group.clone(), self.from);
        let mut chunks = vec![SnapshotChunk { group: group.clone(), from, header: Some(header), data: Vec::new() }];
        chunks.extend(data.chunks(SNAPSHOT_CHUNK).map(|c| SnapshotChunk { group: group.clone(), from, header: None, data: c.to_vec() }));

        let target = self.target;
        // Large snapshots get a deadline that grows with their size (at least 1 MiB/s).
        let ttl = option.hard_ttl().max(Duration::from_secs(10)) + Duration::from_secs(data.len() as u64 >> 20);
        let send = bounded(ttl, target, async {
            let mut client = self.client()?;
            let reply = client.install_snapshot(tokio_stream::iter(chunks)).await;
            self.reply::<SnapshotResponse<NodeId>>("snapshot reply", reply)
        });
        let result = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r,
        };
        match result {
            Err(CallError::Unreachable(m)) => Err(StreamingError::Unreachable(Unreachable::new(&AnyError::error(m)))),
            Err(CallError::Network(m)) => Err(StreamingError::Network(NetworkError::new(&AnyError::error(m)))),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(f)) => Err(StreamingError::RemoteError(RemoteError::new(target, f))),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Retry a down peer quickly: elections and catch-up after a restart should not wait
        // half a second per attempt.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::types::Entry;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(Command::One(vec![b'x'; bytes])) }
    }

    #[test]
    fn append_calls_stay_within_the_byte_budget() {
        let small: Vec<Entry> = (1..=100).map(|i| entry(i, 1000)).collect();
        assert_eq!(entries_within_budget(&small), None, "100 KB fit in one call");
        let large: Vec<Entry> = (1..=10).map(|i| entry(i, 300 << 10)).collect();
        assert_eq!(entries_within_budget(&large), Some(3), "three 300 KiB entries fit in 1 MiB, four do not");
        // One entry larger than the budget still goes, alone.
        let huge = vec![entry(1, 2 << 20), entry(2, 10)];
        assert_eq!(entries_within_budget(&huge), Some(1));
        assert_eq!(entries_within_budget(&huge[..1]), Some(1), "a single entry is never split further");
    }
}
