//! Stop every replica and start them again from their data directories.

mod common;

use common::{put, TestGroup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_every_acknowledged_write() {
    let mut group = TestGroup::start(3).await;
    group.leader().await;
    for i in 0..50 {
        group.replica(1 + i % 3).write(put(format!("k{i}"), format!("v{i}"))).await.expect("write");
    }
    for id in [1, 2, 3] {
        group.stop(id).await;
    }
    for id in [3, 2, 1] {
        group.restart(id).await;
    }
    // (A replica that led with a committed vote may lead again in the same term.)
    group.leader().await;
    for id in [1, 2, 3] {
        let values = group
            .replica(id)
            .read_linearizable(|kv| (0..50).map(|i| kv.get(&format!("k{i}")).cloned()).collect::<Vec<_>>())
            .await
            .expect("read after restart");
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v.as_deref(), Some(format!("v{i}").as_str()), "replica {id} key k{i}");
        }
    }
    // And the group still takes writes.
    group.replica(2).write(put("after", "restart")).await.expect("write after restart");
    group.shutdown().await;
}
