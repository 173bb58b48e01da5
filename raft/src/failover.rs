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
//! second timeout: the follower campaigns as soon as the voters' lease has expired. Only the
//! surviving voter with the lowest id does this, so that two early candidates never start the
//! same term; the others keep openraft's timers. Anything else (a connection that succeeds, hangs or fails another way: a pause, a
//! partition, a slow machine) leaves the decision to openraft's own timers.
//!
//! Starting an election is always safe in Raft; the worst an early one can do is cost a term.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::ServerState;
use tokio::time::Instant;

use crate::config::Timing;
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
/// host answers (accepts or refuses) far sooner.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// Watch for a dead leader until `raft` stops.
pub(crate) async fn watch(id: NodeId, raft: Raft, contact: Arc<LeaderContact>, timing: Timing) {
    let heartbeat = Duration::from_millis(timing.heartbeat_ms);
    let lease = Duration::from_millis(timing.election_timeout_max_ms);
    let mut tick = tokio::time::interval(heartbeat / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The contact time of the last probe that found the leader alive: probe again only after
    // another heartbeat arrived and was missed.
    let mut probed_alive: Option<Instant> = None;
    loop {
        tick.tick().await;
        let (leader, addr) = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            let Some(leader) = m.current_leader.filter(|l| *l != id) else { continue };
            if m.state != ServerState::Follower {
                continue;
            }
            let membership = m.membership_config.membership();
            let Some(node) = membership.get_node(&leader) else { continue };
            // Only the surviving voter with the lowest id campaigns early; the others leave it to
            // openraft's timers. Two early candidates would often start the same term, and
            // openraft (which orders leaders by term *and* node id) may then elect both in turn.
            let first = membership.voter_ids().find(|v| *v != leader);
            if first != Some(id) {
                continue;
            }
            (leader, node.addr.clone())
        };
        let Some(last) = contact.last() else { continue };
        if last.elapsed() < heartbeat * 3 / 2 || probed_alive == Some(last) {
            continue;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            _ => {
                probed_alive = Some(last);
                continue;
            }
        }
        // The voters refuse to vote until the lease since the heartbeat they last saw (about
        // when we saw ours; half a heartbeat interval covers the difference) has passed.
        let at = last + lease + heartbeat / 2;
        tokio::time::sleep_until(at).await;
        let still_lost = {
            let m = raft.metrics().borrow().clone();
            m.state == ServerState::Follower && m.current_leader == Some(leader) && contact.last() == Some(last)
        };
        if still_lost {
            tracing::info!(id, leader, %addr, "the leader's address refuses connections: campaigning without waiting for the election timeout");
            if raft.trigger().elect().await.is_err() {
                return;
            }
            contact.campaigns.fetch_add(1, Ordering::Relaxed);
        }
    }
}
