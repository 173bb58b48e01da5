//! Openraft's state-machine storage around an application [`StateMachine`].
//!
//! The application state lives in memory behind a read-write lock shared with the replica's
//! readers. Durability comes from the log plus the latest snapshot in RocksDB: on restart the
//! state is restored from that snapshot and openraft re-applies the committed entries after it.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};

use crate::app::StateMachine;
use crate::store::{Db, StoredSnapshot};
use crate::types::{Applied, Command, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The applied state: the application's state and the Raft position it reflects.
pub(crate) struct AppliedState<S> {
    pub app: S,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

pub(crate) type Shared<S> = Arc<RwLock<AppliedState<S>>>;

pub struct StateMachineStore<S: StateMachine> {
    state: Shared<S>,
    db: Db,
    /// Distinguishes snapshots built at the same log position.
    snapshot_seq: u64,
}

fn sm_err(e: impl ToString) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl<S: StateMachine> StateMachineStore<S> {
    /// Restore the state from the snapshot stored in `db`, if any.
    pub(crate) fn open(db: Db) -> crate::Result<(Self, Shared<S>)> {
        let storage_err = |reason: String| crate::Error::Storage { dir: db.dir().display().to_string(), reason };
        let state = match db.read_snapshot().map_err(&storage_err)? {
            None => AppliedState { app: S::default(), last_applied: None, membership: StoredMembership::default() },
            Some(stored) => AppliedState {
                app: S::restore(&stored.data)
                    .map_err(|e| storage_err(format!("the stored snapshot does not decode: {e}")))?,
                last_applied: stored.meta.last_log_id,
                membership: stored.meta.last_membership.clone(),
            },
        };
        let shared = Arc::new(RwLock::new(state));
        Ok((StateMachineStore { state: shared.clone(), db, snapshot_seq: 0 }, shared))
    }
}

/// Apply one entry to the application. Decoding failures are deterministic, so they become a
/// rejection recorded identically on every replica instead of an error that stops the replica.
fn apply_entry<S: StateMachine>(state: &mut AppliedState<S>, entry: Entry) -> Applied {
    state.last_applied = Some(entry.log_id);
    match entry.payload {
        EntryPayload::Blank => Applied::Ok(Vec::new()),
        EntryPayload::Membership(m) => {
            state.membership = StoredMembership::new(Some(entry.log_id), m);
            Applied::Ok(Vec::new())
        }
        EntryPayload::Normal(Command::One(bytes)) => apply_command(&mut state.app, &bytes),
        EntryPayload::Normal(Command::Batch(commands)) => {
            Applied::Batch(commands.iter().map(|bytes| apply_command(&mut state.app, bytes)).collect())
        }
    }
}

fn apply_command<S: StateMachine>(app: &mut S, bytes: &[u8]) -> Applied {
    match serde_json::from_slice::<S::Command>(bytes) {
        Err(e) => Applied::Rejected(format!("command does not decode: {e}")),
        Ok(command) => {
            let response = app.apply(command);
            match serde_json::to_vec(&response) {
                Ok(bytes) => Applied::Ok(bytes),
                Err(e) => Applied::Rejected(format!("response does not encode: {e}")),
            }
        }
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.read().expect("state lock");
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut state = self.state.write().expect("state lock");
        Ok(entries.into_iter().map(|entry| apply_entry(&mut state, entry)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder { state: self.state.clone(), db: self.db.clone(), seq: self.snapshot_seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let app = S::restore(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(format!("snapshot does not decode: {e}")))
        })?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.db.write_snapshot(&stored).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e)))?;
        let mut state = self.state.write().expect("state lock");
        *state = AppliedState { app, last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = self.db.read_snapshot().map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e)))?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

pub struct SnapshotBuilder<S> {
    state: Shared<S>,
    db: Db,
    seq: u64,
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_applied, membership) = {
            let state = self.state.read().expect("state lock");
            (state.app.snapshot().map_err(sm_err)?, state.last_applied, state.membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.seq),
            None => format!("empty-{}", self.seq),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.db.write_snapshot(&stored).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e)))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::kv::{KvCommand, KvResponse, KvStore};

    fn entry(index: u64, command: Command) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(command) }
    }

    fn put(key: &str, value: &str) -> Vec<u8> {
        serde_json::to_vec(&KvCommand::Put { key: key.into(), value: value.into() }).unwrap()
    }

    fn answer(applied: &Applied) -> KvResponse {
        match applied {
            Applied::Ok(bytes) => serde_json::from_slice(bytes).unwrap(),
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn a_batch_applies_in_order_and_answers_each_command() {
        let mut state =
            AppliedState { app: KvStore::default(), last_applied: None, membership: StoredMembership::default() };
        let batch = Command::Batch(vec![put("a", "1"), b"{not json".to_vec(), put("a", "2")]);
        let Applied::Batch(answers) = apply_entry(&mut state, entry(7, batch)) else { panic!("a batch gets a batch answer") };
        assert_eq!(answers.len(), 3);
        assert_eq!(answer(&answers[0]), KvResponse { previous: None, applied: true });
        // A command that does not decode is rejected on its own; the others still apply.
        assert!(matches!(&answers[1], Applied::Rejected(m) if m.contains("does not decode")), "{:?}", answers[1]);
        assert_eq!(answer(&answers[2]), KvResponse { previous: Some("1".into()), applied: true });
        assert_eq!(state.app.get("a").map(String::as_str), Some("2"));
        assert_eq!(state.last_applied.map(|l| l.index), Some(7));

        let single = apply_entry(&mut state, entry(8, Command::One(put("a", "3"))));
        assert_eq!(answer(&single), KvResponse { previous: Some("2".into()), applied: true });
    }
}
