//! Worker liveness and reconciliation, on the leader only.
//!
//! Every `reconcile_interval_ms`, and at once for a worker that (re)attached to a broker or just
//! received a placement (liveness every 100 ms):
//! 1. Liveness: a worker not heard of for `worker_liveness_ms` (counting from the leader's
//!    start at the earliest: the grace period) is committed lost; its instances fail and the
//!    scheduler places them elsewhere. A lost worker that reports again is committed returned.
//! 2. `RUNNING`: an instance its worker lists in resource reports while the state still says
//!    `NODE_SCHEDULED`/`CREATING`/`CREATED` is committed `RUNNING` (Oakestra's rule), once — on
//!    the next tick after a worker first lists it, not only at the full pass.
//! 3. Commands ([`plan_commands`], pure): deploy what a worker should run and does not report,
//!    delete what it reports and should not run, and what the root undeployed; each at most
//!    every `resend_after_ms`, through the replica whose broker holds the worker's session.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use grove_core::status::Status;
use tokio::sync::watch;

use crate::delivery::{deliver, OutMessage};
use crate::soft::{LeaderView, Sent};
use crate::state::{ClusterCommand, ClusterState, Desired, StatusUpdate};
use crate::Shared;

/// A command for a worker and the replica that delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub replica: u64,
    pub sent: Sent,
    pub message: OutMessage,
}

/// Is an instance in this state expected to be running on its worker?
fn should_run(status: &str) -> bool {
    !matches!(status.parse::<Status>(), Ok(Status::Failed | Status::Dead | Status::Completed | Status::Undeployed))
}

/// The commands reconciliation sends for `workers` (all attached workers when `None`), pure.
pub fn plan_commands(state: &ClusterState, view: &LeaderView, only: Option<&HashSet<String>>, now: Instant, resend_after: Duration) -> Vec<Planned> {
    let mut out = Vec::new();
    let by_worker = state.instances_by_worker();
    for (worker_id, live) in &view.workers {
        if only.is_some_and(|o| !o.contains(worker_id)) {
            continue;
        }
        let Some(w) = state.workers.get(worker_id) else { continue };
        if w.lost {
            // Its instances were moved; whatever it still runs is deleted below once it is
            // committed returned.
            continue;
        }
        let mut expected: HashSet<(String, u32)> = HashSet::new();
        let mut push = |sent: Sent, message: OutMessage| {
            if view.may_send(&sent, now, resend_after) {
                out.push(Planned { replica: live.replica, sent, message });
            }
        };
        for &(key, inst) in by_worker.get(worker_id.as_str()).into_iter().flatten() {
            let Some(job) = state.jobs.get(&inst.job_id) else { continue };
            match inst.desired {
                Desired::Running => {
                    expected.insert((inst.job_name.clone(), inst.instance_number));
                    let reported = live.running.contains_key(&(inst.job_name.clone(), inst.instance_number));
                    if !reported && should_run(&inst.status) {
                        let sent = Sent::Deploy { worker: worker_id.clone(), key: format!("{key}#{}", inst.placements) };
                        push(sent, OutMessage::deploy(worker_id, job, inst.instance_number));
                    }
                }
                Desired::Removed => {
                    expected.insert((inst.job_name.clone(), inst.instance_number));
                    let sent = Sent::Delete { worker: worker_id.clone(), job_name: inst.job_name.clone(), instance: inst.instance_number };
                    push(sent, OutMessage::delete(worker_id, &inst.job_name, &job.virtualization, inst.instance_number));
                }
            }
        }
        for ((job_name, n), (virtualization, _)) in &live.running {
            if expected.contains(&(job_name.clone(), *n)) {
                continue;
            }
            let sent = Sent::Delete { worker: worker_id.clone(), job_name: job_name.clone(), instance: *n };
            push(sent, OutMessage::delete(worker_id, job_name, virtualization, *n));
        }
    }
    out
}

