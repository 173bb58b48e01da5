//! Safety: at most one leader per tier and term, at most one running copy of each instance,
//! and no write acknowledged by a side of a partition that cannot hold a quorum.

use std::collections::BTreeMap;

use super::{LeaderSample, RunningCopy, Violation};
use crate::history::{Fault, FaultKind, Micros, Op, Outcome};

/// Two different replicas claiming leadership of the same tier in the same term: one violation
/// per (tier, term), naming every claimant and when it was first seen.
pub fn check_leaders(samples: &[LeaderSample]) -> Vec<Violation> {
    // (tier, term) → replica → first time seen leading.
    let mut claims: BTreeMap<(&str, u64), BTreeMap<&str, Micros>> = BTreeMap::new();
    for s in samples {
        let first = claims
            .entry((s.tier.as_str(), s.term))
            .or_default()
            .entry(s.replica.as_str())
            .or_insert(s.at);
        *first = (*first).min(s.at);
    }
    claims
        .into_iter()
        .filter(|(_, leaders)| leaders.len() > 1)
        .map(|((tier, term), leaders)| {
            let named: Vec<String> = leaders
                .iter()
                .map(|(r, at)| format!("{r} (seen at {at} µs)"))
                .collect();
            Violation {
                checker: "safety".into(),
                message: format!(
                    "tier {tier} had {} leaders in term {term}: {}",
                    leaders.len(),
                    named.join(" and ")
                ),
                ops: Vec::new(),
            }
        })
        .collect()
}

/// The same (service, instance) running more than once at the end, on two workers or twice on
/// one: one violation per instance.
pub fn check_single_copies(copies: &[RunningCopy]) -> Vec<Violation> {
    let mut running: BTreeMap<(&str, u32), Vec<&str>> = BTreeMap::new();
    for c in copies {
        running
            .entry((c.service.as_str(), c.instance))
            .or_default()
            .push(c.worker.as_str());
    }
    running
        .into_iter()
        .filter(|(_, workers)| workers.len() > 1)
        .map(|((service, n), mut workers)| {
            workers.sort_unstable();
            Violation {
                checker: "safety".into(),
                message: format!(
                    "instance {n} of service {service:?} runs {} times at the end: on {}",
                    workers.len(),
                    workers.join(", ")
                ),
                ops: Vec::new(),
            }
        })
        .collect()
}

