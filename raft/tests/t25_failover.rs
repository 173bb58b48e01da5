//! A dead leader (its address refuses connections) is replaced by an early campaign as soon as
//! the voters' lease allows, by the survivor with the longest log; a leader that is alive but
//! unreachable is left to openraft's own election timers. The election timeouts here are long
//! (1.5–2.5 s) so that the two paths cannot be confused: openraft's own timer would campaign
//! 4–5 s after the last heartbeat.

mod common;

use std::time::Duration;

use common::{put, wait_for, TestGroup};
use grove_raft::{SnapshotConfig, Timing};

fn slow_elections() -> Timing {
    Timing { heartbeat_ms: 100, election_timeout_min_ms: 1500, election_timeout_max_ms: 2500, request_timeout_ms: 10_000 }
}

fn fast_campaigns(group: &TestGroup) -> u64 {
    group.replicas.values().map(|r| r.status().fast_campaigns).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_by_one_early_campaign() {
    let mut group = TestGroup::start_timed(3, SnapshotConfig::default(), slow_elections()).await;
    let leader = group.leader().await;
    group.replica(leader).write(put("before", "1")).await.expect("write");
    assert_eq!(fast_campaigns(&group), 0, "no campaign while the leader lives");

    // Stopping the leader closes its listener: connections to it are refused.
    group.stop(leader).await;
    let new_leader = group.leader().await;
    assert_ne!(new_leader, leader);
    // Exactly one survivor campaigned early, and it won.
    let early: Vec<(u64, u64)> = group.replicas.iter().map(|(id, r)| (*id, r.status().fast_campaigns)).collect();
    assert_eq!(early.iter().map(|(_, n)| n).sum::<u64>(), 1, "one early campaign: {early:?}");
    assert!(early.contains(&(new_leader, 1)), "the early candidate leads: {early:?}");

    let r = group.replica(new_leader).write(put("after", "2")).await.expect("write after failover");
    assert!(r.applied);
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivor_with_the_longest_log_campaigns_even_with_the_higher_id() {
    let mut group = TestGroup::start_timed(3, SnapshotConfig::default(), slow_elections()).await;
    let leader = group.leader().await;
    let followers = group.followers(leader);
    let (behind, ahead) = (followers[0], followers[1]);
    assert!(behind < ahead);
    // Cut the lower-id follower off from the leader: the writes below commit through the other
    // follower alone, so its log is longer when the leader dies.
    group.replica(leader).faults().block(behind);
    group.replica(behind).faults().block(leader);
    for i in 0..5 {
        group.replica(leader).write(put(format!("k{i}"), "v")).await.expect("write");
    }
    let (short, long) = (group.replica(behind).status().last_log_index, group.replica(ahead).status().last_log_index);
    assert!(short < long, "the cut follower holds {short} entries, the other {long}");

    group.stop(leader).await;
    let new_leader = group.leader().await;
    assert_eq!(new_leader, ahead, "the survivor with the longer log leads");
    assert_eq!(group.replica(ahead).status().fast_campaigns, 1, "it campaigned early");
    assert_eq!(group.replica(behind).status().fast_campaigns, 0, "the other did not");
    group.replica(behind).faults().heal();
    group.replica(new_leader).write(put("after", "1")).await.expect("write after failover");
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_but_live_leader_is_left_to_the_election_timers() {
    let group = TestGroup::start_timed(3, SnapshotConfig::default(), slow_elections()).await;
    let leader = group.leader().await;
    // Cut the leader off: its listener still accepts connections (the replica refuses the
    // calls), as a partitioned or paused process would not refuse them either.
    group.replica(leader).faults().isolate();
    for (id, r) in &group.replicas {
        if *id != leader {
            r.faults().block(leader);
        }
    }
    let new_leader = wait_for("a survivor to take over", Duration::from_secs(20), || async {
        group.replicas.iter().find(|(id, r)| **id != leader && r.is_leader()).map(|(id, _)| *id)
    })
    .await;
    assert_ne!(new_leader, leader);
    assert_eq!(fast_campaigns(&group), 0, "a live leader must not be treated as dead");
    for r in group.replicas.values() {
        r.faults().heal();
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_hear_from_the_leader_every_heartbeat_not_every_replication_timeout() {
    // Openraft's own interval here is the replication timeout (1,350 ms); Grove's heartbeats go
    // every 100 ms.
    let timing = slow_elections();
    assert_eq!(timing.replication_timeout_ms(), 1350);
    let group = TestGroup::start_timed(3, SnapshotConfig::default(), timing).await;
    let leader = group.leader().await;
    group.replica(leader).write(put("k", "v")).await.expect("write");
    let follower = group.followers(leader)[0];
    let mut worst = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let since = group.replica(follower).status().millis_since_leader_contact.expect("the follower heard from the leader");
        worst = worst.max(since);
    }
    assert!(worst < 700, "a follower went {worst} ms without hearing from its leader");
    group.shutdown().await;
}
