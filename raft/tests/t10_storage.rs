//! openraft's storage conformance suite on grove-raft's RocksDB log store and state machine.

use grove_raft::kv::KvStore;
use grove_raft::testing::{open_storage, LogStore, StateMachineStore};
use grove_raft::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageIOError};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<KvStore>, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore<KvStore>), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = open_storage::<KvStore>(dir.path())
            .map_err(|e| StorageError::from(StorageIOError::write(AnyError::error(e.to_string()))))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn rocksdb_store_passes_openraft_conformance_suite() -> Result<(), StorageError> {
    Suite::test_all(RocksBuilder)
}
