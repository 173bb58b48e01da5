//! Services (Oakestra's jobs) and their instances: placement, status and its history, and the
//! dispatches to clusters that follow from them.

use std::collections::BTreeMap;

use grove_core::job::Job;
use grove_core::status::Status;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Applied, ApplyError, ApplyResult, RootState};

/// Status changes kept per instance (oldest dropped first).
pub const MAX_STATUS_HISTORY: usize = 50;

/// A service: the job document derived from the SLA, its owner and its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job document without `status` and `instance_list` (kept below).
    pub job: Job,
    /// The owner's user name.
    pub owner: String,
    pub instances: BTreeMap<u32, InstanceRecord>,
    /// `next_instance_progressive_number`.
    pub next_instance: u32,
    /// Job-level status: the last instance status written (empty until the first instance).
    pub status: String,
    pub status_detail: String,
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance_number: u32,
    /// The cluster it is placed on (empty while not placed).
    pub cluster_id: String,
    pub cluster_location: String,
    pub status: String,
    pub status_detail: String,
    /// Status changes, oldest first, at most [`MAX_STATUS_HISTORY`].
    pub history: Vec<StatusChange>,
    /// The cluster acknowledged the deploy of this placement.
    pub deploy_acked: bool,
    /// Fields the cluster reports (`worker_id`, `publicip`, `host_ip`, …), kept verbatim.
    #[serde(default)]
    pub reported: Map<String, Value>,
    /// Consecutive full reports of its cluster that did not list this acknowledged instance.
    #[serde(default)]
    pub missing_reports: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: String,
    pub detail: String,
    pub at_ms: u64,
}

/// One outcome of the root scheduler for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Place { job_id: String, instance_number: u32, cluster_id: String },
    Fail { job_id: String, instance_number: u32, status: String, detail: String },
}

/// A deploy or undeploy the root owes a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dispatch {
    pub cluster_id: String,
    pub job_id: String,
    pub instance_number: u32,
}

impl JobRecord {
    pub fn new(mut job: Job, owner: &str) -> Self {
        job.extra.remove("instance_list");
        job.extra.remove("next_instance_progressive_number");
        job.status.clear();
        job.status_detail.clear();
        JobRecord {
            job,
            owner: owner.to_owned(),
            instances: BTreeMap::new(),
            next_instance: 0,
            status: String::new(),
            status_detail: String::new(),
        }
    }

    /// The job document of contract §2.6 with `_id` as `{"$oid": …}`.
    pub fn document(&self) -> Value {
        let mut doc = self.downstream_document(None);
        doc["_id"] = json!({ "$oid": self.job.id });
        doc
    }

    /// The job document as sent to a cluster: `_id` a string, `instance_list` filtered to
    /// `only` when given.
    pub fn downstream_document(&self, only: Option<u32>) -> Value {
        let mut doc = serde_json::to_value(&self.job).unwrap_or_else(|_| json!({}));
        doc["status"] = Value::from(self.status.as_str());
        doc["status_detail"] = Value::from(self.status_detail.as_str());
        doc["next_instance_progressive_number"] = Value::from(self.next_instance);
        doc["instance_list"] = Value::Array(
            self.instances.values().filter(|i| only.is_none_or(|n| n == i.instance_number)).map(|i| i.document()).collect(),
        );
        doc
    }
}

impl InstanceRecord {
    pub fn document(&self) -> Value {
        let mut doc = Value::Object(self.reported.clone());
        doc["instance_number"] = Value::from(self.instance_number);
        doc["cluster_id"] = Value::from(self.cluster_id.as_str());
        doc["cluster_location"] = Value::from(self.cluster_location.as_str());
        doc["status"] = Value::from(self.status.as_str());
        doc["status_detail"] = Value::from(self.status_detail.as_str());
        doc["status_history"] = serde_json::to_value(&self.history).unwrap_or_default();
        doc
    }

    pub fn status(&self) -> Option<Status> {
        self.status.parse().ok()
    }

    pub(super) fn set_status(&mut self, status: &str, detail: &str, at_ms: u64) {
        self.status = status.to_owned();
        self.status_detail = detail.to_owned();
        self.history.push(StatusChange { status: status.to_owned(), detail: detail.to_owned(), at_ms });
        if self.history.len() > MAX_STATUS_HISTORY {
            let excess = self.history.len() - MAX_STATUS_HISTORY;
            self.history.drain(..excess);
        }
    }
}

