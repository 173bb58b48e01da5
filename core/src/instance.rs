//! Instance identity. An instance is one running copy of a job; the worker, the cluster and
//! every command key it by `(job_name, instance_number)`, and the worker names its task
//! `<job_name>.instance.<n>` (contract §4.4).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// `(job_name, instance_number)`: the key of every worker command.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceKey {
    pub job_name: String,
    pub instance_number: u32,
}

impl InstanceKey {
    pub fn new(job_name: impl Into<String>, instance_number: u32) -> Self {
        Self { job_name: job_name.into(), instance_number }
    }

    /// The task/container id `<job_name>.instance.<n>`, also the instance's log file name.
    pub fn task_id(&self) -> String {
        format!("{}.instance.{}", self.job_name, self.instance_number)
    }

    /// Parses a task id back into its key.
    pub fn from_task_id(id: &str) -> Result<Self, CoreError> {
        let malformed = || CoreError::MalformedTaskId { value: id.to_owned() };
        let (job_name, n) = id.rsplit_once(".instance.").ok_or_else(malformed)?;
        if job_name.is_empty() {
            return Err(malformed());
        }
        let n = n.parse().map_err(|_| malformed())?;
        Ok(Self::new(job_name, n))
    }

    /// The container hostname, also injected as `HOSTNAME=instance-<n>`.
    pub fn hostname(&self) -> String {
        format!("instance-{}", self.instance_number)
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.instance.{}", self.job_name, self.instance_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_round_trip() {
        let key = InstanceKey::new("app.ns.svc.ns", 3);
        assert_eq!(key.task_id(), "app.ns.svc.ns.instance.3");
        assert_eq!(InstanceKey::from_task_id("app.ns.svc.ns.instance.3").unwrap(), key);
        assert_eq!(key.hostname(), "instance-3");
    }

    #[test]
    fn malformed_task_ids_are_rejected() {
        for bad in ["app", "app.instance.x", ".instance.1", "app.instance.-1"] {
            assert!(InstanceKey::from_task_id(bad).is_err(), "{bad}");
        }
    }
}
