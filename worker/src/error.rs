//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the node engine.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("configuration: {message}")]
    Config { message: String },

    #[error("cannot read config file {path}: {source}")]
    ConfigFile { path: PathBuf, source: std::io::Error },

    #[error("registration at {endpoint} failed: {message}")]
    Registration { endpoint: String, message: String },

    #[error("no usable MQTT broker: {message}")]
    NoBroker { message: String },

    #[error("virtualization {virtualization:?} is not supported by this worker (supported: {supported})")]
    UnsupportedVirtualization { virtualization: String, supported: String },

    #[error("containerd at {socket}: {message}")]
    ContainerdConnect { socket: PathBuf, message: String },

    #[error("containerd {operation} failed: {status}")]
    Containerd { operation: &'static str, status: tonic::Status },

    #[error("{operation} timed out after {after_ms} ms")]
    Timeout { operation: String, after_ms: u64 },

    #[error("image {image}: {message}")]
    Image { image: String, message: String },

    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },

    #[error("instance {task_id}: {message}")]
    Instance { task_id: String, message: String },

    #[error("io on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("system information: {message}")]
    SysInfo { message: String },
}

impl WorkerError {
    pub(crate) fn containerd(operation: &'static str, status: tonic::Status) -> Self {
        WorkerError::Containerd { operation, status }
    }

    /// True when containerd answered NotFound.
    pub fn is_not_found(&self) -> bool {
        matches!(self, WorkerError::Containerd { status, .. } if status.code() == tonic::Code::NotFound)
    }

    /// True when containerd answered AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, WorkerError::Containerd { status, .. } if status.code() == tonic::Code::AlreadyExists)
    }
}

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
