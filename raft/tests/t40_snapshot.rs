//! A replica that was down while the log moved past it catches up through a snapshot.

mod common;

use std::time::Duration;

use common::{put, wait_for, TestGroup};
use grove_raft::SnapshotConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_catches_up_through_a_snapshot() {
    // Snapshot every 50 entries and keep no log behind it, so a lagging replica cannot be
    // served from the log.
    let mut group = TestGroup::start_with(3, SnapshotConfig { every_entries: 50, keep_entries: 0 }).await;
    let leader = group.leader().await;
    let lagging = group.followers(leader)[0];
    group.replica(leader).write(put("first", "1")).await.unwrap();
    group.stop(lagging).await;

    for i in 0..300 {
        let id = *group.replicas.keys().nth(i % 2).unwrap();
        group.replica(id).write(put(format!("k{i}"), format!("v{i}"))).await.expect("write while a replica is down");
    }
    let leader = group.leader().await;
    let purged = wait_for("the leader to purge its log behind a snapshot", Duration::from_secs(10), || async {
        let s = group.replica(leader).status();
        s.purged_index.filter(|p| *p > 100)
    })
    .await;

    group.restart(lagging).await;
    group.converged().await;
    let status = group.replica(lagging).status();
    assert!(
        status.snapshot_index.is_some_and(|s| s >= purged),
        "replica {lagging} should have installed a snapshot at or after index {purged}: {status:?}"
    );
    let data = group.replica(lagging).read_local(|kv| kv.data.clone());
    assert_eq!(data.len(), 301);
    assert_eq!(data.get("first").map(String::as_str), Some("1"));
    assert_eq!(data.get("k299").map(String::as_str), Some("v299"));

    // Every replica, the one rebuilt from a snapshot included, holds the same state: the same
    // digest at the same applied index.
    let digests: Vec<_> = group.replicas.keys().map(|id| group.replica(*id).status_with_digest().state_digest.unwrap()).collect();
    assert!(digests.iter().all(|d| d == &digests[0]), "digests differ after convergence: {digests:?}");
    assert!(digests[0].applied_index >= 301, "{digests:?}");
    group.replica(leader).write(put("first", "changed")).await.unwrap();
    let after = group.replica(leader).status_with_digest().state_digest.unwrap();
    assert_ne!(after.hash, digests[0].hash, "a changed state must change the digest");

    // The caught-up replica serves linearizable reads and forwards writes like any other.
    group.replica(lagging).write(put("after", "catch-up")).await.unwrap();
    let v = group.replica(lagging).read_linearizable(|kv| kv.get("after").cloned()).await.unwrap();
    assert_eq!(v.as_deref(), Some("catch-up"));
    group.shutdown().await;
}
