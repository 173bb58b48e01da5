use grove_core::job::Job;
use grove_core::node::NodeInfo;
use grove_raft::StateMachine;

use super::*;

fn node(host: &str) -> NodeInfo {
    NodeInfo { host: host.into(), vcpus: 4, memory: 4096, virtualization: vec!["docker".into()], ..Default::default() }
}

fn job(name: &str) -> Job {
    Job { job_name: name.into(), image: "img".into(), virtualization: "docker".into(), ..Default::default() }
}

fn ok(state: &mut ClusterState, c: ClusterCommand) -> Applied {
    state.apply(c).expect("command applies")
}

fn with_worker_and_instance() -> ClusterState {
    let mut s = ClusterState::default();
    ok(&mut s, ClusterCommand::RegisterWorker { id: "w1".into(), info: node("host-1"), at_ms: 1 });
    ok(&mut s, ClusterCommand::Deploy { job_id: "j1".into(), instance_number: 0, job: job("a.b.c.d"), at_ms: 2 });
    ok(&mut s, ClusterCommand::Place { key: "j1/0".into(), worker_id: "w1".into(), expected_worker: String::new(), at_ms: 3 });
    s
}

fn update(status: &str) -> StatusUpdate {
    StatusUpdate { job_name: "a.b.c.d".into(), instance_number: 0, status: status.into(), detail: String::new(), publicip: "10.0.0.1".into() }
}

#[test]
fn registration_is_an_upsert_by_hostname() {
    let mut s = ClusterState::default();
    assert_eq!(ok(&mut s, ClusterCommand::RegisterWorker { id: "w1".into(), info: node("h"), at_ms: 1 }), Applied::Id("w1".into()));
    let mut again = node("h");
    again.vcpus = 8;
    assert_eq!(ok(&mut s, ClusterCommand::RegisterWorker { id: "w2".into(), info: again, at_ms: 2 }), Applied::Id("w1".into()));
    assert_eq!(s.workers.len(), 1);
    assert_eq!(s.workers["w1"].info.vcpus, 8);
    assert_eq!(s.workers["w1"].info.id, "w1");
    assert!(matches!(s.apply(ClusterCommand::RegisterWorker { id: "w1".into(), info: node("other"), at_ms: 3 }), Err(ApplyError::Conflict(_))));
    assert!(matches!(s.apply(ClusterCommand::RegisterWorker { id: "w3".into(), info: node(" "), at_ms: 3 }), Err(ApplyError::Invalid(m)) if m.starts_with("host")));
}

#[test]
fn deploy_is_idempotent_and_checks_job_names() {
    let mut s = ClusterState::default();
    let deploy = ClusterCommand::Deploy { job_id: "j1".into(), instance_number: 0, job: job("a.b.c.d"), at_ms: 1 };
    assert_eq!(ok(&mut s, deploy.clone()), Applied::Changed(1));
    assert_eq!(ok(&mut s, deploy), Applied::Changed(0));
    assert_eq!(s.instances["j1/0"].status, "CLUSTER_SCHEDULED");
    let clash = ClusterCommand::Deploy { job_id: "j2".into(), instance_number: 0, job: job("a.b.c.d"), at_ms: 1 };
    assert!(matches!(s.apply(clash), Err(ApplyError::Conflict(_))));
    let renamed = ClusterCommand::Deploy { job_id: "j1".into(), instance_number: 1, job: job("x.y.z.w"), at_ms: 1 };
    assert!(matches!(s.apply(renamed), Err(ApplyError::Conflict(_))));
    let nameless = ClusterCommand::Deploy { job_id: "j3".into(), instance_number: 0, job: Job::default(), at_ms: 1 };
    assert!(matches!(s.apply(nameless), Err(ApplyError::Invalid(m)) if m.starts_with("job_name")));
}

#[test]
fn placement_is_compare_and_set() {
    let mut s = with_worker_and_instance();
    assert_eq!(s.instances["j1/0"].status, "NODE_SCHEDULED");
    // The same placement again changes nothing; a stale one is refused.
    let again = ClusterCommand::Place { key: "j1/0".into(), worker_id: "w1".into(), expected_worker: String::new(), at_ms: 4 };
    assert_eq!(ok(&mut s, again), Applied::Changed(0));
    ok(&mut s, ClusterCommand::RegisterWorker { id: "w2".into(), info: node("host-2"), at_ms: 1 });
    let stale = ClusterCommand::Place { key: "j1/0".into(), worker_id: "w2".into(), expected_worker: String::new(), at_ms: 4 };
    assert!(matches!(s.apply(stale), Err(ApplyError::Conflict(_))));
    let moved = ClusterCommand::Place { key: "j1/0".into(), worker_id: "w2".into(), expected_worker: "w1".into(), at_ms: 4 };
    assert_eq!(ok(&mut s, moved), Applied::Changed(1));
    assert_eq!((s.instances["j1/0"].worker_id.as_str(), s.instances["j1/0"].placements), ("w2", 2));
}

