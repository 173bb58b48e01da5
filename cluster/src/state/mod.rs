//! The cluster's replicated state machine: registered workers, the jobs the root sent, their
//! instances with placement, lifecycle status and desired state, and the replicas' endpoints.
//!
//! [`ClusterState::apply`] is pure: ids and timestamps are made by the caller and carried in
//! the [`ClusterCommand`]. Every command is idempotent (the same command applied twice leaves
//! the state as applying it once), because a write whose outcome is unknown (`Indeterminate`)
//! is retried blindly. Placements are compare-and-set on the instance's current worker, so a
//! stale plan (or a second leader in a new term) never places an instance twice.

mod instances;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use grove_core::job::Job;
use grove_core::node::NodeInfo;
use serde::{Deserialize, Serialize};

pub use instances::{instance_key, Desired, InstanceRecord, StatusUpdate};
pub use workers::WorkerRecord;

/// Where one replica of the cluster tier can be reached (announced by each replica at start).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicaEndpoints {
    /// Worker registration and the cluster's HTTP API (`host:port`), also where other replicas
    /// send observations and deliveries.
    pub api: String,
    /// The `Cluster` gRPC service the root dispatches to (`host:port`).
    pub grpc: String,
    /// The embedded MQTT broker (`host:port`).
    pub mqtt: String,
}

/// The whole replicated cluster state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Registered workers by id.
    pub workers: BTreeMap<String, WorkerRecord>,
    /// Job documents by job id, as the root sent them (without `instance_list`).
    pub jobs: BTreeMap<String, Job>,
    /// Instances by [`instance_key`] (`<job_id>/<instance_number>`, Oakestra's cluster `_id`).
    pub instances: BTreeMap<String, InstanceRecord>,
    /// Replica endpoints by Raft node id.
    pub replicas: BTreeMap<u64, ReplicaEndpoints>,
    /// The id the root gave this cluster at registration (empty until registered).
    pub cluster_id: String,
    /// Commands applied, to compare replicas cheaply.
    pub applied_commands: u64,
}

/// A state change. Every value that is not a pure function of the state is in the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClusterCommand {
    /// A replica's endpoints (upsert by node id).
    AnnounceReplica { id: u64, endpoints: ReplicaEndpoints },
    /// The root registered this cluster under `id`.
    SetClusterId { id: String },
    /// `POST /api/node/register`: upsert by hostname; `id` is used only for a new hostname.
    RegisterWorker { id: String, info: NodeInfo, at_ms: u64 },
    /// The leader heard nothing from the worker for the liveness timeout: its instances fail
    /// and become unplaced (the scheduler places them elsewhere).
    WorkerLost { id: String, detail: String, at_ms: u64 },
    /// A lost worker reports again.
    WorkerReturned { id: String, at_ms: u64 },
    /// Several workers lost at once (`(id, detail)`); unknown ids are skipped, so a batch
    /// applies as a whole.
    WorkersLost { workers: Vec<(String, String)>, at_ms: u64 },
    /// Several lost workers report again; unknown ids are skipped.
    WorkersReturned { ids: Vec<String>, at_ms: u64 },
    /// The root asks for an instance (idempotent on job id + instance number).
    Deploy { job_id: String, instance_number: u32, job: Job, at_ms: u64 },
    /// The root removes an instance, or every instance of the job (`None`).
    Undeploy { job_id: String, instance_number: Option<u32>, at_ms: u64 },
    /// The scheduler placed an instance, if its worker is still `expected_worker` ("" = none).
    Place { key: String, worker_id: String, expected_worker: String, at_ms: u64 },
    /// The scheduler found no worker: a negative status and why (unplaced instances only).
    FailPlacement { key: String, status: String, detail: String, at_ms: u64 },
    /// Status events a worker published on `nodes/<id>/job`, or `RUNNING` derived from its
    /// resource reports.
    ReportStatuses { worker_id: String, updates: Vec<StatusUpdate>, at_ms: u64 },
}

