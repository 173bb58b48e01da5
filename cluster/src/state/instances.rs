//! Instances: what the root asked for (desired state), where the scheduler put them, and what
//! their worker reports.

use grove_core::job::Job;
use grove_core::status::Status;
use serde::{Deserialize, Serialize};

use super::{Applied, ApplyError, ApplyResult, ClusterState};

/// `<job_id>/<instance_number>`: the instance's key (Oakestra's cluster-side `_id`).
pub fn instance_key(job_id: &str, instance_number: u32) -> String {
    format!("{job_id}/{instance_number}")
}

/// What should become of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Keep it running on its worker (or place it when it has none).
    Running,
    /// The root undeployed it: delete it from its worker; the record goes when the worker
    /// reports `UNDEPLOYED` (or is lost).
    Removed,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub job_id: String,
    pub instance_number: u32,
    pub job_name: String,
    /// The worker it is placed on; empty while unplaced.
    pub worker_id: String,
    /// An Oakestra status string (contract §5).
    pub status: String,
    pub status_detail: String,
    pub desired: Desired,
    /// The worker's IP as it reported it.
    pub publicip: String,
    pub updated_at_ms: u64,
    /// How many times it was placed (re-placements after failures count).
    pub placements: u32,
}

/// One status event of a worker (`nodes/<id>/job`: `sname`, `instance`, `status`,
/// `status_detail`, `publicip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub job_name: String,
    pub instance_number: u32,
    pub status: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub publicip: String,
}

impl ClusterState {
    pub(super) fn deploy(&mut self, job_id: String, instance_number: u32, mut job: Job, at_ms: u64) -> ApplyResult {
        if job_id.is_empty() {
            return Err(ApplyError::Invalid("job_id: must not be empty".into()));
        }
        if job.job_name.is_empty() {
            return Err(ApplyError::Invalid("job_name: the job document needs a job_name".into()));
        }
        if let Some(other) = self.jobs.iter().find(|(id, j)| **id != job_id && j.job_name == job.job_name).map(|(id, _)| id) {
            return Err(ApplyError::Conflict(format!("job_name {}: already used by job {other}", job.job_name)));
        }
        if let Some(existing) = self.jobs.get(&job_id) {
            if existing.job_name != job.job_name {
                return Err(ApplyError::Conflict(format!(
                    "job {job_id}: job_name {} differs from the stored {}",
                    job.job_name, existing.job_name
                )));
            }
        }
        job.id = job_id.clone();
        job.extra.remove("instance_list");
        let job_name = job.job_name.clone();
        self.jobs.insert(job_id.clone(), job);
        let key = instance_key(&job_id, instance_number);
        match self.instances.get_mut(&key) {
            Some(inst) if inst.desired == Desired::Running => Ok(Applied::Changed(0)),
            Some(inst) => {
                // Deployed again while its removal was pending: keep it where it is.
                inst.desired = Desired::Running;
                inst.updated_at_ms = at_ms;
                Ok(Applied::Changed(1))
            }
            None => {
                self.instances.insert(
                    key,
                    InstanceRecord {
                        job_id,
                        instance_number,
                        job_name,
                        worker_id: String::new(),
                        status: Status::ClusterScheduled.as_str().into(),
                        status_detail: "Waiting for a worker".into(),
                        desired: Desired::Running,
                        publicip: String::new(),
                        updated_at_ms: at_ms,
                        placements: 0,
                    },
                );
                Ok(Applied::Changed(1))
            }
        }
    }

    pub(super) fn undeploy(&mut self, job_id: &str, instance_number: Option<u32>, at_ms: u64) -> ApplyResult {
        let keys: Vec<String> = match instance_number {
            Some(n) => vec![instance_key(job_id, n)],
            None => self.instances.iter().filter(|(_, i)| i.job_id == job_id).map(|(k, _)| k.clone()).collect(),
        };
        let mut changed = 0;
        for key in keys {
            let Some(inst) = self.instances.get_mut(&key) else { continue };
            if inst.worker_id.is_empty() {
                self.instances.remove(&key);
                changed += 1;
            } else if inst.desired != Desired::Removed {
                inst.desired = Desired::Removed;
                inst.updated_at_ms = at_ms;
                changed += 1;
            }
        }
        self.drop_unused_jobs();
        Ok(Applied::Changed(changed))
    }

