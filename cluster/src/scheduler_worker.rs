//! The cluster scheduler loop, on the leader only: places every instance that needs a worker
//! with core's pure best-fit scheduler at [`Level::Cluster`] (`direct` node constraints,
//! virtualization, cores, memory, GPUs, addons, CSI drivers) and commits `NODE_SCHEDULED` or
//! the negative status with its detail.
//!
//! Needs a worker: an unplaced instance (new, or its worker was lost), and one its worker
//! reported `FAILED` or `DEAD` at least `redeploy_delay_ms` ago (Oakestra re-deploys those
//! too). Placements are compare-and-set on the instance's current worker.

use std::collections::HashMap;
use std::time::Duration;

use grove_core::scheduler::{schedule, Candidate, Demand, Level};
use grove_core::status::Status;
use tokio::sync::watch;

use crate::messages::Dynamic;
use crate::state::{ClusterCommand, ClusterState, Desired};
use crate::Shared;

/// One decision of a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Place { key: String, worker_id: String, expected_worker: String },
    Fail { key: String, status: String, detail: String },
}

fn needs_worker(status: &str, worker_id: &str, updated_at_ms: u64, now_ms: u64, redeploy_delay_ms: u64) -> bool {
    if worker_id.is_empty() {
        return true;
    }
    let failed = status == Status::Failed.as_str() || status == Status::Dead.as_str();
    failed && now_ms.saturating_sub(updated_at_ms) >= redeploy_delay_ms
}

/// Decide placements for every instance that needs a worker (pure). `dynamic` holds the latest
/// reported resources per worker (registration values are used for the others). Resources
/// placed earlier in the same pass are subtracted from the chosen worker, so a burst spreads.
/// Negative outcomes equal to the instance's current status and detail are left out.
pub fn plan(state: &ClusterState, dynamic: &HashMap<String, Dynamic>, now_ms: u64, redeploy_delay_ms: u64) -> Vec<Decision> {
    let workers: Vec<_> = state.workers.values().collect();
    let csi: Vec<Vec<String>> = workers.iter().map(|w| w.info.csi_drivers.iter().map(|d| d.csi_driver_name.clone()).collect()).collect();
    // The candidates are built once per pass (not once per instance: with thousands of workers
    // and a burst of instances that was most of the pass) and a placement takes its resources
    // off the chosen one.
    let mut candidates: Vec<Candidate> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let d = dynamic.get(&w.id);
            Candidate {
                id: &w.id,
                name: &w.host,
                active: !w.lost,
                vcpus: d.map_or(w.info.vcpus, |d| d.vcpus),
                cpu_percent: d.map_or(w.info.cpu_percent, |d| d.cpu_percent),
                memory_mb: d.map_or(w.info.memory, |d| d.memory),
                vgpus: d.map_or(w.info.vgpus, |d| d.vgpus),
                virtualization: &w.info.virtualization,
                csi_drivers: &csi[i],
                supported_addons: &w.info.supported_addons,
                location: None,
            }
        })
        .collect();
    let mut out = Vec::new();
    for (key, inst) in &state.instances {
        if inst.desired != Desired::Running || !needs_worker(&inst.status, &inst.worker_id, inst.updated_at_ms, now_ms, redeploy_delay_ms) {
            continue;
        }
        let Some(job) = state.jobs.get(&inst.job_id) else { continue };
        match schedule(Level::Cluster, &Demand::from_job(job), &candidates) {
            Ok(p) => {
                out.push(Decision::Place { key: key.clone(), worker_id: p.id.to_owned(), expected_worker: inst.worker_id.clone() });
                let chosen = &mut candidates[p.index];
                chosen.vcpus = chosen.vcpus.saturating_sub(job.vcpus);
                chosen.memory_mb = chosen.memory_mb.saturating_sub(job.memory);
            }
            Err(np) if inst.worker_id.is_empty() => {
                if inst.status != np.status.as_str() || inst.status_detail != np.detail {
                    out.push(Decision::Fail { key: key.clone(), status: np.status.as_str().to_owned(), detail: np.detail });
                }
            }
            // A failed instance with nowhere else to go stays where it is, with its status.
            Err(_) => {}
        }
    }
    out
}

