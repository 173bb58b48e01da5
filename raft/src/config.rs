//! Configuration of one replica of a Raft group.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;
use crate::Error;

/// Everything a replica needs to start. Every replica of a group is started with the same
/// `group` and `peers`; each with its own `id`, `listen` and `data_dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// Name of the Raft group ("root", "cluster-a", ...). Stored in the data directory and
    /// carried by every RPC, so replicas of different groups never mix.
    pub group: String,
    /// This replica's node id, unique in the group, never 0.
    pub id: NodeId,
    /// Where this replica keeps its RocksDB database.
    pub data_dir: PathBuf,
    /// Address the Raft gRPC server binds.
    pub listen: SocketAddr,
    /// Address peers dial to reach this replica; defaults to `listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// The initial voters (id → address), the same list on every replica. The replica with the
    /// lowest id initialises the group on first start. A replica that is not in this list starts
    /// empty and waits to be added (as a learner, then a voter) by the leader.
    #[serde(default)]
    pub peers: BTreeMap<NodeId, String>,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub snapshots: SnapshotConfig,
}

/// Raft timing. Openraft's followers wait out the leader's lease (the maximum election
/// timeout) plus their own election timeout before they campaign; a follower that finds its
/// leader's process gone campaigns after the lease alone (`failover`).
///
/// Openraft bounds every append-entries call, data or heartbeat, by *its* heartbeat interval.
/// Grove gives openraft a long one ([`Timing::replication_timeout`], just under the minimum
/// election timeout) and sends the heartbeats itself every `heartbeat_ms`: a follower that is
/// slow to store and sync a batch under load is not taken for unreachable (with 100 ms bounds
/// the leader of a loaded cluster lost its quorum again and again), and followers still hear
/// from the leader every `heartbeat_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Upper bound on a write, a linearizable read or a membership change, from the call to
    /// the answer, including finding the leader.
    pub request_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { heartbeat_ms: 100, election_timeout_min_ms: 250, election_timeout_max_ms: 400, request_timeout_ms: 3000 }
    }
}

impl Timing {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long one append-entries call may take: nine tenths of the minimum election timeout
    /// (openraft requires less than that timeout).
    pub fn replication_timeout_ms(&self) -> u64 {
        (self.election_timeout_min_ms * 9 / 10).max(self.heartbeat_ms)
    }
}

/// When to snapshot and how much log to keep behind a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Build a snapshot after this many entries since the last one.
    pub every_entries: u64,
    /// Entries kept after a snapshot, so a briefly lagging replica catches up from the log
    /// instead of needing the snapshot.
    pub keep_entries: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig { every_entries: 10_000, keep_entries: 1_000 }
    }
}

impl ReplicaConfig {
    /// A configuration on embedded defaults.
    pub fn new(group: impl Into<String>, id: NodeId, listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ReplicaConfig {
            group: group.into(),
            id,
            data_dir: data_dir.into(),
            listen,
            advertise: None,
            peers: BTreeMap::new(),
            timing: Timing::default(),
            snapshots: SnapshotConfig::default(),
        }
    }

