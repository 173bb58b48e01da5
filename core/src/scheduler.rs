//! Best-fit placement, pure and synchronous: the root leader places an instance on a cluster,
//! a cluster leader places it on a worker, both with [`schedule`] over a snapshot of
//! [`Candidate`]s (contract §6, with upstream's defects fixed).
//!
//! # Filters, in order
//!
//! A candidate is rejected for the first rule it breaks; the counts per rule make up the
//! human-readable detail of a negative result.
//!
//! 1. `direct` constraints: root level matches `cluster`, cluster level matches `node` against
//!    [`Candidate::name`]; a `;`-separated list means "any of these"; an empty value means no
//!    filter. Several `direct` constraints must all match.
//! 2. The candidate is active.
//! 3. `clusters` constraints (root level): the name is in every `allowed` list.
//! 4. Virtualization: the candidate offers the job's runtime (`container` counts as `docker`).
//! 5. CSI drivers: the candidate offers every `volumes[].csi_driver`.
//! 6. `addons` constraints: every `needs` entry is among the candidate's supported addons.
//! 7. `geo` constraints (root level): the candidate's location is within `threshold` km
//!    (haversine) of the constraint's `location`; a candidate without a location fails.
//! 8. Capacity: cores `vcpus` ≥ requested (a core count, as upstream: a job's `vcpus` is a limit,
//!    not a reservation), available memory ≥ requested MB, GPUs ≥ requested `vgpus`.
//!
//! `latency` constraints are accepted and not enforced: no tier measures latency. Constraints
//! of the other level are ignored (a worker has no cluster name list or location to check), and
//! so are unknown types (only a stock Oakestra root lets them through). A `geo` constraint whose
//! `location` or `threshold` is unusable fails the placement instead of being ignored.
//!
//! # Best fit
//!
//! Among the candidates that pass, the one with the most free capacity wins (spreading load,
//! which is what upstream's `BestCpuMemFit` meant; as coded it picked the lowest `cpu_percent`):
//!
//! ```text
//! free_cpu(c) = vcpus(c) × (1 − cpu_percent(c) / 100)    free cores, cpu_percent clamped to 0..100
//! free_mem(c) = memory(c)                                  available MB
//! score(c)    = free_cpu(c) / max free_cpu + free_mem(c) / max free_mem   (maxima over the feasible set)
//! ```
//!
//! Each resource weighs the same whatever its unit and size, so a cluster with the most free
//! cores and the most free memory scores 2. A term whose maximum is 0 contributes 0. Equal
//! scores go to the lexicographically smallest candidate id, so the result never depends on the
//! order of the snapshot.
//!
//! The snapshot is the caller's: a leader that places several instances between two resource
//! reports should subtract what it already placed from the candidates' free values.
//!
//! # Negative results
//!
//! | level   | status                        | when                                                    |
//! |---------|-------------------------------|---------------------------------------------------------|
//! | root    | `TargetClusterNotFound`       | a `direct` cluster names no candidate                   |
//! | root    | `TargetClusterNotActive`      | no active candidate, or the `direct` target is inactive |
//! | root    | `TargetClusterNoCapacity`     | the `direct` target is active but does not fit          |
//! | root    | `NoActiveClusterWithCapacity` | any other miss (also an unusable `geo` constraint)      |
//! | cluster | `NO_NODE_FOUND`               | no active worker, or the `direct` node is absent/inactive |
//! | cluster | `NO_WORKER_CAPACITY`          | some worker qualifies but lacks cores, memory or GPUs   |
//! | cluster | `NO_QUALIFIED_WORKER_FOUND`   | no active worker offers the runtime, drivers and addons |
//!
//! The detail counts the rejections per rule, e.g. `"3 candidates; 2 lack virtualization docker,
//! 1 has 512 MB free < 1024 MB required"`.
//!
//! # Cost
//!
//! One pass over the candidates with no allocation per candidate (the constraints are prepared
//! once), then one pass over the feasible ones, whose index and free values are kept in a single
//! vector. A negative result allocates only its detail string.

use std::fmt::Write as _;

use crate::job::Job;
use crate::sla::{job_virtualization, Constraint, ConstraintKind, GeoPoint, Microservice};
use crate::status::Status;

/// Where the scheduler runs; decides which constraints apply and which statuses it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The root places on clusters: `direct.cluster`, `clusters`, `geo`, `addons`.
    Root,
    /// A cluster places on workers: `direct.node`, `addons`.
    Cluster,
}

/// A read-only view of one cluster (root level: its aggregate) or worker (cluster level).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The id reported back as `candidate_id`; ties go to the smallest.
    pub id: &'a str,
    /// `candidate_name`: the cluster name or the worker's hostname (what `direct` matches).
    pub name: &'a str,
    /// Reported recently enough to be trusted.
    pub active: bool,
    /// Cores (root: the sum over the cluster's active workers).
    pub vcpus: u32,
    /// CPU usage, percent of all cores (root: the mean over workers).
    pub cpu_percent: f64,
    /// Available memory, MB (root: the sum).
    pub memory_mb: u64,
    pub vgpus: u32,
    /// Runtimes offered, e.g. `["docker"]`.
    pub virtualization: &'a [String],
    /// CSI driver names offered.
    pub csi_drivers: &'a [String],
    pub supported_addons: &'a [String],
    /// Where the candidate is (root: the cluster location; see [`GeoPoint::parse_cluster_location`]).
    pub location: Option<GeoPoint>,
}

/// What an instance needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand<'a> {
    /// The job's runtime (`docker`, `unikernel`, …); empty means no requirement.
    pub virtualization: &'a str,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub vgpus: u32,
    /// Every `volumes[].csi_driver`.
    pub csi_drivers: Vec<&'a str>,
    pub constraints: &'a [Constraint],
}

