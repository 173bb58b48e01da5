//! Three replicas on loopback: election, writes through followers, leader loss, durability of
//! every acknowledged write on every replica.

mod common;

use std::time::Duration;

use common::{put, wait_for, TestGroup};
use grove_raft::client::GroupClient;
use grove_raft::kv::{KvQuery, KvStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_writes_are_forwarded_and_leader_loss_is_survived() {
    let mut group = TestGroup::start(3).await;
    let leader = group.leader().await;
    let follower = group.followers(leader)[0];

    // A write through a follower is forwarded to the leader and committed.
    let r = group.replica(follower).write(put("a", "1")).await.expect("write through a follower");
    assert!(r.applied);
    assert_eq!(r.previous, None);
    // Linearizable reads on every replica see it.
    for id in [1, 2, 3] {
        let v = group.replica(id).read_linearizable(|kv| kv.get("a").cloned()).await.expect("linearizable read");
        assert_eq!(v.as_deref(), Some("1"), "replica {id}");
    }

    // Acknowledged writes before the leader dies.
    let mut acknowledged = vec![("a".to_string(), "1".to_string())];
    for i in 0..20 {
        let (k, v) = (format!("before/{i}"), format!("v{i}"));
        group.replica([1, 2, 3][i % 3]).write(put(&k, &v)).await.expect("write");
        acknowledged.push((k, v));
    }

    // Kill the leader; a new one is elected and writes continue through the survivors.
    group.stop(leader).await;
    let new_leader = group.leader().await;
    assert_ne!(new_leader, leader);
    let survivors = group.followers(0);
    for i in 0..20 {
        let (k, v) = (format!("after/{i}"), format!("v{i}"));
        group.replica(survivors[i % survivors.len()]).write(put(&k, &v)).await.expect("write after failover");
        acknowledged.push((k, v));
    }

    // The old leader comes back and catches up: every acknowledged write is on every replica.
    group.restart(leader).await;
    group.leader().await;
    group.converged().await;
    for id in [1, 2, 3] {
        let data = group.replica(id).read_local(|kv| kv.data.clone());
        for (k, v) in &acknowledged {
            assert_eq!(data.get(k), Some(v), "replica {id} lost acknowledged write {k}");
        }
        assert_eq!(data.len(), acknowledged.len(), "replica {id} holds unexpected keys");
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_client_writes_and_reads_through_any_replica() {
    let group = TestGroup::start(3).await;
    group.leader().await;
    let endpoints: Vec<String> = group.replicas.values().map(|r| r.addr().to_string()).collect();
    // One client per replica, so each request enters through a different replica.
    for (i, endpoint) in endpoints.iter().enumerate() {
        let client = GroupClient::new(common::GROUP, std::slice::from_ref(endpoint), Duration::from_secs(5)).unwrap();
        client.write::<KvStore>(&put(format!("k{i}"), "x")).await.expect("client write");
        let v: Option<String> = client.query(&KvQuery::Get { key: format!("k{i}") }, false).await.expect("client read");
        assert_eq!(v.as_deref(), Some("x"));
    }
    let client = GroupClient::new(common::GROUP, &endpoints, Duration::from_secs(5)).unwrap();
    let len: usize = client.query(&KvQuery::Len, false).await.unwrap();
    assert_eq!(len, 3);
    // A query the state machine does not understand is a clear error, not a crash.
    let err = client.query::<_, serde_json::Value>(&serde_json::json!({"query": "scan"}), false).await.unwrap_err();
    assert!(err.to_string().contains("key-value query"), "{err}");
    // The status of every replica names the same leader and members.
    let statuses: Vec<_> = futures::future::join_all(endpoints.iter().map(|e| client.status_of(e))).await;
    let leaders: Vec<_> = statuses.iter().map(|s| s.as_ref().unwrap().leader_id).collect();
    assert!(leaders.iter().all(|l| l.is_some() && *l == leaders[0]), "{leaders:?}");
    assert_eq!(statuses[0].as_ref().unwrap().members.len(), 3);
    wait_for("status of a follower to show the commit index", Duration::from_secs(5), || async {
        let s = client.status_of(&endpoints[0]).await.ok()?;
        (s.commit_index >= 4 && s.applied_index >= 4).then_some(())
    })
    .await;
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_can_be_added_and_removed() {
    let mut group = TestGroup::start(3).await;
    let leader = group.leader().await;
    for i in 0..10 {
        group.replica(leader).write(put(format!("k{i}"), "v")).await.unwrap();
    }
    // A fourth replica starts empty (not in the initial peer list) and joins as learner, then voter.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = group.configs[&1].clone();
    config.id = 4;
    config.listen = addr;
    config.data_dir = group.dir.path().join("r4");
    config.peers.clear();
    let fourth = grove_raft::Replica::<KvStore>::start_with_listener(config, listener).await.unwrap();
    group.replica(2).add_learner(4, addr.to_string()).await.expect("add learner via any replica");
    group.replica(3).set_voters([1, 2, 3, 4]).await.expect("promote");
    let members = wait_for("four voters", Duration::from_secs(10), || async {
        let s = fourth.status();
        (s.members.iter().filter(|m| m.voter).count() == 4 && s.applied_index >= 10).then_some(s.members)
    })
    .await;
    assert!(members.iter().any(|m| m.id == 4 && m.voter));
    assert_eq!(fourth.read_local(|kv| kv.data.len()), 10);

    // Remove replica 1 (whoever leads): the rest keep serving.
    group.replica(3).set_voters([2, 3, 4]).await.expect("remove a voter");
    group.replicas.insert(4, fourth);
    group.stop(1).await;
    group.leader().await;
    group.replica(4).write(put("after-removal", "v")).await.expect("write after removal");
    let err = group.replica(2).set_voters(Vec::<u64>::new()).await.unwrap_err();
    assert!(err.to_string().contains("cannot be empty"), "{err}");
    group.shutdown().await;
}

/// Many concurrent linearizable reads on every replica (the leader shares heartbeat rounds
/// among them) while writes go on: a read never misses a write acknowledged before it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_see_every_write_acknowledged_before_them() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let group = Arc::new(TestGroup::start(3).await);
    group.leader().await;
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (group, acked) = (group.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 1..=60u64 {
                group.replica([1, 2, 3][i as usize % 3]).write(put("counter", &i.to_string())).await.expect("write");
                acked.store(i, Ordering::SeqCst);
            }
        })
    };
    let mut readers = Vec::new();
    for r in 0..24u64 {
        let (group, acked) = (group.clone(), acked.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while acked.load(Ordering::SeqCst) < 60 {
                let floor = acked.load(Ordering::SeqCst);
                let seen = group
                    .replica(r % 3 + 1)
                    .read_linearizable(|kv| kv.get("counter").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
                    .await
                    .expect("linearizable read");
                assert!(seen >= floor, "replica {} read {seen} after write {floor} was acknowledged", r % 3 + 1);
                reads += 1;
            }
            reads
        }));
    }
    writer.await.unwrap();
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert!(total > 24, "the readers ran ({total} reads)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_log_entries_and_each_gets_its_own_answer() {
    use std::sync::Arc;
    let group = Arc::new(TestGroup::start(3).await);
    let leader = group.leader().await;
    const N: usize = 200;

    // Two rounds of N concurrent writes to N keys, through every replica: the second round's
    // answers must each carry the value that round one wrote to that caller's key.
    let round = |tag: &'static str| {
        let group = group.clone();
        async move {
            let mut tasks = Vec::new();
            for i in 0..N {
                let group = group.clone();
                tasks.push(tokio::spawn(async move {
                    let r = group.replica([1, 2, 3][i % 3]).write(put(format!("k{i}"), format!("{tag}{i}"))).await.expect("write");
                    (i, r)
                }));
            }
            let mut answers = Vec::new();
            for t in tasks {
                answers.push(t.await.unwrap());
            }
            answers
        }
    };
    round("first").await;
    let before = group.replica(leader).status().last_log_index;
    for (i, r) in round("second").await {
        assert!(r.applied);
        assert_eq!(r.previous, Some(format!("first{i}")), "write {i} got another write's answer");
    }
    let entries = group.replica(leader).status().last_log_index - before;
    assert!(entries < N as u64, "{N} concurrent writes took {entries} log entries: no group commit");

    group.converged().await;
    for id in [1, 2, 3] {
        let data = group.replica(id).read_local(|kv| kv.data.clone());
        for i in 0..N {
            assert_eq!(data.get(&format!("k{i}")).map(String::as_str), Some(format!("second{i}").as_str()), "replica {id}");
        }
    }
}
