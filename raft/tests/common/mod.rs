//! A grove-raft group of in-process replicas on loopback ports for the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use grove_raft::kv::{KvCommand, KvStore};
use grove_raft::{Replica, ReplicaConfig, SnapshotConfig, Timing};
use tokio::time::Instant;

pub const GROUP: &str = "test-kv";

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG").unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .with_test_writer()
        .try_init();
}

pub struct TestGroup {
    pub dir: tempfile::TempDir,
    pub configs: BTreeMap<u64, ReplicaConfig>,
    pub replicas: BTreeMap<u64, Replica<KvStore>>,
}

impl TestGroup {
    /// Start `n` replicas (ids 1..=n) on free loopback ports.
    pub async fn start(n: u64) -> TestGroup {
        Self::start_with(n, SnapshotConfig::default()).await
    }

    pub async fn start_with(n: u64, snapshots: SnapshotConfig) -> TestGroup {
        Self::start_timed(n, snapshots, Timing { request_timeout_ms: 3000, ..Timing::default() }).await
    }

    pub async fn start_timed(n: u64, snapshots: SnapshotConfig, timing: Timing) -> TestGroup {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listeners.insert(id, l);
        }
        let peers: BTreeMap<u64, String> =
            listeners.iter().map(|(id, l)| (*id, l.local_addr().unwrap().to_string())).collect();
        let mut configs = BTreeMap::new();
        for id in 1..=n {
            let mut c = ReplicaConfig::new(GROUP, id, peers[&id].parse().unwrap(), dir.path().join(format!("r{id}")));
            c.peers = peers.clone();
            c.timing = timing.clone();
            c.snapshots = snapshots.clone();
            configs.insert(id, c);
        }
        let mut group = TestGroup { dir, configs, replicas: BTreeMap::new() };
        for (id, listener) in listeners {
            let r = Replica::start_with_listener(group.configs[&id].clone(), listener).await.expect("start replica");
            group.replicas.insert(id, r);
        }
        group
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.configs[&id].data_dir.clone()
    }

    pub fn replica(&self, id: u64) -> &Replica<KvStore> {
        &self.replicas[&id]
    }

    /// Wait until the running replicas agree on one leader, and return it.
    pub async fn leader(&self) -> u64 {
        wait_for("a leader that every running replica follows", Duration::from_secs(15), || async {
            let views: Vec<Option<u64>> = self.replicas.values().map(|r| r.status().leader_id).collect();
            let first = views.first().copied().flatten()?;
            let leader_running = self.replicas.get(&first).is_some_and(|r| r.is_leader());
            (leader_running && views.iter().all(|v| *v == Some(first))).then_some(first)
        })
        .await
    }

    pub fn followers(&self, leader: u64) -> Vec<u64> {
        self.replicas.keys().copied().filter(|id| *id != leader).collect()
    }

    /// Stop one replica (Raft core, gRPC server, database).
    pub async fn stop(&mut self, id: u64) {
        let r = self.replicas.remove(&id).expect("replica is running");
        r.shutdown().await;
    }

    /// Start a stopped replica again on the same address and data directory.
    pub async fn restart(&mut self, id: u64) {
        let config = self.configs[&id].clone();
        // The port was ours a moment ago; retry briefly in case the kernel still holds it.
        let r = wait_for("the replica's port to be free again", Duration::from_secs(10), || {
            let config = config.clone();
            async move {
                match tokio::net::TcpListener::bind(config.listen).await {
                    Ok(l) => Some(Replica::<KvStore>::start_with_listener(config, l).await.expect("restart replica")),
                    Err(_) => None,
                }
            }
        })
        .await;
        self.replicas.insert(id, r);
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.replicas.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    /// Wait until every running replica has applied the same index as the leader.
    pub async fn converged(&self) -> u64 {
        wait_for("every replica to apply the same index", Duration::from_secs(20), || async {
            let applied: Vec<u64> = self.replicas.values().map(|r| r.status().applied_index).collect();
            let commit = self.replicas.values().map(|r| r.status().commit_index).max()?;
            (applied.iter().all(|a| *a == commit)).then_some(commit)
        })
        .await
    }
}

pub fn put(key: impl Into<String>, value: impl Into<String>) -> KvCommand {
    KvCommand::Put { key: key.into(), value: value.into() }
}
