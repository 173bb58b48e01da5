//! grove-raft: the replication layer under Grove's root and cluster orchestrators.
//!
//! A [`Replica`] replicates an application [`StateMachine`] with openraft on RocksDB:
//!
//! - `store`: the RocksDB log and vote storage (fsync before acknowledging, group commit) and
//!   the stored snapshot;
//! - `state_machine`: openraft's state-machine storage around the application, snapshots;
//! - `network` / `service`: the gRPC transport of `grove-proto` (client and server), with
//!   fault injection ([`NetworkFaults`]);
//! - `failover`: a follower campaigns as soon as the lease allows when its leader's address
//!   refuses connections (a dead process), instead of waiting out a second timeout;
//! - `batch`: group commit: the leader proposes concurrent writes as one log entry;
//! - `replica`: start-up and bootstrap, writes and linearizable reads on any replica (forwarded
//!   to the leader), membership changes, status;
//! - [`client`]: a client for the group's gRPC API from outside the group;
//! - [`kv`]: a small key-value state machine for tests, the demo and the benchmark.

pub mod app;
mod batch;
pub mod client;
pub mod config;
pub mod error;
mod failover;
pub mod kv;
mod network;
mod replica;
mod service;
mod state_machine;
mod store;
pub mod types;

pub use app::StateMachine;
pub use config::{parse_peers, ReplicaConfig, SnapshotConfig, Timing};
pub use error::{Error, Result};
pub use network::NetworkFaults;
pub use replica::{Member, Replica, ReplicaStatus, StateDigest};
pub use types::NodeId;

/// Largest gRPC message a replica sends or accepts (a batch of log entries; snapshots stream).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// Storage conformance: openraft's suite runs against these (see `tests/t10_storage.rs`).
#[doc(hidden)]
pub mod testing {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    pub use crate::state_machine::StateMachineStore;
    pub use crate::store::LogStore;
    use crate::store::Db;

    /// The log store and state-machine store of a replica, opened on `dir`, as openraft's
    /// storage traits see them.
    pub fn open_storage<S: crate::StateMachine>(dir: &std::path::Path) -> crate::Result<(LogStore, StateMachineStore<S>)> {
        let (db, _closed) = Db::open(dir, "conformance", 1)?;
        let log = LogStore::new(db.clone(), Arc::new(AtomicU64::new(0)));
        let (sm, _) = StateMachineStore::<S>::open(db)?;
        Ok((log, sm))
    }
}
