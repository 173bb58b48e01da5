//! Lost clusters, decided by the root leader: a cluster whose committed `last_report_ms` has not
//! moved for `lost_after` (default 15 s) is marked lost, which releases its instances to the
//! scheduler (see `RootState::mark_cluster_lost`).
//!
//! The clock is the leader's own monotonic clock, started when it sees a cluster's report
//! change, never the wall-clock time in the report: replicas' clocks may differ, and a newly
//! elected leader starts every clock at its election (a grace period), so a failover never
//! makes clusters look lost.

use std::collections::HashMap;
use std::time::Duration;

use grove_raft::Replica;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::state::{RootCommand, RootState};

/// What the leader last saw of one cluster.
#[derive(Debug, Clone, Copy)]
struct Seen {
    last_report_ms: u64,
    since: Instant,
}

/// The leader's soft view of cluster reports.
#[derive(Debug, Default)]
pub struct Watch {
    seen: HashMap<String, Seen>,
}

impl Watch {
    /// Forget everything (on losing or gaining leadership).
    pub fn reset(&mut self) {
        self.seen.clear();
    }

    /// Observe the committed state at `now`; answers the clusters to mark lost, each with the
    /// `last_report_ms` the decision is based on (the command is ignored if it moved).
    pub fn observe(&mut self, state: &RootState, now: Instant, lost_after: Duration) -> Vec<(String, u64)> {
        self.seen.retain(|id, _| state.clusters.contains_key(id));
        let mut lost = Vec::new();
        for c in state.clusters.values() {
            let seen = self.seen.entry(c.id.clone()).or_insert(Seen { last_report_ms: c.last_report_ms, since: now });
            if seen.last_report_ms != c.last_report_ms {
                *seen = Seen { last_report_ms: c.last_report_ms, since: now };
            }
            if c.active && now.duration_since(seen.since) >= lost_after {
                lost.push((c.id.clone(), c.last_report_ms));
            }
        }
        lost
    }
}

/// Run until `stop`: on the leader, check every `lost_after / 10` (at least every second).
pub async fn run(replica: Replica<RootState>, lost_after: Duration, mut stop: watch::Receiver<bool>) {
    let period = (lost_after / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = Watch::default();
    let mut leading = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !replica.is_leader() {
            if leading {
                watch.reset();
                leading = false;
            }
            continue;
        }
        if !leading {
            // A new leadership: every clock starts now.
            watch.reset();
            leading = true;
        }
        let lost = replica.read_local(|s| watch.observe(s, Instant::now(), lost_after));
        for (id, last_report_ms) in lost {
            let name = replica.read_local(|s| s.clusters.get(&id).map(|c| c.name.clone())).unwrap_or_default();
            tracing::warn!(cluster = %name, cluster_id = %id, silent_for = ?lost_after, "cluster lost; re-placing its instances");
            let command = RootCommand::MarkClusterLost { id, last_report_ms, at_ms: crate::ids::now_ms() };
            if let Err(e) = replica.write(command).await {
                tracing::warn!("could not commit a lost cluster: {e}");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use grove_raft::StateMachine;

    use super::*;

    fn with_cluster(last_report_ms: u64) -> RootState {
        let mut s = RootState::default();
        s.apply(RootCommand::RegisterCluster {
            id: "c1".into(),
            name: "one".into(),
            location: String::new(),
            ip: String::new(),
            port: String::new(),
            endpoints: vec![],
            at_ms: last_report_ms,
        })
        .unwrap();
        s
    }

    #[test]
    fn silence_is_measured_from_the_last_change_the_leader_saw() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(15);
        let mut w = Watch::default();
        // The report time in the state is far in the past (another replica's clock, or a
        // leader elected long after): the clock still starts at the first observation.
        let mut s = with_cluster(1);
        assert!(w.observe(&s, t0, limit).is_empty());
        assert!(w.observe(&s, t0 + Duration::from_secs(14), limit).is_empty());
        // A report at 14 s restarts the clock.
        s.apply(RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![], full: false, at_ms: 2 }).unwrap();
        assert!(w.observe(&s, t0 + Duration::from_secs(14), limit).is_empty());
        assert!(w.observe(&s, t0 + Duration::from_secs(28), limit).is_empty());
        assert_eq!(w.observe(&s, t0 + Duration::from_secs(29), limit), [("c1".to_string(), 2)]);
        // Once inactive it is not reported again; a reset (new leader) starts over.
        s.apply(RootCommand::MarkClusterLost { id: "c1".into(), last_report_ms: 2, at_ms: 3 }).unwrap();
        assert!(w.observe(&s, t0 + Duration::from_secs(40), limit).is_empty());
        s.apply(RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![], full: false, at_ms: 4 }).unwrap();
        w.reset();
        assert!(w.observe(&s, t0 + Duration::from_secs(100), limit).is_empty());
        assert_eq!(w.observe(&s, t0 + Duration::from_secs(115), limit).len(), 1);
    }
}