/// Instances reported running whose committed status is still before `RUNNING`, per worker.
pub fn plan_running(state: &ClusterState, view: &LeaderView) -> BTreeMap<String, Vec<StatusUpdate>> {
    // One pass over the instances (not one per worker: with thousands of workers that was a
    // scan of every instance per worker, and this runs whenever instances are newly reported).
    let mut out: BTreeMap<String, Vec<StatusUpdate>> = BTreeMap::new();
    for inst in state.instances.values() {
        let before = [Status::NodeScheduled, Status::Creating, Status::Created].iter().any(|s| s.as_str() == inst.status);
        if inst.desired != Desired::Running || !before {
            continue;
        }
        let Some(live) = view.workers.get(&inst.worker_id) else { continue };
        if live.running.contains_key(&(inst.job_name.clone(), inst.instance_number)) {
            out.entry(inst.worker_id.clone()).or_default().push(StatusUpdate {
                job_name: inst.job_name.clone(),
                instance_number: inst.instance_number,
                status: Status::Running.as_str().into(),
                detail: String::new(),
                publicip: live.dynamic.as_ref().map(|d| d.ip.clone()).unwrap_or_default(),
            });
        }
    }
    out
}

/// Liveness verdicts: (workers to mark lost with the silence, workers that returned).
pub fn plan_liveness(state: &ClusterState, view: &LeaderView, now: Instant, liveness: Duration) -> (Vec<(String, Duration)>, Vec<String>) {
    let mut lost = Vec::new();
    let mut returned = Vec::new();
    for (id, w) in &state.workers {
        let silent = now.saturating_duration_since(view.last_heard(id));
        if !w.lost && silent > liveness {
            lost.push((id.clone(), silent));
        }
        let heard_lately = view.workers.get(id).is_some_and(|l| now.saturating_duration_since(l.last_seen) <= liveness);
        if w.lost && heard_lately {
            returned.push(id.clone());
        }
    }
    (lost, returned)
}

pub async fn run(shared: Shared, mut stop: watch::Receiver<bool>) {
    let config = shared.config.clone();
    let interval = Duration::from_millis(config.reconcile_interval_ms);
    let resend_after = Duration::from_millis(config.resend_after_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(100).min(interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full = Instant::now() - interval;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.running_news.notified() => {}
            _ = stop.changed() => return,
        }
        if !shared.replica.is_leader() {
            continue;
        }
        let now = Instant::now();
        // Liveness on every tick: detection is then bounded by the timeout plus one tick.
        liveness(&shared, now).await;
        let full = now.duration_since(last_full) >= interval;
        let newly_running = std::mem::take(&mut shared.view().newly_running);
        let only: Option<HashSet<String>> = if full {
            last_full = now;
            shared.view().reattached.clear();
            None
        } else {
            let r = std::mem::take(&mut shared.view().reattached);
            if r.is_empty() && !newly_running {
                continue;
            }
            Some(r)
        };
        if full || newly_running {
            let running = {
                let mut view = shared.view();
                view.expire_running(now, config.liveness());
                shared.replica.read_local(|s| plan_running(s, &view))
            };
            // One command per worker, committed concurrently: they share the leader's Raft
            // rounds (group commit) instead of taking one round each.
            let at_ms = crate::now_ms();
            let replica = &shared.replica;
            let writes = running.into_iter().map(|(worker_id, updates)| {
                let command = ClusterCommand::ReportStatuses { worker_id, updates, at_ms };
                async move {
                    if let Err(e) = replica.write(command).await {
                        tracing::debug!("RUNNING not committed: {e}");
                    }
                }
            });
            futures::future::join_all(writes).await;
        }
        let planned = {
            let view = shared.view();
            shared.replica.read_local(|s| plan_commands(s, &view, only.as_ref(), now, resend_after))
        };
        send(&shared, planned).await;
    }
}

