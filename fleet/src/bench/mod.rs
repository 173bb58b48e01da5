//! What `grove-bench` measures with, kept here so it is tested: process CPU and resident memory
//! from `/proc`, percentiles, the result of one run per fleet size, its Markdown table and the
//! PNG plot of cost per worker.

mod font;
pub mod plot;
pub mod procfs;

use std::fmt::Write as _;
use std::time::Duration;

/// The `q`-quantile (0–1) of sorted samples, in milliseconds (nearest rank); 0 when empty.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// CPU of a process over a window, as percent of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    pub idle: f64,
    pub deploy: f64,
}

/// Everything one run (one fleet size, one fresh topology) measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Simulated workers, over both clusters.
    pub workers: usize,
    pub clusters: usize,
    /// Instances requested, and how many read RUNNING before the deadline.
    pub deployments: usize,
    pub completed: usize,
    /// From the first `POST …/instance` to the last instance read RUNNING.
    pub wall: Duration,
    /// When each instance was first read RUNNING, from the first `POST …/instance`, sorted.
    pub running_at: Vec<Duration>,
    /// `POST …/instance` → RUNNING read through the root API, sorted.
    pub deploy_latencies: Vec<Duration>,
    /// `GET /api/service/<id>` during the deploy phase, sorted.
    pub read_latencies: Vec<Duration>,
    /// Registration of all workers, and until all had an MQTT session.
    pub registered_in: Duration,
    pub connected_in: Duration,
    /// Root leader and cluster leaders (in cluster order).
    pub root_leader: String,
    pub root_cpu: Cpu,
    pub cluster_leaders: Vec<String>,
    pub cluster_cpu: Vec<Cpu>,
    /// Resident memory (KiB) of every process at the end of the deploy phase, by name; the
    /// load generator's own process is `grove-bench`.
    pub rss_kib: Vec<(String, u64)>,
    /// Resident memory (KiB) of every process at the end of the idle window.
    pub idle_rss_kib: Vec<(String, u64)>,
    /// Length of the idle window (all workers reporting, no deployments).
    pub idle_window: Duration,
}

impl RunResult {
    pub fn deploys_per_sec(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        self.completed as f64 / self.wall.as_secs_f64()
    }

    /// The sustained rate: instances turning RUNNING per second between the 10th and the 90th
    /// percentile of completions, leaving out the pipeline filling at the start and the last
    /// stragglers at the end (the whole-phase rate is [`Self::deploys_per_sec`]).
    pub fn sustained_per_sec(&self) -> f64 {
        let n = self.running_at.len();
        if n < 10 {
            return self.deploys_per_sec();
        }
        let (lo, hi) = (n / 10, n * 9 / 10 - 1);
        let span = self.running_at[hi].saturating_sub(self.running_at[lo]);
        if span.is_zero() {
            return 0.0;
        }
        (hi - lo) as f64 / span.as_secs_f64()
    }

    fn rss_of(&self, name: &str) -> Option<u64> {
        self.rss_kib
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| *r)
    }

    fn max_rss(&self, prefix: &str) -> u64 {
        max_with_prefix(&self.rss_kib, prefix)
    }

    fn max_idle_rss(&self, prefix: &str) -> u64 {
        max_with_prefix(&self.idle_rss_kib, prefix)
    }

    /// Mean CPU (% of a core, idle window) of the cluster leaders per 1,000 workers each leads.
    pub fn cluster_cpu_per_1000(&self) -> f64 {
        if self.cluster_cpu.is_empty() || self.workers == 0 {
            return 0.0;
        }
        let mean =
            self.cluster_cpu.iter().map(|c| c.idle).sum::<f64>() / self.cluster_cpu.len() as f64;
        mean / (self.workers as f64 / self.cluster_cpu.len() as f64 / 1000.0)
    }

    /// Root leader CPU (% of a core, idle window) per 1,000 workers.
    pub fn root_cpu_per_1000(&self) -> f64 {
        if self.workers == 0 {
            return 0.0;
        }
        self.root_cpu.idle / (self.workers as f64 / 1000.0)
    }

    /// Mean resident memory of the cluster leaders per worker each leads, KiB.
    pub fn cluster_rss_per_worker_kib(&self) -> f64 {
        let leaders: Vec<u64> = self
            .cluster_leaders
            .iter()
            .filter_map(|n| self.rss_of(n))
            .collect();
        if leaders.is_empty() || self.workers == 0 {
            return 0.0;
        }
        let mean = leaders.iter().sum::<u64>() as f64 / leaders.len() as f64;
        mean / (self.workers as f64 / leaders.len() as f64)
    }

    /// Resident memory of all root and cluster replicas together, per worker, KiB.
    pub fn tiers_rss_per_worker_kib(&self) -> f64 {
        if self.workers == 0 {
            return 0.0;
        }
        let total: u64 = self
            .rss_kib
            .iter()
            .filter(|(n, _)| n.starts_with("root-") || n.starts_with("cluster-"))
            .map(|(_, r)| *r)
            .sum();
        total as f64 / self.workers as f64
    }
}

fn max_with_prefix(rss: &[(String, u64)], prefix: &str) -> u64 {
    rss.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, r)| *r).max().unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The results as Markdown: one row per fleet size, then every process's memory.