impl RootState {
    pub fn job_named(&self, job_name: &str) -> Option<&JobRecord> {
        self.names.jobs.get(job_name).and_then(|id| self.jobs.get(id))
    }

    pub(super) fn insert_job(&mut self, job: JobRecord) {
        self.names.jobs.insert(job.job.job_name.clone(), job.job.id.clone());
        self.jobs.insert(job.job.id.clone(), job);
    }

    pub fn jobs_of_application(&self, app_id: &str) -> impl Iterator<Item = &JobRecord> {
        let ids = self.applications.get(app_id).map(|a| a.microservices.clone()).unwrap_or_default();
        ids.into_iter().filter_map(move |id| self.jobs.get(&id))
    }

    /// Remove a job; its placed instances are queued for undeploy.
    pub(super) fn remove_job(&mut self, job_id: &str) -> bool {
        let Some(job) = self.jobs.remove(job_id) else { return false };
        self.names.jobs.remove(&job.job.job_name);
        for inst in job.instances.values() {
            self.queue_undeploy(&inst.cluster_id, job_id, inst.instance_number);
        }
        if let Some(app) = self.applications.get_mut(&job.job.application_id) {
            app.microservices.retain(|id| id != job_id);
        }
        true
    }

    /// Owe `cluster_id` an undeploy of instance `n` of `job_id` (once).
    pub(super) fn queue_undeploy(&mut self, cluster_id: &str, job_id: &str, n: u32) {
        if cluster_id.is_empty() {
            return;
        }
        let d = Dispatch { cluster_id: cluster_id.to_owned(), job_id: job_id.to_owned(), instance_number: n };
        if !self.pending_undeploys.contains(&d) {
            self.pending_undeploys.push(d);
        }
    }

    pub(super) fn delete_service(&mut self, id: &str) -> ApplyResult {
        if self.remove_job(id) {
            Ok(Applied::Done)
        } else {
            Err(ApplyError::NotFound(format!("service {id} does not exist")))
        }
    }

    /// `NotFound` unless service `job_id` exists and (when `owner` is given) belongs to `owner`.
    pub(super) fn check_job_owner(&self, job_id: &str, owner: Option<&str>) -> Result<(), ApplyError> {
        match self.jobs.get(job_id) {
            Some(j) if owner.is_none_or(|o| j.owner == o) => Ok(()),
            _ => Err(ApplyError::NotFound(format!("service {job_id} not found"))),
        }
    }

    fn job_mut(&mut self, job_id: &str) -> Result<&mut JobRecord, ApplyError> {
        self.jobs.get_mut(job_id).ok_or_else(|| ApplyError::NotFound(format!("service {job_id} does not exist")))
    }

    pub(super) fn request_instance(&mut self, job_id: &str, at_ms: u64) -> ApplyResult {
        let job = self.job_mut(job_id)?;
        let n = job.next_instance;
        job.next_instance += 1;
        let mut inst = InstanceRecord {
            instance_number: n,
            cluster_id: String::new(),
            cluster_location: String::new(),
            status: String::new(),
            status_detail: String::new(),
            history: Vec::new(),
            deploy_acked: false,
            reported: Map::new(),
            missing_reports: 0,
        };
        let detail = "Waiting for scheduling decision";
        inst.set_status(Status::Requested.as_str(), detail, at_ms);
        job.instances.insert(n, inst);
        job.status = Status::Requested.as_str().into();
        job.status_detail = detail.into();
        Ok(Applied::Instance(n))
    }

    pub(super) fn remove_instances(&mut self, job_id: &str, instance_number: i64, _at_ms: u64) -> ApplyResult {
        let job = self.job_mut(job_id)?;
        // Collect first, then remove: upstream removed while iterating and skipped every other one.
        let numbers: Vec<u32> = if instance_number < 0 {
            job.instances.keys().copied().collect()
        } else {
            let n = u32::try_from(instance_number).map_err(|_| ApplyError::Invalid(format!("bad instance number {instance_number}")))?;
            if !job.instances.contains_key(&n) {
                return Err(ApplyError::NotFound(format!("service {job_id} has no instance {n}")));
            }
            vec![n]
        };
        let removed: Vec<InstanceRecord> = numbers.iter().filter_map(|n| job.instances.remove(n)).collect();
        for inst in &removed {
            self.queue_undeploy(&inst.cluster_id, job_id, inst.instance_number);
        }
        Ok(Applied::Changed(removed.len()))
    }

