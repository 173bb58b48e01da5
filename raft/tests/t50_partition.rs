//! A replica cut off from the others refuses writes and linearizable reads within a bounded
//! time, the majority keeps serving, and the replica rejoins cleanly after the partition heals.

mod common;

use std::time::Duration;

use common::{put, TestGroup};
use grove_raft::Error;
use tokio::time::Instant;

/// Cut `id` off from every other replica, in both directions.
fn isolate(group: &TestGroup, id: u64) {
    group.replica(id).faults().isolate();
    for (other, r) in &group.replicas {
        if *other != id {
            r.faults().block(id);
        }
    }
}

fn heal(group: &TestGroup) {
    for r in group.replicas.values() {
        r.faults().heal();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_refuses_and_majority_moves_on() {
    let group = TestGroup::start(3).await;
    let old_leader = group.leader().await;
    group.replica(old_leader).write(put("before", "1")).await.unwrap();

    isolate(&group, old_leader);
    // The majority elects a new leader and keeps taking writes, through either survivor.
    let survivors = group.followers(old_leader);
    for (i, id) in survivors.iter().enumerate() {
        // A write that lands before the election is refused as not applied; a client retries.
        let mut attempt = 0;
        while let Err(e) = group.replica(*id).write(put(format!("majority/{i}"), "ok")).await {
            attempt += 1;
            assert!(matches!(e, Error::Unavailable { .. }) && attempt < 5, "majority write: {e}");
        }
    }

    // The isolated old leader refuses writes and linearizable reads, within the request timeout.
    let bound = Duration::from_millis(group.configs[&old_leader].timing.request_timeout_ms + 1000);
    let started = Instant::now();
    let err = group.replica(old_leader).write(put("minority", "x")).await.unwrap_err();
    assert!(started.elapsed() < bound, "refusal took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unavailable { .. } | Error::Indeterminate { .. }), "{err}");
    let started = Instant::now();
    let err = group.replica(old_leader).read_linearizable(|kv| kv.get("before").cloned()).await.unwrap_err();
    assert!(started.elapsed() < bound, "read refusal took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");

    // Heal: the old leader rejoins as a follower, and the write it refused never appears.
    heal(&group);
    let leader = group.leader().await;
    group.replica(leader).write(put("after", "heal")).await.unwrap();
    group.converged().await;
    for id in [1, 2, 3] {
        let data = group.replica(id).read_local(|kv| kv.data.clone());
        assert_eq!(data.get("before").map(String::as_str), Some("1"));
        assert_eq!(data.get("after").map(String::as_str), Some("heal"));
        assert_eq!(data.get("majority/0").map(String::as_str), Some("ok"));
        assert_eq!(data.get("majority/1").map(String::as_str), Some("ok"));
        // An Indeterminate refusal could in principle have been committed; an isolated leader
        // cannot reach a quorum, so it must not have been.
        assert_eq!(data.get("minority"), None, "replica {id}: the isolated leader's write was committed");
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_refuses_then_rejoins() {
    let group = TestGroup::start(3).await;
    let leader = group.leader().await;
    let cut = group.followers(leader)[0];
    isolate(&group, cut);

    let bound = Duration::from_millis(group.configs[&cut].timing.request_timeout_ms + 1000);
    let started = Instant::now();
    let err = group.replica(cut).write(put("x", "1")).await.unwrap_err();
    assert!(started.elapsed() < bound, "refusal took {:?}", started.elapsed());
    assert!(err.is_retryable(), "a write that never reached the leader is safe to retry: {err}");
    let err = group.replica(cut).read_linearizable(|kv| kv.data.len()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");

    // Meanwhile the majority commits.
    for i in 0..10 {
        group.replica(leader).write(put(format!("k{i}"), "v")).await.unwrap();
    }
    heal(&group);
    group.leader().await;
    group.converged().await;
    let n = group.replica(cut).read_linearizable(|kv| kv.data.len()).await.expect("read after rejoin");
    assert_eq!(n, 10);
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_loss_fails_fast_and_recovers() {
    let mut group = TestGroup::start(3).await;
    let leader = group.leader().await;
    let followers = group.followers(leader);
    group.stop(followers[0]).await;
    group.stop(followers[1]).await;
    let bound = Duration::from_millis(group.configs[&leader].timing.request_timeout_ms + 1000);
    let started = Instant::now();
    let err = group.replica(leader).write(put("lost", "x")).await.unwrap_err();
    assert!(started.elapsed() < bound, "refusal took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unavailable { .. } | Error::Indeterminate { .. }), "{err}");
    group.restart(followers[0]).await;
    let leader = group.leader().await;
    group.replica(leader).write(put("recovered", "y")).await.expect("write once a majority is back");
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_reachable_leader_refuses_before_the_request_deadline() {
    let mut group = TestGroup::start(3).await;
    let leader = group.leader().await;
    let followers = group.followers(leader);
    // The leader and one follower gone: the survivor knows no reachable leader and can elect
    // none. It says so ("not applied") after a failover's worth of waiting, not at the deadline.
    group.stop(leader).await;
    group.stop(followers[0]).await;
    let survivor = followers[1];
    let request_timeout = Duration::from_millis(group.configs[&survivor].timing.request_timeout_ms);
    let started = Instant::now();
    let err = group.replica(survivor).write(put("lost", "x")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "nothing was delivered, so nothing was applied: {err}");
    assert!(started.elapsed() < request_timeout, "refused only at the request deadline ({:?})", started.elapsed());
    let err = group.replica(survivor).read_linearizable(|kv| kv.data.len()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    group.restart(leader).await;
    let leader = group.leader().await;
    group.replica(leader).write(put("recovered", "y")).await.expect("write once a majority is back");
    group.shutdown().await;
}