    pub(super) fn place(&mut self, key: &str, worker_id: &str, expected_worker: &str, at_ms: u64) -> ApplyResult {
        match self.workers.get(worker_id) {
            None => return Err(ApplyError::NotFound(format!("worker {worker_id} is not registered"))),
            Some(w) if w.lost => return Err(ApplyError::Conflict(format!("worker {worker_id} is lost"))),
            Some(_) => {}
        }
        let Some(inst) = self.instances.get_mut(key) else {
            return Err(ApplyError::NotFound(format!("instance {key} does not exist")));
        };
        if inst.desired != Desired::Running {
            return Err(ApplyError::Conflict(format!("instance {key} is being removed")));
        }
        if inst.worker_id == worker_id && inst.status == Status::NodeScheduled.as_str() {
            return Ok(Applied::Changed(0));
        }
        if inst.worker_id != expected_worker {
            return Err(ApplyError::Conflict(format!(
                "instance {key} is on worker {:?}, not {expected_worker:?}",
                inst.worker_id
            )));
        }
        inst.worker_id = worker_id.to_owned();
        inst.status = Status::NodeScheduled.as_str().into();
        inst.status_detail.clear();
        inst.publicip.clear();
        inst.updated_at_ms = at_ms;
        inst.placements += 1;
        Ok(Applied::Changed(1))
    }

    pub(super) fn fail_placement(&mut self, key: &str, status: String, detail: String, at_ms: u64) -> ApplyResult {
        if !status.parse::<Status>().is_ok_and(Status::is_negative_scheduling) {
            return Err(ApplyError::Invalid(format!("status {status:?}: not a negative scheduling status")));
        }
        let Some(inst) = self.instances.get_mut(key) else {
            return Err(ApplyError::NotFound(format!("instance {key} does not exist")));
        };
        if !inst.worker_id.is_empty() || inst.desired != Desired::Running {
            return Ok(Applied::Changed(0));
        }
        if inst.status == status && inst.status_detail == detail {
            return Ok(Applied::Changed(0));
        }
        inst.status = status;
        inst.status_detail = detail;
        inst.updated_at_ms = at_ms;
        Ok(Applied::Changed(1))
    }

    pub(super) fn report_statuses(&mut self, worker_id: &str, updates: Vec<StatusUpdate>, at_ms: u64) -> ApplyResult {
        if !self.workers.contains_key(worker_id) {
            return Err(ApplyError::NotFound(format!("worker {worker_id} is not registered")));
        }
        let mut changed = 0;
        let mut stale = Vec::new();
        for u in updates {
            let Ok(status) = u.status.parse::<Status>() else {
                return Err(ApplyError::Invalid(format!("status {:?}: not an Oakestra status string", u.status)));
            };
            let key = self.job_id_by_name(&u.job_name).map(|id| instance_key(id, u.instance_number));
            let inst = key.as_deref().and_then(|k| self.instances.get_mut(k));
            let Some(inst) = inst.filter(|i| i.worker_id == worker_id) else {
                // Not ours to run: a leftover of an earlier placement or of a removed job.
                if !status.is_terminal() {
                    stale.push(u);
                }
                continue;
            };
            match inst.desired {
                Desired::Removed if status == Status::Undeployed => {
                    let key = key.expect("found by key");
                    self.instances.remove(&key);
                    changed += 1;
                    continue;
                }
                Desired::Removed => {}
                // The cluster never asked for this removal (for example a worker repeating the
                // final status of an earlier incarnation): reconciliation deploys it again.
                Desired::Running if status == Status::Undeployed => continue,
                Desired::Running => {}
            }
            // A late CREATED never hides RUNNING.
            if status == Status::Created && inst.status == Status::Running.as_str() {
                continue;
            }
            if inst.status == status.as_str() && inst.status_detail == u.detail && (u.publicip.is_empty() || inst.publicip == u.publicip) {
                continue;
            }
            inst.status = status.as_str().into();
            inst.status_detail = u.detail;
            if !u.publicip.is_empty() {
                inst.publicip = u.publicip;
            }
            inst.updated_at_ms = at_ms;
            changed += 1;
        }
        self.drop_unused_jobs();
        Ok(Applied::Statuses { changed, stale })
    }
}