#[test]
fn failed_placement_only_touches_unplaced_instances() {
    let mut s = ClusterState::default();
    ok(&mut s, ClusterCommand::Deploy { job_id: "j1".into(), instance_number: 0, job: job("a.b.c.d"), at_ms: 1 });
    let fail = ClusterCommand::FailPlacement { key: "j1/0".into(), status: "NO_NODE_FOUND".into(), detail: "0 candidates".into(), at_ms: 2 };
    assert_eq!(ok(&mut s, fail.clone()), Applied::Changed(1));
    assert_eq!(ok(&mut s, fail), Applied::Changed(0));
    let bad = ClusterCommand::FailPlacement { key: "j1/0".into(), status: "RUNNING".into(), detail: String::new(), at_ms: 2 };
    assert!(matches!(s.apply(bad), Err(ApplyError::Invalid(_))));
}

#[test]
fn statuses_from_the_worker_holding_the_instance() {
    let mut s = with_worker_and_instance();
    let r = ok(&mut s, ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![update("RUNNING")], at_ms: 5 });
    assert_eq!(r, Applied::Statuses { changed: 1, stale: vec![] });
    assert_eq!((s.instances["j1/0"].status.as_str(), s.instances["j1/0"].publicip.as_str()), ("RUNNING", "10.0.0.1"));
    // Repeats and a late CREATED change nothing.
    let r = ok(&mut s, ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![update("RUNNING"), update("CREATED")], at_ms: 6 });
    assert_eq!(r, Applied::Statuses { changed: 0, stale: vec![] });
    // An UNDEPLOYED the cluster did not ask for is ignored (reconciliation redeploys).
    ok(&mut s, ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![update("UNDEPLOYED")], at_ms: 7 });
    assert_eq!(s.instances["j1/0"].status, "RUNNING");
    // Unknown status strings are refused whole.
    assert!(s.apply(ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![update("BOGUS")], at_ms: 8 }).is_err());
    assert!(matches!(
        s.apply(ClusterCommand::ReportStatuses { worker_id: "nobody".into(), updates: vec![update("RUNNING")], at_ms: 8 }),
        Err(ApplyError::NotFound(_))
    ));
}

#[test]
fn another_workers_report_is_stale() {
    let mut s = with_worker_and_instance();
    ok(&mut s, ClusterCommand::RegisterWorker { id: "w2".into(), info: node("host-2"), at_ms: 1 });
    let mut unknown = update("RUNNING");
    unknown.job_name = "no.such.job.x".into();
    let r = ok(
        &mut s,
        ClusterCommand::ReportStatuses { worker_id: "w2".into(), updates: vec![update("RUNNING"), unknown.clone(), update("DEAD")], at_ms: 5 },
    );
    assert_eq!(r, Applied::Statuses { changed: 0, stale: vec![update("RUNNING"), unknown] });
    assert_eq!(s.instances["j1/0"].status, "NODE_SCHEDULED");
}

#[test]
fn undeploy_waits_for_the_worker_then_forgets() {
    let mut s = with_worker_and_instance();
    ok(&mut s, ClusterCommand::Deploy { job_id: "j1".into(), instance_number: 1, job: job("a.b.c.d"), at_ms: 2 });
    // Unplaced instance 1 goes at once; placed instance 0 waits for UNDEPLOYED.
    assert_eq!(ok(&mut s, ClusterCommand::Undeploy { job_id: "j1".into(), instance_number: None, at_ms: 3 }), Applied::Changed(2));
    assert_eq!(s.instances.len(), 1);
    assert_eq!(s.instances["j1/0"].desired, Desired::Removed);
    assert_eq!(ok(&mut s, ClusterCommand::Undeploy { job_id: "j1".into(), instance_number: Some(0), at_ms: 3 }), Applied::Changed(0));
    // A RUNNING from the worker while removal is pending is recorded, not stale.
    let r = ok(&mut s, ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![update("RUNNING")], at_ms: 4 });
    assert_eq!(r, Applied::Statuses { changed: 1, stale: vec![] });
    ok(&mut s, ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![update("UNDEPLOYED")], at_ms: 5 });
    assert!(s.instances.is_empty());
    assert!(s.jobs.is_empty(), "the job document goes with its last instance");
    // Unknown instances: nothing to do.
    assert_eq!(ok(&mut s, ClusterCommand::Undeploy { job_id: "j1".into(), instance_number: Some(7), at_ms: 6 }), Applied::Changed(0));
}