pub fn markdown(results: &[RunResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workers | deployments (RUNNING) | deploys/s | sustained/s | deploy→RUNNING p50 ms | p99 ms | API read p50 ms | p99 ms (reads) | root leader CPU % idle / deploying | cluster leaders CPU % idle / deploying | root RSS max MiB idle / deploying | cluster RSS max MiB idle / deploying |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|");
    for r in results {
        let clusters: Vec<String> = r
            .cluster_cpu
            .iter()
            .map(|c| format!("{:.1} / {:.1}", c.idle, c.deploy))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} ({}) | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} ({}) | {:.1} / {:.1} | {} | {} / {} | {} / {} |",
            r.workers,
            r.deployments,
            r.completed,
            r.deploys_per_sec(),
            r.sustained_per_sec(),
            quantile_ms(&r.deploy_latencies, 0.5),
            quantile_ms(&r.deploy_latencies, 0.99),
            quantile_ms(&r.read_latencies, 0.5),
            quantile_ms(&r.read_latencies, 0.99),
            r.read_latencies.len(),
            r.root_cpu.idle,
            r.root_cpu.deploy,
            clusters.join("; "),
            mib(r.max_idle_rss("root-")),
            mib(r.max_rss("root-")),
            mib(r.max_idle_rss("cluster-")),
            mib(r.max_rss("cluster-")),
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Cost per worker (idle window: every worker reporting, no deployments):"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| workers | registered in s | connected in s | cluster leader CPU % per 1,000 workers | root leader CPU % per 1,000 workers | cluster leader RSS KiB per worker | all replicas' RSS KiB per worker |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} |",
            r.workers,
            r.registered_in.as_secs_f64(),
            r.connected_in.as_secs_f64(),
            r.cluster_cpu_per_1000(),
            r.root_cpu_per_1000(),
            r.cluster_rss_per_worker_kib(),
            r.tiers_rss_per_worker_kib()
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Resident memory of every process at the end of the deploy phase (MiB; leaders marked *):"
    );
    let _ = writeln!(s);
    let names: Vec<String> = results
        .first()
        .map(|r| r.rss_kib.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    let _ = writeln!(s, "| workers | {} |", names.join(" | "));
    let _ = writeln!(s, "|---:|{}", "---:|".repeat(names.len()));
    for r in results {
        let cells: Vec<String> = names
            .iter()
            .map(|n| {
                let leader = *n == r.root_leader || r.cluster_leaders.contains(n);
                match r.rss_of(n) {
                    Some(k) => format!("{}{}", mib(k), if leader { "*" } else { "" }),
                    None => "-".into(),
                }
            })
            .collect();
        let _ = writeln!(s, "| {} | {} |", r.workers, cells.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(workers: usize, cluster_idle: f64, leader_rss: u64) -> RunResult {
        RunResult {
            workers,
            clusters: 2,
            deployments: 10,
            completed: 10,
            wall: Duration::from_secs(2),
            deploy_latencies: (1..=10).map(Duration::from_millis).collect(),
            read_latencies: vec![Duration::from_millis(3)],
            root_leader: "root-1".into(),
            root_cpu: Cpu {
                idle: 1.0,
                deploy: 50.0,
            },
            cluster_leaders: vec!["cluster-1-1".into(), "cluster-2-2".into()],
            cluster_cpu: vec![
                Cpu {
                    idle: cluster_idle,
                    deploy: 30.0,
                },
                Cpu {
                    idle: cluster_idle,
                    deploy: 30.0,
                },
            ],
            rss_kib: vec![
                ("root-1".into(), 20_480),
                ("cluster-1-1".into(), leader_rss),
                ("cluster-2-2".into(), leader_rss),
                ("grove-bench".into(), 1),
            ],
            ..RunResult::default()
        }
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&v, 0.5), 51.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn costs_are_per_worker_each_leader_serves() {
        let r = run(2000, 10.0, 40_960);
        assert_eq!(r.deploys_per_sec(), 5.0);
        // Each cluster leader serves 1,000 workers at 10 % of a core.
        assert!((r.cluster_cpu_per_1000() - 10.0).abs() < 1e-9);
        assert!((r.root_cpu_per_1000() - 0.5).abs() < 1e-9);
        assert!((r.cluster_rss_per_worker_kib() - 40.96).abs() < 1e-9);
        // The load generator's own memory is not the tiers'.
        assert!((r.tiers_rss_per_worker_kib() - (20_480.0 + 2.0 * 40_960.0) / 2000.0).abs() < 1e-9);
    }

    #[test]
    fn the_sustained_rate_leaves_out_the_first_and_last_tenth() {
        // 100 completions: the first ten trickle in over 1 s, then one every 10 ms, and the
        // last ten straggle over another second.
        let mut at: Vec<Duration> = (0..10).map(|i| Duration::from_millis(100 * i)).collect();
        at.extend((0..80).map(|i| Duration::from_millis(1000 + 10 * i)));
        at.extend((0..10).map(|i| Duration::from_millis(2000 + 100 * i)));
        let r = RunResult { completed: 100, wall: Duration::from_secs(3), running_at: at, ..RunResult::default() };
        // Completions 10 to 89: 79 intervals of 10 ms.
        assert!((r.sustained_per_sec() - 100.0).abs() < 1e-6, "{}", r.sustained_per_sec());
        assert!((r.deploys_per_sec() - 100.0 / 3.0).abs() < 1e-6);
        // Too few samples for percentiles: the whole-phase rate.
        let few = RunResult { completed: 4, wall: Duration::from_secs(2), running_at: vec![Duration::from_secs(1); 4], ..RunResult::default() };
        assert_eq!(few.sustained_per_sec(), 2.0);
    }

    #[test]
    fn the_table_has_a_row_per_run_and_marks_leaders() {
        let md = markdown(&[run(100, 1.0, 30_000), run(1000, 5.0, 35_000)]);
        assert!(md.contains("| 100 | 10 (10) | 5 | 5 | 6 | 10 |"), "{md}");
        assert!(md.contains("| 1000 |"));
        assert!(md.contains("20.0*"), "root leader marked: {md}");
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| 100 |")).count(),
            3,
            "{md}"
        );
    }
}
