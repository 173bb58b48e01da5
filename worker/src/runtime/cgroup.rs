//! Per-instance resource usage from the instance's own cgroup.
//!
//! The containerd runtime places every instance at a known cgroup path
//! (`/grove/<namespace>/<task id>`), so usage is read straight from cgroupfs: on cgroup v2
//! `memory.current`/`memory.stat` and `cpu.stat`; on cgroup v1 the `memory` and `cpuacct`
//! controllers.

use std::path::{Path, PathBuf};

use crate::error::{Result, WorkerError};
use crate::runtime::InstanceUsage;

/// Where cgroupfs is mounted and which version it is.
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    unified: bool,
}

impl CgroupFs {
    /// Detects the machine's cgroup layout under `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        Self::at(Path::new("/sys/fs/cgroup"))
    }

    pub fn at(root: &Path) -> Self {
        Self { root: root.to_owned(), unified: root.join("cgroup.controllers").exists() }
    }

    pub fn is_unified(&self) -> bool {
        self.unified
    }

    /// Usage of the cgroup at `path` (absolute within the hierarchy, e.g. `/grove/ns/id`).
    pub fn usage(&self, path: &str) -> Result<InstanceUsage> {
        let rel = path.trim_start_matches('/');
        if self.unified {
            let dir = self.root.join(rel);
            let current = read_u64(&dir.join("memory.current"))?;
            let stat = read(&dir.join("memory.stat"))?;
            let inactive = stat_field(&stat, "inactive_file").unwrap_or(0);
            let cpu = read(&dir.join("cpu.stat"))?;
            let usec = stat_field(&cpu, "usage_usec").unwrap_or(0);
            Ok(InstanceUsage {
                cpu_time_ns: usec.saturating_mul(1_000),
                memory_bytes: current.saturating_sub(inactive),
            })
        } else {
            let mem = self.root.join("memory").join(rel);
            let usage = read_u64(&mem.join("memory.usage_in_bytes"))?;
            let stat = read(&mem.join("memory.stat"))?;
            let inactive = stat_field(&stat, "total_inactive_file").unwrap_or(0);
            let cpu_ns = read_u64(&self.root.join("cpuacct").join(rel).join("cpuacct.usage"))?;
            Ok(InstanceUsage { cpu_time_ns: cpu_ns, memory_bytes: usage.saturating_sub(inactive) })
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| WorkerError::Io { path: path.to_owned(), source })
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| WorkerError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
    })
}

fn stat_field(stat: &str, name: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// CPU percent (of one core) between two cumulative samples taken `elapsed_ns` apart.
pub fn cpu_percent(prev_ns: u64, now_ns: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    now_ns.saturating_sub(prev_ns) as f64 * 100.0 / elapsed_ns as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_v2_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory").unwrap();
        let cg = dir.path().join("grove/ns/app.instance.0");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("memory.current"), "1048576\n").unwrap();
        std::fs::write(cg.join("memory.stat"), "anon 4096\ninactive_file 4096\n").unwrap();
        std::fs::write(cg.join("cpu.stat"), "usage_usec 2500\nuser_usec 2000\n").unwrap();
        let fs = CgroupFs::at(dir.path());
        assert!(fs.is_unified());
        let u = fs.usage("/grove/ns/app.instance.0").unwrap();
        assert_eq!(u, InstanceUsage { cpu_time_ns: 2_500_000, memory_bytes: 1_044_480 });
    }

    #[test]
    fn reads_a_v1_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let mem = dir.path().join("memory/grove/ns/x");
        let cpu = dir.path().join("cpuacct/grove/ns/x");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "8192").unwrap();
        std::fs::write(mem.join("memory.stat"), "cache 0\ntotal_inactive_file 4096\n").unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "123456").unwrap();
        let fs = CgroupFs::at(dir.path());
        assert!(!fs.is_unified());
        let u = fs.usage("/grove/ns/x").unwrap();
        assert_eq!(u, InstanceUsage { cpu_time_ns: 123_456, memory_bytes: 4096 });
    }

    #[test]
    fn cpu_percent_of_one_core() {
        assert_eq!(cpu_percent(0, 500_000_000, 1_000_000_000), 50.0);
        assert_eq!(cpu_percent(10, 5, 100), 0.0);
        assert_eq!(cpu_percent(0, 1, 0), 0.0);
    }
}
