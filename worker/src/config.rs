//! The worker's configuration: one documented serde struct, layered as
//! defaults < TOML file < environment (`GROVE_*`) < command-line flags.
//!
//! Clap reads each flag's environment variable itself (`env = "GROVE_…"`), so a value given by
//! flag or env arrives as `Some` and overrides the file; a flag beats its env variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use grove_core::node::CsiDriver;
use serde::{Deserialize, Serialize};

use crate::error::{Result, WorkerError};

/// Well-known containerd sockets, in the order the worker tries them when none is configured:
/// a standalone containerd, then the one Docker starts.
pub const CONTAINERD_SOCKETS: [&str; 2] = [
    "/run/containerd/containerd.sock",
    "/var/run/docker/containerd/containerd.sock",
];

/// The first well-known containerd socket that exists on this machine.
pub fn find_containerd_socket() -> Option<PathBuf> {
    CONTAINERD_SOCKETS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Worker configuration. Durations are in milliseconds so that TOML, env and flags agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Cluster registration endpoints (`host:port` or `http://host:port`), tried in order.
    pub cluster_endpoints: Vec<String>,
    /// MQTT brokers (`host:port`), tried in order with failover. Empty: the host of every
    /// cluster endpoint with the `MQTT_BROKER_PORT` the registration answered, starting with
    /// the endpoint that answered.
    pub mqtt_brokers: Vec<String>,
    /// MQTT keep-alive in seconds (Oakestra's cluster uses 5).
    pub mqtt_keep_alive_secs: u64,
    /// containerd socket; empty: the first of [`CONTAINERD_SOCKETS`] that exists.
    pub containerd_socket: PathBuf,
    /// containerd namespace holding this worker's images and containers (contract §4.4).
    pub containerd_namespace: String,
    /// containerd snapshotter.
    pub snapshotter: String,
    /// containerd runtime (shim) name.
    pub containerd_runtime: String,
    /// Directory of per-instance log files `<job_name>.instance.<n>`.
    pub log_directory: PathBuf,
    /// Period of `nodes/<id>/information` and `nodes/<id>/jobs/resources` reports.
    pub report_interval_ms: u64,
    /// Grace period between SIGTERM and SIGKILL on undeploy.
    pub stop_grace_period_ms: u64,
    /// Timeout of every single outbound request (HTTP, containerd unary call).
    pub request_timeout_ms: u64,
    /// Timeout of a whole image pull.
    pub pull_timeout_ms: u64,
    /// Largest back-off between registration rounds / broker rounds.
    pub max_backoff_ms: u64,
    /// Hostname reported to the cluster; empty: the machine's hostname.
    pub hostname: String,
    /// IP reported to the cluster; empty: the first non-loopback IPv4 address.
    pub public_ip: String,
    /// The node's `port` field (upstream: env `MY_PORT` or "3000").
    pub node_port: String,
    /// Node location label (sent in `system_info.location`).
    pub location: String,
    /// Further node labels (sent in `system_info` as `label.<key>`).
    pub labels: BTreeMap<String, String>,
    /// Addons this worker supports (`supported_addons`).
    pub supported_addons: Vec<String>,
    /// CSI drivers this worker offers (`csi_drivers`).
    pub csi_drivers: Vec<CsiDriver>,
    /// Registries reached over plain HTTP (`host:port`); localhost ones always are.
    pub insecure_registries: Vec<String>,
    /// Log format of the binary: `text` or `json`.
    pub log_format: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            cluster_endpoints: vec!["127.0.0.1:10100".into()],
            mqtt_brokers: Vec::new(),
            mqtt_keep_alive_secs: 5,
            containerd_socket: PathBuf::new(),
            containerd_namespace: "oakestra".into(),
            snapshotter: "overlayfs".into(),
            containerd_runtime: "io.containerd.runc.v2".into(),
            log_directory: std::env::temp_dir(),
            report_interval_ms: 2_000,
            stop_grace_period_ms: 10_000,
            request_timeout_ms: 10_000,
            pull_timeout_ms: 600_000,
            max_backoff_ms: 10_000,
            hostname: String::new(),
            public_ip: String::new(),
            node_port: std::env::var("MY_PORT").unwrap_or_else(|_| "3000".into()),
            location: String::new(),
            labels: BTreeMap::new(),
            supported_addons: Vec::new(),
            csi_drivers: Vec::new(),
            insecure_registries: Vec::new(),
            log_format: "text".into(),
        }
    }
}

