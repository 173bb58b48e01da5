//! The worker's Node JSON (contract §4.2, NE `model/Node.go`): the body of
//! `POST /api/node/register` and of every `nodes/<id>/information` message. Every key is always
//! present (upstream uses no `omitempty`); the Go-style capitalised keys are upstream's
//! untagged struct fields and are part of the wire format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A CSI driver the worker offers (`csi_drivers[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsiDriver {
    pub csi_driver_name: String,
    pub csi_driver_endpoint: String,
}

/// The Node struct, field for field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Empty at registration; the cluster assigns it.
    pub id: String,
    /// Hostname; the cluster uses it as `candidate_name` (same host ⇒ same worker id).
    pub host: String,
    pub ip: String,
    /// The worker's service port as a string (upstream: env `MY_PORT` or "3000").
    pub port: String,
    /// `kernel_version`, `architecture`, `os_version`, `uptime`, `full_stats` (all strings).
    pub system_info: BTreeMap<String, String>,
    /// Host CPU usage, percent of all cores.
    pub cpu_percent: f64,
    /// Logical cores.
    pub vcpus: u32,
    /// Go's GOARCH spelling (`amd64`, `arm64`, …).
    pub architecture: String,
    pub memory_percent: f64,
    /// **Available** memory in MB.
    pub memory: u64,
    /// `"/"` → used percent, `partition_<i>` → description.
    pub disk_info: BTreeMap<String, String>,
    /// `interface_<i>` → description.
    pub network_info: BTreeMap<String, String>,
    pub gpu_driver: String,
    pub gpu_usage: f64,
    pub vgpus: u32,
    pub gpu_temp: f64,
    pub vram_percent: f64,
    pub vram: f64,
    /// Runtimes this worker runs, e.g. `["docker"]`.
    pub virtualization: Vec<String>,
    /// e.g. `image-builder`, `FLOps-learner`.
    pub supported_addons: Vec<String>,
    pub csi_drivers: Vec<CsiDriver>,
    #[serde(rename = "Overlay")]
    pub overlay: bool,
    #[serde(rename = "OverlaySocket")]
    pub overlay_socket: String,
    #[serde(rename = "LogDirectory")]
    pub log_directory: String,
    #[serde(rename = "NetManagerPort")]
    pub net_manager_port: u32,
    #[serde(rename = "ClusterAddress")]
    pub cluster_address: String,
}

/// Go's GOARCH name for a Rust `std::env::consts::ARCH` value.
pub fn goarch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_json_has_exactly_the_contract_keys() {
        let v = serde_json::to_value(NodeInfo::default()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "id", "host", "ip", "port", "system_info", "cpu_percent", "vcpus", "architecture",
            "memory_percent", "memory", "disk_info", "network_info", "gpu_driver", "gpu_usage",
            "vgpus", "gpu_temp", "vram_percent", "vram", "virtualization", "supported_addons",
            "csi_drivers", "Overlay", "OverlaySocket", "LogDirectory", "NetManagerPort",
            "ClusterAddress",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn goarch_names() {
        assert_eq!(goarch("x86_64"), "amd64");
        assert_eq!(goarch("aarch64"), "arm64");
    }
}
