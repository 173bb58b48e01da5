//! Registered clusters: static information from registration, and the aggregate resources of
//! their last full report (committed at the report period, not per worker report).

use grove_core::status::Status;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

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

/// Consecutive full reports without an acknowledged instance before it is deployed again.
pub const MISSING_FULL_REPORTS: u8 = 2;

/// One instance as a cluster reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub job_id: String,
    pub instance_number: u32,
    /// An Oakestra status string (checked by the receiver before committing).
    pub status: String,
    pub status_detail: String,
    /// Reported fields kept on the instance (`worker_id`, `publicip`, `host_ip`, `host_port`).
    pub fields: Map<String, Value>,
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

impl RootState {
    pub(super) fn report_from_cluster(
        &mut self,
        id: &str,
        aggregate: Option<ClusterAggregate>,
        reports: Vec<InstanceReport>,
        full: bool,
        at_ms: u64,
    ) -> ApplyResult {
        let cluster = self.clusters.get_mut(id).ok_or_else(|| ApplyError::NotFound(format!("cluster {id} is not registered")))?;
        if let Some(a) = aggregate {
            cluster.aggregate = a;
        }
        cluster.last_report_ms = cluster.last_report_ms.max(at_ms);
        cluster.active = true;
        let cluster_name = cluster.name.clone();
        let mut changed = 0;
        let mut listed = std::collections::BTreeSet::new();
        for r in reports {
            listed.insert((r.job_id.clone(), r.instance_number));
            let ours = self.jobs.get_mut(&r.job_id).and_then(|j| j.instances.get_mut(&r.instance_number)).filter(|i| i.cluster_id == id);
            let Some(inst) = ours else {
                // Not (or no longer) placed there: a stale copy, unless the cluster already
                // removed it.
                if r.status != Status::Undeployed.as_str() {
                    self.queue_undeploy(id, &r.job_id, r.instance_number);
                }
                continue;
            };
            inst.deploy_acked = true;
            inst.missing_reports = 0;
            for (k, v) in r.fields {
                inst.reported.insert(k, v);
            }
            if inst.status != r.status || inst.status_detail != r.status_detail {
                inst.set_status(&r.status, &r.status_detail, at_ms);
                changed += 1;
                if let Some(job) = self.jobs.get_mut(&r.job_id) {
                    job.status = r.status;
                    job.status_detail = r.status_detail;
                }
            }
        }
        if full {
            // Acknowledged instances the cluster no longer holds are dispatched again. One full
            // report may have been composed before the cluster committed a deploy it has since
            // acknowledged, so only the second one in a row that misses an instance counts.
            for (job_id, job) in self.jobs.iter_mut() {
                for inst in job.instances.values_mut().filter(|i| i.cluster_id == id && i.deploy_acked) {
                    if listed.contains(&(job_id.clone(), inst.instance_number)) {
                        inst.missing_reports = 0;
                        continue;
                    }
                    inst.missing_reports = inst.missing_reports.saturating_add(1);
                    if inst.missing_reports >= MISSING_FULL_REPORTS {
                        inst.deploy_acked = false;
                        inst.missing_reports = 0;
                        let detail = format!("cluster {cluster_name} no longer reports it; deploying it again");
                        inst.set_status(Status::ClusterScheduled.as_str(), &detail, at_ms);
                        changed += 1;
                    }
                }
            }
        }
        Ok(Applied::Changed(changed))
    }

    pub(super) fn mark_cluster_lost(&mut self, id: &str, last_report_ms: u64, at_ms: u64) -> ApplyResult {
        let cluster = self.clusters.get_mut(id).ok_or_else(|| ApplyError::NotFound(format!("cluster {id} is not registered")))?;
        if !cluster.active || cluster.last_report_ms != last_report_ms {
            return Ok(Applied::Changed(0));
        }
        cluster.active = false;
        let detail = format!("cluster {} lost (no report for too long); waiting for a new placement", cluster.name);
        let mut moved = Vec::new();
        for (job_id, job) in self.jobs.iter_mut() {
            for inst in job.instances.values_mut().filter(|i| i.cluster_id == id) {
                moved.push((job_id.clone(), inst.clone()));
                inst.cluster_id.clear();
                inst.cluster_location.clear();
                inst.deploy_acked = false;
                inst.reported.clear();
                inst.set_status(Status::Requested.as_str(), &detail, at_ms);
                job.status = Status::Requested.as_str().into();
                job.status_detail = detail.clone();
            }
        }
        for (job_id, inst) in &moved {
            self.queue_undeploy(&inst.cluster_id, job_id, inst.instance_number);
        }
        Ok(Applied::Changed(moved.len()))
    }
}
