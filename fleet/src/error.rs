//! The fleet's errors, each naming what failed and where.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A setting is out of range; the message names it.
    #[error("fleet configuration: {0}")]
    Config(String),
    /// A worker could not register with any cluster endpoint before the deadline.
    #[error("worker {host} did not register within {timeout:?} (last error: {last_error})")]
    Registration {
        host: String,
        timeout: Duration,
        last_error: String,
    },
    /// Waiting for a condition of the whole fleet timed out.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}
