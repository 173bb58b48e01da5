//! Registered clusters: static information from registration, and the aggregate resources of
//! their last full report (committed at the report period, not per worker report).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Applied, ApplyError, ApplyResult, RootState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub id: String,
    /// `candidate_name`.
    pub name: String,
    /// `candidate_location`, `"lat,long[,radius]"`.
    pub location: String,
    /// Address the cluster registered from.
    pub ip: String,
    /// The cluster manager's port (a string, as upstream).
    pub port: String,
    /// The cluster tier's replica endpoints (gRPC), where the dispatcher sends deploys.
    pub endpoints: Vec<String>,
    pub registered_at_ms: u64,
    pub last_report_ms: u64,
    /// Set by the root leader: the cluster reported recently enough.
    pub active: bool,
    pub aggregate: ClusterAggregate,
}

/// Aggregate resources of a cluster's active workers (contract §3.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterAggregate {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub vcpus: u32,
    /// Available memory, MB.
    pub memory: u64,
    pub vgpus: u32,
    pub virtualization: Vec<String>,
    pub supported_addons: Vec<String>,
    pub csi_drivers: Vec<String>,
    pub gpu_drivers: Vec<String>,
    pub active_nodes: u32,
}

impl ClusterRecord {
    /// The `GET /api/clusters/` entry: the candidate projection plus upstream's aliases.
    pub fn document(&self) -> Value {
        let a = &self.aggregate;
        json!({
            "_id": { "$oid": self.id },
            "candidate_name": self.name,
            "candidate_location": self.location,
            "ip": self.ip,
            "port": self.port,
            "endpoints": self.endpoints,
            "clusterinfo": {},
            "cpu_percent": a.cpu_percent,
            "memory_percent": a.memory_percent,
            "vcpus": a.vcpus,
            "memory": a.memory,
            "vgpus": a.vgpus,
            "virtualization": a.virtualization,
            "supported_addons": a.supported_addons,
            "csi_drivers": a.csi_drivers,
            "gpu_drivers": a.gpu_drivers,
            "active_nodes": a.active_nodes,
            "active": self.active,
            "last_modified_timestamp": self.last_report_ms as f64 / 1000.0,
            "cluster_name": self.name,
            "cluster_location": self.location,
            "aggregated_cpu_percent": a.cpu_percent,
            "memory_in_mb": a.memory,
            "total_cpu_cores": a.vcpus,
            "total_gpu_cores": a.vgpus,
        })
    }
}

impl RootState {
    pub fn cluster_named(&self, name: &str) -> Option<&ClusterRecord> {
        self.clusters.values().find(|c| c.name == name)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn register_cluster(
        &mut self,
        id: String,
        name: String,
        location: String,
        ip: String,
        port: String,
        endpoints: Vec<String>,
        at_ms: u64,
    ) -> ApplyResult {
        if name.is_empty() {
            return Err(ApplyError::Invalid("cluster_name must not be empty".into()));
        }
        let id = self.cluster_named(&name).map(|c| c.id.clone()).unwrap_or(id);
        let record = self.clusters.entry(id.clone()).or_insert_with(|| ClusterRecord {
            id: id.clone(),
            name: name.clone(),
            location: String::new(),
            ip: String::new(),
            port: String::new(),
            endpoints: Vec::new(),
            registered_at_ms: at_ms,
            last_report_ms: at_ms,
            active: true,
            aggregate: ClusterAggregate::default(),
        });
        record.location = location;
        record.ip = ip;
        record.port = port;
        record.endpoints = endpoints;
        record.registered_at_ms = at_ms;
        record.last_report_ms = at_ms;
        record.active = true;
        Ok(Applied::Id(id))
    }

    pub(super) fn report_cluster(&mut self, id: &str, aggregate: ClusterAggregate, at_ms: u64) -> ApplyResult {
        let c = self.clusters.get_mut(id).ok_or_else(|| ApplyError::NotFound(format!("cluster {id} is not registered")))?;
        c.aggregate = aggregate;
        c.last_report_ms = c.last_report_ms.max(at_ms);
        c.active = true;
        Ok(Applied::Done)
    }
}
