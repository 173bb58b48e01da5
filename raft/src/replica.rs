//! One running replica of a Raft group: storage, Raft core, gRPC server, and the client API
//! (writes and linearizable reads on any replica, membership changes, status).
//!
//! Routing protocol for calls only the leader answers (writes, read indexes, membership):
//! 1. Look at the local metrics. No leader known: wait for one until the deadline, then
//!    `Unavailable`.
//! 2. This replica leads: refuse at once (`Unavailable`) if no quorum acknowledged it within one
//!    maximum election timeout, else hand the call to openraft, bounded by the deadline.
//! 3. Another replica leads: forward once over gRPC with `from` = our id. The leader answers or
//!    redirects (it never forwards again); an unreachable leader is retried until the deadline.
//!
//! A linearizable read on any replica obtains the leader's read index (leadership confirmed by
//! a quorum), waits until the local state machine has applied that index, then reads locally.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_proto::raft::forward_reply::Result as Reply;
use grove_proto::raft::forward_request::Op;
use grove_proto::raft::{failure, Failure, ForwardRequest, Learner, ReadIndex, Redirect, Voters, Written};
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::app::{decode_json, encode_json, StateMachine};
use crate::batch::{Outcome, WriteBatcher};
use crate::config::{ReplicaConfig, Timing};
use crate::failover::LeaderContact;
use crate::network::{NetworkFactory, NetworkFaults, Peers};
use crate::state_machine::{Shared, StateMachineStore};
use crate::store::{Db, LogStore};
use crate::types::{Applied, NodeId, Raft};
use crate::{Error, Result};

/// A running replica. Cheap to clone; every clone talks to the same replica.
pub struct Replica<S: StateMachine> {
    inner: Arc<Inner<S>>,
}

impl<S: StateMachine> Clone for Replica<S> {
    fn clone(&self) -> Self {
        Replica { inner: self.inner.clone() }
    }
}

pub(crate) struct Inner<S> {
    pub group: String,
    pub id: NodeId,
    pub addr: String,
    pub raft: Raft,
    pub state: Shared<S>,
    pub faults: Arc<NetworkFaults>,
    peers: Peers,
    committed: Arc<AtomicU64>,
    timing: Timing,
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    db_closed: Mutex<Option<crate::store::Closed>>,
    reads: ReadIndexBatch,
    /// The leader's group commit of client writes.
    writes: WriteBatcher,
    /// When this replica last heard from a leader, for [`crate::failover`].
    pub contact: Arc<LeaderContact>,
    /// The failover watch and the heartbeat ticker.
    failover: Mutex<Vec<JoinHandle<()>>>,
    /// Where the Raft core, its replication, its gRPC server and the failover watch run. Last:
    /// dropped after everything above.
    pub runtime: RaftRuntime,
}

/// The Raft side of a replica runs on its own threads, apart from the application's request
/// work: heartbeats and votes must not queue behind hundreds of API tasks in one scheduler
/// (under load that made followers miss heartbeats and depose a healthy leader). The operating
/// system shares the cores between the two runtimes' threads fairly.
pub(crate) struct RaftRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

