//! RocksDB storage of one replica: the Raft log, the vote, the committed pointer and the latest
//! snapshot, in one database per replica with two column families.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `log` | index, big-endian u64 | bincode `Entry` |
//! | `meta` | `identity` | JSON `{group, node_id}`: which replica owns this directory |
//! | `meta` | `vote`, `committed`, `purged` | bincode |
//! | `meta` | `snapshot` | bincode [`StoredSnapshot`] |
//!
//! Durability: `append` writes to RocksDB (visible at once, as openraft requires) and hands the
//! flush callback to a flusher thread, which syncs the write-ahead log once for every batch of
//! callbacks it has collected (group commit) before acknowledging them. Votes and truncations are
//! written with `sync` before the call returns.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::types::{codec, Entry, LogId, SnapshotMeta, StorageError, TypeConfig, Vote};
use crate::Error;

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const KEY_IDENTITY: &[u8] = b"identity";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// Which replica a data directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    group: String,
    node_id: u64,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft group {:?} node {}", self.group, self.node_id)
    }
}

/// The snapshot kept on disk: openraft's metadata and the application's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// An open replica database.
#[derive(Clone)]
pub(crate) struct Db {
    db: Arc<Handle>,
    dir: PathBuf,
}

/// The RocksDB handle, and a sender that is dropped right after it: the database is closed
/// (its lock released) once [`Closed::wait`] returns.
struct Handle {
    db: DB,
    _closed: mpsc::Sender<()>,
}

impl std::ops::Deref for Handle {
    type Target = DB;
    fn deref(&self) -> &DB {
        &self.db
    }
}

/// Signals that every handle to a [`Db`] is gone and RocksDB has closed.
pub(crate) struct Closed(mpsc::Receiver<()>);

impl Closed {
    /// Wait up to `timeout` for the database to close; false if it is still open.
    pub fn wait(self, timeout: std::time::Duration) -> bool {
        matches!(self.0.recv_timeout(timeout), Err(mpsc::RecvTimeoutError::Disconnected))
    }
}

