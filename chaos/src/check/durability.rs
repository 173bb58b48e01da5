//! Durability of the deployment workload: what was acknowledged is still there on every
//! replica at the end, and what was acknowledged as removed stays removed.
//!
//! Excuses are sound, never guesses: an operation that could have been ordered after an
//! acknowledged one (it overlapped or followed it, or its outcome is unknown and so it may
//! have been applied at any later time) may legitimately have undone it.

use std::collections::{BTreeMap, BTreeSet};

use super::{ReplicaView, Violation};
use crate::history::{Call, Op, Outcome};

/// Checks every replica's final view against the acknowledged creations, deploys and
/// undeploys of the history.
pub fn check_durability(ops: &[Op], views: &[ReplicaView]) -> Vec<Violation> {
    let created = acknowledged_creations(ops);
    let deploys = deploys_that_must_stay(ops);
    let undeploys = undeploys_that_must_stay(ops);

    let mut violations = Vec::new();
    for view in views {
        for (app, op) in &created {
            if !view.apps.contains(*app) {
                let holders = holders(views, |v| v.apps.contains(*app));
                violations.push(violation(
                    format!(
                        "replica {} does not hold application {app:?}, whose creation was \
                         acknowledged ({}); {holders}",
                        view.replica,
                        describe(op)
                    ),
                    op,
                ));
            }
        }
        for ((service, n), op) in &deploys {
            if !holds(view, service, *n) {
                let holders = holders(views, |v| holds(v, service, *n));
                violations.push(violation(
                    format!(
                        "replica {} does not hold instance {n} of service {service:?}, whose \
                         deploy was acknowledged ({}) and never possibly undone; {holders}",
                        view.replica,
                        describe(op)
                    ),
                    op,
                ));
            }
        }
        for ((service, n), op) in &undeploys {
            if holds(view, service, *n) {
                violations.push(violation(
                    format!(
                        "replica {} still holds instance {n} of service {service:?}, whose \
                         removal was acknowledged ({}) and that no later deploy can have \
                         recreated",
                        view.replica,
                        describe(op)
                    ),
                    op,
                ));
            }
        }
    }
    violations
}

/// The first acknowledged creation of each application.
fn acknowledged_creations(ops: &[Op]) -> BTreeMap<&str, &Op> {
    let mut created = BTreeMap::new();
    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        if let Call::CreateApp { key } = &op.call {
            created.entry(key.as_str()).or_insert(op);
        }
    }
    created
}

/// The instance number an ok deploy returned.
fn deployed(op: &Op) -> Option<(&str, u32)> {
    match (&op.call, &op.outcome) {
        (Call::Deploy { service }, Outcome::Ok) => {
            Some((service.as_str(), op.value.as_deref()?.trim().parse().ok()?))
        }
        _ => None,
    }
}

/// Acknowledged deploys that no undeploy can have removed: none with an unknown outcome (it
/// may have been applied any time), none acknowledged that overlapped or followed the deploy.
fn deploys_that_must_stay(ops: &[Op]) -> BTreeMap<(&str, u32), &Op> {
    let mut kept = BTreeMap::new();
    for op in ops {
        let Some((service, n)) = deployed(op) else {
            continue;
        };
        let undone = ops.iter().any(|u| match &u.call {
            Call::Undeploy {
                service: s,
                instance,
            } if s == service && *instance == n => match u.outcome {
                Outcome::Unknown => true,
                Outcome::Ok => u.complete >= op.invoke,
                Outcome::Failed => false,
            },
            _ => false,
        });
        if !undone {
            kept.entry((service, n)).or_insert(op);
        }
    }
    kept
}

/// Acknowledged undeploys that no deploy can have undone: no ok deploy that returned the same
/// number and overlapped or followed the undeploy, no deploy of the service with an unknown
/// outcome (it may have reused the number).
fn undeploys_that_must_stay(ops: &[Op]) -> BTreeMap<(&str, u32), &Op> {
    let mut kept = BTreeMap::new();
    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let Call::Undeploy { service, instance } = &op.call else {
            continue;
        };
        let redeployed = ops.iter().any(|d| match &d.call {
            Call::Deploy { service: s } if s == service => match d.outcome {
                Outcome::Unknown => true,
                Outcome::Ok => {
                    deployed(d).is_none_or(|(_, n)| n == *instance) && d.complete >= op.invoke
                }
                Outcome::Failed => false,
            },
            _ => false,
        });
        if !redeployed {
            kept.entry((service.as_str(), *instance)).or_insert(op);
        }
    }
    kept
}

fn holds(view: &ReplicaView, service: &str, n: u32) -> bool {
    view.instances.get(service).is_some_and(|s| s.contains(&n))
}