/// Threads of a replica's own Raft runtime (`GROVE_RAFT_THREADS`). The default, 0, runs the
/// Raft side on the caller's runtime: on the two-core machine of `docs/benchmarks.md` a
/// separate runtime measured slower (more threads and cross-thread wake-ups per write), so it is
/// an option for machines with cores to spare.
fn raft_threads() -> usize {
    std::env::var("GROVE_RAFT_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl RaftRuntime {
    fn start(group: &str, id: NodeId) -> Result<RaftRuntime> {
        let threads = raft_threads();
        if threads == 0 {
            return Ok(RaftRuntime { runtime: None, handle: tokio::runtime::Handle::current() });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(format!("raft-{group}-{id}"))
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the raft runtime's threads: {e}")))?;
        Ok(RaftRuntime { handle: runtime.handle().clone(), runtime: Some(runtime) })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        // Possibly inside an async context (even one of its own threads): never block here.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Shares one leadership confirmation among concurrent read-index requests on the leader.
///
/// Every confirmation (openraft's `get_read_log_id`) is a heartbeat round to a quorum; one per
/// request makes concurrent reads queue behind each other's rounds. A request may use a round
/// only if the round *started after the request arrived* (else a write acknowledged between
/// the round's start and the request's arrival could be missed), so requests take a ticket on
/// arrival and a round records the next ticket when it starts: at most two rounds serve any
/// burst of concurrent reads.
#[derive(Default)]
struct ReadIndexBatch {
    tickets: AtomicU64,
    /// Held while a round runs; holds the last round's first excluded ticket and answer.
    last: tokio::sync::Mutex<Option<(u64, Reply)>>,
}

/// Where a leader-only call goes.
enum Route {
    Here,
    /// This replica leads, but has not heard from a quorum lately.
    HereUnconfirmed,
    Peer { id: NodeId, addr: String },
}

impl<S: StateMachine> Replica<S> {
    /// Open the data directory, bind `config.listen`, start Raft and serve its gRPC.
    pub async fn start(config: ReplicaConfig) -> Result<Replica<S>> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Network(format!("cannot bind the raft listener {}: {e}", config.listen)))?;
        Self::start_with_listener(config, listener).await
    }

    /// Like [`Replica::start`], on a listener the caller already bound (tests bind port 0 first
    /// to learn every replica's address).
    pub async fn start_with_listener(mut config: ReplicaConfig, listener: tokio::net::TcpListener) -> Result<Replica<S>> {
        config.validate()?;
        let local: SocketAddr = listener.local_addr().map_err(|e| Error::Network(e.to_string()))?;
        config.listen = local;
        let raft_config = Arc::new(config.openraft_config()?);

        let (db, db_closed) = Db::open(&config.data_dir, &config.group, config.id)?;
        let committed = Arc::new(AtomicU64::new(0));
        let log_store = LogStore::new(db.clone(), committed.clone());
        let (sm_store, state) = StateMachineStore::<S>::open(db)?;

        let faults = Arc::new(NetworkFaults::default());
        let connect_timeout = Duration::from_millis(config.timing.election_timeout_min_ms.max(200));
        // Raft's own traffic and client forwarding use separate channels: a channel's
        // connection is driven by the runtime that first used it.
        let network = NetworkFactory {
            group: config.group.clone(),
            id: config.id,
            peers: Peers::new(connect_timeout),
            faults: faults.clone(),
        };
        let runtime = RaftRuntime::start(&config.group, config.id)?;
        let storage_err = |reason: String| Error::Storage { dir: config.data_dir.display().to_string(), reason };
        let raft = runtime
            .handle()
            .spawn(Raft::new(config.id, raft_config, network, log_store, sm_store))
            .await
            .map_err(|e| storage_err(format!("the raft core did not start: {e}")))?
            .map_err(|e| storage_err(e.to_string()))?;

        let inner = Arc::new(Inner {
            group: config.group.clone(),
            id: config.id,
            addr: config.advertised(),
            raft: raft.clone(),
            state,
            faults,
            peers: Peers::new(connect_timeout),
            committed,
            timing: config.timing.clone(),
            server: Mutex::new(None),
            db_closed: Mutex::new(Some(db_closed)),
            reads: ReadIndexBatch::default(),
            writes: WriteBatcher::start(raft.clone(), config.timing.request_timeout()),
            contact: Arc::new(LeaderContact::default()),
            failover: Mutex::new(Vec::new()),
            runtime,
        });
        let watch = crate::failover::Watch {
            id: config.id,
            group: config.group.clone(),
            raft: raft.clone(),
            contact: inner.contact.clone(),
            timing: config.timing.clone(),
            peers: Peers::new(connect_timeout),
            faults: inner.faults.clone(),
        }
        .run();
        let heartbeats = crate::failover::heartbeats(raft.clone(), config.timing.clone());
        let runtime = inner.runtime.handle();
        *inner.failover.lock().expect("failover lock") = vec![runtime.spawn(watch), runtime.spawn(heartbeats)];

        let (stop_tx, stop_rx) = oneshot::channel();
        let server = crate::service::serve(inner.clone(), listener, stop_rx)?;
        *inner.server.lock().expect("server lock") = Some((stop_tx, server));
        tracing::info!(group = %config.group, id = config.id, addr = %inner.addr, "raft replica started");

        let replica = Replica { inner };
        replica.bootstrap(&config).await?;
        Ok(replica)
    }

    /// On first start, the lowest-id member of the initial peer list initialises the group.
    async fn bootstrap(&self, config: &ReplicaConfig) -> Result<()> {
        let raft = &self.inner.raft;
        let initialized = raft.is_initialized().await.map_err(|_| self.inner.stopped())?;
        let lowest = config.peers.keys().next().copied();
        if initialized || lowest != Some(config.id) {
            return Ok(());
        }
        let members = config.peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr.clone()))).collect::<std::collections::BTreeMap<_, _>>();
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(group = %config.group, id = config.id, peers = ?config.peers, "initialised the raft group");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Config(format!("peers: cannot initialise the group: {e}"))),
        }
    }

    /// Commit `command` through Raft and return the state machine's response. Works on any
    /// replica: a follower forwards to the leader. Bounded by `timing.request_timeout_ms`.
    pub async fn write(&self, command: S::Command) -> Result<S::Response> {
        let bytes = encode_json("encode the command", &command)?;
        let response = self.inner.write_bytes(bytes).await?;
        decode_json("decode the response", &response)
    }

    /// Commit an already encoded command (JSON of `S::Command`); returns the encoded response.
    /// Bytes that do not decode are rejected by the state machine on every replica alike.
    pub async fn write_encoded(&self, command: Vec<u8>) -> Result<Vec<u8>> {
        self.inner.write_bytes(command).await
    }

    /// [`Self::write`], then `read` on this replica's state as soon as it has applied the write:
    /// the read sees the write and everything acknowledged before it (linearizable), with no
    /// separate read-index round. For answers that show the result of a change.
    pub async fn write_then_read<T>(&self, command: S::Command, read: impl FnOnce(&S) -> T) -> Result<(S::Response, T)> {
        let bytes = encode_json("encode the command", &command)?;
        let (response, answer) = self.inner.write_then_read(bytes, read).await?;
        Ok((decode_json("decode the response", &response)?, answer))
    }

    /// Run `read` on state that reflects every write committed before this call began
    /// (linearizable), on any replica. Bounded by `timing.request_timeout_ms`.
    pub async fn read_linearizable<T>(&self, read: impl FnOnce(&S) -> T) -> Result<T> {
        self.inner.read_linearizable(read).await
    }

    /// Run `read` on this replica's current state, which may lag the leader. For soft or
    /// operator views only; use [`Replica::read_linearizable`] for answers to clients.
    pub fn read_local<T>(&self, read: impl FnOnce(&S) -> T) -> T {
        read(&self.inner.state.read().expect("state lock").app)
    }

    /// Add a replica as a learner; it receives the log (or a snapshot) but does not vote.
    /// Returns once it has caught up with the leader.
    pub async fn add_learner(&self, id: NodeId, addr: impl Into<String>) -> Result<()> {
        let deadline = self.inner.deadline() + Duration::from_secs(30);
        self.inner.route_leader_op(Op::AddLearner(Learner { id, addr: addr.into() }), deadline).await.map(|_| ())
    }

    /// Make `voters` the voting members (promoting learners, demoting or removing others;
    /// removed replicas are dropped from the group).
    pub async fn set_voters(&self, voters: impl IntoIterator<Item = NodeId>) -> Result<()> {
        let ids = voters.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        let deadline = self.inner.deadline() + Duration::from_secs(10);
        self.inner.route_leader_op(Op::SetVoters(Voters { ids }), deadline).await.map(|_| ())
    }

    /// This replica's view for operators.
    pub fn status(&self) -> ReplicaStatus {
        self.inner.status()
    }

    /// [`Self::status`] with the digest of the applied state.
    pub fn status_with_digest(&self) -> ReplicaStatus {
        self.inner.status_with_digest()
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Is this replica the leader right now (by its own metrics)?
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.id)
    }

    /// Openraft's metrics watch: role, term, leader, log positions. Leader-only loops follow it.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.inner.raft.metrics()
    }

    /// Fault injection on this replica's links (tests and the chaos harness).
    pub fn faults(&self) -> &NetworkFaults {
        &self.inner.faults
    }

    /// Stop the Raft core and the gRPC server and close the database. Other clones of this
    /// replica answer `Stopped` afterwards.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        for task in std::mem::take(&mut *inner.failover.lock().expect("failover lock")) {
            task.abort();
        }
        if let Err(e) = inner.raft.shutdown().await {
            tracing::warn!(group = %inner.group, id = inner.id, "raft core ended with an error: {e}");
        }
        let server = inner.server.lock().expect("server lock").take();
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                tracing::warn!(group = %inner.group, id = inner.id, "gRPC server did not stop within 5 s");
            }
        }
        // The database closes when the last storage handle inside openraft's tasks is dropped;
        // wait for that so a restart in the same process can open it again.
        let closed = inner.db_closed.lock().expect("db lock").take();
        if let Some(closed) = closed {
            let done = tokio::task::spawn_blocking(move || closed.wait(Duration::from_secs(10))).await.unwrap_or(false);
            if !done {
                tracing::warn!(group = %inner.group, id = inner.id, "the database was still open 10 s after shutdown");
            }
        }
        tracing::info!(group = %inner.group, id = inner.id, "raft replica stopped");
    }
}

