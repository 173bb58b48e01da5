//! Checkers: pure functions over a run's [`history`](crate::history) and what the harness
//! read from every replica at the end. Each returns the violations it found; an empty list is
//! a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{Micros, Op};

pub mod durability;
pub mod linearizable;
pub mod safety;

/// One broken guarantee, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// `linearizability`, `durability`, `safety` or `liveness`.
    pub checker: String,
    /// One or two sentences a person can act on.
    pub message: String,
    /// The smallest set of operations that shows the violation (may be empty).
    pub ops: Vec<Op>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.message)?;
        for op in &self.ops {
            write!(
                f,
                "\n    op {} client {} {:?} invoke {} µs complete {} µs {:?} value {:?} via {}",
                op.id, op.client, op.call, op.invoke, op.complete, op.outcome, op.value, op.endpoint
            )?;
        }
        Ok(())
    }
}

/// What one replica held at the end of the run, read from it alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// `root-1`, …
    pub replica: String,
    /// Names of the applications it holds.
    pub apps: BTreeSet<String>,
    /// Service id → the instance numbers it holds for that service.
    pub instances: BTreeMap<String, BTreeSet<u32>>,
}

/// A leader claim seen by the harness's status poller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderSample {
    /// `root`, `cluster-1`, …
    pub tier: String,
    pub replica: String,
    pub term: u64,
    pub at: Micros,
}

/// An instance a worker was running at the end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunningCopy {
    pub service: String,
    pub instance: u32,
    pub worker: String,
}
