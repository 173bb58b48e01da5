//! Grove's wire contracts, generated from the `.proto` files in `proto/proto/` by tonic and prost.
//!
//! - [`raft`]: replication between the replicas of one Raft group (append entries, vote, snapshot
//!   stream) and the calls any replica accepts for clients: writes and read indexes answered by
//!   the leader, membership changes, operator status.
//! - [`etcd`]: the subset of etcd's KV API that the store benchmark drives.

/// `grove.raft.v1`: Raft replication and leader forwarding.
pub mod raft {
    tonic::include_proto!("grove.raft.v1");
}

/// `etcdserverpb`: the part of etcd's KV API that the store benchmark drives, so Grove and etcd
/// run the same workload over the same kind of client.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}