#[test]
fn a_lost_worker_fails_its_instances_and_returns_empty() {
    let mut s = with_worker_and_instance();
    ok(&mut s, ClusterCommand::Deploy { job_id: "j2".into(), instance_number: 0, job: job("e.f.g.h"), at_ms: 2 });
    ok(&mut s, ClusterCommand::Place { key: "j2/0".into(), worker_id: "w1".into(), expected_worker: String::new(), at_ms: 3 });
    ok(&mut s, ClusterCommand::Undeploy { job_id: "j2".into(), instance_number: Some(0), at_ms: 4 });
    let lost = ClusterCommand::WorkerLost { id: "w1".into(), detail: "silent for 6 s".into(), at_ms: 10 };
    assert_eq!(ok(&mut s, lost.clone()), Applied::Changed(3));
    assert_eq!(ok(&mut s, lost), Applied::Changed(0));
    let inst = &s.instances["j1/0"];
    assert_eq!((inst.worker_id.as_str(), inst.status.as_str(), inst.status_detail.as_str()), ("", "FAILED", "silent for 6 s"));
    assert!(!s.instances.contains_key("j2/0"), "a pending removal on a lost worker is forgotten");
    // A lost worker cannot receive placements; its own old report is now stale.
    let place = ClusterCommand::Place { key: "j1/0".into(), worker_id: "w1".into(), expected_worker: String::new(), at_ms: 11 };
    assert!(matches!(s.apply(place), Err(ApplyError::Conflict(_))));
    ok(&mut s, ClusterCommand::WorkerReturned { id: "w1".into(), at_ms: 12 });
    assert!(!s.workers["w1"].lost);
    let r = ok(&mut s, ClusterCommand::ReportStatuses { worker_id: "w1".into(), updates: vec![update("RUNNING")], at_ms: 13 });
    assert_eq!(r, Applied::Statuses { changed: 0, stale: vec![update("RUNNING")] });
}

#[test]
fn snapshot_round_trip_and_garbage() {
    let s = with_worker_and_instance();
    let back = ClusterState::restore(&s.snapshot().unwrap()).unwrap();
    assert_eq!(back, s);
    assert!(ClusterState::restore(b"{not json").unwrap_err().contains("cluster state snapshot"));
}

#[test]
fn commands_round_trip_as_json() {
    let c = ClusterCommand::ReportStatuses { worker_id: "w".into(), updates: vec![update("DEAD")], at_ms: 1 };
    let text = serde_json::to_string(&c).unwrap();
    assert!(text.contains("\"op\":\"report_statuses\""), "{text}");
    assert_eq!(serde_json::from_str::<ClusterCommand>(&text).unwrap(), c);
}

#[test]
fn batched_losses_and_returns_skip_unknown_workers() {
    let mut s = with_worker_and_instance();
    ok(&mut s, ClusterCommand::RegisterWorker { id: "w2".into(), info: node("host-2"), at_ms: 1 });
    let lost = ClusterCommand::WorkersLost { workers: vec![("w1".into(), "silent".into()), ("ghost".into(), "x".into()), ("w2".into(), "silent".into())], at_ms: 5 };
    assert_eq!(ok(&mut s, lost.clone()), Applied::Changed(3), "two workers and one instance");
    assert_eq!(ok(&mut s, lost), Applied::Changed(0));
    assert!(s.workers.values().all(|w| w.lost));
    assert_eq!(s.instances["j1/0"].status, "FAILED");
    let back = ClusterCommand::WorkersReturned { ids: vec!["w2".into(), "ghost".into()], at_ms: 6 };
    assert_eq!(ok(&mut s, back), Applied::Changed(1));
    assert!(!s.workers["w2"].lost && s.workers["w1"].lost);
}

#[test]
fn instances_are_grouped_by_worker_and_unplaced_ones_left_out() {
    let mut s = with_worker_and_instance();
    ok(&mut s, ClusterCommand::RegisterWorker { id: "w2".into(), info: node("host-2"), at_ms: 4 });
    ok(&mut s, ClusterCommand::Deploy { job_id: "j1".into(), instance_number: 1, job: job("a.b.c.d"), at_ms: 5 });
    ok(&mut s, ClusterCommand::Deploy { job_id: "j1".into(), instance_number: 2, job: job("a.b.c.d"), at_ms: 5 });
    ok(&mut s, ClusterCommand::Place { key: "j1/1".into(), worker_id: "w1".into(), expected_worker: String::new(), at_ms: 6 });
    let by_worker = s.instances_by_worker();
    let keys = |w: &str| by_worker.get(w).map(|v| v.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>());
    assert_eq!(keys("w1"), Some(vec!["j1/0", "j1/1"]));
    assert_eq!(keys("w2"), None, "nothing placed on w2");
    assert_eq!(by_worker.len(), 1, "j1/2 is unplaced: {:?}", by_worker.keys().collect::<Vec<_>>());
    // The same as the per-worker scan it replaces.
    for (w, list) in &by_worker {
        let scanned: Vec<&String> = s.instances_on(w).map(|(k, _)| k).collect();
        assert_eq!(list.iter().map(|(k, _)| *k).collect::<Vec<_>>(), scanned);
    }
}
