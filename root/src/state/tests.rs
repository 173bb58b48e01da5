use grove_core::sla::{derive_job, parse_sla};
use grove_raft::StateMachine;
use serde_json::json;

use super::*;

fn bootstrapped() -> RootState {
    let mut s = RootState::default();
    let r = s.apply(RootCommand::Bootstrap { org_id: "o1".into(), user_id: "u1".into(), password_hash: "h".into(), at_ms: 1 });
    assert_eq!(r, Ok(Applied::Changed(1)));
    s
}

fn new_apps(names: &[(&str, &str)], id_base: &str) -> Vec<NewApplication> {
    names
        .iter()
        .enumerate()
        .map(|(i, (name, ns))| {
            let sla = parse_sla(
                json!({"sla_version":"v2.0","customerID":"Admin","applications":[{
                    "application_name": name, "application_namespace": ns, "microservices":[
                    {"microservice_name":"web","microservice_namespace":"x","virtualization":"container","code":"nginx"}]}]})
                .to_string()
                .as_bytes(),
            )
            .unwrap();
            let app = &sla.applications[0];
            let app_id = format!("{id_base}a{i}");
            let jobs = app.microservices.iter().enumerate().map(|(j, ms)| derive_job(&app_id, &format!("{id_base}j{i}{j}"), app, ms)).collect();
            NewApplication {
                id: app_id,
                application_name: name.to_string(),
                application_namespace: ns.to_string(),
                application_desc: String::new(),
                jobs,
            }
        })
        .collect()
}

#[test]
fn bootstrap_creates_admin_with_all_roles_once() {
    let mut s = bootstrapped();
    assert_eq!(s.roles_of("u1", "o1").len(), 4);
    assert_eq!(s.organization_by_name("root").unwrap().id, "o1");
    // A second bootstrap (another replica starting) changes nothing, even after a delete.
    s.apply(RootCommand::DeleteUser { name: "Admin".into() }).unwrap();
    let r = s.apply(RootCommand::Bootstrap { org_id: "o2".into(), user_id: "u2".into(), password_hash: "h".into(), at_ms: 2 });
    assert_eq!(r, Ok(Applied::Changed(0)));
    assert!(s.users.is_empty());
}

#[test]
fn signing_key_is_set_once() {
    let mut s = RootState::default();
    assert_eq!(s.apply(RootCommand::SetSigningKeyIfAbsent { private_pem: "A".into() }), Ok(Applied::SigningKey("A".into())));
    assert_eq!(s.apply(RootCommand::SetSigningKeyIfAbsent { private_pem: "B".into() }), Ok(Applied::SigningKey("A".into())));
    assert_eq!(s.signing_key.as_deref(), Some("A"));
}

#[test]
fn users_conflict_update_password_and_delete() {
    let mut s = bootstrapped();
    let user = User { id: "u2".into(), name: "bob".into(), email: "b@x".into(), password: "p".into(), created_at: "0".into(), extra: Default::default() };
    s.apply(RootCommand::RegisterUser { user: user.clone(), org_id: "o1".into(), roles: vec!["Application_Provider".into()] }).unwrap();
    assert!(matches!(s.apply(RootCommand::RegisterUser { user, org_id: "o1".into(), roles: vec![] }), Err(ApplyError::Conflict(_))));
    let fields = json!({"email":"new@x","password":"ignored","color":"blue"}).as_object().unwrap().clone();
    s.apply(RootCommand::UpdateUser { name: "bob".into(), fields, roles: Some(vec!["Admin".into()]), org_id: "o1".into() }).unwrap();
    assert_eq!(s.users["bob"].email, "new@x");
    assert_eq!(s.users["bob"].password, "p");
    assert_eq!(s.users["bob"].extra["color"], "blue");
    assert_eq!(s.roles_of("u2", "o1"), vec!["Admin".to_string()]);
    assert!(matches!(
        s.apply(RootCommand::ChangePassword { name: "bob".into(), expected_hash: "stale".into(), new_hash: "q".into() }),
        Err(ApplyError::Conflict(_))
    ));
    s.apply(RootCommand::ChangePassword { name: "bob".into(), expected_hash: "p".into(), new_hash: "q".into() }).unwrap();
    assert_eq!(s.users["bob"].password, "q");
    s.apply(RootCommand::DeleteUser { name: "bob".into() }).unwrap();
    assert!(s.roles_of("u2", "o1").is_empty());
    assert!(matches!(s.apply(RootCommand::DeleteUser { name: "bob".into() }), Err(ApplyError::NotFound(_))));
}