    pub(super) fn place_instance(&mut self, job_id: &str, n: u32, cluster_id: &str, at_ms: u64) -> ApplyResult {
        let location = self
            .clusters
            .get(cluster_id)
            .map(|c| c.location.clone())
            .ok_or_else(|| ApplyError::NotFound(format!("cluster {cluster_id} is not registered")))?;
        let job = self.job_mut(job_id)?;
        let inst = job.instances.get_mut(&n).ok_or_else(|| ApplyError::NotFound(format!("service {job_id} has no instance {n}")))?;
        let waiting = inst.cluster_id.is_empty()
            && inst.status().is_some_and(|s| s == Status::Requested || s.is_negative_scheduling());
        if !waiting {
            return Err(ApplyError::Conflict(format!("instance {n} of {job_id} is not waiting for a placement ({})", inst.status)));
        }
        inst.cluster_id = cluster_id.to_owned();
        inst.cluster_location = location;
        inst.deploy_acked = false;
        inst.set_status(Status::ClusterScheduled.as_str(), "", at_ms);
        job.status = Status::ClusterScheduled.as_str().into();
        job.status_detail.clear();
        // Back on a cluster that still owes an undeploy of this very instance (it was lost and
        // returned): the deploy supersedes it (deploys are idempotent, the copy may keep running).
        self.pending_undeploys.retain(|d| !(d.cluster_id == cluster_id && d.job_id == job_id && d.instance_number == n));
        Ok(Applied::Done)
    }

    pub(super) fn fail_placement(&mut self, job_id: &str, n: u32, status: String, detail: String, at_ms: u64) -> ApplyResult {
        if !status.parse::<Status>().is_ok_and(|s| s.is_negative_scheduling()) {
            return Err(ApplyError::Invalid(format!("{status:?} is not a negative scheduling status")));
        }
        let job = self.job_mut(job_id)?;
        let inst = job.instances.get_mut(&n).ok_or_else(|| ApplyError::NotFound(format!("service {job_id} has no instance {n}")))?;
        if !inst.cluster_id.is_empty() {
            return Err(ApplyError::Conflict(format!("instance {n} of {job_id} is already placed")));
        }
        inst.set_status(&status, &detail, at_ms);
        job.status = status;
        job.status_detail = detail;
        Ok(Applied::Done)
    }

    /// Record acknowledged deploys (of instances still placed there) and undeploys; answers how
    /// many records changed.
    pub(super) fn acknowledge(&mut self, deploys: &[Dispatch], undeploys: &[Dispatch]) -> usize {
        let mut changed = 0;
        for d in deploys {
            let inst = self.jobs.get_mut(&d.job_id).and_then(|j| j.instances.get_mut(&d.instance_number));
            if let Some(inst) = inst.filter(|i| i.cluster_id == d.cluster_id && !i.deploy_acked) {
                inst.deploy_acked = true;
                changed += 1;
            }
        }
        let before = self.pending_undeploys.len();
        self.pending_undeploys.retain(|d| !undeploys.contains(d));
        changed + before - self.pending_undeploys.len()
    }

    /// Apply a scheduler pass; answers how many decisions applied.
    pub(super) fn schedule(&mut self, decisions: Vec<Decision>, at_ms: u64) -> usize {
        decisions
            .into_iter()
            .filter(|d| {
                let outcome = match d.clone() {
                    Decision::Place { job_id, instance_number, cluster_id } => self.place_instance(&job_id, instance_number, &cluster_id, at_ms),
                    Decision::Fail { job_id, instance_number, status, detail } => self.fail_placement(&job_id, instance_number, status, detail, at_ms),
                };
                outcome.is_ok()
            })
            .count()
    }

    /// Instances waiting for a placement: `REQUESTED`, or a negative scheduling status (retried).
    pub fn unplaced_instances(&self) -> Vec<(String, u32, String)> {
        let mut out = Vec::new();
        for (id, job) in &self.jobs {
            for inst in job.instances.values() {
                if inst.cluster_id.is_empty() {
                    out.push((id.clone(), inst.instance_number, inst.status.clone()));
                }
            }
        }
        out
    }
}
