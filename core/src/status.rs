//! Oakestra's status strings (contract §5, `oakestra_utils.types.statuses`, NE `model/Service.go`).
//!
//! They travel as plain strings on the wire; [`Status`] keeps the exact spelling (including the
//! mixed-case negative scheduling codes) and rejects unknown strings, like upstream's
//! `convert_to_status`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CoreError;

/// Every status string of contract §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    // Positive scheduling.
    Requested,
    ClusterScheduled,
    NodeScheduled,
    // Negative scheduling.
    TargetClusterNotFound,
    TargetClusterNotActive,
    TargetClusterNoCapacity,
    NoActiveClusterWithCapacity,
    NoWorkerCapacity,
    NoQualifiedWorkerFound,
    NoNodeFound,
    // Deployment.
    Creating,
    Created,
    Running,
    Failed,
    Dead,
    Completed,
    Undeployed,
    // Legacy numeric strings.
    Legacy0,
    Legacy1,
}

impl Status {
    /// All statuses, in the order of contract §5.
    pub const ALL: [Status; 19] = [
        Status::Requested,
        Status::ClusterScheduled,
        Status::NodeScheduled,
        Status::TargetClusterNotFound,
        Status::TargetClusterNotActive,
        Status::TargetClusterNoCapacity,
        Status::NoActiveClusterWithCapacity,
        Status::NoWorkerCapacity,
        Status::NoQualifiedWorkerFound,
        Status::NoNodeFound,
        Status::Creating,
        Status::Created,
        Status::Running,
        Status::Failed,
        Status::Dead,
        Status::Completed,
        Status::Undeployed,
        Status::Legacy0,
        Status::Legacy1,
    ];

    /// The exact wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "REQUESTED",
            Status::ClusterScheduled => "CLUSTER_SCHEDULED",
            Status::NodeScheduled => "NODE_SCHEDULED",
            Status::TargetClusterNotFound => "TargetClusterNotFound",
            Status::TargetClusterNotActive => "TargetClusterNotActive",
            Status::TargetClusterNoCapacity => "TargetClusterNoCapacity",
            Status::NoActiveClusterWithCapacity => "NoActiveClusterWithCapacity",
            Status::NoWorkerCapacity => "NO_WORKER_CAPACITY",
            Status::NoQualifiedWorkerFound => "NO_QUALIFIED_WORKER_FOUND",
            Status::NoNodeFound => "NO_NODE_FOUND",
            Status::Creating => "CREATING",
            Status::Created => "CREATED",
            Status::Running => "RUNNING",
            Status::Failed => "FAILED",
            Status::Dead => "DEAD",
            Status::Completed => "COMPLETED",
            Status::Undeployed => "UNDEPLOYED",
            Status::Legacy0 => "0",
            Status::Legacy1 => "1",
        }
    }

    /// `REQUESTED`, `CLUSTER_SCHEDULED`, `NODE_SCHEDULED`.
    pub const fn is_positive_scheduling(self) -> bool {
        matches!(
            self,
            Status::Requested | Status::ClusterScheduled | Status::NodeScheduled
        )
    }

    /// The scheduler's negative results.
    pub const fn is_negative_scheduling(self) -> bool {
        matches!(
            self,
            Status::TargetClusterNotFound
                | Status::TargetClusterNotActive
                | Status::TargetClusterNoCapacity
                | Status::NoActiveClusterWithCapacity
                | Status::NoWorkerCapacity
                | Status::NoQualifiedWorkerFound
                | Status::NoNodeFound
        )
    }

    /// An instance in this state no longer runs and will not run again by itself.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Failed | Status::Dead | Status::Completed | Status::Undeployed
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| CoreError::UnknownStatus { value: s.to_owned() })
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_exact_string() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>().unwrap(), st);
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), st);
        }
    }

    #[test]
    fn contract_spellings_are_exact() {
        let expected = [
            "REQUESTED",
            "CLUSTER_SCHEDULED",
            "NODE_SCHEDULED",
            "TargetClusterNotFound",
            "TargetClusterNotActive",
            "TargetClusterNoCapacity",
            "NoActiveClusterWithCapacity",
            "NO_WORKER_CAPACITY",
            "NO_QUALIFIED_WORKER_FOUND",
            "NO_NODE_FOUND",
            "CREATING",
            "CREATED",
            "RUNNING",
            "FAILED",
            "DEAD",
            "COMPLETED",
            "UNDEPLOYED",
            "0",
            "1",
        ];
        let actual: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn unknown_status_is_rejected() {
        assert_eq!(
            "running".parse::<Status>(),
            Err(CoreError::UnknownStatus { value: "running".into() })
        );
        assert!(serde_json::from_str::<Status>("\"STOPPED\"").is_err());
    }

    #[test]
    fn classification() {
        assert!(Status::NodeScheduled.is_positive_scheduling());
        assert!(Status::NoWorkerCapacity.is_negative_scheduling());
        assert!(Status::Completed.is_terminal());
        assert!(!Status::Running.is_terminal());
    }
}