#[test]
fn organizations_crud_and_rules() {
    let mut s = bootstrapped();
    let org = Organization { id: "o2".into(), name: "edge".into(), member: vec![Member { user_id: "u1".into(), roles: vec!["Admin".into()] }] };
    assert_eq!(s.apply(RootCommand::CreateOrganization { org: org.clone() }), Ok(Applied::Id("o2".into())));
    assert!(matches!(s.apply(RootCommand::CreateOrganization { org: Organization { id: "o3".into(), ..org } }), Err(ApplyError::Conflict(_))));
    let bad = vec![Member { user_id: "nobody".into(), roles: vec![] }];
    assert!(matches!(s.apply(RootCommand::UpdateOrganization { id: "o2".into(), name: "edge".into(), member: bad }), Err(ApplyError::NotFound(_))));
    let bad_role = vec![Member { user_id: "u1".into(), roles: vec!["King".into()] }];
    assert!(matches!(s.apply(RootCommand::UpdateOrganization { id: "o2".into(), name: "edge".into(), member: bad_role }), Err(ApplyError::Invalid(_))));
    s.apply(RootCommand::UpdateOrganization { id: "o2".into(), name: "edge2".into(), member: vec![] }).unwrap();
    assert_eq!(s.organizations["o2"].name, "edge2");
    assert!(matches!(s.apply(RootCommand::DeleteOrganization { id: "o1".into() }), Err(ApplyError::Invalid(_))));
    s.apply(RootCommand::DeleteOrganization { id: "o2".into() }).unwrap();
    assert!(!s.organizations.contains_key("o2"));
}

#[test]
fn create_applications_is_all_or_nothing() {
    let mut s = bootstrapped();
    s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("a", "n")], "x") }).unwrap();
    assert_eq!(s.applications.len(), 1);
    assert_eq!(s.jobs["xj00"].job.job_name, "a.n.web.x");
    // The second SLA holds a new app and an existing one: neither is created.
    let r = s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("b", "n"), ("a", "n")], "y") });
    assert!(matches!(r, Err(ApplyError::Conflict(ref m)) if m.contains("a.n")), "{r:?}");
    assert_eq!(s.applications.len(), 1);
    assert_eq!(s.jobs.len(), 1);
    // Another owner may use the same name, but not the same job name (the global service key).
    let r = s.apply(RootCommand::CreateApplications { owner: "bob".into(), apps: new_apps(&[("a", "n")], "z") });
    assert!(matches!(r, Err(ApplyError::Conflict(ref m)) if m.contains("a.n.web.x")), "{r:?}");
}

#[test]
fn update_and_delete_application_queues_undeploys() {
    let mut s = bootstrapped();
    s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("a", "n")], "x") }).unwrap();
    s.apply(RootCommand::UpdateApplication { id: "xa0".into(), name: "b".into(), namespace: "m".into(), desc: "d".into() }).unwrap();
    assert_eq!(s.applications["xa0"].application_name, "b");
    assert!(matches!(
        s.apply(RootCommand::UpdateApplication { id: "xa0".into(), name: "b.c".into(), namespace: "m".into(), desc: String::new() }),
        Err(ApplyError::Invalid(_))
    ));
    register(&mut s, "c1", "one");
    s.apply(RootCommand::RequestInstance { job_id: "xj00".into(), owner: None, at_ms: 5 }).unwrap();
    s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: 0, cluster_id: "c1".into(), at_ms: 6 }).unwrap();
    s.apply(RootCommand::DeleteApplication { id: "xa0".into() }).unwrap();
    assert!(s.jobs.is_empty());
    assert_eq!(s.pending_undeploys, vec![Dispatch { cluster_id: "c1".into(), job_id: "xj00".into(), instance_number: 0 }]);
}

