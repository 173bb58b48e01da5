//! The store benchmark: the same write workload (puts of fresh keys with fixed-size values,
//! from N concurrent clients over gRPC, spread over all three replicas) against a three-replica
//! grove-raft group and a three-member etcd cluster, both on loopback with fsync on, one after
//! the other in the same run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use grove_proto::etcd::kv_client::KvClient;
use grove_proto::etcd::PutRequest;
use grove_raft::kv::{KvCommand, KvStore};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

use super::local::ProcessCluster;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Client concurrencies to measure, comma-separated.
    #[arg(long, default_value = "1,8,32,128", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Measured seconds per concurrency (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Also run etcd (`etcd` from Debian's etcd-server package) side by side.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    etcd: bool,
    /// Working directory for the replicas' data (default: a fresh temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Row {
    system: &'static str,
    concurrency: usize,
    ops: u64,
    errors: u64,
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU the three servers used while measuring, in cores (1.0 = one core busy).
    server_cores: f64,
    /// CPU the benchmark's clients (this process) used, in cores.
    client_cores: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let etcd_bin = which("etcd");
    if args.etcd && etcd_bin.is_none() {
        bail!("etcd not found on PATH: install Debian's etcd-server (scripts/setup.sh does), or pass --etcd false");
    }
    let value = "v".repeat(args.value_size);
    let mut rows = Vec::new();

    // grove-raft: three grove-kv replicas as processes.
    {
        let dir = work.join("grove");
        std::fs::create_dir_all(&dir)?;
        let mut cluster = ProcessCluster::start(3, 23001, &dir, Some(&dir))?;
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let client = cluster.client()?;
        let pids = cluster.pids();
        for &c in &args.concurrency {
            let client = client.clone();
            let value = value.clone();
            let row = measure("grove-raft", c, args.seconds, &pids, move |task, i| {
                let client = client.clone();
                let command = KvCommand::Put { key: format!("bench/{c}/{task}/{i}"), value: value.clone() };
                async move { client.write::<KvStore>(&command).await.map(|_| ()).map_err(|e| e.to_string()) }
            })
            .await;
            eprintln!("{row:?}");
            rows.push(row);
        }
        cluster.stop();
    }

    // etcd: three members as processes.
    if let Some(etcd) = etcd_bin {
        let dir = work.join("etcd");
        std::fs::create_dir_all(&dir)?;
        let mut members = EtcdCluster::start(&etcd, &dir, 24001)?;
        let clients = members.clients()?;
        members.wait_ready(&clients, Duration::from_secs(30)).await?;
        let pids: Vec<u32> = members.children.iter().map(Child::id).collect();
        for &c in &args.concurrency {
            let clients = clients.clone();
            let value = value.clone();
            let row = measure("etcd", c, args.seconds, &pids, move |task, i| {
                let mut client = clients[(task + i as usize) % clients.len()].clone();
                let request = PutRequest { key: format!("bench/{c}/{task}/{i}").into_bytes(), value: value.clone().into_bytes() };
                async move { client.put(request).await.map(|_| ()).map_err(|e| e.to_string()) }
            })
            .await;
            eprintln!("{row:?}");
            rows.push(row);
        }
        members.stop();
    }

    println!("{}", report(&rows, &args));
    Ok(())
}

/// Run `op` from `concurrency` tasks for one second of warm-up and `seconds` measured seconds.
async fn measure<F, Fut>(system: &'static str, concurrency: usize, seconds: u64, servers: &[u32], op: F) -> Row
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let (op, measuring, stop) = (op.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let (mut errors, mut i) = (0u64, 0u64);
            let mut last_error = None;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = op(task, i).await;
                i += 1;
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    match result {
                        Ok(()) => hist.saturating_record(start.elapsed().as_micros() as u64),
                        Err(e) => {
                            errors += 1;
                            last_error = Some(e);
                        }
                    }
                }
            }
            if let Some(e) = last_error {
                tracing::warn!(system, task, errors, "last error: {e}");
            }
            (hist, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let (servers_before, client_before) = (cpu_seconds(servers), cpu_seconds(&[std::process::id()]));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let server_cores = (cpu_seconds(servers) - servers_before) / elapsed;
    let client_cores = (cpu_seconds(&[std::process::id()]) - client_before) / elapsed;
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await.expect("benchmark task");
        total.add(&h).expect("histograms of equal bounds");
        errors += e;
    }
    Row {
        system,
        concurrency,
        ops: total.len(),
        errors,
        throughput: total.len() as f64 / elapsed,
        p50_ms: total.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: total.value_at_quantile(0.99) as f64 / 1000.0,
        server_cores,
        client_cores,
    }
}