async fn liveness(shared: &Shared, now: Instant) {
    let (lost, returned) = {
        let view = shared.view();
        shared.replica.read_local(|s| plan_liveness(s, &view, now, shared.config.liveness()))
    };
    // One command per verdict kind: a burst (a partitioned rack, a dead broker) costs one
    // Raft entry, not one per worker.
    if !lost.is_empty() {
        let workers: Vec<(String, String)> = lost
            .iter()
            .map(|(id, silent)| {
                tracing::warn!(worker = %id, silent_ms = silent.as_millis() as u64, "worker lost; its instances will be placed elsewhere");
                (id.clone(), format!("worker {id} lost: no report for {:.1} s", silent.as_secs_f64()))
            })
            .collect();
        let n = workers.len() as u64;
        match shared.replica.write(ClusterCommand::WorkersLost { workers, at_ms: crate::now_ms() }).await {
            Ok(_) => {
                shared.metrics.workers_lost_total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("worker losses not committed: {e}"),
        }
    }
    if !returned.is_empty() {
        tracing::info!(workers = ?returned, "lost workers report again");
        match shared.replica.write(ClusterCommand::WorkersReturned { ids: returned.clone(), at_ms: crate::now_ms() }).await {
            // Reconcile them at once: they may still run instances that moved elsewhere.
            Ok(_) => shared.view().reattached.extend(returned),
            Err(e) => tracing::warn!("worker returns not committed: {e}"),
        }
    }
}

/// Deliver planned commands, one call per replica, and remember what went out.
async fn send(shared: &Shared, planned: Vec<Planned>) {
    let mut by_replica: BTreeMap<u64, Vec<Planned>> = BTreeMap::new();
    for p in planned {
        by_replica.entry(p.replica).or_default().push(p);
    }
    let calls = by_replica.into_iter().map(|(replica, planned)| async move {
        let messages = planned.iter().map(|p| p.message.clone()).collect();
        match deliver(shared, replica, messages).await {
            Ok(()) => {
                let now = Instant::now();
                let mut view = shared.view();
                for p in planned {
                    tracing::debug!(topic = %p.message.topic, replica, "command delivered");
                    view.sent.insert(p.sent, now);
                }
            }
            Err(e) => tracing::warn!(replica, "commands not delivered (retried later): {e}"),
        }
    });
    futures::future::join_all(calls).await;
}

#[cfg(test)]
mod tests {
    use grove_core::job::Job;
    use grove_core::node::NodeInfo;
    use grove_raft::StateMachine;

    use super::*;
    use crate::messages::RunningInstance;
    use crate::soft::{Observations, WorkerObservation};

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for (id, host) in [("w1", "h1"), ("w2", "h2")] {
            let info = NodeInfo { host: host.into(), vcpus: 4, memory: 4000, virtualization: vec!["docker".into()], ..Default::default() };
            s.apply(ClusterCommand::RegisterWorker { id: id.into(), info, at_ms: 0 }).unwrap();
        }
        let job = Job { job_name: "a.b.c.d".into(), virtualization: "docker".into(), ..Default::default() };
        for n in 0..2 {
            s.apply(ClusterCommand::Deploy { job_id: "j".into(), instance_number: n, job: job.clone(), at_ms: 0 }).unwrap();
        }
        s.apply(ClusterCommand::Place { key: "j/0".into(), worker_id: "w1".into(), expected_worker: String::new(), at_ms: 0 }).unwrap();
        s.apply(ClusterCommand::Place { key: "j/1".into(), worker_id: "w1".into(), expected_worker: String::new(), at_ms: 0 }).unwrap();
        s
    }

    fn running(job: &str, n: u32) -> RunningInstance {
        RunningInstance { job_name: job.into(), instance_number: n, virtualization: "docker".into(), cpu_percent: 0.0, memory_percent: 0.0 }
    }

    fn seen(view: &mut LeaderView, replica: u64, id: &str, r: Vec<RunningInstance>, now: Instant) {
        view.observe(Observations { replica, workers: vec![WorkerObservation { id: id.into(), running: Some(r), ..Default::default() }] }, now);
    }

    fn topics(p: &[Planned]) -> Vec<(u64, String, String)> {
        let mut t: Vec<_> = p.iter().map(|p| (p.replica, p.message.topic.clone(), p.message.payload.clone())).collect();
        t.sort();
        t
    }

    #[test]
    fn deploys_what_is_missing_and_deletes_what_should_not_run() {
        let s = state();
        let now = Instant::now();
        let mut view = LeaderView::new(1, now);
        // w1 (on replica 2) runs instance 0 and a leftover; w2 (replica 3) runs instance 1,
        // which belongs to w1.
        seen(&mut view, 2, "w1", vec![running("a.b.c.d", 0), running("old.job.x.y", 4)], now);
        seen(&mut view, 3, "w2", vec![running("a.b.c.d", 1)], now);
        let p = plan_commands(&s, &view, None, now, Duration::from_secs(5));
        let t = topics(&p);
        assert_eq!(t.len(), 3, "{t:#?}");
        assert!(t[0].0 == 2 && t[0].1 == "nodes/w1/control/delete" && t[0].2.contains("old.job.x.y"));
        assert!(t[1].0 == 2 && t[1].1 == "nodes/w1/control/deploy" && t[1].2.contains("\"instance_number\":1"));
        assert!(t[2].0 == 3 && t[2].1 == "nodes/w2/control/delete" && t[2].2.contains("\"instance_number\":1"));
        // Sent commands wait for resend_after; `only` limits the pass.
        for x in &p {
            view.sent.insert(x.sent.clone(), now);
        }
        assert!(plan_commands(&s, &view, None, now + Duration::from_secs(1), Duration::from_secs(5)).is_empty());
        assert_eq!(plan_commands(&s, &view, None, now + Duration::from_secs(5), Duration::from_secs(5)).len(), 3);
        let only: HashSet<String> = ["w2".to_string()].into();
        assert_eq!(plan_commands(&s, &view, Some(&only), now + Duration::from_secs(5), Duration::from_secs(5)).len(), 1);
    }

    #[test]
    fn removed_instances_get_deletes_and_terminal_ones_no_deploys() {
        let mut s = state();
        s.apply(ClusterCommand::Undeploy { job_id: "j".into(), instance_number: Some(0), at_ms: 1 }).unwrap();
        let dead = StatusUpdate { job_name: "a.b.c.d".into(), instance_number: 1, status: "COMPLETED".into(), detail: String::new(), publicip: String::new() };
        s.apply(ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![dead], at_ms: 1 }).unwrap();
        let now = Instant::now();
        let mut view = LeaderView::new(1, now);
        seen(&mut view, 1, "w1", vec![], now);
        let t = topics(&plan_commands(&s, &view, None, now, Duration::from_secs(5)));
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].1, "nodes/w1/control/delete");
    }

    #[test]
    fn running_is_derived_once_from_resource_reports() {
        let s = state();
        let now = Instant::now();
        let mut view = LeaderView::new(1, now);
        seen(&mut view, 1, "w1", vec![running("a.b.c.d", 0)], now);
        let r = plan_running(&s, &view);
        assert_eq!(r["w1"].len(), 1);
        assert_eq!((r["w1"][0].instance_number, r["w1"][0].status.as_str()), (0, "RUNNING"));
    }

    #[test]
    fn liveness_counts_from_the_leader_start_and_sees_returns() {
        let mut s = state();
        let t0 = Instant::now();
        let mut view = LeaderView::new(1, t0);
        seen(&mut view, 1, "w1", vec![], t0);
        let liveness = Duration::from_secs(6);
        // w2 never reported to this leader: it gets the grace period from the leader's start.
        assert_eq!(plan_liveness(&s, &view, t0 + Duration::from_secs(5), liveness), (vec![], vec![]));
        let (lost, _) = plan_liveness(&s, &view, t0 + Duration::from_secs(7), liveness);
        let ids: Vec<&str> = lost.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["w1", "w2"]);
        s.apply(ClusterCommand::WorkerLost { id: "w1".into(), detail: String::new(), at_ms: 0 }).unwrap();
        let t1 = t0 + Duration::from_secs(8);
        seen(&mut view, 1, "w1", vec![], t1);
        assert_eq!(plan_liveness(&s, &view, t1, liveness).1, vec!["w1".to_string()]);
    }
}
