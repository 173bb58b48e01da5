//! The nemesis: a schedule of faults drawn from a seed ([`plan`]), carried out one at a time
//! against a running topology ([`Nemesis::run`]). Each fault is recorded with its window and
//! the time until its tier took writes again.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::{watch, Mutex};

use crate::client::Recorder;
use crate::history::{Fault, FaultKind, Micros, Op, Outcome};
use crate::observe::Observer;
use crate::target::Target;

/// The nemesis families a run may use (`--nemesis kill,pause,partition,worker-kill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Kill,
    Pause,
    Partition,
    WorkerKill,
}

impl FromStr for Family {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Family> {
        Ok(match s {
            "kill" => Family::Kill,
            "pause" => Family::Pause,
            "partition" => Family::Partition,
            "worker-kill" => Family::WorkerKill,
            other => bail!("unknown nemesis {other:?}: expected kill, pause, partition or worker-kill"),
        })
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub kind: FaultKind,
    /// Which tier: `root`, `cluster-1`, … (`worker` for worker kills).
    pub tier: String,
    /// How long the fault lasts before it is healed (for kills: how long the process stays down).
    pub hold: Duration,
    /// How long to let the system settle after healing, before the next fault.
    pub settle: Duration,
    /// Drawn from the seed: which member to pick when the fault does not fix it.
    pub pick: u32,
}

/// The faults of a run of `duration`, from `seed`: kills of the leader in every tier in turn,
/// and, spread among them, the other faults the chosen families allow. With every family the
/// plan holds, in its first few minutes, at least one minority and one majority partition and
/// two pauses per tier kind, and a worker kill.
pub fn plan(seed: u64, duration: Duration, families: &[Family], tiers: &[String]) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let has = |f: Family| families.contains(&f);
    // The special faults, in seeded order, to be interleaved with kills.
    let mut specials: Vec<(FaultKind, usize)> = Vec::new();
    for (t, _) in tiers.iter().enumerate() {
        if has(Family::Partition) {
            specials.push((FaultKind::PartitionMinority, t));
            specials.push((FaultKind::PartitionMajority, t));
        }
        if has(Family::Pause) {
            specials.push((FaultKind::Pause, t));
        }
    }
    if has(Family::WorkerKill) {
        specials.push((FaultKind::KillWorker, 0));
    }
    shuffle(&mut specials, &mut rng);

    let mut out = Vec::new();
    let mut at = Duration::ZERO;
    let mut tier_turn = 0usize;
    let mut since_special = 0u32;
    while at < duration {
        let special = (!specials.is_empty() && (since_special >= 2 || !has(Family::Kill))).then(|| specials.remove(0));
        let (kind, tier) = match special {
            Some(s) => s,
            None if has(Family::Kill) => {
                tier_turn += 1;
                let kind = if rng.random_bool(0.85) { FaultKind::KillLeader } else { FaultKind::KillReplica };
                (kind, tier_turn % tiers.len())
            }
            None => {
                // Every special used and no kills: draw more specials.
                let kinds: Vec<FaultKind> = [
                    (Family::Partition, FaultKind::PartitionMinority),
                    (Family::Partition, FaultKind::PartitionMajority),
                    (Family::Pause, FaultKind::Pause),
                    (Family::WorkerKill, FaultKind::KillWorker),
                ]
                .into_iter()
                .filter(|(f, _)| has(*f))
                .map(|(_, k)| k)
                .collect();
                let Some(kind) = kinds.choose(&mut rng).copied() else { break };
                (kind, rng.random_range(0..tiers.len()))
            }
        };
        since_special = if special.is_some() { 0 } else { since_special + 1 };
        let ms = |lo: u64, hi: u64, rng: &mut StdRng| Duration::from_millis(rng.random_range(lo..hi));
        let (hold, settle) = match kind {
            FaultKind::KillLeader | FaultKind::KillReplica => (ms(300, 1500, &mut rng), ms(1500, 2500, &mut rng)),
            FaultKind::Pause => (ms(2000, 4000, &mut rng), ms(2000, 3000, &mut rng)),
            FaultKind::PartitionMinority | FaultKind::PartitionMajority => (ms(3000, 5000, &mut rng), ms(3000, 4000, &mut rng)),
            FaultKind::KillWorker => (ms(12_000, 14_000, &mut rng), ms(3000, 4000, &mut rng)),
        };
        let tier = if kind == FaultKind::KillWorker { "worker".to_owned() } else { tiers[tier].clone() };
        out.push(Planned { kind, tier, hold, settle, pick: rng.random() });
        at += hold + settle;
    }
    out
}

