//! grove-local: Grove's whole topology as processes on loopback — three `grove-root` replicas,
//! clusters of three `grove-cluster` replicas, and `grove-worker`s on the machine's containerd —
//! each with its own data directory and log file. The `grove-local` binary (the README's "run"
//! command), the end-to-end tests and the chaos harness all start it through [`Topology`].
//!
//! Ports derive from one base (default 10000), so tests can run a topology beside another:
//!
//! | member | ports (base 10000) |
//! |---|---|
//! | root `r` (0–2) | API base+r (10000–10002), Raft base+10+r, cluster gRPC base+20+r |
//! | cluster `c` (0–1) replica `r` | with `b = base+100·(c+1)`: HTTP b+r (10100–10102, 10200–10202), MQTT b+3+r, Raft b+10+r, gRPC b+20+r |

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

pub mod netns;

/// Where containerd may listen (the same list as grove-worker's).
pub const CONTAINERD_SOCKETS: [&str; 2] = ["/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock"];

/// The first containerd socket that exists.
pub fn containerd_socket() -> Option<PathBuf> {
    CONTAINERD_SOCKETS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The ids of the tasks RUNNING in a containerd namespace (`<job name>.instance.<n>` for
/// Grove's instances), read with `ctr`.
pub fn running_tasks(socket: &Path, namespace: &str) -> Vec<String> {
    let Ok(out) = Command::new("ctr").arg("-a").arg(socket).args(["-n", namespace, "tasks", "ls"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(2) == Some("RUNNING"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Removes containerd namespaces (their tasks, containers and images, then the namespace)
/// when dropped: what a test or a chaos run leaves behind on the machine's containerd.
pub struct ContainerdNamespaces {
    pub socket: PathBuf,
    pub names: Vec<String>,
}

impl Drop for ContainerdNamespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            let ctr = |args: &[&str]| Command::new("ctr").arg("-a").arg(&self.socket).args(["-n", ns]).args(args).output();
            if let Ok(out) = ctr(&["tasks", "ls", "-q"]) {
                for task in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", task]);
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = ctr(&["tasks", "delete", "-f", task]);
                }
            }
            if let Ok(out) = ctr(&["containers", "ls", "-q"]) {
                for c in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = ctr(&["containers", "delete", c]);
                }
            }
            if let Ok(out) = ctr(&["images", "ls", "-q"]) {
                for image in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = ctr(&["images", "rm", image]);
                }
            }
            // containerd removes content and snapshots in the background: retry for a while.
            for _ in 0..50 {
                let out = Command::new("ctr").arg("-a").arg(&self.socket).args(["namespaces", "rm", ns]).output();
                if out.map(|o| o.status.success()).unwrap_or(true) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The shape of a topology.
#[derive(Debug, Clone)]
pub struct Layout {
    pub base_port: u16,
    pub roots: u16,
    pub clusters: u16,
    pub cluster_replicas: u16,
    /// Workers, spread over the clusters in turn (worker `w` attaches to cluster `w % clusters`).
    pub workers: u16,
    /// A cluster whose reports stop this long is lost at the root (`cluster_lost_after_ms`).
    pub cluster_lost_after_ms: u64,
    /// A worker silent this long is lost at its cluster (`worker_liveness_ms`).
    pub worker_liveness_ms: u64,
    /// Worker `w` runs its containers in containerd namespace `<prefix>-w<w+1>`.
    pub namespace_prefix: String,
    /// Where the members listen.
    pub network: Network,
}

/// Where a topology's members listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// All on 127.0.0.1 (the default).
    Loopback,
    /// Each member in its own network namespace on a bridge, at `10.<subnet>.0.<host>`, so
    /// members can be partitioned for real ([`netns::Net`]); needs root. `tag` (≤ 8 letters or
    /// digits) names the namespaces and interfaces.
    Namespaces { tag: String, subnet: u8 },
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            base_port: 10000,
            roots: 3,
            clusters: 2,
            cluster_replicas: 3,
            workers: 2,
            cluster_lost_after_ms: 15_000,
            worker_liveness_ms: 6_000,
            namespace_prefix: "grove-local".into(),
            network: Network::Loopback,
        }
    }
}

impl Layout {
    pub fn root_api(&self, r: u16) -> u16 {
        self.base_port + r
    }
    fn root_raft(&self, r: u16) -> u16 {
        self.base_port + 10 + r
    }
    fn root_cluster_grpc(&self, r: u16) -> u16 {
        self.base_port + 20 + r
    }
    fn cluster_base(&self, c: u16) -> u16 {
        self.base_port + 100 * (c + 1)
    }
    pub fn cluster_api(&self, c: u16, r: u16) -> u16 {
        self.cluster_base(c) + r
    }
    pub fn cluster_mqtt(&self, c: u16, r: u16) -> u16 {
        self.cluster_base(c) + 3 + r
    }
    fn cluster_raft(&self, c: u16, r: u16) -> u16 {
        self.cluster_base(c) + 10 + r
    }
    fn cluster_grpc(&self, c: u16, r: u16) -> u16 {
        self.cluster_base(c) + 20 + r
    }

    /// The last address octet of each member in a namespaced network.
    fn host_number(&self, tier: Tier, i: u16) -> u8 {
        match tier {
            Tier::Root => 10 + i as u8,
            Tier::Cluster(c) => 20 + 10 * c as u8 + i as u8,
            Tier::Worker => 200 + i as u8,
        }
    }

    /// The address member `i` of `tier` listens on.
    pub fn host(&self, tier: Tier, i: u16) -> String {
        match &self.network {
            Network::Loopback => "127.0.0.1".into(),
            Network::Namespaces { subnet, .. } => format!("10.{subnet}.0.{}", self.host_number(tier, i)),
        }
    }

    /// Every root API URL.
    pub fn root_urls(&self) -> Vec<String> {
        (0..self.roots).map(|r| format!("http://{}:{}", self.host(Tier::Root, r), self.root_api(r))).collect()
    }

    /// Every registration/API URL of cluster `c`.
    pub fn cluster_urls(&self, c: u16) -> Vec<String> {
        (0..self.cluster_replicas).map(|r| format!("http://{}:{}", self.host(Tier::Cluster(c), r), self.cluster_api(c, r))).collect()
    }

    /// The raft (gRPC) address of member `i` of a root or cluster tier.
    pub fn raft_addr(&self, tier: Tier, i: u16) -> String {
        let port = match tier {
            Tier::Root => self.root_raft(i),
            Tier::Cluster(c) => self.cluster_raft(c, i),
            Tier::Worker => 0,
        };
        format!("{}:{port}", self.host(tier, i))
    }

    /// The containerd namespace of worker `w` (each worker has its own).
    pub fn worker_namespace(&self, w: u16) -> String {
        format!("{}-w{}", self.namespace_prefix, w + 1)
    }

    pub fn cluster_name(c: u16) -> String {
        format!("cluster-{}", c + 1)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.roots == 0 || self.roots > 9 || self.cluster_replicas == 0 || self.cluster_replicas > 3 {
            bail!("roots must be 1..=9 and cluster replicas 1..=3 (ports are laid out for that)");
        }
        if self.clusters > 8 || self.workers > 50 {
            bail!("at most 8 clusters and 50 workers (addresses are laid out for that)");
        }
        if self.workers > 0 && self.clusters == 0 {
            bail!("workers need at least one cluster");
        }
        let top = u32::from(self.base_port) + 100 * (u32::from(self.clusters) + 1);
        if self.base_port < 1024 || top > 65_000 {
            bail!("base port {} leaves the range 1024..65000 for this layout", self.base_port);
        }
        Ok(())
    }
}

/// Which tier a member belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Root,
    Cluster(u16),
    Worker,
}