#[test]
fn name_lookups_follow_creates_renames_and_deletes() {
    let mut s = bootstrapped();
    s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("a", "n"), ("b", "n")], "x") }).unwrap();
    s.apply(RootCommand::CreateApplications { owner: "bob".into(), apps: new_apps(&[("c", "n")], "y") }).unwrap();
    assert_eq!(s.application_named("Admin", "a", "n").map(|a| a.id.as_str()), Some("xa0"));
    assert!(s.application_named("bob", "a", "n").is_none());
    let ids = |s: &RootState, owner: &str| s.applications_of(owner).map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&s, "Admin"), ["xa0", "xa1"]);
    assert_eq!(ids(&s, "bob"), ["ya0"]);
    assert_eq!(s.job_named("b.n.web.x").map(|j| j.job.id.as_str()), Some("xj10"));

    // A rename frees the old name and takes the new one.
    s.apply(RootCommand::UpdateApplication { id: "xa0".into(), name: "z".into(), namespace: "n".into(), desc: String::new() }).unwrap();
    assert!(s.application_named("Admin", "a", "n").is_none());
    assert_eq!(s.application_named("Admin", "z", "n").map(|a| a.id.as_str()), Some("xa0"));
    let r = s.apply(RootCommand::UpdateApplication { id: "xa1".into(), name: "z".into(), namespace: "n".into(), desc: String::new() });
    assert!(matches!(r, Err(ApplyError::Conflict(_))), "{r:?}");

    // Deleting a service frees its job name; deleting an application frees its name and jobs.
    s.apply(RootCommand::DeleteService { id: "xj10".into() }).unwrap();
    assert!(s.job_named("b.n.web.x").is_none());
    s.apply(RootCommand::DeleteApplication { id: "xa0".into() }).unwrap();
    assert!(s.application_named("Admin", "z", "n").is_none());
    assert!(s.job_named("a.n.web.x").is_none());
    assert_eq!(ids(&s, "Admin"), ["xa1"]);
    s.apply(RootCommand::DeleteApplication { id: "ya0".into() }).unwrap();
    assert!(ids(&s, "bob").is_empty());

    // The lookups are derived, not stored: a restored replica rebuilds the same ones.
    let back = RootState::restore(&s.snapshot().unwrap()).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.application_named("Admin", "b", "n").map(|a| a.id.as_str()), Some("xa1"));
}

fn register(s: &mut RootState, id: &str, name: &str) {
    s.apply(RootCommand::RegisterCluster {
        id: id.into(),
        name: name.into(),
        location: "48.1,11.6,1000".into(),
        ip: "127.0.0.1".into(),
        port: "10100".into(),
        endpoints: vec![],
        at_ms: 1,
    })
    .unwrap();
}

#[test]
fn instances_scale_place_fail_and_remove() {
    let mut s = bootstrapped();
    s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("a", "n")], "x") }).unwrap();
    for n in 0..4 {
        assert_eq!(s.apply(RootCommand::RequestInstance { job_id: "xj00".into(), owner: None, at_ms: 10 }), Ok(Applied::Instance(n)));
    }
    assert_eq!(s.jobs["xj00"].status, "REQUESTED");
    assert!(matches!(
        s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: 0, cluster_id: "nope".into(), at_ms: 11 }),
        Err(ApplyError::NotFound(_))
    ));
    register(&mut s, "c1", "one");
    s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: 0, cluster_id: "c1".into(), at_ms: 11 }).unwrap();
    let inst = &s.jobs["xj00"].instances[&0];
    assert_eq!((inst.status.as_str(), inst.cluster_location.as_str()), ("CLUSTER_SCHEDULED", "48.1,11.6,1000"));
    assert_eq!(inst.history.iter().map(|h| h.status.as_str()).collect::<Vec<_>>(), ["REQUESTED", "CLUSTER_SCHEDULED"]);
    // Placing twice is refused (the scheduler's compare-and-set).
    assert!(matches!(
        s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: 0, cluster_id: "c1".into(), at_ms: 12 }),
        Err(ApplyError::Conflict(_))
    ));
    assert!(matches!(
        s.apply(RootCommand::FailPlacement { job_id: "xj00".into(), instance_number: 1, status: "RUNNING".into(), detail: String::new(), at_ms: 12 }),
        Err(ApplyError::Invalid(_))
    ));
    s.apply(RootCommand::FailPlacement {
        job_id: "xj00".into(),
        instance_number: 1,
        status: "NoActiveClusterWithCapacity".into(),
        detail: "1 candidate; 1 lacks memory".into(),
        at_ms: 12,
    })
    .unwrap();
    assert_eq!(s.jobs["xj00"].instances[&1].status_detail, "1 candidate; 1 lacks memory");
    // A negative status is retried: it can still be placed later.
    s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: 1, cluster_id: "c1".into(), at_ms: 13 }).unwrap();
    assert_eq!(s.unplaced_instances().len(), 2);
    // Scale down all: every instance goes (upstream skipped every other one); placed ones are undeployed.
    assert_eq!(s.apply(RootCommand::RemoveInstances { job_id: "xj00".into(), instance_number: -1, owner: None, at_ms: 14 }), Ok(Applied::Changed(4)));
    assert!(s.jobs["xj00"].instances.is_empty());
    assert_eq!(s.pending_undeploys.len(), 2);
    assert_eq!(s.apply(RootCommand::RequestInstance { job_id: "xj00".into(), owner: None, at_ms: 15 }), Ok(Applied::Instance(4)));
    assert!(matches!(s.apply(RootCommand::RemoveInstances { job_id: "xj00".into(), instance_number: 9, owner: None, at_ms: 16 }), Err(ApplyError::NotFound(_))));
    // With an owner, only the owner's services change; another user's look absent.
    let before = s.jobs["xj00"].clone();
    let mallory = Some("mallory".to_owned());
    let e = s.apply(RootCommand::RequestInstance { job_id: "xj00".into(), owner: mallory.clone(), at_ms: 17 });
    assert_eq!(e, Err(ApplyError::NotFound("service xj00 not found".into())));
    let e = s.apply(RootCommand::RemoveInstances { job_id: "xj00".into(), instance_number: -1, owner: mallory, at_ms: 18 });
    assert_eq!(e, Err(ApplyError::NotFound("service xj00 not found".into())));
    assert_eq!(s.jobs["xj00"], before, "nothing changed");
    assert_eq!(s.apply(RootCommand::RequestInstance { job_id: "xj00".into(), owner: Some("Admin".into()), at_ms: 19 }), Ok(Applied::Instance(5)));
}