fn shuffle<T>(v: &mut [T], rng: &mut StdRng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
}

/// Carries out a plan.
pub struct Nemesis {
    pub target: Arc<Mutex<Box<dyn Target>>>,
    pub observer: Observer,
    pub recorder: Recorder,
    /// The job name of the steady service, whose instances a worker kill must see move.
    pub steady_job: String,
}

impl Nemesis {
    /// Run the plan until it ends or `stop` turns true; every fault is healed before this
    /// returns. Answers the faults carried out (also recorded in the history).
    pub async fn run(&self, plan: Vec<Planned>, mut stop: watch::Receiver<bool>) -> Vec<Fault> {
        let mut faults = Vec::new();
        for p in plan {
            if *stop.borrow() {
                break;
            }
            match self.inject(&p).await {
                Ok(Some(fault)) => {
                    self.recorder.fault(fault.clone());
                    faults.push(fault);
                    if faults.len() % 50 == 0 {
                        let ops = self.recorder.ops();
                        eprintln!("grove-chaos: {} faults so far, {} operations, at {:.0} s", faults.len(), ops.len(), self.recorder.now() as f64 / 1e6);
                    }
                }
                Ok(None) => {}
                Err(e) => eprintln!("grove-chaos: {} on {} failed: {e:#}", p.kind.name(), p.tier),
            }
            let _ = tokio::time::timeout(p.settle, stop.changed()).await;
        }
        faults
    }