/// User and system CPU time of processes so far, in seconds (Linux `/proc/<pid>/stat`; 0 for a
/// process that cannot be read).
fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces) start at state, field 3;
            // utime and stime are fields 14 and 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / ticks
}

fn report(rows: &[Row], args: &BenchArgs) -> String {
    let mut out = format!(
        "Writes of {}-byte values to fresh keys, 3 replicas on loopback, fsync on, {} s per concurrency.\n\n",
        args.value_size, args.seconds
    );
    out += "| system | clients | ops | errors | ops/s | p50 ms | p99 ms | servers' CPU (cores) | server CPU ms per 1,000 writes | client CPU (cores) |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let per_thousand = if r.throughput > 0.0 { r.server_cores * 1e6 / r.throughput } else { 0.0 };
        out += &format!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} |\n",
            r.system, r.concurrency, r.ops, r.errors, r.throughput, r.p50_ms, r.p99_ms, r.server_cores, per_thousand, r.client_cores
        );
    }
    let pairs: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| r.system == "grove-raft")
        .filter_map(|g| rows.iter().find(|e| e.system == "etcd" && e.concurrency == g.concurrency).map(|e| (g, e)))
        .collect();
    if !pairs.is_empty() {
        out += "\n| clients | throughput grove/etcd | p99 grove/etcd |\n|---:|---:|---:|\n";
        for (g, e) in pairs {
            out += &format!("| {} | {:.2} | {:.2} |\n", g.concurrency, g.throughput / e.throughput, g.p99_ms / e.p99_ms);
        }
    }
    out
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

struct EtcdCluster {
    children: Vec<Child>,
    endpoints: Vec<String>,
}

impl EtcdCluster {
    fn start(etcd: &Path, dir: &Path, base_port: u16) -> anyhow::Result<EtcdCluster> {
        let peer = |i: u16| format!("http://127.0.0.1:{}", base_port + 100 + i);
        let client = |i: u16| format!("127.0.0.1:{}", base_port + i);
        let initial = (0..3).map(|i| format!("e{i}={}", peer(i))).collect::<Vec<_>>().join(",");
        let mut children = Vec::new();
        for i in 0..3u16 {
            let log = std::fs::File::create(dir.join(format!("e{i}.log")))?;
            let child = Command::new(etcd)
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("e{i}")))
                .args(["--listen-client-urls", &format!("http://{}", client(i))])
                .args(["--advertise-client-urls", &format!("http://{}", client(i))])
                .args(["--listen-peer-urls", &peer(i), "--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial, "--initial-cluster-token", "grove-bench"])
                .args(["--initial-cluster-state", "new", "--log-level", "error", "--logger", "zap"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting etcd")?;
            children.push(child);
        }
        Ok(EtcdCluster { children, endpoints: (0..3).map(client).collect() })
    }

    fn clients(&self) -> anyhow::Result<Vec<KvClient<Channel>>> {
        self.endpoints
            .iter()
            .map(|e| {
                let channel = Endpoint::from_shared(format!("http://{e}"))?.timeout(Duration::from_secs(5)).tcp_nodelay(true).connect_lazy();
                Ok(KvClient::new(channel))
            })
            .collect()
    }

    async fn wait_ready(&mut self, clients: &[KvClient<Channel>], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ready = true;
            for c in clients {
                let put = PutRequest { key: b"bench/ready".to_vec(), value: b"1".to_vec() };
                ready &= c.clone().put(put).await.is_ok();
            }
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd cluster not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
