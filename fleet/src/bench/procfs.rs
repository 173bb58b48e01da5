//! CPU time and resident memory of a process, from Linux's `/proc`.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat`'s times.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid` in clock ticks, or `None` when the process is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// utime + stime from the text of `/proc/<pid>/stat` (the command may contain spaces and
/// parentheses, so fields are counted after the last `)`).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is [0]; utime (field 14 overall) is [11], stime [12].
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `VmRSS` of `pid` in KiB, or `None` when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&status)
}

pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU use of a process from now on.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Option<CpuMeter> {
        Some(CpuMeter {
            pid,
            ticks: cpu_ticks(pid)?,
            at: Instant::now(),
        })
    }

    /// Percent of one core since [`CpuMeter::start`], and the window's length.
    pub fn percent(&self) -> Option<(f64, Duration)> {
        let ticks = cpu_ticks(self.pid)?;
        let window = self.at.elapsed();
        if window.is_zero() {
            return Some((0.0, window));
        }
        Some((
            ticks.saturating_sub(self.ticks) as f64 / ticks_per_second() / window.as_secs_f64()
                * 100.0,
            window,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        let stat =
            "1234 (grove (x) y) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(300));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn parses_vmrss() {
        assert_eq!(
            parse_vmrss("Name:\tx\nVmRSS:\t   12345 kB\nThreads: 3\n"),
            Some(12345)
        );
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
    }

    #[test]
    fn measures_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        let meter = CpuMeter::start(me).unwrap();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let (pct, window) = meter.percent().unwrap();
        assert!(window >= Duration::from_millis(100) && x > 0);
        assert!(pct > 10.0, "a busy loop shows as CPU: {pct}");
    }
}
