//! Grove's wire contracts, generated from the `.proto` files in `proto/proto/` by tonic and prost.
//!
//! - [`raft`]: replication between the replicas of one Raft group (append entries, vote, snapshot
//!   stream) and the calls any replica accepts for clients: writes and read indexes answered by
//!   the leader, membership changes, operator status.
//! - [`cluster`]: the root <-> cluster tier contract (registration, reports, dispatch, workers).
//! - [`auth`]: the cluster token both directions of that contract carry.
//! - [`etcd`]: the subset of etcd's KV API that the store benchmark drives.

pub mod auth;

/// The connections a gRPC server accepts on `listener`, with `TCP_NODELAY` set on each.
///
/// `Server::tcp_nodelay` only applies to servers that bind their own address; with
/// `serve_with_incoming` the accepted sockets keep Nagle's algorithm, and a reply written in
/// more than one segment (HTTP/2 headers, data, trailers) then waits for the peer's delayed
/// acknowledgement: up to 40 ms on Linux, which showed as a 40 ms p99 for single writes.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

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
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = super::incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.expect("one connection").expect("accepted");
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is set on the accepted socket");
    }

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
