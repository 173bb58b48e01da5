//! Configuration of one grove-root replica: defaults < TOML file < env `GROVE_*` < flags (the
//! last three are layered by the binary; this struct holds the result).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default admin password; a warning is logged while it is in use.
pub const DEFAULT_ADMIN_PASSWORD: &str = "Admin";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RootConfig {
    /// This replica's node id in the root Raft group (1, 2, 3, …).
    pub id: u64,
    /// RocksDB data directory of this replica.
    pub data_dir: PathBuf,
    /// The Oakestra REST API (port 10000).
    pub api_listen: SocketAddr,
    /// The cluster-facing gRPC (`grove.cluster.v1.Root`: registration and report streams;
    /// Oakestra's port 50052).
    pub cluster_listen: SocketAddr,
    /// The root Raft group's gRPC (default 10010 + offset of the replica, see docs).
    pub raft_listen: SocketAddr,
    /// Address peers dial for this replica's Raft traffic (default: `raft_listen`).
    pub raft_advertise: Option<String>,
    /// Initial voters `1=host:port,2=host:port,3=host:port` (Raft addresses), the same on
    /// every replica. Empty: a single-replica group of this replica.
    pub peers: String,
    /// Password of the default `Admin` user, set at first start only.
    pub admin_password: Option<String>,
    /// Or read it from this file (first line).
    pub admin_password_file: Option<PathBuf>,
    /// PBKDF2-SHA256 iterations for new password hashes.
    pub password_hash_iterations: u32,
    /// Largest request body accepted (bytes); larger ones are answered 413.
    pub max_body_bytes: usize,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// How often the leader's scheduler looks for instances to place.
    pub scheduler_interval_ms: u64,
    /// A cluster whose reports stop for this long is lost: its instances are re-placed.
    pub cluster_lost_after_ms: u64,
    /// How often the leader's dispatcher looks for deploys and undeploys to deliver.
    pub dispatch_interval_ms: u64,
    /// Bound on one deploy/undeploy call to one cluster endpoint.
    pub dispatch_timeout_ms: u64,
    /// When set, clusters must present it (`authorization: Bearer …`) on the cluster gRPC, and
    /// the dispatcher presents it to them.
    pub cluster_token: Option<String>,
    /// Raft timing (heartbeat, election timeouts, request timeout: the bound on any answer).
    pub timing: grove_raft::Timing,
}

impl Default for RootConfig {
    fn default() -> Self {
        RootConfig {
            id: 1,
            data_dir: PathBuf::from("/var/lib/grove/root"),
            api_listen: "0.0.0.0:10000".parse().expect("literal"),
            raft_listen: "0.0.0.0:10010".parse().expect("literal"),
            cluster_listen: "0.0.0.0:50052".parse().expect("literal"),
            raft_advertise: None,
            peers: String::new(),
            admin_password: None,
            admin_password_file: None,
            password_hash_iterations: 100_000,
            max_body_bytes: 1 << 20,
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            scheduler_interval_ms: 50,
            cluster_lost_after_ms: 15_000,
            dispatch_interval_ms: 50,
            dispatch_timeout_ms: 3_000,
            cluster_token: None,
            timing: grove_raft::Timing::default(),
        }
    }
}

impl RootConfig {
    /// The admin password from the value, the file, or the default.
    pub fn admin_password(&self) -> Result<String, crate::Error> {
        if let Some(p) = &self.admin_password {
            return Ok(p.clone());
        }
        if let Some(path) = &self.admin_password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| crate::Error::Config(format!("admin_password_file {}: {e}", path.display())))?;
            return Ok(text.lines().next().unwrap_or("").to_owned());
        }
        Ok(DEFAULT_ADMIN_PASSWORD.to_owned())
    }

    /// The Raft configuration of this replica.
    pub fn replica_config(&self) -> Result<grove_raft::ReplicaConfig, crate::Error> {
        let mut c = grove_raft::ReplicaConfig::new(crate::RAFT_GROUP, self.id, self.raft_listen, self.data_dir.clone());
        c.advertise = self.raft_advertise.clone();
        c.peers = grove_raft::parse_peers(&self.peers)?;
        if c.peers.is_empty() {
            c.peers.insert(self.id, c.advertised());
        }
        c.timing = self.timing.clone();
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_builds_the_replica_config() {
        let c: RootConfig = toml::from_str(
            r#"
            id = 2
            data_dir = "/tmp/x"
            api_listen = "127.0.0.1:10001"
            raft_listen = "127.0.0.1:10011"
            peers = "1=127.0.0.1:10010,2=127.0.0.1:10011,3=127.0.0.1:10012"
            [timing]
            request_timeout_ms = 5000
            "#,
        )
        .unwrap();
        assert_eq!((c.id, c.api_listen.port(), c.max_body_bytes), (2, 10001, 1 << 20));
        let r = c.replica_config().unwrap();
        assert_eq!((r.group.as_str(), r.peers.len(), r.timing.request_timeout_ms, r.timing.heartbeat_ms), ("root", 3, 5000, 100));
        assert!(toml::from_str::<RootConfig>("no_such_field = 1").is_err(), "unknown fields are refused");
        let bad = RootConfig { peers: "1=nowhere".into(), ..RootConfig::default() };
        assert!(bad.replica_config().is_err());
    }

    #[test]
    fn admin_password_from_value_file_or_default() {
        assert_eq!(RootConfig::default().admin_password().unwrap(), DEFAULT_ADMIN_PASSWORD);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let c = RootConfig { admin_password_file: Some(file), ..RootConfig::default() };
        assert_eq!(c.admin_password().unwrap(), "s3cret");
        let c = RootConfig { admin_password: Some("v".into()), ..c };
        assert_eq!(c.admin_password().unwrap(), "v");
        let c = RootConfig { admin_password_file: Some("/nonexistent/pw".into()), ..RootConfig::default() };
        assert!(c.admin_password().is_err());
    }
}
