//! A small replicated key-value state machine: the demo that the tests, the `grove-kv` command
//! and the store benchmark run on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::StateMachine;

/// A change to the key-value map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KvCommand {
    Put { key: String, value: String },
    Delete { key: String },
    /// Set `key` to `value` only if its current value is `expected` (`None`: absent).
    CompareAndSet { key: String, expected: Option<String>, value: String },
}

/// The answer to a [`KvCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    /// The value before the command.
    pub previous: Option<String>,
    /// False when a compare-and-set did not match.
    pub applied: bool,
}

/// The replicated map, plus a count of applied commands (to compare replicas cheaply).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    pub data: BTreeMap<String, String>,
    pub applied_commands: u64,
}

impl KvStore {
    pub fn get(&self, key: &str) -> Option<&String> {
        self.data.get(key)
    }
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Response = KvResponse;

    fn apply(&mut self, command: KvCommand) -> KvResponse {
        self.applied_commands += 1;
        match command {
            KvCommand::Put { key, value } => KvResponse { previous: self.data.insert(key, value), applied: true },
            KvCommand::Delete { key } => KvResponse { previous: self.data.remove(&key), applied: true },
            KvCommand::CompareAndSet { key, expected, value } => {
                let current = self.data.get(&key).cloned();
                if current == expected {
                    self.data.insert(key, value);
                    KvResponse { previous: current, applied: true }
                } else {
                    KvResponse { previous: current, applied: false }
                }
            }
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("key-value snapshot: {e}"))
    }

    fn query(&self, query: &[u8]) -> Result<Vec<u8>, String> {
        let query: KvQuery = serde_json::from_slice(query).map_err(|e| format!("key-value query: {e}"))?;
        let answer = match query {
            KvQuery::Get { key } => serde_json::to_vec(&self.data.get(&key)),
            KvQuery::Len => serde_json::to_vec(&self.data.len()),
        };
        answer.map_err(|e| e.to_string())
    }
}

/// A read of the key-value map over the raft API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum KvQuery {
    /// Answer: the value or `null`.
    Get { key: String },
    /// Answer: the number of keys.
    Len,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_set_applies_only_on_match() {
        let mut kv = KvStore::default();
        let r = kv.apply(KvCommand::CompareAndSet { key: "k".into(), expected: None, value: "1".into() });
        assert!(r.applied);
        let r = kv.apply(KvCommand::CompareAndSet { key: "k".into(), expected: Some("0".into()), value: "2".into() });
        assert_eq!(r, KvResponse { previous: Some("1".into()), applied: false });
        assert_eq!(kv.get("k").map(String::as_str), Some("1"));
        assert_eq!(kv.applied_commands, 2);
    }

    #[test]
    fn snapshot_round_trips_and_garbage_is_rejected() {
        let mut kv = KvStore::default();
        kv.apply(KvCommand::Put { key: "a".into(), value: "b".into() });
        let restored = KvStore::restore(&kv.snapshot().unwrap()).unwrap();
        assert_eq!(restored, kv);
        let err = KvStore::restore(b"\x00not json").unwrap_err();
        assert!(err.contains("key-value snapshot"), "{err}");
    }
}
