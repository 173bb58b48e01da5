//! The contract between grove-raft and the application it replicates.

use serde::{de::DeserializeOwned, Serialize};

/// A deterministic application state machine replicated by a Raft group.
///
/// `apply` must be a pure function of the current state and the command: every replica applies
/// the same commands in the same order and must reach the same state. Nothing in `apply` may
/// read clocks, randomness or the network; put such values into the command instead.
pub trait StateMachine: Default + Send + Sync + 'static {
    /// A state change, encoded as JSON in the log.
    type Command: Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static;
    /// What applying a command returns to the writer.
    type Response: Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static;

    /// Apply one committed command.
    fn apply(&mut self, command: Self::Command) -> Self::Response;

    /// Serialise the whole state for a snapshot.
    fn snapshot(&self) -> Result<Vec<u8>, String>;

    /// Rebuild a state from bytes produced by [`StateMachine::snapshot`]. Must reject bytes it
    /// does not understand with a message instead of panicking.
    fn restore(bytes: &[u8]) -> Result<Self, String>;

    /// Answer an encoded read-only query from a client outside the group (the `Query` RPC).
    /// Applications that serve their own API need not support it.
    fn query(&self, query: &[u8]) -> Result<Vec<u8>, String> {
        let _ = query;
        Err("this state machine answers no queries over the raft API".into())
    }
}

pub(crate) fn encode_json<T: Serialize>(action: &'static str, value: &T) -> crate::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| crate::Error::Codec { action, reason: e.to_string() })
}

pub(crate) fn decode_json<T: DeserializeOwned>(action: &'static str, bytes: &[u8]) -> crate::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| crate::Error::Codec { action, reason: e.to_string() })
}