    pub fn advertised(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.to_string())
    }

    /// Check the rules openraft does not check itself, naming the setting that breaks them.
    pub fn validate(&self) -> Result<(), Error> {
        if self.group.is_empty() || !self.group.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Error::Config(format!(
                "group {:?}: must be non-empty and use only letters, digits, '-' and '_'",
                self.group
            )));
        }
        if self.id == 0 {
            return Err(Error::Config("id: 0 is reserved for clients outside the group".into()));
        }
        if self.peers.contains_key(&0) {
            return Err(Error::Config("peers: node id 0 is reserved for clients outside the group".into()));
        }
        let t = &self.timing;
        if t.heartbeat_ms == 0 || t.election_timeout_min_ms <= t.heartbeat_ms * 2 {
            return Err(Error::Config(format!(
                "timing: election_timeout_min_ms ({}) must exceed twice heartbeat_ms ({})",
                t.election_timeout_min_ms, t.heartbeat_ms
            )));
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            return Err(Error::Config(format!(
                "timing: election_timeout_max_ms ({}) must exceed election_timeout_min_ms ({})",
                t.election_timeout_max_ms, t.election_timeout_min_ms
            )));
        }
        if t.request_timeout_ms < t.election_timeout_max_ms {
            return Err(Error::Config(format!(
                "timing: request_timeout_ms ({}) must be at least election_timeout_max_ms ({}) so a request can outlive an election",
                t.request_timeout_ms, t.election_timeout_max_ms
            )));
        }
        if self.snapshots.every_entries == 0 {
            return Err(Error::Config("snapshots.every_entries: must be at least 1".into()));
        }
        Ok(())
    }

    pub(crate) fn openraft_config(&self) -> Result<openraft::Config, Error> {
        let config = openraft::Config {
            cluster_name: self.group.clone(),
            // Openraft's heartbeat interval is its bound on every append-entries call; Grove's own
            // heartbeats go every `heartbeat_ms` (see `Timing`).
            heartbeat_interval: self.timing.replication_timeout_ms(),
            election_timeout_min: self.timing.election_timeout_min_ms,
            election_timeout_max: self.timing.election_timeout_max_ms,
            install_snapshot_timeout: self.timing.request_timeout_ms.max(1000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshots.every_entries),
            max_in_snapshot_log_to_keep: self.snapshots.keep_entries,
            purge_batch_size: 256,
            max_payload_entries: 512,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Config(e.to_string()))
    }
}

/// Parse a peer list written as `1=127.0.0.1:21001,2=127.0.0.1:21002`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, Error> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("peers: {item:?} is not of the form <id>=<host:port>")))?;
        let id: NodeId = id.trim().parse().map_err(|_| Error::Config(format!("peers: {id:?} in {item:?} is not a node id")))?;
        if addr.trim().is_empty() || !addr.contains(':') {
            return Err(Error::Config(format!("peers: address {addr:?} of node {id} must be host:port")));
        }
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(Error::Config(format!("peers: node {id} is listed twice")));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_errors_name_the_item() {
        let peers = parse_peers("1=127.0.0.1:1, 2=127.0.0.1:2,").unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&2], "127.0.0.1:2");
        let err = parse_peers("1=a:1,x=b:2").unwrap_err().to_string();
        assert!(err.contains("\"x\""), "{err}");
        let err = parse_peers("1=a:1,1=b:2").unwrap_err().to_string();
        assert!(err.contains("node 1 is listed twice"), "{err}");
        let err = parse_peers("1").unwrap_err().to_string();
        assert!(err.contains("<id>=<host:port>"), "{err}");
    }

    #[test]
    fn validation_names_the_setting() {
        let base = ReplicaConfig::new("g", 1, "127.0.0.1:0".parse().unwrap(), "/tmp/x");
        assert!(base.validate().is_ok());
        let mut c = base.clone();
        c.id = 0;
        assert!(c.validate().unwrap_err().to_string().contains("id: 0"));
        let mut c = base.clone();
        c.group = "bad name".into();
        assert!(c.validate().unwrap_err().to_string().contains("group"));
        let mut c = base.clone();
        c.timing.election_timeout_max_ms = c.timing.election_timeout_min_ms;
        assert!(c.validate().unwrap_err().to_string().contains("election_timeout_max_ms"));
        let mut c = base.clone();
        c.timing.request_timeout_ms = 10;
        assert!(c.validate().unwrap_err().to_string().contains("request_timeout_ms"));
        let mut c = base;
        c.snapshots.every_entries = 0;
        assert!(c.validate().unwrap_err().to_string().contains("every_entries"));
    }

    #[test]
    fn toml_config_rejects_unknown_settings() {
        let ok: ReplicaConfig = toml::from_str(
            "group = \"kv\"\nid = 2\ndata_dir = \"/d\"\nlisten = \"127.0.0.1:1\"\n[timing]\nheartbeat_ms = 50\n",
        )
        .unwrap();
        assert_eq!(ok.timing.heartbeat_ms, 50);
        assert_eq!(ok.timing.election_timeout_min_ms, Timing::default().election_timeout_min_ms);
        let err = toml::from_str::<ReplicaConfig>("group = \"kv\"\nid = 2\ndata_dir = \"/d\"\nlisten = \"127.0.0.1:1\"\nheartbeat = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("heartbeat"), "{err}");
    }
}
