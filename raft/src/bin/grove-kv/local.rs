//! Three `grove-kv serve` replicas on loopback as child processes: the README's "run" command
//! and the benchmark's grove-raft cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use grove_raft::client::GroupClient;

#[derive(clap::Args)]
pub struct LocalArgs {
    /// Number of replicas.
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Raft port of replica 1; replica n listens on base_port + n - 1.
    #[arg(long, default_value_t = 21001)]
    base_port: u16,
    /// Parent of the replicas' data directories.
    #[arg(long, default_value = ".grove/kv")]
    data_dir: PathBuf,
}

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let mut cluster = ProcessCluster::start(args.replicas, args.base_port, &args.data_dir, None)?;
    let client = cluster.client()?;
    let ready = cluster.wait_for_leader(Duration::from_secs(30)).await;
    if let Err(e) = ready {
        cluster.stop();
        return Err(e);
    }
    println!("\nA {}-replica grove-raft group is running on loopback:\n", args.replicas);
    print!("{}", super::status_table(&super::statuses(&client).await));
    let endpoints = cluster.endpoints.join(",");
    println!("\nData under {}. Try, in another terminal:", args.data_dir.display());
    println!("  grove-kv put greeting hello --endpoints {endpoints}");
    println!("  grove-kv get greeting --endpoints {endpoints}");
    println!("  grove-kv status --endpoints {endpoints}");
    println!("Kill one replica (its pid is in the log above) and watch a new leader take over.");
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.ok();
    cluster.stop();
    Ok(())
}

/// Replicas running as child processes of this binary.
pub struct ProcessCluster {
    children: Vec<Child>,
    pub endpoints: Vec<String>,
}

impl ProcessCluster {
    /// The replicas' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Start `n` replicas of group `kv`. `log_dir`: where each replica's stderr goes (default:
    /// inherited).
    pub fn start(n: u64, base_port: u16, data_dir: &Path, log_dir: Option<&Path>) -> anyhow::Result<ProcessCluster> {
        if n == 0 {
            bail!("--replicas must be at least 1");
        }
        let exe = std::env::current_exe().context("locating the grove-kv binary")?;
        let endpoints: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", base_port as u64 + i)).collect();
        let peers = endpoints.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let mut cluster = ProcessCluster { children: Vec::new(), endpoints: endpoints.clone() };
        for (i, addr) in endpoints.iter().enumerate() {
            let id = i + 1;
            let mut cmd = Command::new(&exe);
            cmd.arg("serve")
                .args(["--group", "kv", "--id", &id.to_string(), "--listen", addr, "--peers", &peers])
                .arg("--data-dir")
                .arg(data_dir.join(format!("replica-{id}")))
                .stdin(Stdio::null());
            if let Some(dir) = log_dir {
                let log = std::fs::File::create(dir.join(format!("replica-{id}.log")))?;
                cmd.stdout(Stdio::null()).stderr(log);
            }
            let child = cmd.spawn().with_context(|| format!("starting replica {id}"))?;
            tracing::info!(id, pid = child.id(), %addr, "started replica");
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    pub fn client(&self) -> anyhow::Result<GroupClient> {
        Ok(GroupClient::new("kv", &self.endpoints, Duration::from_secs(5))?)
    }

    /// Wait until every replica reports the same leader.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let client = self.client()?;
        let deadline = Instant::now() + timeout;
        loop {
            for (i, child) in self.children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait()? {
                    bail!("replica {} exited during start-up ({status})", i + 1);
                }
            }
            let mut leaders = Vec::new();
            for endpoint in client.endpoints() {
                leaders.push(client.status_of(endpoint).await.ok().and_then(|s| s.leader_id));
            }
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*leader)) {
                    return Ok(*leader);
                }
            }
            if Instant::now() > deadline {
                bail!("no common leader within {timeout:?} (views: {leaders:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM every replica and wait for it to exit (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        for child in &self.children {
            // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &mut self.children {
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.children.clear();
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if !self.children.is_empty() {
            self.stop();
        }
    }
}