impl<'a> Demand<'a> {
    /// The demand of a job document (what the root and cluster store).
    pub fn from_job(job: &'a Job) -> Self {
        Demand {
            virtualization: job_virtualization(&job.virtualization),
            vcpus: job.vcpus,
            memory_mb: job.memory,
            vgpus: job.vgpus,
            csi_drivers: job
                .volumes
                .iter()
                .filter_map(|v| v.get("csi_driver").and_then(|d| d.as_str()))
                .filter(|d| !d.is_empty())
                .collect(),
            constraints: &job.constraints,
        }
    }

    /// The demand of an SLA microservice.
    pub fn from_microservice(ms: &'a Microservice) -> Self {
        Demand {
            virtualization: job_virtualization(&ms.virtualization),
            vcpus: ms.vcpus,
            memory_mb: ms.memory,
            vgpus: ms.vgpus,
            csi_drivers: ms.volumes.iter().map(|v| v.csi_driver.as_str()).collect(),
            constraints: &ms.constraints,
        }
    }
}

/// The chosen candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement<'a> {
    /// Index into the candidate slice.
    pub index: usize,
    pub id: &'a str,
    /// The best-fit score, in 0..=2.
    pub score: f64,
}

/// No candidate fits: an Oakestra negative scheduling status and why, for `status_detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct NoPlacement {
    pub status: Status,
    pub detail: String,
}

/// Constraints of one level, prepared once per call.
struct Rules<'d> {
    /// One entry per `direct` constraint with a value at this level: the names it accepts.
    direct: Vec<Vec<&'d str>>,
    /// Raw `direct` values, for messages.
    direct_text: Vec<&'d str>,
    allowed: Vec<&'d [String]>,
    addons: Vec<&'d str>,
    geo: Vec<(GeoPoint, f64)>,
}

impl<'d> Rules<'d> {
    fn prepare(level: Level, constraints: &'d [Constraint]) -> Result<Self, String> {
        let mut rules = Rules {
            direct: Vec::new(),
            direct_text: Vec::new(),
            allowed: Vec::new(),
            addons: Vec::new(),
            geo: Vec::new(),
        };
        for (i, c) in constraints.iter().enumerate() {
            match (c.kind(), level) {
                (Some(ConstraintKind::Direct), _) => {
                    let target = match level {
                        Level::Root => c.cluster.as_deref(),
                        Level::Cluster => c.node.as_deref(),
                    };
                    let names: Vec<&str> = target
                        .unwrap_or("")
                        .split(';')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .collect();
                    if !names.is_empty() {
                        rules.direct.push(names);
                        rules.direct_text.push(target.unwrap_or("").trim());
                    }
                }
                (Some(ConstraintKind::Clusters), Level::Root) => {
                    rules.allowed.push(c.allowed.as_deref().unwrap_or(&[]));
                }
                (Some(ConstraintKind::Addons), _) => {
                    rules
                        .addons
                        .extend(c.needs.iter().flatten().map(String::as_str));
                }
                (Some(ConstraintKind::Geo), Level::Root) => {
                    let location = c.location.as_deref().unwrap_or("");
                    let point = GeoPoint::parse(location).ok_or_else(|| {
                        format!("constraints[{i}]: geo location {location:?} is not \"lat,long\"")
                    })?;
                    let threshold = c
                        .threshold
                        .filter(|t| t.is_finite() && *t >= 0.0)
                        .ok_or_else(|| {
                            format!("constraints[{i}]: geo threshold missing or invalid")
                        })?;
                    rules.geo.push((point, threshold));
                }
                // Unknown types only reach here in jobs from a stock Oakestra root, whose schema
                // accepts any `type` and whose scheduler ignores it; Grove's validator rejects them.
                (Some(ConstraintKind::Latency) | None, _)
                | (Some(ConstraintKind::Clusters | ConstraintKind::Geo), Level::Cluster) => {}
            }
        }
        Ok(rules)
    }

    fn direct_matches(&self, name: &str) -> bool {
        self.direct.iter().all(|names| names.contains(&name))
    }

    fn direct_description(&self) -> String {
        self.direct_text.join(" and ")
    }
}

/// Why candidates were rejected: counts per rule and the best value seen among the rejected.
#[derive(Default)]
struct Rejections {
    not_direct: usize,
    inactive: usize,
    not_allowed: usize,
    virtualization: usize,
    csi: usize,
    addons: usize,
    no_location: usize,
    too_far: usize,
    /// (distance km, index into `Rules::geo`) of the nearest rejected candidate.
    nearest: Option<(f64, usize)>,
    vcpus: usize,
    most_vcpus: u32,
    memory: usize,
    most_memory: u64,
    vgpus: usize,
    most_vgpus: u32,
}