impl WorkerConfig {
    pub fn report_interval(&self) -> Duration {
        Duration::from_millis(self.report_interval_ms)
    }
    pub fn stop_grace_period(&self) -> Duration {
        Duration::from_millis(self.stop_grace_period_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn pull_timeout(&self) -> Duration {
        Duration::from_millis(self.pull_timeout_ms)
    }
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms)
    }

    /// The containerd socket to use: the configured one, or the first well-known one that
    /// exists, or the standard path (so that the error names it).
    pub fn resolved_containerd_socket(&self) -> PathBuf {
        if !self.containerd_socket.as_os_str().is_empty() {
            return self.containerd_socket.clone();
        }
        find_containerd_socket().unwrap_or_else(|| PathBuf::from(CONTAINERD_SOCKETS[0]))
    }

    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| WorkerError::Config { message: e.to_string() })
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| WorkerError::ConfigFile { path: path.to_owned(), source })?;
        Self::from_toml(&text)
    }

    /// Checks values that would otherwise fail later and less clearly.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: &str| Err(WorkerError::Config { message: message.to_owned() });
        if self.cluster_endpoints.is_empty() {
            return bad("cluster_endpoints must name at least one cluster endpoint");
        }
        if self.report_interval_ms == 0 {
            return bad("report_interval_ms must be positive");
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms must be positive");
        }
        if self.containerd_namespace.is_empty() {
            return bad("containerd_namespace must not be empty");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad("log_format must be \"text\" or \"json\"");
        }
        for b in &self.mqtt_brokers {
            if parse_host_port(b).is_none() {
                return Err(WorkerError::Config {
                    message: format!("mqtt broker {b:?} is not host:port"),
                });
            }
        }
        Ok(())
    }
}

/// Splits `host:port` (IPv6 in brackets allowed).
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    let s = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("mqtt://")).unwrap_or(s);
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

/// Command-line flags of `grove-worker`; each also reads its `GROVE_…` environment variable.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "grove-worker", version, about = "Grove worker node engine")]
pub struct Cli {
    /// TOML config file.
    #[arg(long, short = 'c', env = "GROVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Cluster endpoints, comma-separated (`host:port`).
    #[arg(long, env = "GROVE_CLUSTER_ENDPOINTS", value_delimiter = ',')]
    pub cluster_endpoints: Option<Vec<String>>,
    /// MQTT brokers, comma-separated (`host:port`).
    #[arg(long, env = "GROVE_MQTT_BROKERS", value_delimiter = ',')]
    pub mqtt_brokers: Option<Vec<String>>,
    #[arg(long, env = "GROVE_CONTAINERD_SOCKET")]
    pub containerd_socket: Option<PathBuf>,
    #[arg(long, env = "GROVE_CONTAINERD_NAMESPACE")]
    pub containerd_namespace: Option<String>,
    #[arg(long, env = "GROVE_LOG_DIRECTORY")]
    pub log_directory: Option<PathBuf>,
    #[arg(long, env = "GROVE_REPORT_INTERVAL_MS")]
    pub report_interval_ms: Option<u64>,
    #[arg(long, env = "GROVE_STOP_GRACE_PERIOD_MS")]
    pub stop_grace_period_ms: Option<u64>,
    #[arg(long, env = "GROVE_HOSTNAME")]
    pub hostname: Option<String>,
    #[arg(long, env = "GROVE_PUBLIC_IP")]
    pub public_ip: Option<String>,
    #[arg(long, env = "GROVE_LOCATION")]
    pub location: Option<String>,
    /// Supported addons, comma-separated.
    #[arg(long, env = "GROVE_SUPPORTED_ADDONS", value_delimiter = ',')]
    pub supported_addons: Option<Vec<String>>,
    /// Registries reached over plain HTTP, comma-separated.
    #[arg(long, env = "GROVE_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Option<Vec<String>>,
    /// `text` or `json`.
    #[arg(long, env = "GROVE_LOG_FORMAT")]
    pub log_format: Option<String>,
}

