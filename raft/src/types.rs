//! The openraft type configuration shared by every Grove Raft group.
//!
//! Application commands and responses travel through the log as opaque bytes, encoded by the
//! application's [`crate::StateMachine`] types; this keeps one concrete `TypeConfig` (and one
//! storage format) for the root, every cluster and the key-value demo.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// The application commands of one log entry, encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    One(Vec<u8>),
    /// Writes the leader committed together (group commit), applied in order; answered by
    /// [`Applied::Batch`] with one answer per command.
    Batch(Vec<Vec<u8>>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::One(bytes) => write!(f, "Command({} bytes)", bytes.len()),
            Command::Batch(commands) => {
                let bytes: usize = commands.iter().map(Vec::len).sum();
                write!(f, "Command(batch of {}, {bytes} bytes)", commands.len())
            }
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The outcome of applying one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The application's encoded response.
    Ok(Vec<u8>),
    /// The command bytes did not decode into the application's command type. Applying is
    /// deterministic, so every replica records the same rejection and moves on.
    Rejected(String),
    /// The answers to a [`Command::Batch`], in order.
    Batch(Vec<Applied>),
}

openraft::declare_raft_types!(
    /// Type configuration of every Grove Raft group.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Binary encoding of everything grove-raft stores or sends itself (log entries, votes,
/// openraft RPCs). Decoding failures name what was being decoded.
pub(crate) mod codec {
    use serde::{de::DeserializeOwned, Serialize};

    pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        // bincode cannot fail on the plain data types grove-raft encodes (no maps with
        // non-string keys, no `deserialize_any`); an error here is a programming error.
        bincode::serialize(value).expect("bincode encoding of raft data")
    }

    pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
        bincode::options()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(bytes.len() as u64 + 1024)
            .deserialize(bytes)
            .map_err(|e| format!("malformed {what} ({} bytes): {e}", bytes.len()))
    }

    use bincode::Options;
}
