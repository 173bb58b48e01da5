//! Configuration of one grove-cluster replica: defaults < TOML file < env `GROVE_*` < flags (the
//! last three are layered by the binary; this struct holds the result).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This replica's node id in the cluster's Raft group (1, 2, 3, …).
    pub id: u64,
    /// The cluster's name: the root knows the cluster by it (registration is an upsert by
    /// name) and the Raft group is called `cluster-<name>`. Letters, digits, `-` and `_`.
    pub cluster_name: String,
    /// Oakestra's `cluster_location`, `"lat,long[,radius]"`.
    pub cluster_location: String,
    /// RocksDB data directory of this replica.
    pub data_dir: PathBuf,
    /// Worker registration and the cluster HTTP API (Oakestra's 10100).
    pub api_listen: SocketAddr,
    /// `host:port` other replicas use to reach this API (default: `api_listen`).
    pub api_advertise: Option<String>,
    /// The embedded MQTT broker (Oakestra's 10003). Port 0 picks a free port.
    pub mqtt_listen: SocketAddr,
    /// The broker port announced to workers in the registration reply (default: the bound
    /// port; set it when workers reach the broker through a load balancer or NAT).
    pub mqtt_advertise_port: Option<u16>,
    /// Most MQTT connections the broker accepts.
    pub mqtt_max_connections: usize,
    /// The cluster Raft group's gRPC (default 10110).
    pub raft_listen: SocketAddr,
    pub raft_advertise: Option<String>,
    /// Initial voters `1=host:port,2=host:port,3=host:port` (Raft addresses), the same on
    /// every replica. Empty: a single-replica group of this replica.
    pub peers: String,
    /// The `Cluster` gRPC service the root dispatches to (default 10120).
    pub grpc_listen: SocketAddr,
    pub grpc_advertise: Option<String>,
    /// gRPC endpoints (`host:port` or `http://host:port`) of the root's replicas (its port
    /// 50052). Empty: the cluster runs without a root.
    pub root_endpoints: Vec<String>,
    /// The deployment's cluster token, when it sets one (the root's `cluster_token`): sent to
    /// the root on registration and reports, and required on every call of this replica's
    /// `Cluster` gRPC service (deploy, undeploy, list workers).
    pub cluster_token: Option<String>,
    /// Largest HTTP request body accepted (bytes); larger ones are answered 413.
    pub max_body_bytes: usize,
    /// A worker silent for this long is lost; its instances are placed elsewhere.
    pub worker_liveness_ms: u64,
    /// After winning an election the leader waits this long before it judges any worker
    /// (default: `worker_liveness_ms`).
    pub leader_grace_ms: Option<u64>,
    /// How often the leader's scheduler looks for instances to place.
    pub scheduler_interval_ms: u64,
    /// How often the leader reconciles desired against reported state.
    pub reconcile_interval_ms: u64,
    /// A command not confirmed by the worker's reports is sent again after this long.
    pub resend_after_ms: u64,
    /// A `FAILED` or `DEAD` instance is placed again after this long.
    pub redeploy_delay_ms: u64,
    /// How often each replica's gateway sends its observations to the leader.
    pub observation_flush_ms: u64,
    /// How often the leader streams changes to the root.
    pub root_report_interval_ms: u64,
    /// How often the leader sends the root a full report.
    pub root_full_report_interval_ms: u64,
    /// Bound on every outbound call (root, other replicas).
    pub call_timeout_ms: u64,
    /// Raft timing (heartbeat, election timeouts, request timeout: the bound on any answer).
    pub timing: grove_raft::Timing,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            id: 1,
            cluster_name: "cluster".into(),
            cluster_location: String::new(),
            data_dir: PathBuf::from("/var/lib/grove/cluster"),
            api_listen: "0.0.0.0:10100".parse().expect("literal"),
            api_advertise: None,
            mqtt_listen: "0.0.0.0:10003".parse().expect("literal"),
            mqtt_advertise_port: None,
            mqtt_max_connections: 20_000,
            raft_listen: "0.0.0.0:10110".parse().expect("literal"),
            raft_advertise: None,
            peers: String::new(),
            grpc_listen: "0.0.0.0:10120".parse().expect("literal"),
            grpc_advertise: None,
            root_endpoints: Vec::new(),
            cluster_token: None,
            max_body_bytes: 1 << 20,
            worker_liveness_ms: 6_000,
            leader_grace_ms: None,
            scheduler_interval_ms: 50,
            reconcile_interval_ms: 1_000,
            resend_after_ms: 5_000,
            redeploy_delay_ms: 2_000,
            observation_flush_ms: 250,
            root_report_interval_ms: 1_000,
            root_full_report_interval_ms: 15_000,
            call_timeout_ms: 3_000,
            timing: grove_raft::Timing::default(),
        }
    }
}