/// Run until `stop`: on the leader, a pass every `interval`.
pub async fn run(shared: Shared, interval: Duration, redeploy_delay_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !shared.replica.is_leader() {
            continue;
        }
        let dynamic: HashMap<String, Dynamic> = {
            let view = shared.view();
            view.workers.iter().filter_map(|(id, w)| w.dynamic.clone().map(|d| (id.clone(), d))).collect()
        };
        let now_ms = crate::now_ms();
        let decisions = shared.replica.read_local(|s| plan(s, &dynamic, now_ms, redeploy_delay_ms));
        // Every decision of the pass at once: they touch different instances (the plan already
        // accounts for each other's resources), and concurrent writes share Raft rounds and
        // log syncs; one after the other, a burst of deploys waited a round per instance.
        let writes = decisions.into_iter().map(|d| {
            let shared = &shared;
            async move {
                let at_ms = crate::now_ms();
                let placed_on = match &d {
                    Decision::Place { worker_id, .. } => Some(worker_id.clone()),
                    Decision::Fail { .. } => None,
                };
                let command = match d {
                    Decision::Place { key, worker_id, expected_worker } => {
                        tracing::info!(instance = %key, worker = %worker_id, previous = %expected_worker, "placing instance");
                        ClusterCommand::Place { key, worker_id, expected_worker, at_ms }
                    }
                    Decision::Fail { key, status, detail } => {
                        tracing::info!(instance = %key, %status, %detail, "no worker for instance");
                        ClusterCommand::FailPlacement { key, status, detail, at_ms }
                    }
                };
                match shared.replica.write(command).await {
                    // Deliver at once instead of at the next periodic reconciliation.
                    Ok(Ok(_)) => {
                        if let Some(w) = placed_on {
                            shared.view().reattached.insert(w);
                        }
                    }
                    // Placed, removed or lost meanwhile: the next pass sees the new state.
                    Ok(Err(e)) => tracing::debug!("placement not applied: {e}"),
                    Err(e) => tracing::warn!("placement not committed: {e}"),
                }
            }
        });
        futures::future::join_all(writes).await;
    }
}

#[cfg(test)]
mod tests {
    use grove_core::job::Job;
    use grove_core::node::NodeInfo;
    use grove_core::sla::Constraint;
    use grove_raft::StateMachine;

    use super::*;

    fn worker(s: &mut ClusterState, id: &str, vcpus: u32, memory: u64, virt: &[&str]) {
        let info = NodeInfo { host: format!("host-{id}"), vcpus, memory, virtualization: virt.iter().map(|v| v.to_string()).collect(), ..Default::default() };
        s.apply(ClusterCommand::RegisterWorker { id: id.into(), info, at_ms: 0 }).unwrap();
    }

    fn deploy(s: &mut ClusterState, job_id: &str, n: u32, job: Job) {
        s.apply(ClusterCommand::Deploy { job_id: job_id.into(), instance_number: n, job, at_ms: 0 }).unwrap();
    }

    fn job(name: &str, vcpus: u32, memory: u64) -> Job {
        Job { job_name: name.into(), virtualization: "docker".into(), vcpus, memory, ..Default::default() }
    }

