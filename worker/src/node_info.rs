//! The node's own resources (sysinfo), shaped as the contract's Node JSON.
//!
//! The sampler refreshes only what a report needs (CPU usage, memory, disks, interfaces) and
//! never the process table, which keeps an idle worker cheap.

use std::collections::BTreeMap;
use std::net::IpAddr;

use grove_core::node::{goarch, NodeInfo};
use sysinfo::{Disks, Networks, System};

use crate::config::WorkerConfig;
use crate::error::{Result, WorkerError};

/// Samples the node's dynamic resources; holds the static part of the Node JSON.
pub struct NodeSampler {
    system: System,
    disks: Disks,
    networks: Networks,
    base: NodeInfo,
    fixed_ip: Option<String>,
}

impl NodeSampler {
    /// `virtualization`: the runtimes this worker offers.
    pub fn new(config: &WorkerConfig, virtualization: Vec<String>) -> Result<Self> {
        let sys_err = |e: sysinfo::Error| WorkerError::SysInfo { message: e.to_string() };
        let mut system = System::new().map_err(sys_err)?;
        system.refresh_cpu_usage();
        system.refresh_memory();
        let disks = Disks::new_with_refreshed_list().map_err(sys_err)?;
        let networks = Networks::new_with_refreshed_list().map_err(sys_err)?;

        let host = if config.hostname.is_empty() {
            System::host_name().unwrap_or_default()
        } else {
            config.hostname.clone()
        };
        let arch = goarch(std::env::consts::ARCH).to_owned();
        let mut system_info = BTreeMap::new();
        let kernel = System::kernel_version().unwrap_or_default();
        let os = System::long_os_version().unwrap_or_default();
        system_info.insert("kernel_version".into(), kernel.clone());
        system_info.insert("architecture".into(), System::cpu_arch());
        system_info.insert("os_version".into(), os.clone());
        system_info.insert("uptime".into(), System::uptime().unwrap_or(0).to_string());
        system_info.insert(
            "full_stats".into(),
            format!("{{\"hostname\":{host:?},\"os\":{os:?},\"kernelVersion\":{kernel:?}}}"),
        );
        if !config.location.is_empty() {
            system_info.insert("location".into(), config.location.clone());
        }
        for (k, v) in &config.labels {
            system_info.insert(format!("label.{k}"), v.clone());
        }

        let base = NodeInfo {
            host,
            port: config.node_port.clone(),
            system_info,
            vcpus: system.cpus().len() as u32,
            architecture: arch,
            virtualization,
            supported_addons: config.supported_addons.clone(),
            csi_drivers: config.csi_drivers.clone(),
            log_directory: config.log_directory.display().to_string(),
            cluster_address: config.cluster_endpoints.first().cloned().unwrap_or_default(),
            overlay_socket: String::new(),
            ..NodeInfo::default()
        };
        let fixed_ip = (!config.public_ip.is_empty()).then(|| config.public_ip.clone());
        let mut sampler = Self { system, disks, networks, base, fixed_ip };
        let ip = sampler.ip();
        sampler.base.ip = ip;
        Ok(sampler)
    }

    /// The node's hostname as reported.
    pub fn host(&self) -> &str {
        &self.base.host
    }

    /// The node's IP as reported (`publicip` of status events).
    pub fn current_ip(&self) -> &str {
        &self.base.ip
    }

    pub fn set_node_id(&mut self, id: &str) {
        self.base.id = id.to_owned();
    }

    /// Total memory in bytes.
    pub fn total_memory(&self) -> u64 {
        self.system.total_memory()
    }

    fn ip(&self) -> String {
        if let Some(ip) = &self.fixed_ip {
            return ip.clone();
        }
        let mut names: Vec<_> = self.networks.keys().collect();
        names.sort();
        for name in names {
            for net in self.networks[name].ip_networks() {
                if let IpAddr::V4(v4) = net.addr {
                    if !v4.is_loopback() && !v4.is_link_local() {
                        return v4.to_string();
                    }
                }
            }
        }
        String::new()
    }

    /// Refreshes the dynamic fields and returns the full Node JSON.
    pub fn sample(&mut self) -> NodeInfo {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        let mut n = self.base.clone();
        n.ip = self.ip();
        self.base.ip = n.ip.clone();
        n.cpu_percent = f64::from(self.system.global_cpu_usage());
        let total = self.system.total_memory();
        let available = self.system.available_memory();
        n.memory = available >> 20;
        n.memory_percent = if total == 0 {
            0.0
        } else {
            (total.saturating_sub(available)) as f64 * 100.0 / total as f64
        };
        n.disk_info = self.disk_info();
        n.network_info = self.network_info();
        n.gpu_driver = "-".into();
        n
    }

    fn disk_info(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (i, d) in self.disks.iter().enumerate() {
            let total = d.total_space();
            let used_pct = (total.saturating_sub(d.available_space()) * 100).checked_div(total).unwrap_or(0);
            if d.mount_point() == std::path::Path::new("/") {
                out.insert("/".into(), used_pct.to_string());
            }
            out.insert(
                format!("partition_{i}"),
                format!(
                    "{{\"device\":{:?},\"mountpoint\":{:?},\"fstype\":{:?}}}",
                    d.name().to_string_lossy(),
                    d.mount_point().display().to_string(),
                    d.file_system().to_string_lossy()
                ),
            );
        }
        out.entry("/".into()).or_insert_with(|| "0".into());
        out
    }

    fn network_info(&self) -> BTreeMap<String, String> {
        let mut names: Vec<_> = self.networks.keys().collect();
        names.sort();
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let data = &self.networks[name];
                let addrs: Vec<String> = data
                    .ip_networks()
                    .iter()
                    .map(|n| format!("{{\"addr\":\"{}/{}\"}}", n.addr, n.prefix))
                    .collect();
                (
                    format!("interface_{i}"),
                    format!(
                        "{{\"name\":{:?},\"hardwareaddr\":\"{}\",\"addrs\":[{}]}}",
                        name.to_string_lossy(),
                        data.mac_address(),
                        addrs.join(",")
                    ),
                )
            })
            .collect()
    }
}