    /// Pick the member a fault hits: the tier's leader, or a member drawn by `pick`.
    async fn pick(&self, tier: &str, leader: bool, pick: u32) -> Option<String> {
        if leader {
            for _ in 0..30 {
                if let Some((m, _)) = self.observer.leader(tier) {
                    return Some(m);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return None;
        }
        let members = self.target.lock().await.members(tier);
        members.get(pick as usize % members.len().max(1)).cloned()
    }

    async fn inject(&self, p: &Planned) -> anyhow::Result<Option<Fault>> {
        let target = &self.target;
        let members = target.lock().await.members(&p.tier);
        let mut fault = Fault { kind: p.kind, tier: p.tier.clone(), targets: Vec::new(), start: 0, end: 0, recovered_after: None };
        match p.kind {
            FaultKind::KillLeader | FaultKind::KillReplica => {
                let Some(victim) = self.pick(&p.tier, p.kind == FaultKind::KillLeader, p.pick).await else {
                    eprintln!("grove-chaos: {} has no leader to kill; skipped", p.tier);
                    return Ok(None);
                };
                fault.start = self.recorder.now();
                target.lock().await.kill(&victim)?;
                tokio::time::sleep(p.hold).await;
                target.lock().await.restart(&victim)?;
                fault.end = self.recorder.now();
                fault.targets = vec![victim];
            }
            FaultKind::Pause => {
                let Some(victim) = self.pick(&p.tier, p.pick % 2 == 0, p.pick / 2).await else { return Ok(None) };
                fault.start = self.recorder.now();
                target.lock().await.pause(&victim)?;
                tokio::time::sleep(p.hold).await;
                target.lock().await.resume(&victim)?;
                fault.end = self.recorder.now();
                fault.targets = vec![victim];
            }
            FaultKind::PartitionMinority => {
                // Half the time the leader is on the small side.
                let Some(victim) = self.pick(&p.tier, p.pick % 2 == 0, p.pick / 2).await else { return Ok(None) };
                let others: Vec<String> = members.iter().filter(|m| **m != victim).cloned().collect();
                fault.start = self.recorder.now();
                target.lock().await.partition(&[vec![victim.clone()], others])?;
                tokio::time::sleep(p.hold).await;
                // The fault ends when healing begins: the first rule removed can let a side
                // reach a quorum while the rest are still being removed.
                fault.end = self.recorder.now();
                target.lock().await.heal()?;
                fault.targets = vec![victim];
            }
            FaultKind::PartitionMajority => {
                // Every replica alone: no side holds a majority.
                let sides: Vec<Vec<String>> = members.iter().map(|m| vec![m.clone()]).collect();
                fault.start = self.recorder.now();
                target.lock().await.partition(&sides)?;
                tokio::time::sleep(p.hold).await;
                // The fault ends when healing begins: the first rule removed can let a side
                // reach a quorum while the rest are still being removed.
                fault.end = self.recorder.now();
                target.lock().await.heal()?;
                fault.targets = members.clone();
            }
            FaultKind::KillWorker => {
                // A worker that runs steady instances (the workload's come and go too fast).
                let steady = format!("{}.instance.", self.steady_job);
                let (victim, tasks) = {
                    let t = target.lock().await;
                    let busy: Vec<(String, Vec<String>)> = members
                        .iter()
                        .map(|w| (w.clone(), t.running_tasks(w).into_iter().filter(|task| task.starts_with(&steady)).collect::<Vec<_>>()))
                        .filter(|(_, tasks)| !tasks.is_empty())
                        .collect();
                    match busy.get(p.pick as usize % busy.len().max(1)) {
                        Some(b) => b.clone(),
                        None => (members[p.pick as usize % members.len()].clone(), Vec::new()),
                    }
                };
                fault.start = self.recorder.now();
                target.lock().await.kill(&victim)?;
                // Its instances must come up on another worker.
                let others: Vec<String> = members.iter().filter(|m| **m != victim).cloned().collect();
                let deadline = tokio::time::Instant::now() + p.hold;
                while tokio::time::Instant::now() < deadline {
                    if fault.recovered_after.is_none() && !tasks.is_empty() {
                        let t = target.lock().await;
                        let elsewhere: Vec<String> = others.iter().flat_map(|w| t.running_tasks(w)).collect();
                        if tasks.iter().all(|task| elsewhere.contains(task)) {
                            fault.recovered_after = Some(self.recorder.now() - fault.start);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                target.lock().await.restart(&victim)?;
                fault.end = self.recorder.now();
                fault.targets = vec![victim];
            }
        }
        Ok(Some(fault))
    }
}

/// Fill in `recovered_after` for each tier fault: for the root, the first acknowledged write
/// begun after the fault (after the heal, for a majority partition, which no write can
/// survive); for a cluster tier, the first poll that saw a writable leader — outside the
/// fault's targets until they were healed (again after the heal for a majority partition).
pub fn measure_recovery(faults: &mut [Fault], ops: &[Op], observer: &Observer) {
    for f in faults.iter_mut() {
        if f.kind == FaultKind::KillWorker {
            continue;
        }
        let majority = f.kind == FaultKind::PartitionMajority;
        let from: Micros = if majority { f.end } else { f.start };
        f.recovered_after = if f.tier == "root" {
            let healed = Fault { start: from, ..f.clone() };
            crate::report::recovered_after(&healed, ops)
        } else {
            let excluded = if majority { Vec::new() } else { f.targets.clone() };
            observer.writable_after(&f.tier, from, &excluded, f.end)
        };
    }
}

/// How the root tier answered writes during its majority partitions: of the writes begun
/// while no majority existed (after one failover's grace), how many were refused ("not
/// applied") and how fast, and how many were left unknown (timed out). One line for the
/// summary's notes, or none without such partitions.
pub fn majority_loss_note(faults: &[Fault], ops: &[Op], grace: Micros) -> Option<String> {
    let windows: Vec<(Micros, Micros)> = faults
        .iter()
        .filter(|f| f.kind == FaultKind::PartitionMajority && f.tier == "root")
        .map(|f| (f.start + grace, f.end))
        .collect();
    if windows.is_empty() {
        return None;
    }
    let during: Vec<&Op> = ops
        .iter()
        .filter(|o| o.call.is_write() && windows.iter().any(|(from, to)| o.invoke >= *from && o.invoke < *to))
        .collect();
    let mut refused: Vec<Micros> = during.iter().filter(|o| o.outcome == Outcome::Failed).map(|o| o.complete - o.invoke).collect();
    refused.sort_unstable();
    let unknown = during.iter().filter(|o| o.outcome == Outcome::Unknown).count();
    let acked = during.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let pct = |p: f64| refused.get(((refused.len() as f64 * p).ceil() as usize).saturating_sub(1)).map_or(0.0, |v| *v as f64 / 1000.0);
    Some(format!(
        "root majority partitions: {} writes begun without a majority: {} refused (p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms), {} unknown (timed out), {} acknowledged once healed",
        during.len(),
        refused.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        unknown,
        acked
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers() -> Vec<String> {
        vec!["root".into(), "cluster-1".into()]
    }

    #[test]
    fn the_same_seed_plans_the_same_faults() {
        let all = [Family::Kill, Family::Pause, Family::Partition, Family::WorkerKill];
        let a = plan(7, Duration::from_secs(120), &all, &tiers());
        assert_eq!(a, plan(7, Duration::from_secs(120), &all, &tiers()));
        assert_ne!(a, plan(8, Duration::from_secs(120), &all, &tiers()));
    }

    #[test]
    fn a_short_plan_holds_every_kind_of_fault() {
        let all = [Family::Kill, Family::Pause, Family::Partition, Family::WorkerKill];
        let p = plan(1, Duration::from_secs(150), &all, &tiers());
        let count = |k: FaultKind| p.iter().filter(|f| f.kind == k).count();
        assert!(count(FaultKind::PartitionMinority) >= 2 && count(FaultKind::PartitionMajority) >= 2, "{p:?}");
        assert!(count(FaultKind::Pause) >= 2 && count(FaultKind::KillWorker) >= 1, "{p:?}");
        assert!(count(FaultKind::KillLeader) + count(FaultKind::KillReplica) >= 14, "{p:?}");
        // Kills alternate between the tiers.
        let kills: Vec<&str> = p.iter().filter(|f| f.kind == FaultKind::KillLeader).map(|f| f.tier.as_str()).collect();
        assert!(kills.contains(&"root") && kills.contains(&"cluster-1"), "{kills:?}");
        let total: Duration = p.iter().map(|f| f.hold + f.settle).sum();
        assert!(total >= Duration::from_secs(150) && total < Duration::from_secs(180), "{total:?}");
    }

    #[test]
    fn majority_loss_is_summed_up_from_the_writes_begun_during_it() {
        use crate::history::Call;
        let fault = Fault { kind: FaultKind::PartitionMajority, tier: "root".into(), targets: vec![], start: 1_000_000, end: 5_000_000, recovered_after: None };
        let op = |id: u64, invoke: Micros, took: Micros, outcome: Outcome| Op {
            id,
            client: 1,
            endpoint: "e".into(),
            call: Call::Write { key: "k".into(), value: id.to_string() },
            invoke,
            complete: invoke + took,
            outcome,
            value: None,
            error: None,
        };
        let ops = vec![
            op(1, 1_100_000, 10_000, Outcome::Failed), // inside the grace: not counted
            op(2, 2_000_000, 900_000, Outcome::Failed),
            op(3, 2_500_000, 100_000, Outcome::Failed),
            op(4, 3_000_000, 3_000_000, Outcome::Unknown),
            op(5, 6_000_000, 10_000, Outcome::Ok), // after the heal
        ];
        let note = majority_loss_note(&[fault], &ops, 350_000).unwrap();
        assert!(note.contains("3 writes begun without a majority: 2 refused (p50 100 ms, p99 900 ms, max 900 ms), 1 unknown"), "{note}");
        assert!(note.ends_with("0 acknowledged once healed"), "{note}");
        assert_eq!(majority_loss_note(&[], &ops, 0), None);
    }

    #[test]
    fn only_the_chosen_families_are_planned() {
        let p = plan(3, Duration::from_secs(60), &[Family::Pause], &tiers());
        assert!(!p.is_empty() && p.iter().all(|f| f.kind == FaultKind::Pause), "{p:?}");
        assert!("explode".parse::<Family>().unwrap_err().to_string().contains("explode"));
    }
}