/// For every partition: an ok write sent to a member on the isolated side (`fault.targets`),
/// invoked at least `grace` after the partition began (time for a cut-off leader to notice)
/// and acknowledged before it healed. `member_of_endpoint` maps an op's endpoint to the member
/// it reaches (`None` for the load balancer or an unknown endpoint).
pub fn check_isolated_acks(
    ops: &[Op],
    faults: &[Fault],
    member_of_endpoint: &dyn Fn(&str) -> Option<String>,
    grace: Micros,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let partitions = faults.iter().filter(|f| {
        matches!(
            f.kind,
            FaultKind::PartitionMinority | FaultKind::PartitionMajority
        )
    });
    for fault in partitions {
        let from = fault.start.saturating_add(grace);
        for op in ops {
            if op.outcome != Outcome::Ok
                || !op.call.is_write()
                || op.invoke < from
                || op.complete >= fault.end
            {
                continue;
            }
            let Some(member) = member_of_endpoint(&op.endpoint) else {
                continue;
            };
            if !fault.targets.contains(&member) {
                continue;
            }
            violations.push(Violation {
                checker: "safety".into(),
                message: format!(
                    "an isolated minority acknowledged a write: {} op {} sent to {member} at {} µs \
                     was acknowledged at {} µs, while {member} was cut off by a {} of tier {} \
                     ({}–{} µs)",
                    op.call.name(),
                    op.id,
                    op.invoke,
                    op.complete,
                    fault.kind.name(),
                    fault.tier,
                    fault.start,
                    fault.end
                ),
                ops: vec![op.clone()],
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Call;

    fn sample(tier: &str, replica: &str, term: u64, at: Micros) -> LeaderSample {
        LeaderSample {
            tier: tier.into(),
            replica: replica.into(),
            term,
            at,
        }
    }

    #[test]
    fn one_leader_per_term_passes() {
        let samples = vec![
            sample("root", "root-1", 1, 0),
            sample("root", "root-1", 1, 100),
            sample("root", "root-2", 2, 200),
            sample("cluster-1", "cluster-1-1", 1, 50),
            sample("cluster-1", "cluster-1-2", 2, 60),
            // Same replica name in another tier and term is unrelated.
            sample("cluster-2", "root-1", 1, 70),
        ];
        assert_eq!(check_leaders(&samples), vec![]);
    }

    #[test]
    fn two_leaders_in_one_term_is_one_violation() {
        let samples = vec![
            sample("root", "root-1", 3, 500),
            sample("root", "root-2", 3, 700),
            sample("root", "root-1", 3, 400),
            sample("root", "root-2", 3, 900),
            sample("root", "root-3", 4, 1000),
            sample("cluster-1", "cluster-1-1", 3, 10),
        ];
        let v = check_leaders(&samples);
        assert_eq!(v.len(), 1, "{v:#?}");
        let m = &v[0].message;
        assert_eq!(v[0].checker, "safety");
        assert!(m.contains("tier root") && m.contains("term 3"), "{m}");
        assert!(
            m.contains("root-1 (seen at 400 µs)") && m.contains("root-2 (seen at 700 µs)"),
            "{m}"
        );
    }

    #[test]
    fn one_violation_per_tier_and_term() {
        let samples = vec![
            sample("root", "root-1", 3, 0),
            sample("root", "root-2", 3, 1),
            sample("root", "root-3", 3, 2),
            sample("root", "root-1", 5, 3),
            sample("root", "root-3", 5, 4),
            sample("cluster-1", "cluster-1-1", 3, 5),
            sample("cluster-1", "cluster-1-2", 3, 6),
        ];
        let v = check_leaders(&samples);
        assert_eq!(v.len(), 3);
        assert!(v[0].message.contains("cluster-1"));
        assert!(v[1].message.contains("3 leaders") && v[1].message.contains("root-3"));
        assert!(v[2].message.contains("term 5"));
    }

    fn copy(service: &str, instance: u32, worker: &str) -> RunningCopy {
        RunningCopy {
            service: service.into(),
            instance,
            worker: worker.into(),
        }
    }

    #[test]
    fn single_copies_pass() {
        let copies = vec![
            copy("s", 1, "w1"),
            copy("s", 2, "w1"),
            copy("t", 1, "w2"),
            copy("s", 3, "w2"),
        ];
        assert_eq!(check_single_copies(&copies), vec![]);
    }

    #[test]
    fn duplicate_copies_are_flagged() {
        let copies = vec![
            copy("s", 1, "w2"),
            copy("s", 2, "w1"),
            copy("s", 1, "w1"),
            copy("t", 7, "w3"),
            copy("t", 7, "w3"),
        ];
        let v = check_single_copies(&copies);
        assert_eq!(v.len(), 2, "{v:#?}");
        assert!(
            v[0].message.contains("instance 1 of service \"s\"")
                && v[0].message.contains("on w1, w2")
        );
        assert!(
            v[1].message.contains("instance 7")
                && v[1].message.contains("2 times")
                && v[1].message.contains("w3, w3")
        );
    }

    fn write(id: u64, endpoint: &str, invoke: Micros, complete: Micros, outcome: Outcome) -> Op {
        Op {
            id,
            client: 0,
            endpoint: endpoint.into(),
            call: Call::Write {
                key: "k".into(),
                value: format!("v{id}"),
            },
            invoke,
            complete,
            outcome,
            value: None,
            error: None,
        }
    }

    fn partition(kind: FaultKind, targets: &[&str], start: Micros, end: Micros) -> Fault {
        Fault {
            kind,
            tier: "root".into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            start,
            end,
            recovered_after: None,
        }
    }

    fn member(endpoint: &str) -> Option<String> {
        endpoint
            .strip_prefix("http://")
            .filter(|m| m.starts_with("root-"))
            .map(String::from)
    }

    #[test]
    fn isolated_side_acknowledging_a_write_is_flagged() {
        let faults = vec![partition(
            FaultKind::PartitionMinority,
            &["root-1"],
            1000,
            5000,
        )];
        let ops = vec![
            write(1, "http://root-1", 2000, 2100, Outcome::Ok), // violation
            write(2, "http://root-2", 2000, 2100, Outcome::Ok), // majority side
            write(3, "http://root-1", 1100, 1200, Outcome::Ok), // within the grace period
            write(4, "http://root-1", 4900, 5000, Outcome::Ok), // acknowledged at the heal
            write(5, "http://root-1", 2000, 2100, Outcome::Unknown),
            write(6, "http://root-1", 2000, 2100, Outcome::Failed),
            write(7, "http://lb", 2000, 2100, Outcome::Ok), // unknown member
            write(8, "http://root-1", 500, 600, Outcome::Ok), // before
            write(9, "http://root-1", 6000, 6100, Outcome::Ok), // after
        ];
        let mut read = write(10, "http://root-1", 2000, 2100, Outcome::Ok);
        read.call = Call::Read { key: "k".into() };
        let mut ops = ops;
        ops.push(read);
        let mut create = write(11, "http://root-1", 3000, 3100, Outcome::Ok);
        create.call = Call::CreateApp { key: "a".into() };
        ops.push(create);

        let v = check_isolated_acks(&ops, &faults, &member, 500);
        let ids: Vec<u64> = v.iter().map(|v| v.ops[0].id).collect();
        assert_eq!(ids, vec![1, 11], "{v:#?}");
        assert_eq!(v[0].checker, "safety");
        let m = &v[0].message;
        assert!(
            m.contains("isolated minority acknowledged a write") && m.contains("root-1"),
            "{m}"
        );
        assert!(m.contains("partition-minority"), "{m}");

        // With no grace period, op 3 is a violation too; invoke exactly at start + grace counts.
        let v = check_isolated_acks(&ops, &faults, &member, 0);
        assert_eq!(
            v.iter().map(|v| v.ops[0].id).collect::<Vec<_>>(),
            vec![1, 3, 11]
        );
        let v = check_isolated_acks(&ops, &faults, &member, 1000);
        assert_eq!(
            v.iter().map(|v| v.ops[0].id).collect::<Vec<_>>(),
            vec![1, 11]
        );
        let v = check_isolated_acks(&ops, &faults, &member, 1001);
        assert_eq!(v.iter().map(|v| v.ops[0].id).collect::<Vec<_>>(), vec![11]);
    }

    #[test]
    fn majority_partition_and_other_faults() {
        let ops = vec![write(1, "http://root-2", 2000, 2100, Outcome::Ok)];
        let majority = partition(
            FaultKind::PartitionMajority,
            &["root-2", "root-3"],
            1000,
            5000,
        );
        assert_eq!(
            check_isolated_acks(&ops, &[majority], &member, 500).len(),
            1
        );

        // Kills and pauses are not partitions: no claim about acknowledgements.
        let others: Vec<Fault> = [
            FaultKind::KillLeader,
            FaultKind::KillReplica,
            FaultKind::Pause,
            FaultKind::KillWorker,
        ]
        .into_iter()
        .map(|k| partition(k, &["root-2"], 1000, 5000))
        .collect();
        assert_eq!(check_isolated_acks(&ops, &others, &member, 500), vec![]);
    }
}