#[test]
fn job_document_has_contract_fields() {
    let mut s = bootstrapped();
    s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("a", "n")], "x") }).unwrap();
    s.apply(RootCommand::RequestInstance { job_id: "xj00".into(), owner: None, at_ms: 10 }).unwrap();
    let doc = s.jobs["xj00"].document();
    assert_eq!(doc["_id"], json!({"$oid": "xj00"}));
    assert_eq!(doc["job_name"], "a.n.web.x");
    assert_eq!(doc["microserviceID"], "xj00");
    assert_eq!(doc["applicationID"], "xa0");
    assert_eq!(doc["virtualization"], "docker");
    assert_eq!(doc["next_instance_progressive_number"], 1);
    assert_eq!(doc["instance_list"][0]["status"], "REQUESTED");
    let down = s.jobs["xj00"].downstream_document(Some(7));
    assert_eq!(down["_id"], "xj00");
    assert_eq!(down["instance_list"], json!([]));
}

#[test]
fn clusters_upsert_by_name_and_report() {
    let mut s = RootState::default();
    register(&mut s, "c1", "one");
    let again = s.apply(RootCommand::RegisterCluster {
        id: "c9".into(),
        name: "one".into(),
        location: "1,2".into(),
        ip: "10.0.0.1".into(),
        port: "10100".into(),
        endpoints: vec!["10.0.0.1:50053".into()],
        at_ms: 2,
    });
    assert_eq!(again, Ok(Applied::Id("c1".into())));
    assert_eq!(s.clusters.len(), 1);
    let agg = ClusterAggregate { vcpus: 8, memory: 4096, virtualization: vec!["docker".into()], ..Default::default() };
    s.apply(RootCommand::ReportCluster { id: "c1".into(), aggregate: agg, at_ms: 3 }).unwrap();
    let doc = s.clusters["c1"].document();
    assert_eq!((doc["total_cpu_cores"].clone(), doc["memory_in_mb"].clone(), doc["cluster_name"].clone()), (json!(8), json!(4096), json!("one")));
    assert!(matches!(s.apply(RootCommand::ReportCluster { id: "zz".into(), aggregate: Default::default(), at_ms: 3 }), Err(ApplyError::NotFound(_))));
}

#[test]
fn snapshot_round_trips() {
    let mut s = bootstrapped();
    s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("a", "n")], "x") }).unwrap();
    let back = RootState::restore(&s.snapshot().unwrap()).unwrap();
    assert_eq!(back, s);
    assert!(RootState::restore(b"garbage").is_err());
}