impl ClusterConfig {
    /// The Raft group name: `cluster-<cluster_name>`.
    pub fn raft_group(&self) -> String {
        format!("cluster-{}", self.cluster_name)
    }

    /// Check the rules serde does not, naming the setting that breaks them.
    pub fn validate(&self) -> Result<(), Error> {
        let name_ok = !self.cluster_name.is_empty() && self.cluster_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(Error::Config(format!("cluster_name {:?}: must be non-empty and use only letters, digits, '-' and '_'", self.cluster_name)));
        }
        for (name, value) in [
            ("worker_liveness_ms", self.worker_liveness_ms),
            ("scheduler_interval_ms", self.scheduler_interval_ms),
            ("reconcile_interval_ms", self.reconcile_interval_ms),
            ("resend_after_ms", self.resend_after_ms),
            ("observation_flush_ms", self.observation_flush_ms),
            ("root_report_interval_ms", self.root_report_interval_ms),
            ("root_full_report_interval_ms", self.root_full_report_interval_ms),
            ("call_timeout_ms", self.call_timeout_ms),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name}: must be at least 1")));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(Error::Config("max_body_bytes: must be at least 1024".into()));
        }
        for e in &self.root_endpoints {
            if e.trim().is_empty() {
                return Err(Error::Config("root_endpoints: an entry is empty".into()));
            }
        }
        Ok(())
    }

    /// The Raft configuration of this replica.
    pub fn replica_config(&self) -> Result<grove_raft::ReplicaConfig, Error> {
        let mut c = grove_raft::ReplicaConfig::new(self.raft_group(), self.id, self.raft_listen, self.data_dir.clone());
        c.advertise = self.raft_advertise.clone();
        c.peers = grove_raft::parse_peers(&self.peers)?;
        if c.peers.is_empty() {
            c.peers.insert(self.id, c.advertised());
        }
        c.timing = self.timing.clone();
        c.validate()?;
        Ok(c)
    }

    pub fn liveness(&self) -> Duration {
        Duration::from_millis(self.worker_liveness_ms)
    }

    pub fn leader_grace(&self) -> Duration {
        Duration::from_millis(self.leader_grace_ms.unwrap_or(self.worker_liveness_ms))
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

/// `addr` as others should dial it: the advertised value, or the bound address.
pub(crate) fn advertised(advertise: &Option<String>, bound: SocketAddr) -> String {
    advertise.clone().unwrap_or_else(|| bound.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_builds_the_replica_config() {
        let c: ClusterConfig = toml::from_str(
            r#"
            id = 2
            cluster_name = "edge-a"
            data_dir = "/tmp/x"
            api_listen = "127.0.0.1:10101"
            raft_listen = "127.0.0.1:10111"
            peers = "1=127.0.0.1:10110,2=127.0.0.1:10111,3=127.0.0.1:10112"
            root_endpoints = ["127.0.0.1:50052"]
            worker_liveness_ms = 3000
            [timing]
            request_timeout_ms = 5000
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!((c.id, c.api_listen.port(), c.mqtt_listen.port(), c.grpc_listen.port()), (2, 10101, 10003, 10120));
        assert_eq!((c.liveness(), c.leader_grace()), (Duration::from_secs(3), Duration::from_secs(3)));
        let r = c.replica_config().unwrap();
        assert_eq!((r.group.as_str(), r.peers.len(), r.timing.request_timeout_ms), ("cluster-edge-a", 3, 5000));
        assert!(toml::from_str::<ClusterConfig>("no_such_field = 1").is_err(), "unknown fields are refused");
    }

    #[test]
    fn validation_names_the_setting() {
        let bad = ClusterConfig { cluster_name: "a b".into(), ..ClusterConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("cluster_name"));
        let bad = ClusterConfig { worker_liveness_ms: 0, ..ClusterConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("worker_liveness_ms"));
        let bad = ClusterConfig { peers: "1=nowhere".into(), ..ClusterConfig::default() };
        assert!(bad.replica_config().unwrap_err().to_string().contains("peers"));
    }
}
