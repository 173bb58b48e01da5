//! Group commit on the leader: writes that arrive while earlier ones are being committed share
//! one log entry.
//!
//! Every log entry costs the same fixed work whatever it carries: a trip through openraft's
//! core, a storage append, encoding and decoding on every replica, a state-machine apply and a
//! response channel. Under concurrent load that per-entry work, not the disk, limited the
//! store. The leader therefore keeps at most [`MAX_IN_FLIGHT`] entries of client writes in
//! flight; writes that arrive meanwhile wait and go together in the next entry
//! ([`Command::Batch`]), applied in arrival order. A lone write is never delayed: with a slot
//! free it is proposed at once, as a single command, by the caller's own task.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::types::{Applied, Command, Node, NodeId, Raft};

/// Entries of client writes proposed but not yet answered. Two keep the log busy (one being
/// replicated while the next one fills) and let batches grow with the load.
const MAX_IN_FLIGHT: usize = 2;
/// Upper bounds of one batch: well inside one append-entries call (`network::APPEND_BYTES`).
const MAX_BATCH_LEN: usize = 1024;
const MAX_BATCH_BYTES: usize = 256 << 10;

pub(crate) type WriteError = RaftError<NodeId, ClientWriteError<NodeId, Node>>;

/// What became of one write.
pub(crate) enum Outcome {
    /// Committed and applied at log index `index` (shared by the writes of one batch).
    Committed { applied: Applied, index: u64 },
    Failed(WriteError),
    /// No answer within the deadline: the write may or may not be committed.
    TimedOut,
}

struct Pending {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Outcome>,
}

/// The leader's write queue. Cheap to hold; the batching task ends when it is dropped.
pub(crate) struct WriteBatcher {
    tx: mpsc::UnboundedSender<Pending>,
    raft: Raft,
    in_flight: Arc<Semaphore>,
}

impl WriteBatcher {
    pub fn start(raft: Raft, timeout: Duration) -> WriteBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        tokio::spawn(run(raft.clone(), timeout, rx, in_flight.clone()));
        WriteBatcher { tx, raft, in_flight }
    }

    /// Propose `bytes` (an encoded application command) and wait for its outcome until
    /// `deadline`.
    pub async fn write(&self, bytes: Vec<u8>, deadline: Instant) -> Outcome {
        // A free slot that no queued batch waits for (the semaphore hands released slots to
        // waiters first): propose from this task, sparing a lone write two task hand-offs.
        if let Ok(slot) = self.in_flight.clone().try_acquire_owned() {
            let outcome = match tokio::time::timeout_at(deadline, self.raft.client_write(Command::One(bytes))).await {
                Err(_) => Outcome::TimedOut,
                Ok(Err(e)) => Outcome::Failed(e),
                Ok(Ok(response)) => Outcome::Committed { index: response.log_id.index, applied: response.data },
            };
            drop(slot);
            return outcome;
        }
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Pending { bytes, reply }).is_err() {
            return Outcome::TimedOut;
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(outcome)) => outcome,
            // The batching task is gone (the replica is stopping) or the deadline passed.
            Ok(Err(_)) | Err(_) => Outcome::TimedOut,
        }
    }
}

async fn run(raft: Raft, timeout: Duration, mut rx: mpsc::UnboundedReceiver<Pending>, in_flight: Arc<Semaphore>) {
    while let Some(first) = rx.recv().await {
        // Wait for a free slot; writes that arrive meanwhile join this batch.
        let Ok(slot) = in_flight.clone().acquire_owned().await else { return };
        let mut size = first.bytes.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_LEN && size < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    size += next.bytes.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, timeout, batch).await;
            drop(slot);
        });
    }
}

async fn commit(raft: &Raft, timeout: Duration, mut batch: Vec<Pending>) {
    let command = if batch.len() == 1 {
        Command::One(std::mem::take(&mut batch[0].bytes))
    } else {
        Command::Batch(batch.iter_mut().map(|p| std::mem::take(&mut p.bytes)).collect())
    };
    let result = tokio::time::timeout(timeout, raft.client_write(command)).await;
    let replies = batch.into_iter().map(|p| p.reply);
    match result {
        Err(_) => replies.for_each(|r| drop(r.send(Outcome::TimedOut))),
        Ok(Err(e)) => replies.for_each(|r| drop(r.send(Outcome::Failed(e.clone())))),
        Ok(Ok(response)) => {
            let index = response.log_id.index;
            let answers = match response.data {
                Applied::Batch(items) => items,
                single => vec![single],
            };
            // One answer per command, in order (apply answers every command of a batch). A
            // reply without an answer is dropped: its caller sees an unknown outcome.
            for (reply, applied) in replies.zip(answers) {
                let _ = reply.send(Outcome::Committed { applied, index });
            }
        }
    }
}
