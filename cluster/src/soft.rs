//! The leader's soft state: what the gateways observed about workers (last seen, which replica's
//! broker holds the session, dynamic resources, the instances they report running) and what the
//! leader already sent them. Nothing here is replicated; a new leader starts empty and gives
//! every worker a grace period (its last-seen clock starts at the leader's start).
//!
//! Protocol with the gateways: every replica's gateway sends [`Observations`] about the workers
//! attached to its broker every `observation_flush_ms` (the leader's own gateway calls
//! [`LeaderView::observe`] directly, the others `POST /internal/v1/observations`). The view
//! belongs to one term; the first access in a new term resets it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::messages::{Dynamic, RunningInstance};

/// What one gateway saw about one worker since its last flush.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerObservation {
    pub id: String,
    /// Milliseconds between the worker's last message and the flush.
    pub age_ms: u64,
    /// The first message since the worker (re)connected to this broker.
    pub attached: bool,
    pub dynamic: Option<Dynamic>,
    /// Instances from its resource reports in this window (`None`: no report came).
    pub running: Option<Vec<RunningInstance>>,
}

/// A gateway's batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    /// The Raft node id of the replica whose broker holds these workers' sessions.
    pub replica: u64,
    pub workers: Vec<WorkerObservation>,
}

/// One worker as the leader sees it.
#[derive(Debug, Clone)]
pub struct LiveWorker {
    pub last_seen: Instant,
    /// The replica whose broker the worker is attached to.
    pub replica: u64,
    pub dynamic: Option<Dynamic>,
    /// `(job_name, instance)` → (virtualization, last reported).
    pub running: HashMap<(String, u32), (String, Instant)>,
}

/// A command the leader sent a worker, for rate limiting re-sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sent {
    Deploy { worker: String, key: String },
    Delete { worker: String, job_name: String, instance: u32 },
}

/// The leader's soft view (see the module documentation).
#[derive(Debug)]
pub struct LeaderView {
    pub term: u64,
    /// When this replica became leader in `term` (the grace period starts here).
    pub since: Instant,
    pub workers: HashMap<String, LiveWorker>,
    pub sent: HashMap<Sent, Instant>,
    /// Workers that (re)attached since the last reconciliation: reconcile them at once.
    pub reattached: HashSet<String>,
    /// The root link is up (leader only).
    pub root_connected: bool,
    /// A worker reported an instance it had not reported before: commit `RUNNING` now rather
    /// than at the next full reconciliation.
    pub newly_running: bool,
}

impl LeaderView {
    pub fn new(term: u64, now: Instant) -> Self {
        LeaderView {
            term,
            since: now,
            workers: HashMap::new(),
            sent: HashMap::new(),
            reattached: HashSet::new(),
            root_connected: false,
            newly_running: false,
        }
    }

    /// Reset the view when `term` is not the view's term.
    pub fn ensure_term(&mut self, term: u64, now: Instant) {
        if self.term != term {
            *self = LeaderView::new(term, now);
        }
    }

    /// Take in a gateway's batch.
    pub fn observe(&mut self, batch: Observations, now: Instant) {
        for o in batch.workers {
            let seen = now.checked_sub(Duration::from_millis(o.age_ms)).unwrap_or(now);
            let w = self.workers.entry(o.id.clone()).or_insert_with(|| LiveWorker {
                last_seen: seen,
                replica: batch.replica,
                dynamic: None,
                running: HashMap::new(),
            });
            // A stale batch from a replica the worker left must not move it back.
            if seen < w.last_seen && w.replica != batch.replica {
                continue;
            }
            let moved = w.replica != batch.replica;
            w.last_seen = w.last_seen.max(seen);
            w.replica = batch.replica;
            if let Some(d) = o.dynamic {
                w.dynamic = Some(d);
            }
            if let Some(running) = o.running {
                for r in running {
                    let fresh = w.running.insert((r.job_name, r.instance_number), (r.virtualization, seen)).is_none();
                    self.newly_running |= fresh;
                }
            }
            if o.attached || moved {
                self.reattached.insert(o.id.clone());
                // Whatever was sent through the old session may be lost: allow re-sending now.
                self.sent.retain(|s, _| match s {
                    Sent::Deploy { worker, .. } | Sent::Delete { worker, .. } => *worker != o.id,
                });
            }
        }
    }

