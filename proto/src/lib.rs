//! Grove's wire contracts, generated from the `.proto` files in `proto/proto/` by tonic and prost.
//!
//! - [`raft`]: replication between the replicas of one Raft group (append entries, vote, snapshot
//!   stream) and the calls any replica accepts for clients: writes and read indexes answered by
//!   the leader, membership changes, operator status.
//! - [`cluster`]: the root <-> cluster tier contract (registration, reports, dispatch, workers).
//! - [`auth`]: the cluster token both directions of that contract carry.
//! - [`etcd`]: the subset of etcd's KV API that the store benchmark drives.

pub mod auth;

/// `grove.raft.v1`: Raft replication and leader forwarding.
pub mod raft {
    tonic::include_proto!("grove.raft.v1");
}

/// `grove.cluster.v1`: root <-> cluster tier (registration, report stream, deploy/undeploy).
pub mod cluster {
    tonic::include_proto!("grove.cluster.v1");
}

/// `etcdserverpb`: the part of etcd's KV API that the store benchmark drives, so Grove and etcd
/// run the same workload over the same kind of client.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn cluster_messages_round_trip() {
        let report = super::cluster::ClusterReport {
            cluster_id: "c1".into(),
            aggregate: Some(super::cluster::Aggregate { vcpus: 4, memory_mb: 2048, ..Default::default() }),
            instances: vec![super::cluster::InstanceStatus { job_id: "j".into(), instance_number: 3, status: "RUNNING".into(), ..Default::default() }],
            full: true,
            sequence: 7,
        };
        let back = super::cluster::ClusterReport::decode(report.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, report);
    }
}