fn ack_deploy(job_id: &str, n: u32, cluster_id: &str) -> RootCommand {
    let d = Dispatch { cluster_id: cluster_id.into(), job_id: job_id.into(), instance_number: n };
    RootCommand::Acknowledge { deploys: vec![d], undeploys: vec![] }
}

fn report(job_id: &str, n: u32, status: &str) -> InstanceReport {
    let mut fields = serde_json::Map::new();
    fields.insert("worker_id".into(), json!("w1"));
    InstanceReport { job_id: job_id.into(), instance_number: n, status: status.into(), status_detail: String::new(), fields }
}

/// One application with one service `xj00`, two instances placed on cluster `c1`.
fn placed_on_c1() -> RootState {
    let mut s = bootstrapped();
    s.apply(RootCommand::CreateApplications { owner: "Admin".into(), apps: new_apps(&[("a", "n")], "x") }).unwrap();
    register(&mut s, "c1", "one");
    register(&mut s, "c2", "two");
    for n in 0..2 {
        s.apply(RootCommand::RequestInstance { job_id: "xj00".into(), owner: None, at_ms: 5 }).unwrap();
        s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: n, cluster_id: "c1".into(), at_ms: 6 }).unwrap();
    }
    s
}

#[test]
fn deploy_acks_follow_the_placement() {
    let mut s = placed_on_c1();
    let ack = |cluster: &str| ack_deploy("xj00", 0, cluster);
    // An acknowledgement from a cluster the instance is not on changes nothing.
    assert_eq!(s.apply(ack("c2")), Ok(Applied::Changed(0)));
    assert_eq!(s.apply(ack("c1")), Ok(Applied::Changed(1)));
    assert_eq!(s.apply(ack("c1")), Ok(Applied::Changed(0)), "idempotent");
    assert!(s.jobs["xj00"].instances[&0].deploy_acked);
    assert!(!s.jobs["xj00"].instances[&1].deploy_acked);
    // Acknowledging an undeploy removes exactly that dispatch.
    s.apply(RootCommand::RemoveInstances { job_id: "xj00".into(), instance_number: 1, owner: None, at_ms: 7 }).unwrap();
    let d = Dispatch { cluster_id: "c1".into(), job_id: "xj00".into(), instance_number: 1 };
    assert_eq!(s.pending_undeploys, vec![d.clone()]);
    let ack_undeploy = |d: &Dispatch| RootCommand::Acknowledge { deploys: vec![], undeploys: vec![d.clone()] };
    assert_eq!(s.apply(ack_undeploy(&d)), Ok(Applied::Changed(1)));
    assert_eq!(s.apply(ack_undeploy(&d)), Ok(Applied::Changed(0)));
    assert!(s.pending_undeploys.is_empty());
}

#[test]
fn cluster_reports_mirror_status_and_undeploy_strays() {
    let mut s = placed_on_c1();
    let agg = ClusterAggregate { vcpus: 4, memory: 2048, ..Default::default() };
    let r = s.apply(RootCommand::ReportFromCluster {
        id: "c1".into(),
        aggregate: Some(agg),
        instances: vec![report("xj00", 0, "RUNNING"), report("xj00", 7, "RUNNING"), report("gone", 0, "RUNNING"), report("gone", 1, "UNDEPLOYED")],
        full: false,
        at_ms: 20,
    });
    assert_eq!(r, Ok(Applied::Changed(1)));
    let inst = &s.jobs["xj00"].instances[&0];
    assert_eq!((inst.status.as_str(), inst.deploy_acked, inst.reported["worker_id"].clone()), ("RUNNING", true, json!("w1")));
    assert_eq!(s.jobs["xj00"].status, "RUNNING");
    assert_eq!(s.clusters["c1"].aggregate.vcpus, 4);
    assert_eq!(s.clusters["c1"].last_report_ms, 20);
    // Instances the root does not have there are undeployed; one already undeployed is not.
    let strays: Vec<(String, u32)> = s.pending_undeploys.iter().map(|d| (d.job_id.clone(), d.instance_number)).collect();
    assert_eq!(strays, [("xj00".to_string(), 7), ("gone".to_string(), 0)]);
    // A report of the same status again changes nothing; another cluster's report of instance 0
    // (placed on c1) makes it a stray there.
    let same = RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![report("xj00", 0, "RUNNING")], full: false, at_ms: 21 };
    assert_eq!(s.apply(same), Ok(Applied::Changed(0)));
    s.apply(RootCommand::ReportFromCluster { id: "c2".into(), aggregate: None, instances: vec![report("xj00", 0, "RUNNING")], full: false, at_ms: 21 }).unwrap();
    assert!(s.pending_undeploys.contains(&Dispatch { cluster_id: "c2".into(), job_id: "xj00".into(), instance_number: 0 }));
    // Unknown cluster: refused, nothing changed.
    let before = s.clone();
    let r = s.apply(RootCommand::ReportFromCluster { id: "zz".into(), aggregate: None, instances: vec![report("xj00", 0, "FAILED")], full: true, at_ms: 22 });
    assert!(matches!(r, Err(ApplyError::NotFound(_))));
    assert_eq!(s.jobs, before.jobs);
}

