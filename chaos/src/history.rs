//! The record of a chaos run: every client operation with its invoke and completion times and
//! outcome, and every fault the nemesis injected. Written as JSON lines (`history.jsonl`), one
//! [`Event`] per line, so a run can be checked and reported again later (`grove-chaos check`).

use serde::{Deserialize, Serialize};

/// Microseconds since the start of the run.
pub type Micros = u64;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// Register workload: read a register (an application's `application_desc`).
    Read { key: String },
    /// Register workload: overwrite a register with a value unique within the run.
    Write { key: String, value: String },
    /// Deployment workload: create an application with one service (`key` = application name).
    CreateApp { key: String },
    /// Deployment workload: add one instance of a service.
    Deploy { service: String },
    /// Deployment workload: remove instance `instance` of a service.
    Undeploy { service: String, instance: u32 },
    /// Deployment workload: read a service's status.
    Status { service: String },
}

impl Call {
    /// The register this call touches, if it belongs to the register workload.
    pub fn register(&self) -> Option<&str> {
        match self {
            Call::Read { key } | Call::Write { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Does this call change state (and so count toward "writes acknowledged again")?
    pub fn is_write(&self) -> bool {
        !matches!(self, Call::Read { .. } | Call::Status { .. })
    }

    /// A short name for reports ("read", "write", "create_app", …).
    pub fn name(&self) -> &'static str {
        match self {
            Call::Read { .. } => "read",
            Call::Write { .. } => "write",
            Call::CreateApp { .. } => "create_app",
            Call::Deploy { .. } => "deploy",
            Call::Undeploy { .. } => "undeploy",
            Call::Status { .. } => "status",
        }
    }
}

/// How an operation ended, from the client's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: the server answered with success.
    Ok,
    /// Definitely not applied: the server refused it (4xx, or 503 with `"outcome":
    /// "not_applied"`), or the connection was refused before the request was sent.
    Failed,
    /// May or may not have taken effect: a timeout, a dropped connection after the request
    /// was sent, or a 503 with `"outcome": "unknown"`.
    Unknown,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique within the run, in invoke order.
    pub id: u64,
    /// The client (a sequential process: it never has two operations open at once).
    pub client: u32,
    /// The endpoint the request went to (a replica's URL or the load balancer's).
    pub endpoint: String,
    pub call: Call,
    pub invoke: Micros,
    /// When the answer (or the timeout) arrived.
    pub complete: Micros,
    pub outcome: Outcome,
    /// For an ok read: the value read (`None` when the register held nothing). For an ok
    /// deploy: the instance number. Otherwise unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why it failed or is unknown: the HTTP status and the server's message, or the
    /// transport error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL of a tier's leader, then a restart.
    KillLeader,
    /// SIGKILL of a random replica, then a restart.
    KillReplica,
    /// SIGSTOP, later SIGCONT.
    Pause,
    /// A minority (which may hold the leader) cut off from the rest.
    PartitionMinority,
    /// A majority cut off: no side can elect a leader until it heals.
    PartitionMajority,
    /// SIGKILL of a worker, then a restart.
    KillWorker,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillReplica => "kill-replica",
            FaultKind::Pause => "pause",
            FaultKind::PartitionMinority => "partition-minority",
            FaultKind::PartitionMajority => "partition-majority",
            FaultKind::KillWorker => "kill-worker",
        }
    }
}

/// One injected fault and its window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// `root`, `cluster-1`, … or `worker`.
    pub tier: String,
    /// The members it hit (`root-2`, `cluster-1-3`, …).
    pub targets: Vec<String>,
    /// When the fault began (the kill, the stop, the partition).
    pub start: Micros,
    /// When it was healed (the restart, SIGCONT, the partition removed).
    pub end: Micros,
    /// Time from `start` until the tier acknowledged a write begun after `start`, when the
    /// harness observed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_after: Option<Micros>,
}

/// A line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Op(Op),
    Fault(Fault),
}