impl Db {
    /// Open (or create) the database of `node_id` in `group` under `dir`, refusing a directory
    /// that belongs to another group or node.
    pub fn open(dir: &Path, group: &str, node_id: u64) -> crate::Result<(Db, Closed)> {
        let storage_err = |reason: String| Error::Storage { dir: dir.display().to_string(), reason };
        std::fs::create_dir_all(dir).map_err(|e| storage_err(format!("cannot create the directory: {e}")))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Memtables are RocksDB's main memory cost (64 MiB per column family by default, filled
        // before a flush): the log is written once, read back briefly and purged after each
        // snapshot, so small ones cost little and bound a replica's resident memory.
        let cf_options = |write_buffer: usize| {
            let mut o = Options::default();
            o.set_write_buffer_size(write_buffer);
            o.set_max_write_buffer_number(2);
            o
        };
        let cfs = [(CF_LOG, 8 << 20), (CF_META, 2 << 20)]
            .map(|(name, write_buffer)| ColumnFamilyDescriptor::new(name, cf_options(write_buffer)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| storage_err(e.to_string()))?;
        let (closed_tx, closed_rx) = mpsc::channel();
        let db = Db { db: Arc::new(Handle { db, _closed: closed_tx }), dir: dir.to_path_buf() };

        let mine = Identity { group: group.to_string(), node_id };
        match db.get_meta(KEY_IDENTITY).map_err(|e| storage_err(e.to_string()))? {
            None => {
                if db.has_any_state().map_err(|e| storage_err(e.to_string()))? {
                    return Err(Error::ForeignDataDir {
                        dir: dir.display().to_string(),
                        expected: mine.to_string(),
                        found: "a Raft database without an identity record".to_string(),
                    });
                }
                let bytes = serde_json::to_vec(&mine).expect("identity encodes");
                db.put_meta_sync(KEY_IDENTITY, &bytes).map_err(|e| storage_err(e.to_string()))?;
            }
            Some(bytes) => {
                let found: Identity = serde_json::from_slice(&bytes)
                    .map_err(|e| storage_err(format!("identity record does not decode: {e}")))?;
                if found != mine {
                    return Err(Error::ForeignDataDir {
                        dir: dir.display().to_string(),
                        expected: mine.to_string(),
                        found: found.to_string(),
                    });
                }
            }
        }
        Ok((db, Closed(closed_rx)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn has_any_state(&self) -> Result<bool, rocksdb::Error> {
        let log_empty = self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::Start).next().transpose()?.is_none();
        Ok(!log_empty || self.get_meta(KEY_VOTE)?.is_some())
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family created at open")
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.db.get_cf(self.cf(CF_META), key)
    }

    fn put_meta_sync(&self, key: &[u8], value: &[u8]) -> Result<(), rocksdb::Error> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(self.cf(CF_META), key, value, &wo)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, String> {
        let what = String::from_utf8_lossy(key).into_owned();
        match self.get_meta(key).map_err(|e| format!("cannot read {what}: {e}"))? {
            None => Ok(None),
            Some(bytes) => codec::decode(&what, &bytes).map(Some),
        }
    }

    pub fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, String> {
        self.read_meta(KEY_SNAPSHOT)
    }

    pub fn write_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), String> {
        self.put_meta_sync(KEY_SNAPSHOT, &codec::encode(snapshot)).map_err(|e| e.to_string())
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn io_err(e: impl ToString) -> AnyError {
    AnyError::error(e.to_string())
}

/// Openraft's log and vote storage on a [`Db`].
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// The last committed index this replica has heard of, for operator status.
    committed: Arc<AtomicU64>,
}

impl LogStore {
    pub(crate) fn new(db: Db, committed: Arc<AtomicU64>) -> LogStore {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        // The flusher holds the database weakly: it must never be what keeps RocksDB open.
        let flush_db = Arc::downgrade(&db.db);
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(flush_db, rx))
            .expect("spawn the log flusher thread");
        LogStore { db, flusher: tx, committed }
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut it = self.db.db.iterator_cf(self.db.cf(CF_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(StorageIOError::read_logs(io_err(e)).into()),
            Some(Ok((key, value))) => {
                let entry: Entry = codec::decode("log entry", &value)
                    .map_err(|e| StorageIOError::read_log_at_index(key_index(&key), io_err(e)))?;
                Ok(Some(*entry.get_log_id()))
            }
        }
    }
}

fn key_index(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

/// Sync the write-ahead log once per batch of pending callbacks, then acknowledge them.
fn flush_loop(db: std::sync::Weak<Handle>, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let result = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| std::io::Error::other(e.to_string())),
            None => Err(std::io::Error::other("the log database is closed")),
        };
        for callback in batch {
            callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        let iter = self.db.db.iterator_cf(self.db.cf(CF_LOG), IteratorMode::From(&index_key(start), Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            let index = key_index(&key);
            if !range.contains(&index) {
                break;
            }
            let entry: Entry =
                codec::decode("log entry", &value).map_err(|e| StorageIOError::read_log_at_index(index, io_err(e)))?;
            if entry.get_log_id().index != index {
                return Err(StorageIOError::read_log_at_index(
                    index,
                    io_err(format!("corrupt log: key {index} holds the entry of index {}", entry.get_log_id().index)),
                )
                .into());
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            self.db.read_meta(KEY_PURGED).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.db.put_meta_sync(KEY_VOTE, &codec::encode(vote)).map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.db.read_meta(KEY_VOTE).map_err(|e| StorageIOError::read_vote(io_err(e)))?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: the committed pointer is an optimisation for restart (openraft re-learns it
        // from the leader), so losing the last update in a crash is harmless.
        let cf = self.db.cf(CF_META);
        self.db.db.put_cf(cf, KEY_COMMITTED, codec::encode(&committed)).map_err(|e| StorageIOError::write(io_err(e)))?;
        if let Some(c) = committed {
            self.committed.store(c.index, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            self.db.read_meta(KEY_COMMITTED).map_err(|e| StorageIOError::read(io_err(e)))?;
        let committed = committed.flatten();
        if let Some(c) = committed {
            self.committed.store(c.index, Ordering::Relaxed);
        }
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.db.cf(CF_LOG);
        let mut batch = WriteBatch::default();
        let mut last = None;
        for entry in entries {
            let id = *entry.get_log_id();
            batch.put_cf(cf, index_key(id.index), codec::encode(&entry));
            last = Some(id);
        }
        self.db.db.write(batch).map_err(|e| match last {
            Some(id) => StorageIOError::write_log_entry(id, io_err(e)),
            None => StorageIOError::write_logs(io_err(e)),
        })?;
        // Durable once the flusher has synced the WAL; visible to readers already.
        if let Err(mpsc::SendError(callback)) = self.flusher.send(callback) {
            callback.log_io_completed(Err(std::io::Error::other("log flusher thread has stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf = self.db.cf(CF_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.db.write_opt(batch, &wo).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash between the two writes leaves extra entries
        // below it, which is harmless, never a hole above it.
        self.db.put_meta_sync(KEY_PURGED, &codec::encode(&log_id)).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        let cf = self.db.cf(CF_LOG);
        self.db.db.delete_range_cf(cf, index_key(0), index_key(log_id.index + 1)).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        Ok(())
    }
}
