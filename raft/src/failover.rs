//! Fast detection of a leader whose process is gone.
//!
//! Openraft 0.9 lets a follower campaign only after the leader's lease (the maximum election
//! timeout) *plus* its own randomised election timeout have passed since the last heartbeat, and
//! a voter refuses every vote request until the lease has passed. A killed leader is therefore
//! replaced 650–800 ms after its last heartbeat with the default timing, of which only the lease
//! is needed for safety.
//!
//! A follower that has missed heartbeats asks the operating system whether the leader's
//! process is still there: a TCP connection to its Raft address that is *refused* means nothing
//! listens there (the process died or is restarting). Then there is no reason to wait out a
//! second timeout. The surviving voters agree on one of them to campaign as soon as the voters'
//! lease has expired: each asks the others for their status and picks the one with the longest
//! log (ties go to the lowest id). The longest log matters: a voter refuses a candidate whose
//! log is behind its own, and openraft then holds that candidate back for two more election
//! timeouts, so picking by id alone left a loaded group (where followers often hold logs of
//! different length when the leader dies) to the slow path. The chosen voter waits until the
//! *latest* lease among the survivors has expired, so no voter refuses it for that reason.
//!
//! Anything else leaves the decision to openraft's own timers: a connection that succeeds,
//! hangs or fails another way (a pause, a partition, a slow machine), a survivor that does not
//! answer, or one that already follows another leader or campaigns. A killed leader that is
//! restarted before the campaign resumes as leader (openraft restores it) and its first
//! heartbeat cancels the campaign. Only one voter campaigns early, so that two early candidates never start the same
//! term (openraft orders leaders by term *and* node id and may then elect both in turn).
//!
//! Starting an election is always safe in Raft; the worst an early one can do is cost a term.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use grove_proto::raft::StatusRequest;
use openraft::ServerState;
use tokio::time::Instant;

use crate::config::Timing;
use crate::network::{NetworkFaults, Peers};
use crate::replica::ReplicaStatus;
use crate::types::{NodeId, Raft};

/// When this replica last accepted entries or a heartbeat from a leader.
#[derive(Debug, Default)]
pub(crate) struct LeaderContact {
    /// Microseconds since [`epoch`] + 1 (0: never).
    at_micros: AtomicU64,
    campaigns: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LeaderContact {
    pub fn touch(&self) {
        let micros = Instant::now().saturating_duration_since(epoch()).as_micros() as u64 + 1;
        self.at_micros.store(micros, Ordering::Relaxed);
    }

    /// Elections started by [`watch`].
    pub fn fast_campaigns(&self) -> u64 {
        self.campaigns.load(Ordering::Relaxed)
    }

    /// Milliseconds since the last contact (`None`: never).
    pub fn millis_since(&self) -> Option<u64> {
        self.last().map(|t| t.elapsed().as_millis() as u64)
    }

    pub fn last(&self) -> Option<Instant> {
        match self.at_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(epoch() + Duration::from_micros(micros - 1)),
        }
    }
}

/// On the leader, send a heartbeat to every follower every `timing.heartbeat_ms` (openraft's own
/// interval is the longer replication timeout, see [`Timing`]). A follower with a call in
/// flight is skipped: that call refreshes its lease already.
pub(crate) async fn heartbeats(raft: Raft, timing: Timing) {
    let mut tick = tokio::time::interval(Duration::from_millis(timing.heartbeat_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let leads = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            m.state == ServerState::Leader
        };
        if leads && raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}

/// How long a connection attempt to a suspected leader may take; a live process on a reachable
/// host answers far sooner.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// What the failover watch of one replica works with.
pub(crate) struct Watch {
    pub id: NodeId,
    pub group: String,
    pub raft: Raft,
    pub contact: Arc<LeaderContact>,
    pub timing: Timing,
    pub peers: Peers,
    pub faults: Arc<NetworkFaults>,
}

/// A surviving voter's position when the leader is found dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Survivor {
    pub id: NodeId,
    pub last_log_index: u64,
    /// When it last heard from the leader, on this replica's clock (`None`: never).
    pub contact: Option<Instant>,
}

/// The survivor that campaigns early: the longest log, ties to the lowest id. Every survivor
/// that sees the same positions picks the same one.
pub(crate) fn chosen(survivors: &[Survivor]) -> Option<NodeId> {
    survivors.iter().max_by(|a, b| a.last_log_index.cmp(&b.last_log_index).then(b.id.cmp(&a.id))).map(|s| s.id)
}

/// Is anything listening at `addr`? `Some(false)` only when the connection is refused.
async fn listening(addr: &str) -> Option<bool> {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(false),
        Ok(Ok(_)) => Some(true),
        _ => None,
    }
}