    /// When the worker was last heard of, counting the grace period.
    pub fn last_heard(&self, worker: &str) -> Instant {
        self.workers.get(worker).map_or(self.since, |w| w.last_seen.max(self.since))
    }

    /// Forget reported instances older than `ttl`.
    pub fn expire_running(&mut self, now: Instant, ttl: Duration) {
        for w in self.workers.values_mut() {
            w.running.retain(|_, (_, at)| now.saturating_duration_since(*at) <= ttl);
        }
    }

    /// May `what` be sent now (never sent, or sent longer than `resend_after` ago)?
    pub fn may_send(&self, what: &Sent, now: Instant, resend_after: Duration) -> bool {
        self.sent.get(what).is_none_or(|at| now.saturating_duration_since(*at) >= resend_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(replica: u64, id: &str, attached: bool, running: Option<Vec<RunningInstance>>) -> Observations {
        Observations { replica, workers: vec![WorkerObservation { id: id.into(), age_ms: 0, attached, dynamic: None, running }] }
    }

    fn running(job: &str, n: u32) -> RunningInstance {
        RunningInstance { job_name: job.into(), instance_number: n, virtualization: "docker".into(), cpu_percent: 0.0, memory_percent: 0.0 }
    }

    #[test]
    fn attachment_follows_the_latest_replica_and_allows_resending() {
        let t0 = Instant::now();
        let mut v = LeaderView::new(1, t0);
        v.observe(obs(1, "w", true, None), t0);
        assert!(v.reattached.contains("w"));
        v.reattached.clear();
        let deploy = Sent::Deploy { worker: "w".into(), key: "j/0".into() };
        v.sent.insert(deploy.clone(), t0);
        assert!(!v.may_send(&deploy, t0 + Duration::from_secs(1), Duration::from_secs(5)));
        assert!(v.may_send(&deploy, t0 + Duration::from_secs(5), Duration::from_secs(5)));
        // The worker moves to replica 2: attachment switches, sent commands may go again.
        let t1 = t0 + Duration::from_secs(1);
        v.observe(obs(2, "w", false, Some(vec![running("a", 0)])), t1);
        assert_eq!(v.workers["w"].replica, 2);
        assert!(v.reattached.contains("w"));
        assert!(v.may_send(&deploy, t1, Duration::from_secs(5)));
        // An older batch from replica 1 does not move it back.
        v.observe(Observations { replica: 1, workers: vec![WorkerObservation { id: "w".into(), age_ms: 900, ..Default::default() }] }, t1);
        assert_eq!(v.workers["w"].replica, 2);
        v.expire_running(t1 + Duration::from_secs(10), Duration::from_secs(6));
        assert!(v.workers["w"].running.is_empty());
    }

    #[test]
    fn a_first_report_of_an_instance_asks_for_running_at_once() {
        let t0 = Instant::now();
        let mut v = LeaderView::new(1, t0);
        v.observe(obs(1, "w", true, Some(vec![running("a", 0)])), t0);
        assert!(std::mem::take(&mut v.newly_running), "a first report of a.0");
        v.observe(obs(1, "w", false, Some(vec![running("a", 0)])), t0);
        assert!(!v.newly_running, "a repeated report is not news");
        v.observe(obs(1, "w", false, Some(vec![running("a", 0), running("a", 1)])), t0);
        assert!(v.newly_running, "a.1 is news");
    }

    #[test]
    fn a_new_term_resets_and_grace_counts_from_the_leader_start() {
        let t0 = Instant::now();
        let mut v = LeaderView::new(1, t0);
        v.observe(obs(1, "w", true, None), t0);
        let t1 = t0 + Duration::from_secs(3);
        v.ensure_term(2, t1);
        assert!(v.workers.is_empty());
        assert_eq!(v.last_heard("w"), t1);
        v.ensure_term(2, t1 + Duration::from_secs(1));
        assert_eq!(v.since, t1);
    }
}