/// One process of the topology.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub tier: Tier,
    /// The HTTP URL whose `/readyz` tells the role (roots and clusters).
    pub url: Option<String>,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    /// The network namespace it runs in, when the topology has them.
    pub netns: Option<String>,
    child: Option<Child>,
}

impl Member {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its number within its tier, from 0 (`root-2` → 1, `cluster-1-3` → 2).
    pub fn index(&self) -> u16 {
        self.name.rsplit('-').next().and_then(|n| n.parse::<u16>().ok()).map_or(0, |n| n - 1)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

/// A running (or stopped) local topology.
pub struct Topology {
    pub layout: Layout,
    pub dir: PathBuf,
    pub members: BTreeMap<String, Member>,
    http: reqwest::Client,
    /// The namespaces, with [`Network::Namespaces`]; dropped after the members are stopped.
    pub net: Option<netns::Net>,
}

/// 32 hex digits from the kernel's random source.
fn cluster_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("reading /dev/urandom for the cluster token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Topology {
    /// Plan a topology: binaries from `bin_dir`, data and logs under `dir`. Nothing starts yet.
    pub fn new(layout: Layout, dir: &Path, bin_dir: &Path) -> anyhow::Result<Topology> {
        layout.check()?;
        for bin in ["grove-root", "grove-cluster"].into_iter().chain((layout.workers > 0).then_some("grove-worker")) {
            if !bin_dir.join(bin).exists() {
                bail!("{} is missing: build it first (cargo build --bins)", bin_dir.join(bin).display());
            }
        }
        std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let mut members = BTreeMap::new();
        let mut add = |m: Member| {
            members.insert(m.name.clone(), m);
        };
        let quiet = [("GROVE_LOG".to_owned(), std::env::var("GROVE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))];
        // The root and its cluster tiers authenticate each other with a token fresh for this
        // topology (restarted members keep it: it lives in their environment).
        let with_token = {
            let token = cluster_token()?;
            let mut env = quiet.to_vec();
            env.push(("GROVE_CLUSTER_TOKEN".to_owned(), token));
            env
        };

        let root_peers = (0..layout.roots).map(|r| format!("{}={}:{}", r + 1, layout.host(Tier::Root, r), layout.root_raft(r))).collect::<Vec<_>>().join(",");
        let root_grpc: Vec<String> = (0..layout.roots).map(|r| format!("{}:{}", layout.host(Tier::Root, r), layout.root_cluster_grpc(r))).collect();
        for r in 0..layout.roots {
            let name = format!("root-{}", r + 1);
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, format!("cluster_lost_after_ms = {}\n", layout.cluster_lost_after_ms))?;
            add(Member {
                name: name.clone(),
                tier: Tier::Root,
                url: Some(format!("http://{}:{}", layout.host(Tier::Root, r), layout.root_api(r))),
                program: bin_dir.join("grove-root"),
                args: [
                    "--config".into(),
                    config.display().to_string(),
                    "--id".into(),
                    (r + 1).to_string(),
                    "--data-dir".into(),
                    dir.join(&name).display().to_string(),
                    "--api-listen".into(),
                    format!("{}:{}", layout.host(Tier::Root, r), layout.root_api(r)),
                    "--raft-listen".into(),
                    format!("{}:{}", layout.host(Tier::Root, r), layout.root_raft(r)),
                    "--cluster-listen".into(),
                    format!("{}:{}", layout.host(Tier::Root, r), layout.root_cluster_grpc(r)),
                    "--peers".into(),
                    root_peers.clone(),
                ]
                .into(),
                env: with_token.clone(),
                log: dir.join("logs").join(format!("{name}.log")),
                netns: None,
                child: None,
            });
        }
        for c in 0..layout.clusters {
            let peers = (0..layout.cluster_replicas).map(|r| format!("{}={}:{}", r + 1, layout.host(Tier::Cluster(c), r), layout.cluster_raft(c, r))).collect::<Vec<_>>().join(",");
            for r in 0..layout.cluster_replicas {
                let name = format!("{}-{}", Layout::cluster_name(c), r + 1);
                add(Member {
                    name: name.clone(),
                    tier: Tier::Cluster(c),
                    url: Some(format!("http://{}:{}", layout.host(Tier::Cluster(c), r), layout.cluster_api(c, r))),
                    program: bin_dir.join("grove-cluster"),
                    args: [
                        "--id".into(),
                        (r + 1).to_string(),
                        "--cluster-name".into(),
                        Layout::cluster_name(c),
                        "--cluster-location".into(),
                        format!("48.{},11.{},1000", c + 1, c + 5),
                        "--data-dir".into(),
                        dir.join(&name).display().to_string(),
                        "--api-listen".into(),
                        format!("{}:{}", layout.host(Tier::Cluster(c), r), layout.cluster_api(c, r)),
                        "--mqtt-listen".into(),
                        format!("{}:{}", layout.host(Tier::Cluster(c), r), layout.cluster_mqtt(c, r)),
                        "--raft-listen".into(),
                        format!("{}:{}", layout.host(Tier::Cluster(c), r), layout.cluster_raft(c, r)),
                        "--grpc-listen".into(),
                        format!("{}:{}", layout.host(Tier::Cluster(c), r), layout.cluster_grpc(c, r)),
                        "--peers".into(),
                        peers.clone(),
                        "--root-endpoints".into(),
                        root_grpc.join(","),
                        "--worker-liveness-ms".into(),
                        layout.worker_liveness_ms.to_string(),
                    ]
                    .into(),
                    env: with_token.clone(),
                    log: dir.join("logs").join(format!("{name}.log")),
                    netns: None,
                    child: None,
                });
            }
        }
        for w in 0..layout.workers {
            let c = w % layout.clusters;
            let name = format!("worker-{}", w + 1);
            let quote = |v: Vec<String>| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
            let config = dir.join(format!("{name}.toml"));
            let endpoints = quote((0..layout.cluster_replicas).map(|r| format!("{}:{}", layout.host(Tier::Cluster(c), r), layout.cluster_api(c, r))).collect());
            let brokers = quote((0..layout.cluster_replicas).map(|r| format!("{}:{}", layout.host(Tier::Cluster(c), r), layout.cluster_mqtt(c, r))).collect());
            let logs = dir.join(&name).join("instances");
            std::fs::create_dir_all(&logs)?;
            std::fs::write(
                &config,
                format!(
                    "cluster_endpoints = [{endpoints}]\nmqtt_brokers = [{brokers}]\ncontainerd_namespace = {:?}\nlog_directory = {:?}\nhostname = {:?}\n",
                    layout.worker_namespace(w),
                    logs.display().to_string(),
                    format!("local-{name}"),
                ),
            )?;
            add(Member {
                name: name.clone(),
                tier: Tier::Worker,
                url: None,
                program: bin_dir.join("grove-worker"),
                args: vec!["--config".into(), config.display().to_string()],
                env: quiet.to_vec(),
                log: dir.join("logs").join(format!("{name}.log")),
                netns: None,
                child: None,
            });
        }
        let net = match &layout.network {
            Network::Loopback => None,
            Network::Namespaces { tag, subnet } => {
                let hosts = members.values().map(|m| (m.name.clone(), layout.host_number(m.tier, m.index()))).collect();
                let net = netns::Net::create(tag, *subnet, hosts)?;
                for m in members.values_mut() {
                    m.netns = Some(net.namespace(&m.name));
                }
                Some(net)
            }
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
        Ok(Topology { layout, dir, members, http, net })
    }

    fn member(&mut self, name: &str) -> anyhow::Result<&mut Member> {
        self.members.get_mut(name).with_context(|| format!("no member named {name}"))
    }

    /// Start one member (its output appended to its log file), in its own process group so a
    /// terminal's Ctrl-C reaches only `grove-local`, which then stops every member in order.
    pub fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let m = self.member(name)?;
        if m.is_running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log)?;
        let mut command = match &m.netns {
            // `ip netns exec` execs the program, so the child's pid is the member's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&m.program);
                c
            }
            None => Command::new(&m.program),
        };
        let child = command
            .args(&m.args)
            .envs(m.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", m.program.display()))?;
        m.child = Some(child);
        Ok(())
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self.members.keys().cloned().collect();
        for n in names {
            self.start(&n)?;
        }
        Ok(())
    }

    /// Send `signal` to a member.
    pub fn signal(&mut self, name: &str, signal: i32) -> anyhow::Result<()> {
        let m = self.member(name)?;
        let pid = m.pid().with_context(|| format!("{name} is not running"))?;
        // SAFETY: kill(2) with a pid this process spawned and still owns (not yet reaped).
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            bail!("kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGKILL a member and reap it.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let m = self.member(name)?;
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// SIGTERM a member; SIGKILL it if it has not exited within `grace`.
    pub fn stop(&mut self, name: &str, grace: Duration) -> anyhow::Result<()> {
        let m = self.member(name)?;
        let Some(mut child) = m.child.take() else { return Ok(()) };
        // SAFETY: as in `signal`.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Stop everything: workers first, then clusters, then roots.
    pub fn stop_all(&mut self) {
        let mut names: Vec<(Tier, String)> = self.members.values().map(|m| (m.tier, m.name.clone())).collect();
        names.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        for (_, n) in names {
            let _ = self.stop(&n, Duration::from_secs(10));
        }
    }

    /// The names of a tier's members.
    pub fn names(&self, tier: Tier) -> Vec<String> {
        self.members.values().filter(|m| m.tier == tier).map(|m| m.name.clone()).collect()
    }

    /// `/readyz` of a member: (ready, role).
    pub async fn readyz(&self, name: &str) -> Option<(bool, String)> {
        let url = self.members.get(name)?.url.clone()?;
        let r = self.http.get(format!("{url}/readyz")).send().await.ok()?;
        let ok = r.status().is_success();
        let body: Value = r.json().await.ok()?;
        Some((ok, body["role"].as_str().unwrap_or("").to_owned()))
    }

    /// The member of `tier` that says it leads, if exactly one does.
    pub async fn leader(&self, tier: Tier) -> Option<String> {
        let mut leaders = Vec::new();
        for n in self.names(tier) {
            if let Some((_, role)) = self.readyz(&n).await {
                if role == "leader" {
                    leaders.push(n);
                }
            }
        }
        (leaders.len() == 1).then(|| leaders.remove(0))
    }

    /// The root's view of the clusters (`GET /api/clusters/`), from any root replica.
    pub async fn clusters_at_root(&self) -> Option<Vec<Value>> {
        for url in self.layout.root_urls() {
            if let Ok(r) = self.http.get(format!("{url}/api/clusters/")).send().await {
                if r.status().is_success() {
                    return r.json::<Value>().await.ok()?.as_array().cloned();
                }
            }
        }
        None
    }

    /// What is still missing before the topology is ready, or `None` when it is: every root and
    /// cluster replica ready, every cluster registered and active at the root, and every
    /// cluster with its workers reported active.
    pub async fn not_ready(&self) -> Option<String> {
        for (name, m) in &self.members {
            if m.url.is_some() && !matches!(self.readyz(name).await, Some((true, _))) {
                return Some(format!("{name} is not ready"));
            }
        }
        let Some(clusters) = self.clusters_at_root().await else { return Some("the root does not answer".into()) };
        for c in 0..self.layout.clusters {
            let name = Layout::cluster_name(c);
            let workers = (0..self.layout.workers).filter(|w| w % self.layout.clusters == c).count() as u64;
            let Some(doc) = clusters.iter().find(|d| d["cluster_name"] == name.as_str()) else {
                return Some(format!("{name} has not registered with the root"));
            };
            if doc["active"] != true {
                return Some(format!("{name} is not active at the root"));
            }
            if doc["active_nodes"].as_u64().unwrap_or(0) < workers {
                return Some(format!("{name} reports {} of its {workers} workers", doc["active_nodes"].as_u64().unwrap_or(0)));
            }
        }
        None
    }

    /// Wait until [`Self::not_ready`] answers `None`, or fail with what is still missing and
    /// the tail of the logs of members that exited.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let missing = self.not_ready().await;
            let Some(missing) = missing else { return Ok(started.elapsed()) };
            let dead: Vec<String> =
                self.members.values_mut().filter_map(|m| (m.child.is_some() && !m.is_running()).then(|| m.name.clone())).collect();
            if !dead.is_empty() {
                let tails: Vec<String> = dead.iter().map(|n| format!("--- {n} ---\n{}", self.log_tail(n, 20))).collect();
                bail!("{} exited:\n{}", dead.join(", "), tails.join("\n"));
            }
            if started.elapsed() > timeout {
                bail!("not ready after {timeout:?}: {missing}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of a member's log; from its panic message on, when it panicked.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let Some(m) = self.members.get(name) else { return String::new() };
        let text = std::fs::read_to_string(&m.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.iter().position(|l| l.contains("panicked at")).unwrap_or(all.len().saturating_sub(lines));
        all[from..all.len().min(from + lines)].join("\n")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Never leave processes behind (a panicking test, an error on the way up).
        for m in self.members.values_mut() {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_never_collide() {
        let l = Layout::default();
        let mut ports = Vec::new();
        for r in 0..l.roots {
            ports.extend([l.root_api(r), l.root_raft(r), l.root_cluster_grpc(r)]);
        }
        for c in 0..l.clusters {
            for r in 0..l.cluster_replicas {
                ports.extend([l.cluster_api(c, r), l.cluster_mqtt(c, r), l.cluster_raft(c, r), l.cluster_grpc(c, r)]);
            }
        }
        let n = ports.len();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), n, "{ports:?}");
        assert_eq!((l.root_api(0), l.cluster_api(0, 0), l.cluster_api(1, 2)), (10000, 10100, 10202));
        assert!(Layout { base_port: 64_900, ..Layout::default() }.check().is_err());
        assert!(Layout { workers: 1, clusters: 0, ..Layout::default() }.check().is_err());
    }

    #[test]
    fn missing_binaries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = Topology::new(Layout::default(), dir.path(), dir.path()).err().unwrap();
        assert!(e.to_string().contains("grove-root is missing"), "{e}");
    }
}