#[test]
fn full_report_redeploys_what_the_cluster_lost() {
    let mut s = placed_on_c1();
    s.apply(ack_deploy("xj00", 0, "c1")).unwrap();
    s.apply(ack_deploy("xj00", 1, "c1")).unwrap();
    // Full reports listing only instance 1: the first may predate the deploy of instance 0, the
    // second in a row has it dispatched again.
    let full = RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![report("xj00", 1, "RUNNING")], full: true, at_ms: 30 };
    assert_eq!(s.apply(full.clone()), Ok(Applied::Changed(1)));
    assert!(s.jobs["xj00"].instances[&0].deploy_acked);
    assert_eq!(s.apply(full), Ok(Applied::Changed(1)));
    let i0 = &s.jobs["xj00"].instances[&0];
    assert!(!i0.deploy_acked);
    assert_eq!(i0.status, "CLUSTER_SCHEDULED");
    assert!(i0.status_detail.contains("no longer reports"), "{}", i0.status_detail);
    assert!(s.jobs["xj00"].instances[&1].deploy_acked);
    // An incremental report never does that.
    s.apply(ack_deploy("xj00", 0, "c1")).unwrap();
    s.apply(RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![], full: false, at_ms: 31 }).unwrap();
    assert!(s.jobs["xj00"].instances[&0].deploy_acked);
}

#[test]
fn lost_cluster_releases_its_instances_and_owes_undeploys() {
    let mut s = placed_on_c1();
    s.apply(RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![], full: false, at_ms: 40 }).unwrap();
    // A stale decision (a report arrived after the leader looked) is ignored.
    assert_eq!(s.apply(RootCommand::MarkClusterLost { id: "c1".into(), last_report_ms: 39, at_ms: 50 }), Ok(Applied::Changed(0)));
    assert!(s.clusters["c1"].active);
    assert_eq!(s.apply(RootCommand::MarkClusterLost { id: "c1".into(), last_report_ms: 40, at_ms: 50 }), Ok(Applied::Changed(2)));
    assert!(!s.clusters["c1"].active);
    assert_eq!(s.unplaced_instances().len(), 2);
    let i0 = &s.jobs["xj00"].instances[&0];
    assert_eq!((i0.status.as_str(), i0.cluster_id.as_str()), ("REQUESTED", ""));
    assert!(i0.status_detail.contains("cluster one lost"), "{}", i0.status_detail);
    assert_eq!(s.pending_undeploys.len(), 2);
    // Instance 0 goes to c2; instance 1 back to c1 once it returns, which cancels the undeploy
    // c1 still owed for it (the deploy is idempotent, the copy keeps running).
    s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: 0, cluster_id: "c2".into(), at_ms: 51 }).unwrap();
    s.apply(RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![], full: false, at_ms: 60 }).unwrap();
    assert!(s.clusters["c1"].active, "a report makes a lost cluster active again");
    s.apply(RootCommand::PlaceInstance { job_id: "xj00".into(), instance_number: 1, cluster_id: "c1".into(), at_ms: 61 }).unwrap();
    assert_eq!(s.pending_undeploys, vec![Dispatch { cluster_id: "c1".into(), job_id: "xj00".into(), instance_number: 0 }]);
    // Marking an inactive cluster lost again changes nothing.
    s.apply(RootCommand::MarkClusterLost { id: "c2".into(), last_report_ms: 1, at_ms: 70 }).unwrap();
    assert_eq!(s.apply(RootCommand::MarkClusterLost { id: "c2".into(), last_report_ms: 1, at_ms: 71 }), Ok(Applied::Changed(0)));
}
