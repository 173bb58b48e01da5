//! The one error type of grove-raft. Every variant tells the caller which of three things
//! happened: the request can be retried (no leader, no quorum, outcome unknown), the request
//! itself is wrong, or this replica cannot continue.

/// Errors returned by [`crate::Replica`] and the storage it opens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No leader could be reached, or the leader could not reach a quorum, within the deadline.
    /// Nothing was committed by this call; retrying later is safe.
    #[error("raft group {group}: no quorum: {reason}")]
    Unavailable { group: String, reason: String },

    /// The request was handed to the leader but no answer came: it may or may not have been
    /// committed (a client must treat the outcome as unknown).
    #[error("raft group {group}: {reason}; the write may or may not have been committed")]
    Indeterminate { group: String, reason: String },

    /// A command or response could not be encoded or decoded.
    #[error("cannot {action}: {reason}")]
    Codec { action: &'static str, reason: String },

    /// The state machine rejected the command when applying it (the same on every replica).
    #[error("command rejected by the state machine: {0}")]
    Rejected(String),

    /// The data directory belongs to another Raft group or another node id.
    #[error("data directory {dir} belongs to {found}, but this replica is configured as {expected}; refusing to start")]
    ForeignDataDir { dir: String, expected: String, found: String },

    /// RocksDB could not be opened or written.
    #[error("storage at {dir}: {reason}")]
    Storage { dir: String, reason: String },

    /// The configuration is invalid (names the setting and the rule).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Binding or serving the gRPC listener failed.
    #[error("network: {0}")]
    Network(String),

    /// The membership change was refused (for example removing the last voter).
    #[error("membership change refused: {0}")]
    Membership(String),

    /// This replica has stopped (shut down, or a fatal storage error).
    #[error("raft group {group}: replica {id} has stopped")]
    Stopped { group: String, id: u64 },
}

impl Error {
    /// True when nothing was committed and the caller may retry the same request, possibly
    /// against another replica. (An [`Error::Indeterminate`] write may already be committed:
    /// only an idempotent command may be retried after it.)
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Stopped { .. })
    }
}

impl Error {
    /// The error a remote replica's `Failure` reply stands for. A remote replica that has
    /// stopped makes the call unavailable here; it does not mean this side stopped.
    pub(crate) fn from_failure(group: &str, f: grove_proto::raft::Failure) -> Error {
        use grove_proto::raft::failure::Kind;
        let group = group.to_string();
        match Kind::try_from(f.kind).unwrap_or(Kind::Indeterminate) {
            Kind::Unavailable => Error::Unavailable { group, reason: f.message },
            Kind::Indeterminate => Error::Indeterminate { group, reason: f.message },
            Kind::Rejected => Error::Rejected(f.message),
            Kind::Invalid => Error::Codec { action: "process the request", reason: f.message },
            Kind::Stopped => Error::Unavailable { group, reason: format!("replica stopped: {}", f.message) },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