impl<S: StateMachine> Inner<S> {
    pub(crate) fn request_timeout(&self) -> Duration {
        self.timing.request_timeout()
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timing.request_timeout()
    }

    fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::Unavailable { group: self.group.clone(), reason: reason.into() }
    }

    fn indeterminate(&self, reason: impl Into<String>) -> Error {
        Error::Indeterminate { group: self.group.clone(), reason: reason.into() }
    }

    fn stopped(&self) -> Error {
        Error::Stopped { group: self.group.clone(), id: self.id }
    }

    /// Find the leader, waiting for one until `deadline` (then: unavailable, nothing applied).
    async fn route(&self, deadline: Instant) -> Result<Route> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.running_state.is_err() {
                    return Err(self.stopped());
                }
                match m.current_leader {
                    Some(leader) if leader == self.id => {
                        // A leader cut off from its quorum keeps believing it leads until it
                        // hears a higher term. When the last quorum acknowledgement in our
                        // metrics is old, confirm leadership before taking the call.
                        let limit = self.timing.election_timeout_max_ms;
                        let stale = m.millis_since_quorum_ack.is_some_and(|ms| ms > limit)
                            && m.membership_config.membership().voter_ids().count() > 1;
                        return Ok(if stale { Route::HereUnconfirmed } else { Route::Here });
                    }
                    Some(leader) => {
                        if let Some(node) = m.membership_config.membership().get_node(&leader) {
                            return Ok(Route::Peer { id: leader, addr: node.addr.clone() });
                        }
                    }
                    None => {}
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(self.stopped()),
                Err(_) => return Err(self.unavailable(format!("no leader known to replica {} in time (no quorum?)", self.id))),
            }
        }
    }

    pub(crate) async fn write_bytes(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        self.write_bytes_at(bytes).await.map(|(response, _)| response)
    }

    /// Commit an encoded command; its encoded response and the log index it was committed at.
    pub(crate) async fn write_bytes_at(&self, bytes: Vec<u8>) -> Result<(Vec<u8>, u64)> {
        match self.route_leader_op(Op::Write(bytes), self.deadline()).await? {
            Reply::Written(w) => Ok((w.response, w.index)),
            other => Err(self.indeterminate(format!("unexpected reply to a write: {other:?}"))),
        }
    }

    /// Commit `bytes`, then run `read` on this replica's state once it has applied the write:
    /// the read sees the write and everything committed before it (linearizable), with no read
    /// index round to the leader.
    pub(crate) async fn write_then_read<T>(&self, bytes: Vec<u8>, read: impl FnOnce(&S) -> T) -> Result<(Vec<u8>, T)> {
        let (response, index) = self.write_bytes_at(bytes).await?;
        // A fresh bound: the write is committed, only this replica's apply is awaited.
        if let Err(e) = self.wait_applied(index, self.deadline()).await {
            return Err(self.indeterminate(format!("the write was committed at index {index}, but this replica could not apply it to answer: {e}")));
        }
        let answer = read(&self.state.read().expect("state lock").app);
        Ok((response, answer))
    }

    async fn read_index(&self, deadline: Instant) -> Result<u64> {
        match self.route_leader_op(Op::ReadIndex(ReadIndex {}), deadline).await? {
            Reply::ReadIndex(index) => Ok(index),
            other => Err(self.unavailable(format!("unexpected reply to a read index request: {other:?}"))),
        }
    }

    pub(crate) async fn read_linearizable<T>(&self, read: impl FnOnce(&S) -> T) -> Result<T> {
        let deadline = self.deadline();
        let index = self.read_index(deadline).await?;
        self.wait_applied(index, deadline).await?;
        Ok(read(&self.state.read().expect("state lock").app))
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<()> {
        if self.state.read().expect("state lock").last_applied.map_or(0, |l| l.index) >= index {
            return Ok(());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::ShuttingDown => self.stopped(),
                openraft::metrics::WaitError::Timeout(..) => {
                    self.unavailable(format!("replica {} did not apply up to read index {index} in time", self.id))
                }
            })
    }

    /// Run a leader-only operation here or on the leader, until it succeeds, fails for good, or
    /// the deadline passes.
    pub(crate) async fn route_leader_op(&self, op: Op, deadline: Instant) -> Result<Reply> {
        // "Not applied, no quorum" right after an election is usually a leader whose followers
        // have not answered yet: ask again for up to one election timeout before answering it.
        let mut unavailable_since: Option<Instant> = None;
        let patience = Duration::from_millis(self.timing.election_timeout_max_ms);
        // With no reachable leader for longer than a failover takes (the leader's lease plus an
        // election timeout, and half a heartbeat: 850 ms with the default timing), a majority is
        // likely gone: answer "not applied" then instead of holding the caller until its
        // deadline. (A dead leader is replaced after its lease and half a heartbeat, see
        // `failover`; the bound has to stay under the 1 s a caller should wait for a 503.)
        let leaderless = 2 * patience + Duration::from_millis(self.timing.heartbeat_ms / 2);
        let leaderless_by = (Instant::now() + leaderless).min(deadline);
        loop {
            let reply = match self.route(leaderless_by).await? {
                Route::Here => self.on_leader(op.clone(), deadline).await,
                Route::HereUnconfirmed => {
                    self.confirm_leadership(deadline).await?;
                    self.on_leader(op.clone(), deadline).await
                }
                Route::Peer { id, addr } => self.forward(id, &addr, op.clone(), deadline).await,
            };
            match reply {
                Reply::Redirect(_) => {
                    // Leadership moved while we were asking, or the leader we know of cannot be
                    // reached; wait for our own metrics to learn the new leader rather than
                    // trusting the hint blindly.
                    if Instant::now() >= leaderless_by {
                        return Err(self.unavailable(format!(
                            "no reachable leader within {} ms (leadership changing, or a majority of replicas unreachable)",
                            leaderless.as_millis()
                        )));
                    }
                    self.pause(deadline).await;
                }
                Reply::Failure(f) if f.kind == failure::Kind::Unavailable as i32 => {
                    let since = *unavailable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= patience || Instant::now() >= deadline {
                        return Err(self.failure_error(f));
                    }
                    self.pause(deadline).await;
                }
                Reply::Failure(f) => return Err(self.failure_error(f)),
                ok => return Ok(ok),
            }
        }
    }

    /// Confirm with a quorum that this replica still leads, within one maximum election
    /// timeout; a leader cut off from its quorum refuses instead of queueing calls that cannot
    /// commit.
    async fn confirm_leadership(&self, deadline: Instant) -> Result<()> {
        let limit = Duration::from_millis(self.timing.election_timeout_max_ms);
        let by = (Instant::now() + limit).min(deadline);
        match tokio::time::timeout_at(by, self.raft.get_read_log_id()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::Fatal(_))) => Err(self.stopped()),
            Ok(Err(e)) => Err(self.unavailable(format!("leader {} lost its quorum: {e}", self.id))),
            Err(_) => Err(self.unavailable(format!(
                "leader {} could not confirm its leadership with a quorum within {} ms",
                self.id,
                limit.as_millis()
            ))),
        }
    }

    /// Back off briefly before asking again.
    async fn pause(&self, deadline: Instant) {
        let wake = (Instant::now() + Duration::from_millis(self.timing.heartbeat_ms.min(50))).min(deadline);
        tokio::time::sleep_until(wake).await;
    }

    fn failure_error(&self, f: Failure) -> Error {
        Error::from_failure(&self.group, f)
    }

    /// Send `op` to the leader `id` once; connection failures are retried until the deadline.
    async fn forward(&self, id: NodeId, addr: &str, op: Op, deadline: Instant) -> Reply {
        if !self.faults.allows(id) {
            // Like an unreachable leader: wait for the metrics to change, until the deadline.
            if Instant::now() >= deadline {
                return failure(failure::Kind::Unavailable, format!("fault injection: link to leader {id} is cut"));
            }
            self.pause(deadline).await;
            return Reply::Redirect(Redirect { leader_id: 0, leader_addr: String::new() });
        }
        let mut client = match self.peers.client(addr) {
            Ok(c) => c,
            Err(e) => return failure(failure::Kind::Unavailable, e),
        };
        let request = ForwardRequest { group: self.group.clone(), from: self.id, op: Some(op.clone()) };
        let is_write = matches!(op, Op::Write(_) | Op::SetVoters(_) | Op::AddLearner(_));
        match tokio::time::timeout_at(deadline, client.forward(request)).await {
            Err(_) if is_write => {
                return failure(failure::Kind::Indeterminate, format!("leader {id} did not answer within the request timeout"))
            }
            Err(_) => return failure(failure::Kind::Unavailable, format!("leader {id} did not answer within the request timeout")),
            Ok(Ok(reply)) => match reply.into_inner().result {
                Some(result) => return result,
                None => return failure(failure::Kind::Indeterminate, format!("leader {id} sent an empty reply")),
            },
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                // Not delivered: the leader is down or unreachable. Let the metrics catch up.
                if Instant::now() >= deadline {
                    return failure(failure::Kind::Unavailable, format!("leader {id} at {addr} is unreachable: {}", status.message()));
                }
                self.pause(deadline).await;
                return Reply::Redirect(Redirect { leader_id: 0, leader_addr: String::new() });
            }
            Ok(Err(status)) if is_write => {
                return failure(failure::Kind::Indeterminate, format!("leader {id}: {}: {}", status.code(), status.message()))
            }
            Ok(Err(status)) => {
                return failure(failure::Kind::Unavailable, format!("leader {id}: {}: {}", status.code(), status.message()))
            }
        }
    }

    /// One heartbeat round confirming leadership: the read index, or why there is none.
    async fn confirm_read_index(&self, deadline: Instant) -> Reply {
        match tokio::time::timeout_at(deadline, self.raft.get_read_log_id()).await {
            Err(_) => failure(failure::Kind::Unavailable, "leadership not confirmed by a quorum within the request timeout"),
            Ok(Ok((read, _applied))) => Reply::ReadIndex(read.map_or(0, |l| l.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => self.redirect(f.leader_id),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                failure(failure::Kind::Unavailable, e.to_string())
            }
            Ok(Err(RaftError::Fatal(e))) => self.fatal_reply(e, false),
        }
    }

    /// Commit one write as leader (through the group commit).
    async fn leader_write(&self, bytes: Vec<u8>, deadline: Instant) -> Reply {
        match self.writes.write(bytes, deadline).await {
            Outcome::TimedOut => failure(failure::Kind::Indeterminate, "not committed within the request timeout (no quorum?)"),
            Outcome::Committed { applied: Applied::Ok(bytes), index } => Reply::Written(Written { response: bytes, index }),
            Outcome::Committed { applied: Applied::Rejected(m), .. } => failure(failure::Kind::Rejected, m),
            Outcome::Committed { applied: Applied::Batch(_), .. } => {
                failure(failure::Kind::Indeterminate, "the state machine answered a single write with a batch")
            }
            Outcome::Failed(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => self.redirect(f.leader_id),
            Outcome::Failed(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                failure(failure::Kind::Rejected, e.to_string())
            }
            Outcome::Failed(RaftError::Fatal(e)) => self.fatal_reply(e, true),
        }
    }

    /// Execute `op` on this replica as leader. Answers a redirect when leadership has moved.
    pub(crate) async fn on_leader(&self, op: Op, deadline: Instant) -> Reply {
        match op {
            Op::Write(bytes) => self.leader_write(bytes, deadline).await,
            Op::ReadIndex(_) => {
                let ticket = self.reads.tickets.fetch_add(1, Ordering::SeqCst);
                let Ok(mut last) = tokio::time::timeout_at(deadline, self.reads.last.lock()).await else {
                    return failure(failure::Kind::Unavailable, "leadership not confirmed by a quorum within the request timeout");
                };
                if let Some((start, reply)) = last.as_ref() {
                    if ticket < *start {
                        return reply.clone();
                    }
                }
                let start = self.reads.tickets.load(Ordering::SeqCst);
                let reply = self.confirm_read_index(deadline).await;
                *last = Some((start, reply.clone()));
                reply
            }
            Op::AddLearner(Learner { id, addr }) => {
                match tokio::time::timeout_at(deadline, self.raft.add_learner(id, BasicNode::new(addr), true)).await {
                    Err(_) => failure(failure::Kind::Indeterminate, format!("learner {id} not added within the deadline")),
                    Ok(Ok(_)) => Reply::Done(grove_proto::raft::Done {}),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => self.redirect(f.leader_id),
                    Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                        failure(failure::Kind::Rejected, e.to_string())
                    }
                    Ok(Err(RaftError::Fatal(e))) => self.fatal_reply(e, true),
                }
            }
            Op::SetVoters(Voters { ids }) => {
                let ids: BTreeSet<NodeId> = ids.into_iter().collect();
                if ids.is_empty() {
                    return failure(failure::Kind::Rejected, "set_voters: the voter set cannot be empty");
                }
                match tokio::time::timeout_at(deadline, self.raft.change_membership(ids, false)).await {
                    Err(_) => failure(failure::Kind::Indeterminate, "membership change not committed within the deadline"),
                    Ok(Ok(_)) => Reply::Done(grove_proto::raft::Done {}),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => self.redirect(f.leader_id),
                    Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                        failure(failure::Kind::Rejected, e.to_string())
                    }
                    Ok(Err(RaftError::Fatal(e))) => self.fatal_reply(e, true),
                }
            }
        }
    }

    /// A fatal error from openraft: either the core stopped, or (while it still runs) a leader
    /// stepped down and dropped the pending response, in which case a write's fate is unknown.
    fn fatal_reply(&self, e: openraft::error::Fatal<NodeId>, write: bool) -> Reply {
        let running = self.raft.metrics().borrow().running_state.is_ok();
        match (running, write) {
            (false, _) => failure(failure::Kind::Stopped, format!("replica {} has stopped: {e}", self.id)),
            (true, true) => failure(failure::Kind::Indeterminate, format!("leader {} stepped down before answering", self.id)),
            (true, false) => self.redirect(None),
        }
    }

    pub(crate) fn redirect(&self, leader: Option<NodeId>) -> Reply {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader_id = leader.or(m.current_leader).filter(|l| *l != self.id).unwrap_or(0);
        let leader_addr = m.membership_config.membership().get_node(&leader_id).map(|n| n.addr.clone()).unwrap_or_default();
        Reply::Redirect(Redirect { leader_id, leader_addr })
    }

    pub(crate) fn status(&self) -> ReplicaStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member { id: *id, addr: node.addr.clone(), voter: voters.contains(id) })
            .collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "stopped",
        };
        let leader_addr = m.current_leader.and_then(|l| membership.get_node(&l)).map(|n| n.addr.clone());
        let applied = m.last_applied.map_or(0, |l| l.index);
        ReplicaStatus {
            group: self.group.clone(),
            id: self.id,
            addr: self.addr.clone(),
            role: role.to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            leader_addr,
            last_log_index: m.last_log_index.unwrap_or(0),
            // A replica's applied index never exceeds what it knows to be committed.
            commit_index: self.committed.load(Ordering::Relaxed).max(applied),
            applied_index: applied,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            fast_campaigns: self.contact.fast_campaigns(),
            millis_since_leader_contact: self.contact.millis_since(),
            state_digest: None,
        }
    }

    /// The status with a digest of the applied state: the applied index and a hash of the
    /// state's snapshot encoding, read under one lock so the two belong together. Replicas at
    /// the same applied index must have the same digest.
    pub(crate) fn status_with_digest(&self) -> ReplicaStatus {
        let mut status = self.status();
        let state = self.state.read().expect("state lock");
        let index = state.last_applied.map_or(0, |l| l.index);
        status.state_digest = Some(match state.app.snapshot() {
            Ok(bytes) => StateDigest { applied_index: index, hash: format!("{:016x}", fnv1a(&bytes)) },
            Err(e) => StateDigest { applied_index: index, hash: format!("unavailable: {e}") },
        });
        status
    }
}

/// FNV-1a, 64 bits: stable across builds and processes (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn failure(kind: failure::Kind, message: impl Into<String>) -> Reply {
    Reply::Failure(Failure { kind: kind as i32, message: message.into() })
}

/// One replica's view, for operators and the `status` commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub group: String,
    pub id: NodeId,
    pub addr: String,
    /// `leader`, `follower`, `candidate`, `learner` or `stopped`.
    pub role: String,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub members: Vec<Member>,
    /// On the leader: how long since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// Elections this replica started early because its leader's address refused connections
    /// (see the `failover` module), since it started.
    #[serde(default)]
    pub fast_campaigns: u64,
    /// On a follower: how long since it last accepted entries or a heartbeat from a leader.
    #[serde(default)]
    pub millis_since_leader_contact: Option<u64>,
    /// Asked for with the status (`StatusRequest.digest`): the applied state's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_digest: Option<StateDigest>,
}

/// A hash of a replica's applied state at an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    pub applied_index: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
}