/// "held by root-1, root-3" or "no replica holds it".
fn holders(views: &[ReplicaView], has: impl Fn(&ReplicaView) -> bool) -> String {
    let names: BTreeSet<&str> = views
        .iter()
        .filter(|v| has(v))
        .map(|v| v.replica.as_str())
        .collect();
    if names.is_empty() {
        "no replica holds it".into()
    } else {
        format!(
            "held by {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

fn describe(op: &Op) -> String {
    format!(
        "op {} by client {}, {}–{} µs via {}",
        op.id, op.client, op.invoke, op.complete, op.endpoint
    )
}

fn violation(message: String, op: &Op) -> Violation {
    Violation {
        checker: "durability".into(),
        message,
        ops: vec![op.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        id: u64,
        call: Call,
        invoke: u64,
        complete: u64,
        outcome: Outcome,
        value: Option<&str>,
    ) -> Op {
        Op {
            id,
            client: 1,
            endpoint: "http://root-1".into(),
            call,
            invoke,
            complete,
            outcome,
            value: value.map(String::from),
            error: None,
        }
    }

    fn create(id: u64, key: &str, outcome: Outcome) -> Op {
        op(
            id,
            Call::CreateApp { key: key.into() },
            id * 10,
            id * 10 + 5,
            outcome,
            None,
        )
    }

    fn deploy(id: u64, service: &str, t: (u64, u64), outcome: Outcome, n: Option<u32>) -> Op {
        let n = n.map(|n| n.to_string());
        op(
            id,
            Call::Deploy {
                service: service.into(),
            },
            t.0,
            t.1,
            outcome,
            n.as_deref(),
        )
    }

    fn undeploy(id: u64, service: &str, n: u32, t: (u64, u64), outcome: Outcome) -> Op {
        op(
            id,
            Call::Undeploy {
                service: service.into(),
                instance: n,
            },
            t.0,
            t.1,
            outcome,
            None,
        )
    }

    fn view(replica: &str, apps: &[&str], instances: &[(&str, &[u32])]) -> ReplicaView {
        ReplicaView {
            replica: replica.into(),
            apps: apps.iter().map(|a| a.to_string()).collect(),
            instances: instances
                .iter()
                .map(|(s, ns)| (s.to_string(), ns.iter().copied().collect()))
                .collect(),
        }
    }

    #[test]
    fn everything_acknowledged_present_passes() {
        let ops = vec![
            create(1, "a", Outcome::Ok),
            create(2, "b", Outcome::Ok),
            deploy(3, "s", (30, 35), Outcome::Ok, Some(1)),
            deploy(4, "s", (40, 45), Outcome::Ok, Some(2)),
            undeploy(5, "s", 1, (50, 55), Outcome::Ok),
        ];
        let views = vec![
            view("root-1", &["a", "b"], &[("s", &[2])]),
            view("root-2", &["a", "b", "extra"], &[("s", &[2])]),
        ];
        assert_eq!(check_durability(&ops, &views), vec![]);
    }

    #[test]
    fn lost_acknowledged_app_is_flagged_per_replica() {
        let ops = vec![
            create(1, "a", Outcome::Ok),
            create(2, "b", Outcome::Ok),
            create(3, "a", Outcome::Ok),
        ];
        let views = vec![
            view("root-1", &["a", "b"], &[]),
            view("root-2", &["a"], &[]),
            view("root-3", &["a"], &[]),
        ];
        let v = check_durability(&ops, &views);
        assert_eq!(v.len(), 2, "{v:#?}");
        assert!(v
            .iter()
            .all(|v| v.checker == "durability" && v.ops.len() == 1 && v.ops[0].id == 2));
        assert!(
            v[0].message.contains("root-2") && v[0].message.contains("\"b\""),
            "{}",
            v[0].message
        );
        assert!(v[0].message.contains("held by root-1"), "{}", v[0].message);
        assert!(v[1].message.contains("root-3"));
    }

    #[test]
    fn app_lost_everywhere_says_so() {
        let ops = vec![create(1, "a", Outcome::Ok)];
        let v = check_durability(&ops, &[view("root-1", &[], &[])]);
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("no replica holds it"));
    }

    #[test]
    fn unacknowledged_creations_are_not_flagged() {
        // Unknown: on all replicas, on some, or on none; failed: absent. None is a violation.
        let ops = vec![
            create(1, "everywhere", Outcome::Unknown),
            create(2, "somewhere", Outcome::Unknown),
            create(3, "nowhere", Outcome::Unknown),
            create(4, "refused", Outcome::Failed),
        ];
        let views = vec![
            view("root-1", &["everywhere", "somewhere"], &[]),
            view("root-2", &["everywhere"], &[]),
        ];
        assert_eq!(check_durability(&ops, &views), vec![]);
    }

    #[test]
    fn lost_acknowledged_instance_is_flagged() {
        let ops = vec![
            deploy(1, "s", (0, 10), Outcome::Ok, Some(1)),
            deploy(2, "s", (20, 30), Outcome::Ok, Some(2)),
            undeploy(3, "s", 2, (40, 50), Outcome::Failed),
            undeploy(4, "other", 1, (40, 50), Outcome::Ok),
        ];
        let views = vec![
            view("root-1", &[], &[("s", &[1, 2])]),
            view("root-2", &[], &[("s", &[1])]),
        ];
        let v = check_durability(&ops, &views);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].ops[0].id, 2);
        let m = &v[0].message;
        assert!(
            m.contains("root-2") && m.contains("instance 2") && m.contains("\"s\""),
            "{m}"
        );
        assert!(m.contains("held by root-1"), "{m}");
    }

    #[test]
    fn instance_missing_after_a_possible_undeploy_is_excused() {
        for outcome in [Outcome::Ok, Outcome::Unknown] {
            let ops = vec![
                deploy(1, "s", (0, 10), Outcome::Ok, Some(1)),
                undeploy(2, "s", 1, (20, 30), outcome.clone()),
            ];
            assert_eq!(
                check_durability(&ops, &[view("root-1", &[], &[])]),
                vec![],
                "{outcome:?}"
            );
        }
        // An undeploy overlapping the deploy may have come after it.
        let ops = vec![
            deploy(1, "s", (10, 40), Outcome::Ok, Some(1)),
            undeploy(2, "s", 1, (0, 20), Outcome::Ok),
        ];
        assert_eq!(check_durability(&ops, &[view("root-1", &[], &[])]), vec![]);
    }

    #[test]
    fn an_undeploy_that_ended_before_the_deploy_began_is_no_excuse() {
        // Instance 1 was removed, then deployed again (number reused), then lost.
        let ops = vec![
            undeploy(1, "s", 1, (0, 10), Outcome::Ok),
            deploy(2, "s", (20, 30), Outcome::Ok, Some(1)),
        ];
        let v = check_durability(&ops, &[view("root-1", &[], &[("s", &[])])]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ops[0].id, 2);
    }

    #[test]
    fn resurrected_instance_is_flagged() {
        let ops = vec![
            deploy(1, "s", (0, 10), Outcome::Ok, Some(1)),
            undeploy(2, "s", 1, (20, 30), Outcome::Ok),
            // A deploy of another service, or a failed one, cannot recreate it.
            deploy(3, "t", (40, 50), Outcome::Unknown, None),
            deploy(4, "s", (40, 50), Outcome::Failed, None),
            // An ok deploy that returned 1 but finished before the undeploy began.
            deploy(5, "s", (11, 19), Outcome::Ok, Some(1)),
        ];
        let views = vec![
            view("root-1", &[], &[("s", &[])]),
            view("root-2", &[], &[("s", &[1])]),
        ];
        let v = check_durability(&ops, &views);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].ops[0].id, 2);
        let m = &v[0].message;
        assert!(
            m.contains("root-2") && m.contains("still holds instance 1") && m.contains("\"s\""),
            "{m}"
        );
    }

    #[test]
    fn redeploy_after_undeploy_excuses_presence() {
        // An ok deploy returning the same number after the undeploy.
        let ops = vec![
            deploy(1, "s", (0, 10), Outcome::Ok, Some(1)),
            undeploy(2, "s", 1, (20, 30), Outcome::Ok),
            deploy(3, "s", (40, 50), Outcome::Ok, Some(1)),
        ];
        assert_eq!(
            check_durability(&ops, &[view("root-1", &[], &[("s", &[1])])]),
            vec![]
        );
        // An ok deploy returning another number does not excuse it.
        let ops = vec![
            deploy(1, "s", (0, 10), Outcome::Ok, Some(1)),
            undeploy(2, "s", 1, (20, 30), Outcome::Ok),
            deploy(3, "s", (40, 50), Outcome::Ok, Some(2)),
        ];
        assert_eq!(
            check_durability(&ops, &[view("root-1", &[], &[("s", &[1, 2])])]).len(),
            1
        );
        // A deploy with an unknown outcome may have reused the number.
        let ops = vec![
            deploy(1, "s", (0, 10), Outcome::Ok, Some(1)),
            undeploy(2, "s", 1, (20, 30), Outcome::Ok),
            deploy(3, "s", (40, 50), Outcome::Unknown, None),
        ];
        assert_eq!(
            check_durability(&ops, &[view("root-1", &[], &[("s", &[1])])]),
            vec![]
        );
    }

    #[test]
    fn one_violation_per_replica_and_instance() {
        let ops = vec![
            deploy(1, "s", (0, 10), Outcome::Ok, Some(1)),
            deploy(2, "s", (0, 10), Outcome::Ok, Some(1)),
        ];
        let v = check_durability(&ops, &[view("root-1", &[], &[]), view("root-2", &[], &[])]);
        assert_eq!(v.len(), 2);
        assert!(v[0].message.contains("root-1") && v[1].message.contains("root-2"));
    }

    #[test]
    fn unparsable_deploy_value_is_skipped() {
        let ops = vec![op(
            1,
            Call::Deploy {
                service: "s".into(),
            },
            0,
            10,
            Outcome::Ok,
            Some("x"),
        )];
        assert_eq!(check_durability(&ops, &[view("root-1", &[], &[])]), vec![]);
    }
}
