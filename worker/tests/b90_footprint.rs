//! Benchmark, not a test (ignored by default): resident memory and CPU of the worker process
//! itself, idle and with 50 running instances. containerd and its shims are measured
//! separately. Run with
//!
//! ```text
//! cargo nextest run -p grove-worker --release --run-ignored only -E 'test(b90_)' --no-capture
//! ```
//!
//! `GROVE_BENCH_SECS` sets each measurement window (default 60 s); `GROVE_BENCH_WORKER_LOG=<file>`
//! keeps the worker's log.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::containerd::{busybox_image, import_with_ctr, socket_or_skip, NamespaceGuard};
use common::*;

fn clk_tck() -> f64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// VmRSS in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// PIDs of the runc shims serving `namespace`.
fn shim_pids(namespace: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().is_some_and(|a| a.contains("containerd-shim")) && args.windows(2).any(|w| w[0] == "-namespace" && w[1] == namespace) {
            out.push(pid);
        }
    }
    out
}

struct Window {
    cpu_percent: f64,
    rss_avg_mib: f64,
    rss_max_mib: f64,
}

async fn measure(pid: u32, secs: u64) -> Window {
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let mut samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        samples.push(rss_kib(pid) as f64 / 1024.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu_s = (cpu_ticks(pid) - c0) as f64 / clk_tck();
    Window {
        cpu_percent: cpu_s / t0.elapsed().as_secs_f64() * 100.0,
        rss_avg_mib: samples.iter().sum::<f64>() / samples.len() as f64,
        rss_max_mib: samples.iter().cloned().fold(0.0, f64::max),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly (see the module docs)"]
async fn b90_worker_footprint_idle_and_with_50_instances() {
    init_tracing();
    let Some(socket) = socket_or_skip("b90_worker_footprint_idle_and_with_50_instances") else { return };
    let secs: u64 = std::env::var("GROVE_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let ns = format!("grove-bench-{}", std::process::id());
    let _guard = NamespaceGuard { socket: socket.clone(), namespace: ns.clone() };
    import_with_ctr(&socket, &ns, &busybox_image(), "grove.test/busybox:1", dir.path());
    let obs = Observer::connect(broker.port, "bench").await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_grove-worker"))
        .env("GROVE_CLUSTER_ENDPOINTS", cluster.endpoint())
        .env("GROVE_CONTAINERD_SOCKET", &socket)
        .env("GROVE_CONTAINERD_NAMESPACE", &ns)
        .env("GROVE_LOG_DIRECTORY", dir.path())
        .env("GROVE_HOSTNAME", "grove-bench")
        .env("GROVE_STOP_GRACE_PERIOD_MS", "500")
        .env("GROVE_LOG", std::env::var("GROVE_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(match std::env::var_os("GROVE_BENCH_WORKER_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let node = obs
        .wait_for("first report", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;

    tokio::time::sleep(Duration::from_secs(10)).await; // warm-up
    let idle = measure(pid, secs).await;

    let t0 = Instant::now();
    let job = "bench.test.sleep.test";
    for n in 0..50 {
        let mut m = deploy_message(job, n, "grove.test/busybox:1", &["/bin/sleep", "3600"], false);
        m["memory"] = 0.into();
        m["vcpus"] = 0.into();
        obs.publish(&format!("nodes/{node}/control/deploy"), &m).await;
    }
    let res_topic = format!("nodes/{node}/jobs/resources");
    obs.wait_for("a resources report listing 50 instances", Duration::from_secs(300), |seen| {
        seen.iter()
            .find(|m| m.at > t0 && m.topic == res_topic && m.json["services"].as_array().unwrap().len() == 50)
            .map(|_| ())
    })
    .await;
    let deploy_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await; // warm-up
    let busy = measure(pid, secs).await;
    let shims = shim_pids(&ns);
    let shim_rss: f64 = shims.iter().map(|p| rss_kib(*p) as f64 / 1024.0).sum();

    let t1 = Instant::now();
    for n in 0..50 {
        obs.publish(&format!("nodes/{node}/control/delete"), &delete_message(job, n)).await;
    }
    for n in 0..50 {
        obs.wait_status(&node, job, n, "UNDEPLOYED", t1).await;
    }
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success());

    println!("\n| state | worker RSS avg (MiB) | worker RSS max (MiB) | worker CPU (% of one core) |");
    println!("|---|---|---|---|");
    println!("| idle | {:.1} | {:.1} | {:.2} |", idle.rss_avg_mib, idle.rss_max_mib, idle.cpu_percent);
    println!("| 50 instances | {:.1} | {:.1} | {:.2} |", busy.rss_avg_mib, busy.rss_max_mib, busy.cpu_percent);
    println!(
        "\nwindow {secs} s each; 50 deploys reported running after {deploy_secs:.1} s; {} runc shims, {shim_rss:.0} MiB RSS together (containerd's, not the worker's)",
        shims.len()
    );
}
