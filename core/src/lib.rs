//! grove-core: Grove's shared domain model, free of I/O. Every tier (root, cluster, worker)
//! reuses these types, so they follow Oakestra's contract (`reference/oakestra-contract.md`)
//! key for key.
//!
//! - [`status`]: the instance/job status strings of contract §5 (`RUNNING`, `DEAD`, …).
//! - [`job`]: the job (service) document as the cluster sends it to a worker (§2.6, §4.3).
//! - [`instance`]: instance identity (`<job_name>.instance.<n>`).
//! - [`node`]: the worker's Node JSON (§4.2), sent at registration and every 2 s.
//! - [`worker_protocol`]: the MQTT topics and the messages exchanged on them (§4.3) and the
//!   registration reply (§4.1).
//! - [`lenient`]: serde helpers that accept the loose JSON Oakestra's Python and Go tiers emit.
//! - [`sla`]: SLA v2.0 documents (§2), their validator (every violation with its JSON path) and
//!   the job document derived from each microservice (§2.6).
//! - [`scheduler`]: the pure best-fit placement shared by the root (clusters) and the cluster
//!   (workers), with Oakestra's negative scheduling statuses (§5, §6).

pub mod instance;
pub mod job;
pub mod lenient;
pub mod node;
pub mod scheduler;
pub mod sla;
pub mod status;
pub mod worker_protocol;

/// Errors of the domain model: parsing contract strings and documents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// A status string that is not one of contract §5.
    #[error("unknown status string {value:?}")]
    UnknownStatus { value: String },
    /// A task id that is not `<job_name>.instance.<n>`.
    #[error("malformed task id {value:?}: expected <job_name>.instance.<n>")]
    MalformedTaskId { value: String },
}
