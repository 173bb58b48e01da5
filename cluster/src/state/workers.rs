//! Registered workers: upsert by hostname, lost and returned.

use grove_core::node::NodeInfo;
use grove_core::status::Status;
use serde::{Deserialize, Serialize};

use super::{Applied, ApplyError, ApplyResult, ClusterState, Desired};

/// A registered worker. `info` is the Node JSON of its last registration (static facts:
/// host, runtimes, addons, CSI drivers, architecture; and the resources at that time). Dynamic
/// resources from its 2 s reports are soft state on the leader, not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: String,
    pub host: String,
    pub info: NodeInfo,
    pub registered_at_ms: u64,
    /// Marked lost by the leader's liveness check; cleared when it reports again.
    pub lost: bool,
    pub lost_at_ms: u64,
}

impl ClusterState {
    pub(super) fn register_worker(&mut self, id: String, mut info: NodeInfo, at_ms: u64) -> ApplyResult {
        if info.host.trim().is_empty() {
            return Err(ApplyError::Invalid("host: must be a non-empty string".into()));
        }
        let existing = self.workers.values().find(|w| w.host == info.host).map(|w| w.id.clone());
        let id = match existing {
            Some(existing) => existing,
            None if id.is_empty() => return Err(ApplyError::Invalid("id: a new worker needs an id".into())),
            None if self.workers.contains_key(&id) => {
                return Err(ApplyError::Conflict(format!("worker id {id} is taken by another host")))
            }
            None => id,
        };
        info.id = id.clone();
        let record = WorkerRecord { id: id.clone(), host: info.host.clone(), info, registered_at_ms: at_ms, lost: false, lost_at_ms: 0 };
        self.workers.insert(id.clone(), record);
        Ok(Applied::Id(id))
    }

    pub(super) fn worker_lost(&mut self, id: &str, detail: &str, at_ms: u64) -> ApplyResult {
        let Some(worker) = self.workers.get_mut(id) else {
            return Err(ApplyError::NotFound(format!("worker {id} is not registered")));
        };
        if worker.lost {
            return Ok(Applied::Changed(0));
        }
        worker.lost = true;
        worker.lost_at_ms = at_ms;
        let mut changed = 1;
        let keys: Vec<String> = self.instances_on(id).map(|(k, _)| k.clone()).collect();
        for key in keys {
            let inst = self.instances.get_mut(&key).expect("key from the map");
            match inst.desired {
                // Nobody can confirm the removal any more; the worker's own copy is deleted if
                // it ever comes back (it then reports an instance it should not run).
                Desired::Removed => {
                    self.instances.remove(&key);
                }
                Desired::Running if inst.status == Status::Completed.as_str() => continue,
                Desired::Running => {
                    inst.worker_id.clear();
                    inst.status = Status::Failed.as_str().into();
                    inst.status_detail = detail.to_owned();
                    inst.updated_at_ms = at_ms;
                }
            }
            changed += 1;
        }
        self.drop_unused_jobs();
        Ok(Applied::Changed(changed))
    }

    pub(super) fn worker_returned(&mut self, id: &str, _at_ms: u64) -> ApplyResult {
        let Some(worker) = self.workers.get_mut(id) else {
            return Err(ApplyError::NotFound(format!("worker {id} is not registered")));
        };
        if !worker.lost {
            return Ok(Applied::Changed(0));
        }
        worker.lost = false;
        Ok(Applied::Changed(1))
    }
}
