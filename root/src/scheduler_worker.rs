//! The root scheduler loop, on the leader only: places every instance waiting for a cluster
//! (`REQUESTED`, or a negative status from an earlier attempt) with core's pure best-fit
//! scheduler over the committed cluster aggregates, and commits `CLUSTER_SCHEDULED` or the
//! negative status with its detail. Placements are compare-and-set commands, so a stale view
//! (or a second leader in a new term) cannot place an instance twice.

use std::collections::BTreeMap;
use std::time::Duration;

use grove_core::scheduler::{schedule, Candidate, Demand, Level};
use grove_core::sla::GeoPoint;
use tokio::sync::watch;

use crate::state::{ClusterRecord, RootCommand, RootState};
use grove_raft::Replica;

pub use crate::state::Decision;

/// Most decisions committed in one entry (the rest wait for the next pass).
const MAX_DECISIONS_PER_PASS: usize = 1000;

/// Decide placements for every waiting instance of `state` (pure). Resources placed earlier in
/// the same pass are subtracted from the chosen cluster, so a burst spreads. Negative outcomes
/// equal to the instance's current status and detail are left out (nothing to commit).
pub fn plan(state: &RootState) -> Vec<Decision> {
    let clusters: Vec<&ClusterRecord> = state.clusters.values().collect();
    let locations: Vec<Option<GeoPoint>> = clusters.iter().map(|c| GeoPoint::parse_cluster_location(&c.location)).collect();
    let mut used: BTreeMap<usize, (u32, u64)> = BTreeMap::new();
    let mut out = Vec::new();
    for (job_id, job) in &state.jobs {
        for inst in job.instances.values().filter(|i| i.cluster_id.is_empty()) {
            let candidates: Vec<Candidate> = clusters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (cpu, mem) = used.get(&i).copied().unwrap_or((0, 0));
                    Candidate {
                        id: &c.id,
                        name: &c.name,
                        active: c.active,
                        vcpus: c.aggregate.vcpus.saturating_sub(cpu),
                        cpu_percent: c.aggregate.cpu_percent,
                        memory_mb: c.aggregate.memory.saturating_sub(mem),
                        vgpus: c.aggregate.vgpus,
                        virtualization: &c.aggregate.virtualization,
                        csi_drivers: &c.aggregate.csi_drivers,
                        supported_addons: &c.aggregate.supported_addons,
                        location: locations[i],
                    }
                })
                .collect();
            match schedule(Level::Root, &Demand::from_job(&job.job), &candidates) {
                Ok(p) => {
                    let e = used.entry(p.index).or_default();
                    e.0 += job.job.vcpus;
                    e.1 += job.job.memory;
                    out.push(Decision::Place { job_id: job_id.clone(), instance_number: inst.instance_number, cluster_id: p.id.to_owned() });
                }
                Err(np) => {
                    if inst.status != np.status.as_str() || inst.status_detail != np.detail {
                        out.push(Decision::Fail {
                            job_id: job_id.clone(),
                            instance_number: inst.instance_number,
                            status: np.status.as_str().to_owned(),
                            detail: np.detail,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Run until `stop`: on the leader, a pass every `interval`.
pub async fn run(replica: Replica<RootState>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !replica.is_leader() {
            continue;
        }
        let mut decisions = replica.read_local(plan);
        decisions.truncate(MAX_DECISIONS_PER_PASS);
        if decisions.is_empty() {
            continue;
        }
        for d in &decisions {
            match d {
                Decision::Place { job_id, instance_number, cluster_id } => tracing::info!(%job_id, instance_number, %cluster_id, "placing instance"),
                Decision::Fail { job_id, instance_number, status, detail } => {
                    tracing::info!(%job_id, instance_number, %status, %detail, "no cluster for instance")
                }
            }
        }
        // One entry per pass; a decision made stale by a concurrent change is skipped by the
        // state machine and the next pass sees the new state.
        if let Err(e) = replica.write(RootCommand::Schedule { decisions, at_ms: crate::ids::now_ms() }).await {
            tracing::warn!("scheduler pass not committed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use grove_raft::StateMachine;

    use super::*;
    use crate::state::ClusterAggregate;

    fn state_with(clusters: &[(&str, &str, u32, u64, bool)], memory_demand: u64, constraints: serde_json::Value, instances: u32) -> RootState {
        let mut s = RootState::default();
        for (id, name, vcpus, memory, active) in clusters {
            s.apply(RootCommand::RegisterCluster {
                id: id.to_string(),
                name: name.to_string(),
                location: "48.1,11.6,100".into(),
                ip: String::new(),
                port: String::new(),
                endpoints: vec![],
                at_ms: 1,
            })
            .unwrap();
            let aggregate = ClusterAggregate { vcpus: *vcpus, memory: *memory, virtualization: vec!["docker".into()], ..Default::default() };
            s.apply(RootCommand::ReportCluster { id: id.to_string(), aggregate, at_ms: 1 }).unwrap();
            s.clusters.get_mut(*id).unwrap().active = *active;
        }
        let sla = serde_json::json!({"sla_version":"v2.0","customerID":"u","applications":[{"application_name":"a","application_namespace":"n","microservices":[
            {"microservice_name":"s","microservice_namespace":"n","virtualization":"container","code":"img","memory":memory_demand,"vcpus":1,"constraints":constraints}]}]});
        let sla = grove_core::sla::parse_sla(sla.to_string().as_bytes()).unwrap();
        let app = &sla.applications[0];
        let job = grove_core::sla::derive_job("a1", "j1", app, &app.microservices[0]);
        s.apply(RootCommand::CreateApplications {
            owner: "u".into(),
            apps: vec![crate::state::NewApplication { id: "a1".into(), application_name: "a".into(), application_namespace: "n".into(), application_desc: String::new(), jobs: vec![job] }],
        })
        .unwrap();
        for _ in 0..instances {
            s.apply(RootCommand::RequestInstance { job_id: "j1".into(), owner: None, at_ms: 2 }).unwrap();
        }
        s
    }

    fn apply_all(s: &mut RootState, ds: Vec<Decision>) {
        let n = ds.len();
        assert_eq!(s.apply(RootCommand::Schedule { decisions: ds, at_ms: 3 }), Ok(crate::state::Applied::Changed(n)));
    }

    #[test]
    fn places_on_best_fit_and_spreads_a_burst() {
        let s = state_with(&[("c1", "one", 4, 1000, true), ("c2", "two", 4, 900, true)], 300, serde_json::json!([]), 2);
        let ds = plan(&s);
        assert_eq!(ds.len(), 2);
        // The first goes to the cluster with the most free memory; the second, after
        // subtracting the first, to the other one.
        assert!(matches!(&ds[0], Decision::Place { cluster_id, .. } if cluster_id == "c1"), "{ds:?}");
        assert!(matches!(&ds[1], Decision::Place { cluster_id, .. } if cluster_id == "c2"), "{ds:?}");
    }

    #[test]
    fn no_active_cluster_is_a_negative_status_committed_once() {
        let mut s = state_with(&[("c1", "one", 4, 1000, false)], 100, serde_json::json!([]), 1);
        let ds = plan(&s);
        assert!(matches!(&ds[0], Decision::Fail { status, .. } if status == "TargetClusterNotActive"), "{ds:?}");
        apply_all(&mut s, ds);
        assert!(plan(&s).is_empty(), "the same outcome is not committed again");
        // The cluster comes back: the instance is placed on the next pass.
        s.clusters.get_mut("c1").unwrap().active = true;
        assert!(matches!(&plan(&s)[0], Decision::Place { cluster_id, .. } if cluster_id == "c1"));
    }

    #[test]
    fn without_any_cluster_the_outcome_is_committed_once() {
        let mut s = state_with(&[], 100, serde_json::json!([]), 3);
        let ds = plan(&s);
        assert_eq!(ds.len(), 3, "{ds:?}");
        apply_all(&mut s, ds);
        assert_eq!(plan(&s), vec![], "nothing changed, nothing to commit");
    }

    #[test]
    fn capacity_and_direct_constraints() {
        let s = state_with(&[("c1", "one", 4, 100, true)], 500, serde_json::json!([]), 1);
        assert!(matches!(&plan(&s)[0], Decision::Fail { status, detail, .. } if status == "NoActiveClusterWithCapacity" && detail.contains("MB")));
        let s = state_with(&[("c1", "one", 4, 1000, true), ("c2", "two", 4, 9000, true)], 100, serde_json::json!([{"type":"direct","cluster":"one"}]), 1);
        assert!(matches!(&plan(&s)[0], Decision::Place { cluster_id, .. } if cluster_id == "c1"));
        let s = state_with(&[("c1", "one", 4, 1000, true)], 100, serde_json::json!([{"type":"direct","cluster":"nowhere"}]), 1);
        assert!(matches!(&plan(&s)[0], Decision::Fail { status, .. } if status == "TargetClusterNotFound"));
    }
}