    fn placed(d: &[Decision]) -> Vec<(&str, &str)> {
        d.iter()
            .filter_map(|d| match d {
                Decision::Place { key, worker_id, .. } => Some((key.as_str(), worker_id.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            setup: fn(&mut ClusterState),
            expect: &'static [(&'static str, &'static str)],
            fail: Option<&'static str>,
        }
        let cases = [
            Case { name: "no workers", setup: |s| deploy(s, "j", 0, job("a.b.c.d", 1, 100)), expect: &[], fail: Some("NO_NODE_FOUND") },
            Case {
                name: "best fit picks the most free memory and cores",
                setup: |s| {
                    worker(s, "small", 2, 1000, &["docker"]);
                    worker(s, "big", 8, 8000, &["docker"]);
                    deploy(s, "j", 0, job("a.b.c.d", 1, 100));
                },
                expect: &[("j/0", "big")],
                fail: None,
            },
            Case {
                name: "virtualization filter",
                setup: |s| {
                    worker(s, "uni", 8, 8000, &["unikernel"]);
                    worker(s, "dock", 1, 500, &["docker"]);
                    deploy(s, "j", 0, job("a.b.c.d", 1, 100));
                },
                expect: &[("j/0", "dock")],
                fail: None,
            },
            Case {
                name: "memory too small everywhere",
                setup: |s| {
                    worker(s, "w", 8, 500, &["docker"]);
                    deploy(s, "j", 0, job("a.b.c.d", 1, 1000));
                },
                expect: &[],
                fail: Some("NO_WORKER_CAPACITY"),
            },
            Case {
                name: "direct node constraint",
                setup: |s| {
                    worker(s, "big", 8, 8000, &["docker"]);
                    worker(s, "small", 2, 1000, &["docker"]);
                    let mut j = job("a.b.c.d", 1, 100);
                    j.constraints = vec![serde_json::from_value::<Constraint>(serde_json::json!({"type": "direct", "node": "host-small"})).unwrap()];
                    deploy(s, "j", 0, j);
                },
                expect: &[("j/0", "small")],
                fail: None,
            },
            Case {
                name: "lost workers are skipped",
                setup: |s| {
                    worker(s, "big", 8, 8000, &["docker"]);
                    worker(s, "small", 2, 1000, &["docker"]);
                    s.apply(ClusterCommand::WorkerLost { id: "big".into(), detail: String::new(), at_ms: 0 }).unwrap();
                    deploy(s, "j", 0, job("a.b.c.d", 1, 100));
                },
                expect: &[("j/0", "small")],
                fail: None,
            },
            Case {
                name: "a burst spreads over the pass",
                setup: |s| {
                    worker(s, "a", 4, 1000, &["docker"]);
                    worker(s, "b", 4, 1000, &["docker"]);
                    deploy(s, "j", 0, job("a.b.c.d", 1, 600));
                    deploy(s, "j", 1, job("a.b.c.d", 1, 600));
                },
                expect: &[("j/0", "a"), ("j/1", "b")],
                fail: None,
            },
        ];
        for case in cases {
            let mut s = ClusterState::default();
            (case.setup)(&mut s);
            let d = plan(&s, &HashMap::new(), 10_000, 2_000);
            assert_eq!(placed(&d), case.expect, "{}", case.name);
            let fails: Vec<&str> = d.iter().filter_map(|d| if let Decision::Fail { status, .. } = d { Some(status.as_str()) } else { None }).collect();
            assert_eq!(fails.first().copied(), case.fail, "{}", case.name);
        }
    }

    #[test]
    fn reported_resources_override_registration_values() {
        let mut s = ClusterState::default();
        worker(&mut s, "a", 4, 8000, &["docker"]);
        worker(&mut s, "b", 4, 4000, &["docker"]);
        deploy(&mut s, "j", 0, job("a.b.c.d", 1, 100));
        let mut dynamic = HashMap::new();
        dynamic.insert("a".to_string(), Dynamic { memory: 100, vcpus: 4, ..Default::default() });
        assert_eq!(placed(&plan(&s, &dynamic, 0, 0)), [("j/0", "b")]);
    }

    #[test]
    fn failed_instances_move_after_the_delay_and_unchanged_failures_are_not_repeated() {
        let mut s = ClusterState::default();
        worker(&mut s, "a", 4, 1000, &["docker"]);
        deploy(&mut s, "j", 0, job("a.b.c.d", 1, 100));
        s.apply(ClusterCommand::Place { key: "j/0".into(), worker_id: "a".into(), expected_worker: String::new(), at_ms: 0 }).unwrap();
        let dead = crate::state::StatusUpdate { job_name: "a.b.c.d".into(), instance_number: 0, status: "DEAD".into(), detail: String::new(), publicip: String::new() };
        s.apply(ClusterCommand::ReportStatuses { worker_id: "a".into(), updates: vec![dead], at_ms: 1_000 }).unwrap();
        assert!(plan(&s, &HashMap::new(), 2_000, 2_000).is_empty(), "too early");
        assert_eq!(plan(&s, &HashMap::new(), 3_000, 2_000), vec![Decision::Place { key: "j/0".into(), worker_id: "a".into(), expected_worker: "a".into() }]);

        let mut s = ClusterState::default();
        deploy(&mut s, "j", 0, job("a.b.c.d", 1, 100));
        let d = plan(&s, &HashMap::new(), 0, 0);
        let Decision::Fail { key, status, detail } = d[0].clone() else { panic!("{d:?}") };
        s.apply(ClusterCommand::FailPlacement { key, status, detail, at_ms: 0 }).unwrap();
        assert!(plan(&s, &HashMap::new(), 0, 0).is_empty());
    }
}
