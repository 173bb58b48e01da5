//! Malformed and truncated RPCs, snapshots that do not decode, a data directory of another
//! group, a corrupt log: each gets an error that names the problem, and nothing crashes.

mod common;

use common::{put, TestGroup, GROUP};
use grove_proto::raft::raft_client::RaftClient;
use grove_proto::raft::{ForwardRequest, RaftMessage, SnapshotChunk, SnapshotHeader};
use grove_raft::kv::KvStore;
use grove_raft::{Error, Replica};
use sha2::{Digest, Sha256};

async fn raw_client(group: &TestGroup, id: u64) -> RaftClient<tonic::transport::Channel> {
    RaftClient::connect(format!("http://{}", group.replica(id).addr())).await.expect("connect")
}

fn message(payload: Vec<u8>) -> RaftMessage {
    RaftMessage { group: GROUP.into(), from: 0, payload }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rpcs_are_rejected_with_a_named_error() {
    let group = TestGroup::start(3).await;
    let leader = group.leader().await;
    let target = group.followers(leader)[0];
    let mut client = raw_client(&group, target).await;

    let err = client.append_entries(message(b"\xff\xff garbage".to_vec())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("malformed append-entries request"), "{}", err.message());

    // A valid vote request, truncated.
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1, 1), None);
    let mut bytes = bincode::serialize(&vote).unwrap();
    bytes.truncate(bytes.len() / 2);
    let err = client.vote(message(bytes)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("malformed vote request"), "{}", err.message());

    // A length prefix claiming gigabytes does not make the replica allocate them.
    let err = client.append_entries(message(vec![0xff; 64])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Traffic for another group.
    let err = client.vote(RaftMessage { group: "someone-else".into(), from: 2, payload: vec![] }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("someone-else"), "{}", err.message());

    // A forward request with no operation.
    let err = client.forward(ForwardRequest { group: GROUP.into(), from: 0, op: None }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A write whose command is not a key-value command is rejected by the state machine, the
    // same way on every replica, and the group goes on.
    let err = group.replica(target).write_encoded(b"{\"op\":\"explode\"}".to_vec()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected(ref m) if m.contains("does not decode")), "{err}");
    group.replica(target).write(put("still", "works")).await.expect("group still works");
    group.shutdown().await;
}

fn snapshot_stream(header: SnapshotHeader, data: Vec<u8>) -> Vec<SnapshotChunk> {
    vec![
        SnapshotChunk { group: GROUP.into(), from: 0, header: Some(header), data: Vec::new() },
        SnapshotChunk { group: GROUP.into(), from: 0, header: None, data },
    ]
}

fn header_for(data: &[u8], size: u64) -> SnapshotHeader {
    let vote = openraft::Vote::<u64>::new_committed(99, 1);
    let meta = openraft::SnapshotMeta::<u64, openraft::BasicNode> {
        last_log_id: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(99, 1), 1_000_000)),
        last_membership: Default::default(),
        snapshot_id: "forged".into(),
    };
    SnapshotHeader {
        vote: bincode::serialize(&vote).unwrap(),
        meta: bincode::serialize(&meta).unwrap(),
        size,
        sha256: Sha256::digest(data).to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snapshots_are_refused_before_install() {
    let group = TestGroup::start(3).await;
    let leader = group.leader().await;
    let target = group.followers(leader)[0];
    group.replica(leader).write(put("kept", "1")).await.unwrap();
    let mut client = raw_client(&group, target).await;

    // Data that is not a key-value snapshot, with a correct checksum.
    let data = b"this is not a snapshot".to_vec();
    let err = client.install_snapshot(tokio_stream::iter(snapshot_stream(header_for(&data, data.len() as u64), data.clone()))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("forged does not decode"), "{}", err.message());

    // A checksum mismatch.
    let good = serde_json::to_vec(&KvStore::default()).unwrap();
    let mut header = header_for(&good, good.len() as u64);
    header.sha256[0] ^= 1;
    let err = client.install_snapshot(tokio_stream::iter(snapshot_stream(header, good.clone()))).await.unwrap_err();
    assert!(err.message().contains("SHA-256"), "{}", err.message());

    // Truncated: fewer bytes than declared.
    let err = client
        .install_snapshot(tokio_stream::iter(snapshot_stream(header_for(&good, good.len() as u64 + 10), good.clone())))
        .await
        .unwrap_err();
    assert!(err.message().contains("truncated"), "{}", err.message());

    // No header at all.
    let chunks = vec![SnapshotChunk { group: GROUP.into(), from: 0, header: None, data: good }];
    let err = client.install_snapshot(tokio_stream::iter(chunks)).await.unwrap_err();
    assert!(err.message().contains("no header"), "{}", err.message());

    // Nothing was installed: the replica still has its data and follows the leader.
    group.replica(leader).write(put("after", "2")).await.unwrap();
    group.converged().await;
    let data = group.replica(target).read_local(|kv| kv.data.clone());
    assert_eq!(data.get("kept").map(String::as_str), Some("1"));
    assert_eq!(data.get("after").map(String::as_str), Some("2"));
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_dir_and_corrupt_log_refuse_to_start() {
    let mut group = TestGroup::start(3).await;
    let leader = group.leader().await;
    for i in 0..5 {
        group.replica(leader).write(put(format!("k{i}"), "v")).await.unwrap();
    }
    group.converged().await;
    let victim = group.followers(leader)[0];
    group.stop(victim).await;

    // The same directory under another group name, or another node id.
    let mut other_group = group.configs[&victim].clone();
    other_group.group = "another-group".into();
    other_group.listen = "127.0.0.1:0".parse().unwrap();
    let err = Replica::<KvStore>::start(other_group).await.err().expect("foreign group must not start");
    assert!(matches!(err, Error::ForeignDataDir { .. }), "{err}");
    assert!(err.to_string().contains("another-group") && err.to_string().contains(GROUP), "{err}");
    let mut other_id = group.configs[&victim].clone();
    other_id.id = 7;
    other_id.listen = "127.0.0.1:0".parse().unwrap();
    let err = Replica::<KvStore>::start(other_id).await.err().expect("foreign node id must not start");
    assert!(err.to_string().contains("node 7"), "{err}");

    // Corrupt the last log entry on disk.
    {
        let dir = group.data_dir(victim);
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &dir, ["log", "meta"]).expect("open victim db");
        let log = db.cf_handle("log").unwrap();
        let (last_key, _) = db.iterator_cf(log, rocksdb::IteratorMode::End).next().unwrap().unwrap();
        db.put_cf(log, &last_key, b"\x01\x02corrupt").unwrap();
    }
    let mut config = group.configs[&victim].clone();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let err = Replica::<KvStore>::start(config).await.err().expect("a corrupt log must not start");
    assert!(matches!(err, Error::Storage { .. }), "{err}");
    assert!(err.to_string().contains("log entry"), "{err}");

    // The other two keep serving.
    group.replica(leader).write(put("survivors", "ok")).await.unwrap();
    group.shutdown().await;
}