impl Cli {
    /// Builds the configuration: defaults, then the file, then env/flags.
    pub fn load(&self) -> Result<WorkerConfig> {
        let mut c = match &self.config {
            Some(path) => WorkerConfig::from_file(path)?,
            None => WorkerConfig::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        over!(
            cluster_endpoints,
            mqtt_brokers,
            containerd_socket,
            containerd_namespace,
            log_directory,
            report_interval_ms,
            stop_grace_period_ms,
            hostname,
            public_ip,
            location,
            supported_addons,
            insecure_registries,
            log_format
        );
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layering_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.toml");
        std::fs::write(
            &file,
            "cluster_endpoints = [\"10.0.0.1:10100\", \"10.0.0.2:10100\"]\n\
             containerd_namespace = \"from-file\"\nlocation = \"file-loc\"\nreport_interval_ms = 500\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "grove-worker",
            "--config",
            file.to_str().unwrap(),
            "--location",
            "flag-loc",
        ])
        .unwrap();
        let c = cli.load().unwrap();
        assert_eq!(c.cluster_endpoints, vec!["10.0.0.1:10100", "10.0.0.2:10100"]);
        assert_eq!(c.containerd_namespace, "from-file");
        assert_eq!(c.location, "flag-loc");
        assert_eq!(c.report_interval_ms, 500);
        // Untouched: default.
        assert_eq!(c.stop_grace_period_ms, 10_000);
        assert_eq!(c.snapshotter, "overlayfs");
    }

    #[test]
    fn env_beats_file_and_flag_beats_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.toml");
        std::fs::write(&file, "hostname = \"file-host\"\npublic_ip = \"10.9.9.9\"\n").unwrap();
        // Only variables no other test in this module reads.
        std::env::set_var("GROVE_HOSTNAME", "env-host");
        std::env::set_var("GROVE_PUBLIC_IP", "10.1.1.1");
        let cli = Cli::try_parse_from([
            "grove-worker",
            "--config",
            file.to_str().unwrap(),
            "--public-ip",
            "10.2.2.2",
        ])
        .unwrap();
        let c = cli.load().unwrap();
        std::env::remove_var("GROVE_HOSTNAME");
        std::env::remove_var("GROVE_PUBLIC_IP");
        assert_eq!(c.hostname, "env-host");
        assert_eq!(c.public_ip, "10.2.2.2");
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let text = include_str!("../deploy/worker.toml");
        let c = WorkerConfig::from_toml(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.log_directory, PathBuf::from("/var/log/grove-worker"));
        assert_eq!(c.report_interval_ms, 2000);
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(WorkerConfig::from_toml("no_such_key = 1").is_err());
    }

    #[test]
    fn validation() {
        let mut c = WorkerConfig::default();
        c.validate().unwrap();
        c.mqtt_brokers = vec!["nohost".into()];
        assert!(c.validate().is_err());
        c.mqtt_brokers = vec!["[::1]:1883".into()];
        c.validate().unwrap();
        c.cluster_endpoints.clear();
        assert!(c.validate().is_err());
    }

    #[test]
    fn host_port() {
        assert_eq!(parse_host_port("a:1"), Some(("a".into(), 1)));
        assert_eq!(parse_host_port("tcp://10.0.0.1:10003"), Some(("10.0.0.1".into(), 10003)));
        assert_eq!(parse_host_port("[::1]:5"), Some(("::1".into(), 5)));
        assert_eq!(parse_host_port("a"), None);
    }
}