/// What a successful command returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// Number of records changed (0 = nothing to do, e.g. a repeated command).
    Changed(usize),
    /// A created or existing id (worker registration).
    Id(String),
    /// Status updates applied; `stale` lists the reported instances this worker should not run
    /// (another worker holds them, they are being removed, or they are unknown) — the caller
    /// sends them a delete.
    Statuses { changed: usize, stale: Vec<StatusUpdate> },
}

/// Why a command did not apply (identically on every replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ApplyError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

pub type ApplyResult = Result<Applied, ApplyError>;

impl grove_raft::StateMachine for ClusterState {
    type Command = ClusterCommand;
    type Response = ApplyResult;

    fn apply(&mut self, command: ClusterCommand) -> ApplyResult {
        self.applied_commands += 1;
        use ClusterCommand::*;
        match command {
            AnnounceReplica { id, endpoints } => {
                if self.replicas.get(&id) == Some(&endpoints) {
                    return Ok(Applied::Changed(0));
                }
                self.replicas.insert(id, endpoints);
                Ok(Applied::Changed(1))
            }
            SetClusterId { id } => {
                if self.cluster_id == id {
                    return Ok(Applied::Changed(0));
                }
                self.cluster_id = id;
                Ok(Applied::Changed(1))
            }
            RegisterWorker { id, info, at_ms } => self.register_worker(id, info, at_ms),
            WorkerLost { id, detail, at_ms } => self.worker_lost(&id, &detail, at_ms),
            WorkerReturned { id, at_ms } => self.worker_returned(&id, at_ms),
            WorkersLost { workers, at_ms } => {
                let mut changed = 0;
                for (id, detail) in &workers {
                    if let Ok(Applied::Changed(n)) = self.worker_lost(id, detail, at_ms) {
                        changed += n;
                    }
                }
                Ok(Applied::Changed(changed))
            }
            WorkersReturned { ids, at_ms } => {
                let mut changed = 0;
                for id in &ids {
                    if let Ok(Applied::Changed(n)) = self.worker_returned(id, at_ms) {
                        changed += n;
                    }
                }
                Ok(Applied::Changed(changed))
            }
            Deploy { job_id, instance_number, job, at_ms } => self.deploy(job_id, instance_number, job, at_ms),
            Undeploy { job_id, instance_number, at_ms } => self.undeploy(&job_id, instance_number, at_ms),
            Place { key, worker_id, expected_worker, at_ms } => self.place(&key, &worker_id, &expected_worker, at_ms),
            FailPlacement { key, status, detail, at_ms } => self.fail_placement(&key, status, detail, at_ms),
            ReportStatuses { worker_id, updates, at_ms } => self.report_statuses(&worker_id, updates, at_ms),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("cluster state snapshot: {e}"))
    }
}

impl ClusterState {
    /// The id of the job called `job_name`.
    pub fn job_id_by_name(&self, job_name: &str) -> Option<&str> {
        self.jobs.iter().find(|(_, j)| j.job_name == job_name).map(|(id, _)| id.as_str())
    }

    /// The instances placed on `worker_id`.
    pub fn instances_on<'a>(&'a self, worker_id: &'a str) -> impl Iterator<Item = (&'a String, &'a InstanceRecord)> + 'a {
        self.instances.iter().filter(move |(_, i)| i.worker_id == worker_id)
    }

    /// The instances placed on each worker, for passes over many workers: one scan of the
    /// instances instead of one per worker.
    pub fn instances_by_worker(&self) -> std::collections::HashMap<&str, Vec<(&String, &InstanceRecord)>> {
        let mut out: std::collections::HashMap<&str, Vec<(&String, &InstanceRecord)>> = std::collections::HashMap::new();
        for (key, inst) in &self.instances {
            if !inst.worker_id.is_empty() {
                out.entry(inst.worker_id.as_str()).or_default().push((key, inst));
            }
        }
        out
    }

    /// Forget job documents no instance refers to any more.
    fn drop_unused_jobs(&mut self) {
        let used: std::collections::BTreeSet<&str> = self.instances.values().map(|i| i.job_id.as_str()).collect();
        let unused: Vec<String> = self.jobs.keys().filter(|id| !used.contains(id.as_str())).cloned().collect();
        for id in unused {
            self.jobs.remove(&id);
        }
    }
}