/// Places one instance: the feasible candidate with the highest best-fit score (see the module
/// documentation), or the negative status of `level` with a detail saying why.
pub fn schedule<'a>(
    level: Level,
    demand: &Demand<'_>,
    candidates: &[Candidate<'a>],
) -> Result<Placement<'a>, NoPlacement> {
    let rules = Rules::prepare(level, demand.constraints).map_err(|detail| NoPlacement {
        status: match level {
            Level::Root => Status::NoActiveClusterWithCapacity,
            Level::Cluster => Status::NoQualifiedWorkerFound,
        },
        detail,
    })?;

    let wanted_virtualization = job_virtualization(demand.virtualization);
    let mut r = Rejections::default();
    let mut feasible: Vec<(usize, f64, f64)> = Vec::new();
    let (mut max_cpu, mut max_mem) = (0.0_f64, 0.0_f64);
    'candidates: for (i, c) in candidates.iter().enumerate() {
        if !rules.direct_matches(c.name) {
            r.not_direct += 1;
            continue;
        }
        if !c.active {
            r.inactive += 1;
            continue;
        }
        if !rules
            .allowed
            .iter()
            .all(|list| list.iter().any(|n| n == c.name))
        {
            r.not_allowed += 1;
            continue;
        }
        if !wanted_virtualization.is_empty()
            && !c
                .virtualization
                .iter()
                .any(|v| job_virtualization(v) == wanted_virtualization)
        {
            r.virtualization += 1;
            continue;
        }
        if !demand
            .csi_drivers
            .iter()
            .all(|d| c.csi_drivers.iter().any(|x| x == d))
        {
            r.csi += 1;
            continue;
        }
        if !rules
            .addons
            .iter()
            .all(|a| c.supported_addons.iter().any(|x| x == a))
        {
            r.addons += 1;
            continue;
        }
        for (g, &(point, threshold)) in rules.geo.iter().enumerate() {
            let Some(location) = c.location else {
                r.no_location += 1;
                continue 'candidates;
            };
            let distance = location.distance_km(point);
            if distance > threshold {
                r.too_far += 1;
                if r.nearest.is_none_or(|(d, _)| distance < d) {
                    r.nearest = Some((distance, g));
                }
                continue 'candidates;
            }
        }
        let mut fits = true;
        if c.vcpus < demand.vcpus {
            r.vcpus += 1;
            r.most_vcpus = r.most_vcpus.max(c.vcpus);
            fits = false;
        } else if c.memory_mb < demand.memory_mb {
            r.memory += 1;
            r.most_memory = r.most_memory.max(c.memory_mb);
            fits = false;
        } else if c.vgpus < demand.vgpus {
            r.vgpus += 1;
            r.most_vgpus = r.most_vgpus.max(c.vgpus);
            fits = false;
        }
        if fits {
            let used = if c.cpu_percent.is_finite() {
                c.cpu_percent.clamp(0.0, 100.0)
            } else {
                100.0
            };
            let free_cpu = f64::from(c.vcpus) * (1.0 - used / 100.0);
            let free_mem = c.memory_mb as f64;
            max_cpu = max_cpu.max(free_cpu);
            max_mem = max_mem.max(free_mem);
            feasible.push((i, free_cpu, free_mem));
        }
    }

    let share = |value: f64, max: f64| if max > 0.0 { value / max } else { 0.0 };
    let best = feasible
        .iter()
        .map(|&(i, cpu, mem)| (i, share(cpu, max_cpu) + share(mem, max_mem)))
        .max_by(|&(a, sa), &(b, sb)| {
            sa.total_cmp(&sb)
                .then_with(|| candidates[b].id.cmp(candidates[a].id))
        });
    if let Some((index, score)) = best {
        return Ok(Placement {
            index,
            id: candidates[index].id,
            score,
        });
    }
    Err(negative(level, demand, &rules, &r, candidates.len()))
}

fn negative(
    level: Level,
    demand: &Demand<'_>,
    rules: &Rules<'_>,
    r: &Rejections,
    total: usize,
) -> NoPlacement {
    let direct_known = total - r.not_direct;
    let direct_active = direct_known - r.inactive;
    let qualified = r.vcpus + r.memory + r.vgpus;
    let breakdown = breakdown(demand, rules, r, total);
    let has_direct = !rules.direct.is_empty();
    let (status, detail) = match level {
        Level::Root if has_direct && direct_known == 0 => (
            Status::TargetClusterNotFound,
            format!(
                "direct target cluster {} not found; {breakdown}",
                rules.direct_description()
            ),
        ),
        Level::Root if has_direct && direct_active == 0 => (
            Status::TargetClusterNotActive,
            format!(
                "direct target cluster {} is not active; {breakdown}",
                rules.direct_description()
            ),
        ),
        Level::Root if has_direct => (Status::TargetClusterNoCapacity, breakdown),
        Level::Root if direct_active == 0 => (Status::TargetClusterNotActive, breakdown),
        Level::Root => (Status::NoActiveClusterWithCapacity, breakdown),
        Level::Cluster if has_direct && direct_known == 0 => (
            Status::NoNodeFound,
            format!(
                "direct target node {} not found; {breakdown}",
                rules.direct_description()
            ),
        ),
        Level::Cluster if has_direct && direct_active == 0 => (
            Status::NoNodeFound,
            format!(
                "direct target node {} is not active; {breakdown}",
                rules.direct_description()
            ),
        ),
        Level::Cluster if direct_active == 0 => (Status::NoNodeFound, breakdown),
        Level::Cluster if qualified > 0 => (Status::NoWorkerCapacity, breakdown),
        Level::Cluster => (Status::NoQualifiedWorkerFound, breakdown),
    };
    NoPlacement { status, detail }
}