impl Watch {
    /// Watch for a dead leader until the Raft core stops.
    pub async fn run(self) {
        let heartbeat = Duration::from_millis(self.timing.heartbeat_ms);
        let lease = Duration::from_millis(self.timing.election_timeout_max_ms);
        let mut tick = tokio::time::interval(heartbeat / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The contact time of the last loss of contact already decided on (leader alive, or
        // another survivor campaigns, or the timers decide): act again only after another
        // heartbeat arrived and was missed.
        let mut settled: Option<Instant> = None;
        loop {
            tick.tick().await;
            let (leader, addr, others, mine) = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                if m.running_state.is_err() {
                    return;
                }
                let Some(leader) = m.current_leader.filter(|l| *l != self.id) else { continue };
                if m.state != ServerState::Follower {
                    continue;
                }
                let membership = m.membership_config.membership();
                let Some(node) = membership.get_node(&leader) else { continue };
                let others: Vec<(NodeId, String)> = membership
                    .voter_ids()
                    .filter(|v| *v != leader && *v != self.id)
                    .filter_map(|v| membership.get_node(&v).map(|n| (v, n.addr.clone())))
                    .collect();
                (leader, node.addr.clone(), others, m.last_log_index.unwrap_or(0))
            };
            let Some(last) = self.contact.last() else { continue };
            if last.elapsed() < heartbeat * 3 / 2 || settled == Some(last) {
                continue;
            }
            if listening(&addr).await != Some(false) {
                settled = Some(last);
                continue;
            }
            // The leader is gone. Agree with the other survivors on who campaigns.
            let mut survivors = vec![Survivor { id: self.id, last_log_index: mine, contact: Some(last) }];
            let asked = futures::future::join_all(others.iter().map(|(id, addr)| self.survivor(*id, addr, leader))).await;
            let Some(others) = asked.into_iter().collect::<Option<Vec<_>>>() else {
                settled = Some(last);
                continue;
            };
            survivors.extend(others);
            if chosen(&survivors) != Some(self.id) {
                settled = Some(last);
                continue;
            }
            // The voters refuse to vote until the lease since the leader's last message to them
            // has passed; half a heartbeat interval covers the error of the estimate.
            let latest = survivors.iter().filter_map(|s| s.contact).max().unwrap_or(last);
            tokio::time::sleep_until(latest + lease + heartbeat / 2).await;
            let still_lost = {
                let m = self.raft.metrics().borrow().clone();
                m.state == ServerState::Follower && m.current_leader == Some(leader) && self.contact.last() == Some(last)
            };
            // A leader restarted meanwhile resumes as leader (openraft restores it) and its first
            // heartbeat changes our contact time: then there is nothing to do.
            if !still_lost {
                settled = Some(last);
                continue;
            }
            tracing::info!(id = self.id, leader, %addr, "the leader's address refuses connections: campaigning without waiting for the election timeout");
            if self.raft.trigger().elect().await.is_err() {
                return;
            }
            self.contact.campaigns.fetch_add(1, Ordering::Relaxed);
            settled = Some(last);
        }
    }

    /// The position of the surviving voter `id`, if it answers in time and still follows the
    /// lost `leader` (one that campaigns or follows another leader is past this loss).
    async fn survivor(&self, id: NodeId, addr: &str, leader: NodeId) -> Option<Survivor> {
        if !self.faults.allows(id) {
            return None;
        }
        let mut client = self.peers.client(addr).ok()?;
        let request = StatusRequest { group: self.group.clone(), digest: false, from: self.id };
        // Half the lease: the campaign waits for the lease anyway, and a loaded machine (or a
        // debug build) may need more than the connection probe's 100 ms to answer.
        let bound = Duration::from_millis(self.timing.election_timeout_max_ms / 2).max(PROBE_TIMEOUT);
        let reply = tokio::time::timeout(bound, client.status(request)).await.ok()?.ok()?;
        let answered = Instant::now();
        let status: ReplicaStatus = serde_json::from_str(&reply.into_inner().json).ok()?;
        if status.role != "follower" || status.leader_id != Some(leader) {
            return None;
        }
        // Measured on its side before it answered: on our clock no later than this.
        let contact = status.millis_since_leader_contact.map(|ms| answered.checked_sub(Duration::from_millis(ms)).unwrap_or(answered));
        Some(Survivor { id, last_log_index: status.last_log_index, contact })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: NodeId, last_log_index: u64) -> Survivor {
        Survivor { id, last_log_index, contact: None }
    }

    #[test]
    fn the_longest_log_campaigns_and_ties_go_to_the_lowest_id() {
        assert_eq!(chosen(&[at(2, 10), at(3, 11)]), Some(3));
        assert_eq!(chosen(&[at(3, 11), at(2, 10)]), Some(3));
        assert_eq!(chosen(&[at(3, 10), at(2, 10)]), Some(2));
        assert_eq!(chosen(&[at(2, 10), at(3, 10), at(5, 9)]), Some(2));
        assert_eq!(chosen(&[at(4, 7)]), Some(4));
        assert_eq!(chosen(&[]), None);
    }
}
