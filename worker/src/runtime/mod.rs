//! Runtimes: what the engine asks of a way to run an instance. The containerd runtime is the
//! first; unikernels or WebAssembly would be further implementations of [`Runtime`].
//!
//! A runtime is stateless towards the engine: it names its instances by
//! [`InstanceKey::task_id`] and can list them again after a restart ([`Runtime::list`]).

pub mod cgroup;
pub mod containerd;
pub mod image_ref;
pub mod oci_spec;
pub mod registry;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use grove_core::instance::InstanceKey;
use grove_core::job::Job;

use crate::error::Result;

/// What a runtime needs to start one instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub key: InstanceKey,
    pub job: Job,
    /// The instance's stdout/stderr file.
    pub log_path: PathBuf,
}

/// How an instance's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitOutcome {
    /// `None` when the runtime lost the process without an exit status.
    pub code: Option<u32>,
}

/// State of an instance found by [`Runtime::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundState {
    Running,
    Exited { code: u32 },
    /// The instance exists but has no process (a deploy interrupted half-way).
    NoProcess,
}

/// An instance the runtime holds, as found after a (re)start.
#[derive(Debug, Clone)]
pub struct FoundInstance {
    pub key: InstanceKey,
    pub job: Job,
    pub state: FoundState,
}

/// Cumulative resource usage of one instance, read from its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceUsage {
    /// CPU time consumed so far, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Memory in use (without reclaimable page cache), in bytes.
    pub memory_bytes: u64,
}

/// A way to run instances.
pub trait Runtime: Send + Sync + 'static {
    /// Name for logs.
    fn name(&self) -> &'static str;

    /// The `virtualization` strings of jobs this runtime runs (advertised to the cluster).
    fn virtualizations(&self) -> Vec<String>;

    /// Starts an instance. Idempotent: an instance that already runs is left alone.
    fn deploy<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<()>>;

    /// Stops (signal, grace period, kill) and removes an instance. Idempotent: an unknown
    /// instance is not an error.
    fn undeploy<'a>(&'a self, key: &'a InstanceKey, grace: Duration) -> BoxFuture<'a, Result<()>>;

    /// Resolves when the instance's main process exits. May wait forever; callers cancel it.
    fn wait_exit<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<ExitOutcome>>;

    /// Removes what is left of an exited instance (idempotent).
    fn cleanup<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<()>>;

    /// Every instance this runtime holds for this worker.
    fn list(&self) -> BoxFuture<'_, Result<Vec<FoundInstance>>>;

    /// Current cumulative usage of a running instance.
    fn usage<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<InstanceUsage>>;

    /// Bytes the instance wrote to its writable layer, when the runtime knows.
    fn disk_usage<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<u64>>;
}