/// `"3 candidates; 2 lack virtualization docker, 1 has 512 MB free < 1024 MB required"`.
fn breakdown(demand: &Demand<'_>, rules: &Rules<'_>, r: &Rejections, total: usize) -> String {
    if total == 0 {
        return "no candidates".to_owned();
    }
    let verb = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let mut parts: Vec<String> = Vec::new();
    if r.not_direct > 0 {
        let n = r.not_direct;
        parts.push(format!(
            "{n} {} not the direct target {}",
            verb(n, "is", "are"),
            rules.direct_description()
        ));
    }
    if r.inactive > 0 {
        let n = r.inactive;
        parts.push(format!("{n} {} inactive", verb(n, "is", "are")));
    }
    if r.not_allowed > 0 {
        let n = r.not_allowed;
        let allowed: Vec<String> = rules.allowed.iter().map(|l| l.join(", ")).collect();
        parts.push(format!(
            "{n} {} not in the allowed clusters [{}]",
            verb(n, "is", "are"),
            allowed.join("] and [")
        ));
    }
    if r.virtualization > 0 {
        let n = r.virtualization;
        let wanted = job_virtualization(demand.virtualization);
        parts.push(format!(
            "{n} {} virtualization {wanted}",
            verb(n, "lacks", "lack")
        ));
    }
    if r.csi > 0 {
        let n = r.csi;
        parts.push(format!(
            "{n} {} CSI driver(s) {}",
            verb(n, "lacks", "lack"),
            demand.csi_drivers.join(", ")
        ));
    }
    if r.addons > 0 {
        let n = r.addons;
        parts.push(format!(
            "{n} {} addon(s) {}",
            verb(n, "lacks", "lack"),
            rules.addons.join(", ")
        ));
    }
    if r.no_location > 0 {
        let n = r.no_location;
        parts.push(format!(
            "{n} {} no location for the geo constraint",
            verb(n, "has", "have")
        ));
    }
    if let (n @ 1.., Some((distance, g))) = (r.too_far, r.nearest) {
        let (point, threshold) = rules.geo[g];
        let mut s = String::new();
        let _ = if n == 1 {
            write!(
                s,
                "1 is {distance:.1} km from {point}, farther than {threshold} km"
            )
        } else {
            write!(
                s,
                "{n} are farther than {threshold} km from {point} (nearest {distance:.1} km)"
            )
        };
        parts.push(s);
    }
    if r.vcpus > 0 {
        let (n, most, want) = (r.vcpus, r.most_vcpus, demand.vcpus);
        parts.push(if n == 1 {
            format!("1 has {most} vCPUs < {want} required")
        } else {
            format!("{n} have at most {most} vCPUs < {want} required")
        });
    }
    if r.memory > 0 {
        let (n, most, want) = (r.memory, r.most_memory, demand.memory_mb);
        parts.push(if n == 1 {
            format!("1 has {most} MB free < {want} MB required")
        } else {
            format!("{n} have at most {most} MB free < {want} MB required")
        });
    }
    if r.vgpus > 0 {
        let (n, most, want) = (r.vgpus, r.most_vgpus, demand.vgpus);
        parts.push(if n == 1 {
            format!("1 has {most} GPUs < {want} required")
        } else {
            format!("{n} have at most {most} GPUs < {want} required")
        });
    }
    let noun = if total == 1 {
        "candidate"
    } else {
        "candidates"
    };
    format!("{total} {noun}; {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An owned candidate, viewed as a [`Candidate`] by [`view`].
    #[derive(Clone)]
    struct Spec {
        id: &'static str,
        name: &'static str,
        active: bool,
        vcpus: u32,
        cpu: f64,
        mem: u64,
        gpus: u32,
        virt: Vec<String>,
        csi: Vec<String>,
        addons: Vec<String>,
        loc: Option<GeoPoint>,
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// 4 cores at 50 %, 4096 MB, docker, active, named like its id.
    fn c(id: &'static str) -> Spec {
        Spec {
            id,
            name: id,
            active: true,
            vcpus: 4,
            cpu: 50.0,
            mem: 4096,
            gpus: 0,
            virt: strings(&["docker"]),
            csi: vec![],
            addons: vec![],
            loc: None,
        }
    }

    impl Spec {
        fn cpu(mut self, vcpus: u32, percent: f64) -> Self {
            (self.vcpus, self.cpu) = (vcpus, percent);
            self
        }
        fn mem(mut self, mb: u64) -> Self {
            self.mem = mb;
            self
        }
        fn gpus(mut self, n: u32) -> Self {
            self.gpus = n;
            self
        }
        fn virt(mut self, v: &[&str]) -> Self {
            self.virt = strings(v);
            self
        }
        fn csi(mut self, v: &[&str]) -> Self {
            self.csi = strings(v);
            self
        }
        fn addons(mut self, v: &[&str]) -> Self {
            self.addons = strings(v);
            self
        }
        fn at(mut self, lat: f64, long: f64) -> Self {
            self.loc = Some(GeoPoint { lat, long });
            self
        }
        fn named(mut self, name: &'static str) -> Self {
            self.name = name;
            self
        }
        fn inactive(mut self) -> Self {
            self.active = false;
            self
        }
    }

    fn view(specs: &[Spec]) -> Vec<Candidate<'_>> {
        specs
            .iter()
            .map(|s| Candidate {
                id: s.id,
                name: s.name,
                active: s.active,
                vcpus: s.vcpus,
                cpu_percent: s.cpu,
                memory_mb: s.mem,
                vgpus: s.gpus,
                virtualization: &s.virt,
                csi_drivers: &s.csi,
                supported_addons: &s.addons,
                location: s.loc,
            })
            .collect()
    }

    /// An owned demand: docker, 1 vCPU, 100 MB unless changed.
    #[derive(Clone)]
    struct Want {
        virt: &'static str,
        vcpus: u32,
        mem: u64,
        gpus: u32,
        csi: Vec<&'static str>,
        constraints: Vec<Constraint>,
    }

    fn want() -> Want {
        Want {
            virt: "docker",
            vcpus: 1,
            mem: 100,
            gpus: 0,
            csi: vec![],
            constraints: vec![],
        }
    }

    impl Want {
        fn demand(&self) -> Demand<'_> {
            Demand {
                virtualization: self.virt,
                vcpus: self.vcpus,
                memory_mb: self.mem,
                vgpus: self.gpus,
                csi_drivers: self.csi.clone(),
                constraints: &self.constraints,
            }
        }
        fn vcpus(mut self, n: u32) -> Self {
            self.vcpus = n;
            self
        }
        fn mem(mut self, mb: u64) -> Self {
            self.mem = mb;
            self
        }
        fn gpus(mut self, n: u32) -> Self {
            self.gpus = n;
            self
        }
        fn virt(mut self, v: &'static str) -> Self {
            self.virt = v;
            self
        }
        fn csi(mut self, d: &'static str) -> Self {
            self.csi.push(d);
            self
        }
        fn with(mut self, c: Constraint) -> Self {
            self.constraints.push(c);
            self
        }
    }

    fn constraint(kind: &str) -> Constraint {
        Constraint {
            kind: kind.into(),
            ..Constraint::default()
        }
    }
    fn direct_cluster(target: &str) -> Constraint {
        Constraint {
            cluster: Some(target.into()),
            ..constraint("direct")
        }
    }
    fn direct_node(target: &str) -> Constraint {
        Constraint {
            node: Some(target.into()),
            ..constraint("direct")
        }
    }
    fn allowed(names: &[&str]) -> Constraint {
        Constraint {
            allowed: Some(strings(names)),
            ..constraint("clusters")
        }
    }
    fn needs(names: &[&str]) -> Constraint {
        Constraint {
            needs: Some(strings(names)),
            ..constraint("addons")
        }
    }
    fn geo(location: &str, km: f64) -> Constraint {
        Constraint {
            location: Some(location.into()),
            threshold: Some(km),
            ..constraint("geo")
        }
    }

    enum Expect {
        Pick(&'static str),
        /// The status and the exact detail.
        Fail(Status, &'static str),
    }
    use Expect::{Fail, Pick};
    use Level::{Cluster, Root};

    const MUNICH: (f64, f64) = (48.137, 11.575);
    const AUGSBURG: (f64, f64) = (48.371, 10.898); // ~56 km from Munich
    const BERLIN: (f64, f64) = (52.520, 13.405); // ~504 km from Munich

    fn check(cases: Vec<(&str, Level, Want, Vec<Spec>, Expect)>) {
        for (name, level, want, specs, expect) in cases {
            let candidates = view(&specs);
            let got = schedule(level, &want.demand(), &candidates);
            match (expect, got) {
                (Pick(id), Ok(p)) => {
                    assert_eq!(p.id, id, "{name}");
                    assert_eq!(candidates[p.index].id, id, "{name}");
                }
                (Fail(status, detail), Err(e)) => {
                    assert_eq!(e.status, status, "{name}: {}", e.detail);
                    assert_eq!(e.detail, detail, "{name}");
                }
                (Pick(id), Err(e)) => panic!("{name}: expected {id}, got {e}"),
                (Fail(status, _), Ok(p)) => panic!("{name}: expected {status}, got {}", p.id),
            }
        }
    }

    #[test]
    fn no_candidates_and_inactive_candidates() {
        check(vec![
            (
                "root, none",
                Root,
                want(),
                vec![],
                Fail(Status::TargetClusterNotActive, "no candidates"),
            ),
            (
                "cluster, none",
                Cluster,
                want(),
                vec![],
                Fail(Status::NoNodeFound, "no candidates"),
            ),
            (
                "root, all inactive",
                Root,
                want(),
                vec![c("a").inactive(), c("b").inactive()],
                Fail(
                    Status::TargetClusterNotActive,
                    "2 candidates; 2 are inactive",
                ),
            ),
            (
                "cluster, all inactive",
                Cluster,
                want(),
                vec![c("a").inactive()],
                Fail(Status::NoNodeFound, "1 candidate; 1 is inactive"),
            ),
            (
                "inactive one is skipped even if it is the biggest",
                Root,
                want(),
                vec![c("a").cpu(64, 0.0).mem(99_999).inactive(), c("b")],
                Pick("b"),
            ),
        ]);
    }

    #[test]
    fn every_filter() {
        check(vec![
            ("virtualization picks the one that has it", Root, want(),
             vec![c("a").cpu(64, 0.0).virt(&["unikernel"]), c("b")], Pick("b")),
            ("container counts as docker on both sides", Root, want().virt("container"),
             vec![c("a").virt(&["container"])], Pick("a")),
            ("virtualization missing everywhere", Root, want().virt("unikernel"), vec![c("a"), c("b")],
             Fail(Status::NoActiveClusterWithCapacity, "2 candidates; 2 lack virtualization unikernel")),
            ("the brief's example", Root, want().mem(1024),
             vec![c("a").virt(&["unikernel"]), c("b").virt(&[]), c("c").mem(512)],
             Fail(Status::NoActiveClusterWithCapacity,
                  "3 candidates; 2 lack virtualization docker, 1 has 512 MB free < 1024 MB required")),
            ("vcpus is a core count", Root, want().vcpus(4), vec![c("a").cpu(2, 0.0).mem(90_000), c("b").cpu(8, 90.0)],
             Pick("b")),
            ("vcpus missing", Root, want().vcpus(4), vec![c("a").cpu(2, 0.0), c("b").cpu(3, 0.0)],
             Fail(Status::NoActiveClusterWithCapacity, "2 candidates; 2 have at most 3 vCPUs < 4 required")),
            ("memory", Root, want().mem(2048), vec![c("a").cpu(64, 0.0).mem(1024), c("b").mem(2048)], Pick("b")),
            ("memory missing", Root, want().mem(2048), vec![c("a").mem(1024), c("b").mem(2047)],
             Fail(Status::NoActiveClusterWithCapacity, "2 candidates; 2 have at most 2047 MB free < 2048 MB required")),
            ("gpus", Root, want().gpus(1), vec![c("a").cpu(64, 0.0), c("b").gpus(2)], Pick("b")),
            ("gpus missing", Root, want().gpus(1), vec![c("a")],
             Fail(Status::NoActiveClusterWithCapacity, "1 candidate; 1 has 0 GPUs < 1 required")),
            ("csi drivers", Root, want().csi("csi.a").csi("csi.b"),
             vec![c("a").cpu(64, 0.0).csi(&["csi.a"]), c("b").csi(&["csi.b", "csi.a"])], Pick("b")),
            ("csi drivers missing", Root, want().csi("csi.a"), vec![c("a").csi(&["csi.b"])],
             Fail(Status::NoActiveClusterWithCapacity, "1 candidate; 1 lacks CSI driver(s) csi.a")),
        ]);
    }

    #[test]
    fn direct_constraint() {
        check(vec![
            ("root: the named cluster, not the biggest", Root, want().with(direct_cluster("c2")),
             vec![c("c1").cpu(64, 0.0), c("c2")], Pick("c2")),
            ("root: ;-separated list", Root, want().with(direct_cluster("x; c2 ;c3")),
             vec![c("c1").cpu(64, 0.0), c("c2"), c("c3").cpu(8, 0.0)], Pick("c3")),
            ("root: empty value is no filter", Root, want().with(direct_cluster("")),
             vec![c("c1").cpu(64, 0.0), c("c2")], Pick("c1")),
            ("root: node is ignored", Root, want().with(direct_node("w9")), vec![c("c1")], Pick("c1")),
            ("root: matches the name, not the id", Root, want().with(direct_cluster("munich")),
             vec![c("id1").named("munich"), c("munich").named("berlin")], Pick("id1")),
            ("root: target does not exist", Root, want().with(direct_cluster("c9")), vec![c("c1"), c("c2")],
             Fail(Status::TargetClusterNotFound,
                  "direct target cluster c9 not found; 2 candidates; 2 are not the direct target c9")),
            ("root: target inactive", Root, want().with(direct_cluster("c2")), vec![c("c1"), c("c2").inactive()],
             Fail(Status::TargetClusterNotActive,
                  "direct target cluster c2 is not active; 2 candidates; 1 is not the direct target c2, 1 is inactive")),
            ("root: target without capacity", Root, want().mem(8192).with(direct_cluster("c2")),
             vec![c("c1").mem(9000), c("c2")],
             Fail(Status::TargetClusterNoCapacity,
                  "2 candidates; 1 is not the direct target c2, 1 has 4096 MB free < 8192 MB required")),
            ("cluster: the named worker", Cluster, want().with(direct_node("w2")),
             vec![c("id1").named("w1").cpu(64, 0.0), c("id2").named("w2")], Pick("id2")),
            ("cluster: cluster field is ignored", Cluster, want().with(direct_cluster("elsewhere")),
             vec![c("w1")], Pick("w1")),
            ("cluster: node not found", Cluster, want().with(direct_node("w9")), vec![c("w1")],
             Fail(Status::NoNodeFound,
                  "direct target node w9 not found; 1 candidate; 1 is not the direct target w9")),
            ("cluster: node inactive", Cluster, want().with(direct_node("w1")), vec![c("w1").inactive()],
             Fail(Status::NoNodeFound, "direct target node w1 is not active; 1 candidate; 1 is inactive")),
        ]);
    }

    #[test]
    fn clusters_geo_addons_and_latency_constraints() {
        let (m, a, b) = (MUNICH, AUGSBURG, BERLIN);
        check(vec![
            (
                "clusters: only allowed ones",
                Root,
                want().with(allowed(&["c2", "c3"])),
                vec![c("c1").cpu(64, 0.0), c("c2"), c("c3").mem(8192)],
                Pick("c3"),
            ),
            (
                "clusters: none allowed",
                Root,
                want().with(allowed(&["c9"])),
                vec![c("c1")],
                Fail(
                    Status::NoActiveClusterWithCapacity,
                    "1 candidate; 1 is not in the allowed clusters [c9]",
                ),
            ),
            (
                "clusters: ignored at cluster level",
                Cluster,
                want().with(allowed(&["c9"])),
                vec![c("w1")],
                Pick("w1"),
            ),
            (
                "geo: nearby wins over bigger far away",
                Root,
                want().with(geo("48.137,11.575", 100.0)),
                vec![
                    c("berlin").cpu(64, 0.0).at(b.0, b.1),
                    c("augsburg").at(a.0, a.1),
                ],
                Pick("augsburg"),
            ),
            (
                "geo: Augsburg (56 km) is outside 50 km",
                Root,
                want().with(geo("48.137,11.575", 50.0)),
                vec![
                    c("munich").at(m.0, m.1),
                    c("augsburg").cpu(64, 0.0).at(a.0, a.1),
                ],
                Pick("munich"),
            ),
            (
                "geo: all too far",
                Root,
                want().with(geo("48.137,11.575", 50.0)),
                vec![
                    c("augsburg").at(a.0, a.1),
                    c("berlin").at(b.0, b.1),
                    c("nowhere"),
                ],
                Fail(
                    Status::NoActiveClusterWithCapacity,
                    "3 candidates; 1 has no location for the geo constraint, \
                   2 are farther than 50 km from 48.137,11.575 (nearest 56.5 km)",
                ),
            ),
            (
                "geo: one too far",
                Root,
                want().with(geo("48.137,11.575", 50.0)),
                vec![c("berlin").at(b.0, b.1)],
                Fail(
                    Status::NoActiveClusterWithCapacity,
                    "1 candidate; 1 is 504.3 km from 48.137,11.575, farther than 50 km",
                ),
            ),
            (
                "geo: ignored at cluster level",
                Cluster,
                want().with(geo("48.137,11.575", 1.0)),
                vec![c("w1")],
                Pick("w1"),
            ),
            (
                "addons at cluster level",
                Cluster,
                want().with(needs(&["image-builder"])),
                vec![
                    c("w1").cpu(64, 0.0).addons(&["FLOps-learner"]),
                    c("w2").addons(&["FLOps-learner", "image-builder"]),
                ],
                Pick("w2"),
            ),
            (
                "addons at root level",
                Root,
                want().with(needs(&["a1"])).with(needs(&["a2"])),
                vec![c("c1").addons(&["a1"]), c("c2").addons(&["a2", "a1"])],
                Pick("c2"),
            ),
            (
                "addons missing",
                Cluster,
                want().with(needs(&["a1", "a2"])),
                vec![c("w1").addons(&["a1"])],
                Fail(
                    Status::NoQualifiedWorkerFound,
                    "1 candidate; 1 lacks addon(s) a1, a2",
                ),
            ),
            (
                "latency is accepted and not enforced",
                Root,
                want().with(constraint("latency")),
                vec![c("c1")],
                Pick("c1"),
            ),
        ]);
    }

    #[test]
    fn cluster_level_negative_statuses() {
        check(vec![
            ("nobody qualifies", Cluster, want().virt("unikernel"), vec![c("w1"), c("w2").csi(&["x"])],
             Fail(Status::NoQualifiedWorkerFound, "2 candidates; 2 lack virtualization unikernel")),
            ("qualified but full", Cluster, want().mem(8192), vec![c("w1").virt(&["crosvm"]), c("w2")],
             Fail(Status::NoWorkerCapacity,
                  "2 candidates; 1 lacks virtualization docker, 1 has 4096 MB free < 8192 MB required")),
            ("qualified but too few cores", Cluster, want().vcpus(8), vec![c("w1")],
             Fail(Status::NoWorkerCapacity, "1 candidate; 1 has 4 vCPUs < 8 required")),
        ]);
    }

    #[test]
    fn best_fit_is_most_free_cpu_and_memory() {
        check(vec![
            // Upstream would pick "idle" (lowest cpu_percent); it has 1.9 free cores, "big" has 9.6.
            (
                "not the lowest cpu_percent",
                Root,
                want(),
                vec![
                    c("idle").cpu(2, 5.0).mem(2048),
                    c("big").cpu(16, 40.0).mem(16_384),
                ],
                Pick("big"),
            ),
            // Scores: a = 8/8 + 1000/4000 = 1.25, b = 4/8 + 1 = 1.5, c = 1 + 0.75 = 1.75.
            (
                "cpu and memory weigh the same",
                Root,
                want(),
                vec![
                    c("a").cpu(8, 0.0).mem(1000),
                    c("b").cpu(4, 0.0).mem(4000),
                    c("c").cpu(8, 0.0).mem(3000),
                ],
                Pick("c"),
            ),
            (
                "memory decides when cpu is equal",
                Cluster,
                want(),
                vec![c("a").mem(1000), c("b").mem(1001)],
                Pick("b"),
            ),
            (
                "busy cores count as used",
                Root,
                want(),
                vec![c("a").cpu(8, 75.0), c("b").cpu(4, 0.0)],
                Pick("b"),
            ),
            (
                "cpu_percent above 100 or NaN counts as full",
                Root,
                want(),
                vec![
                    c("a").cpu(8, 250.0),
                    c("b").cpu(8, f64::NAN),
                    c("c").cpu(1, 99.0),
                ],
                Pick("c"),
            ),
            (
                "negative cpu_percent counts as idle",
                Root,
                want(),
                vec![c("a").cpu(4, -20.0), c("b").cpu(4, 1.0)],
                Pick("a"),
            ),
        ]);
        let specs = vec![c("a").cpu(8, 0.0).mem(1000), c("b").cpu(4, 0.0).mem(4000)];
        let p = schedule(Root, &want().demand(), &view(&specs)).unwrap();
        assert_eq!((p.id, p.index), ("b", 1));
        assert!((p.score - 1.5).abs() < 1e-12, "{}", p.score);
    }

    #[test]
    fn ties_go_to_the_smallest_id_in_any_order() {
        let specs = vec![c("b"), c("a"), c("c")];
        for rotation in 0..3 {
            let mut s = specs.clone();
            s.rotate_left(rotation);
            let p = schedule(Root, &want().demand(), &view(&s)).unwrap();
            assert_eq!(p.id, "a");
            assert_eq!(p.score, 2.0);
        }
        // All candidates with nothing free: still a deterministic pick.
        let specs = vec![c("z").cpu(4, 100.0).mem(100), c("y").cpu(4, 100.0).mem(100)];
        assert_eq!(
            schedule(Cluster, &want().demand(), &view(&specs))
                .unwrap()
                .id,
            "y"
        );
    }

    #[test]
    fn malformed_constraints_from_unvalidated_jobs() {
        let bad_geo = want().with(Constraint {
            location: Some("north".into()),
            ..geo("", 1.0)
        });
        let e = schedule(Root, &bad_geo.demand(), &view(&[c("c1")])).unwrap_err();
        assert_eq!(e.status, Status::NoActiveClusterWithCapacity);
        assert_eq!(
            e.detail,
            "constraints[0]: geo location \"north\" is not \"lat,long\""
        );
        let no_threshold = want().with(Constraint {
            threshold: None,
            ..geo("1,2", 0.0)
        });
        let e = schedule(Root, &no_threshold.demand(), &view(&[c("c1")])).unwrap_err();
        assert!(e.detail.contains("geo threshold"), "{e}");
        assert_eq!(
            e.to_string(),
            "NoActiveClusterWithCapacity: constraints[0]: geo threshold missing or invalid"
        );
        // A bad geo constraint does not matter at cluster level, where geo is not checked.
        assert_eq!(
            schedule(Cluster, &no_threshold.demand(), &view(&[c("w1")]))
                .unwrap()
                .id,
            "w1"
        );
        // An unknown type (only a stock Oakestra root lets one through) is ignored, like upstream.
        let unknown = want().with(constraint("nearby"));
        let workers = [c("w1")];
        let p = schedule(Cluster, &unknown.demand(), &view(&workers)).unwrap();
        assert_eq!(p.id, "w1");
    }

    #[test]
    fn demand_of_a_job_and_of_a_microservice() {
        let job: Job = serde_json::from_value(json!({
            "job_name": "a.b.c.d", "virtualization": "container", "vcpus": 2, "memory": 512, "vgpus": 1,
            "volumes": [{"volume_id": "v", "csi_driver": "csi.a"}, {"volume_id": "w"}],
            "constraints": [{"type": "direct", "cluster": "c1"}]
        }))
        .unwrap();
        let d = Demand::from_job(&job);
        assert_eq!(
            (d.virtualization, d.vcpus, d.memory_mb, d.vgpus),
            ("docker", 2, 512, 1)
        );
        assert_eq!(d.csi_drivers, ["csi.a"]);
        assert_eq!(d.constraints.len(), 1);

        let sla = crate::sla::validate_sla(&json!({"sla_version": "v2.0", "customerID": "u", "applications": [{
            "application_name": "a", "application_namespace": "b", "microservices": [{
                "microservice_name": "c", "microservice_namespace": "d", "virtualization": "container",
                "code": "img", "memory": 256, "vcpus": 1,
                "volumes": [{"volume_id": "v", "csi_driver": "csi.b"}],
                "constraints": [{"type": "clusters", "allowed": ["c2"]}]}]}]}))
        .unwrap();
        let ms = &sla.applications[0].microservices[0];
        let d = Demand::from_microservice(ms);
        assert_eq!((d.virtualization, d.vcpus, d.memory_mb), ("docker", 1, 256));
        assert_eq!(d.csi_drivers, ["csi.b"]);
        let specs = vec![
            c("c1").csi(&["csi.b"]).cpu(64, 0.0),
            c("c2").csi(&["csi.b"]),
        ];
        assert_eq!(schedule(Root, &d, &view(&specs)).unwrap().id, "c2");
    }

    /// A deterministic pseudo-random sequence (xorshift), to build large snapshots.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn ten_thousand_candidates_match_a_brute_force_reference() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let ids: Vec<String> = (0..10_000).map(|i| format!("w{i:05}")).collect();
        let virt = [strings(&["docker"]), strings(&["unikernel"])];
        let mut specs = Vec::with_capacity(ids.len());
        for _ in 0..ids.len() {
            let r = xorshift(&mut seed);
            specs.push((
                (r % 64) as u32 + 1,
                (r >> 8) as f64 % 100.0,
                (r >> 20) % 65_536,
                r & 0xF != 0,
                (r >> 40) & 3 == 0,
            ));
        }
        let candidates: Vec<Candidate<'_>> = specs
            .iter()
            .zip(&ids)
            .map(|(&(vcpus, cpu, mem, active, uni), id)| Candidate {
                id,
                name: id,
                active,
                vcpus,
                cpu_percent: cpu,
                memory_mb: mem,
                vgpus: 0,
                virtualization: &virt[usize::from(uni)],
                csi_drivers: &[],
                supported_addons: &[],
                location: None,
            })
            .collect();
        let w = want().vcpus(8).mem(4096);
        let got = schedule(Cluster, &w.demand(), &candidates).unwrap();

        // Reference: filter, compute maxima, then score, the obvious way.
        let feasible: Vec<&Candidate<'_>> = candidates
            .iter()
            .filter(|c| {
                c.active && c.virtualization[0] == "docker" && c.vcpus >= 8 && c.memory_mb >= 4096
            })
            .collect();
        assert!(feasible.len() > 1000);
        let free_cpu = |c: &Candidate<'_>| f64::from(c.vcpus) * (1.0 - c.cpu_percent / 100.0);
        let max_cpu = feasible.iter().map(|c| free_cpu(c)).fold(0.0, f64::max);
        let max_mem = feasible
            .iter()
            .map(|c| c.memory_mb as f64)
            .fold(0.0, f64::max);
        let mut scored: Vec<(f64, &str)> = feasible
            .iter()
            .map(|c| (free_cpu(c) / max_cpu + c.memory_mb as f64 / max_mem, c.id))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        assert_eq!(got.id, scored[0].1);
        assert_eq!(got.score, scored[0].0);

        // A direct target at the very end of the snapshot is found.
        let last = ids.last().unwrap().as_str();
        let mut all = candidates.clone();
        all.last_mut().unwrap().active = true;
        all.last_mut().unwrap().virtualization = &virt[0];
        all.last_mut().unwrap().memory_mb = 200;
        let w = want().with(direct_node(last));
        assert_eq!(schedule(Cluster, &w.demand(), &all).unwrap().id, last);
        // And nothing fits: the detail summarises 10,000 rejections in one line.
        let e = schedule(Root, &want().mem(1 << 40).demand(), &all).unwrap_err();
        assert_eq!(e.status, Status::NoActiveClusterWithCapacity);
        assert!(e.detail.starts_with("10000 candidates; "), "{}", e.detail);
        assert!(
            e.detail.contains("MB free < 1099511627776 MB required"),
            "{}",
            e.detail
        );
    }
}
