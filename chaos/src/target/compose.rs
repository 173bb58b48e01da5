//! The compose topology: the repository's `docker-compose.ha.yml` (three grove-root replicas
//! behind HAProxy `root-lb`, three grove-cluster replicas behind `cluster-lb`, two grove-worker
//! containers on the host's containerd) as a chaos [`Target`].
//!
//! Each run is its own compose project (`grove-chaos-<pid>`) with free host ports for the
//! balancers and its own containerd namespaces (`grove-chaos-compose-<pid>-wN`). Members are
//! named as in the process topology — `root-1..3`, `cluster-1-1..3` (compose services
//! `cluster-1..3`), `worker-1..2` — and reached by container IP from the host. Faults are
//! Docker's: `docker kill` / `docker start`, `docker pause` / `docker unpause`, and partitions
//! are iptables DROP rules for the peers' addresses inside each member's network namespace
//! (entered with `nsenter`), so the host and the balancers still reach every member.
//! Dropping a [`Compose`] runs `down -v` and removes the containerd namespaces and the
//! workers' log directory. The images (`grove/*:grove-chaos`) stay for the next run; they are
//! rebuilt when missing or older than the binaries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use grove_local::ContainerdNamespaces;
use serde_json::Value;

use super::Target;
use crate::observe::Watched;

/// The tag of the images a compose run uses (built by `scripts/build-images.sh`).
pub const TAG: &str = "grove-chaos";
const IMAGES: [&str; 4] = ["root", "cluster", "worker", "haproxy"];
/// The cluster's name at the root (`GROVE_CLUSTER_NAME`'s default in the compose file).
const CLUSTER_NAME: &str = "edge-1";
/// Ports inside the containers (see `docker-compose.ha.yml`).
const ROOT_API: u16 = 10000;
const ROOT_RAFT: u16 = 10010;
const CLUSTER_API: u16 = 10100;
const CLUSTER_RAFT: u16 = 10110;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run a blocking command without stalling the runtime's other tasks (the trait is
/// synchronous; `docker start` takes up to a second).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn output(cmd: &mut Command) -> anyhow::Result<Output> {
    let what = format!("{cmd:?}");
    blocking(|| cmd.stdin(Stdio::null()).output()).with_context(|| format!("running {what}"))
}

/// Run a command; its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdin(Stdio::null()).output().is_ok_and(|o| o.status.success())
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("docker").args(args))
}

/// `docker-compose` (Debian's, v1) when present, else the `docker compose` plugin.
fn compose_tool() -> Option<Vec<String>> {
    if succeeds("docker-compose", &["version"]) {
        Some(vec!["docker-compose".into()])
    } else if succeeds("docker", &["compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else {
        None
    }
}

/// A port the kernel just handed out on loopback (free for the moment).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One container of the deployment.
#[derive(Debug, Clone)]
struct Member {
    /// The compose service (`root-1`, `cluster-2`, `worker-1`).
    service: String,
    /// `root`, `cluster-1` or `worker`.
    tier: String,
    /// The API port (`/readyz`) and the raft port, for replicas.
    api: Option<u16>,
    raft: Option<u16>,
    /// Known once the deployment is up.
    container: String,
    ip: String,
}

impl Member {
    fn url(&self) -> Option<String> {
        self.api.map(|p| format!("http://{}:{p}", self.ip))
    }
}

/// A running `docker-compose.ha.yml` deployment. Dropping it tears everything down.
pub struct Compose {
    tool: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
    socket: PathBuf,
    /// Worker member name → its containerd namespace.
    worker_namespaces: BTreeMap<String, String>,
    /// Member name → container.
    members: BTreeMap<String, Member>,
    /// The root balancer's URL on the host.
    lb_url: String,
    log_dir: PathBuf,
    paused: BTreeSet<String>,
    /// Members whose network namespace holds partition rules.
    cut: BTreeSet<String>,
    namespaces: Option<ContainerdNamespaces>,
    http: reqwest::Client,
}

impl Compose {
    /// Why this machine cannot run the compose topology, or `None` when it can.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("partitions enter the containers' network namespaces (nsenter + iptables): run as root".into());
        }
        match Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Some(format!("the Docker engine does not answer: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => return Some(format!("no docker command ({e}); install Docker Engine (Debian's docker.io)")),
        }
        if compose_tool().is_none() {
            return Some("neither docker-compose nor `docker compose` works (install Debian's docker-compose)".into());
        }
        if grove_local::containerd_socket().is_none() {
            return Some("no containerd socket on this machine (the workers run instances on the host's containerd)".into());
        }
        for (tool, arg) in [("ctr", "--version"), ("nsenter", "--version"), ("iptables", "--version")] {
            if !succeeds(tool, &[arg]) {
                return Some(format!("the `{tool}` command is missing (containerd, util-linux, iptables)"));
            }
        }
        None
    }

    /// Bring the deployment up: images (built from the binaries in `bin_dir` when missing or
    /// stale), the example image in the workers' namespaces, `up -d`. Not ready yet: see
    /// [`Compose::wait_ready`].
    pub fn start(bin_dir: &Path) -> anyhow::Result<Compose> {
        if let Some(why) = Compose::unavailable() {
            bail!("the compose topology cannot run here: {why}");
        }
        let tool = compose_tool().context("a compose tool")?;
        let socket = grove_local::containerd_socket().context("a containerd socket")?;
        for bin in ["grove-root", "grove-cluster", "grove-worker"] {
            if !bin_dir.join(bin).exists() {
                bail!("{} is missing: build it first (cargo build --bins)", bin_dir.join(bin).display());
            }
        }
        build_images(bin_dir)?;

        let pid = std::process::id();
        let project = format!("grove-chaos-{pid}");
        let prefix = format!("grove-chaos-compose-{pid}");
        let log_dir = std::env::temp_dir().join(format!("grove-chaos-compose-{pid}"));
        let (api_port, cluster_port, mqtt_port) = (free_port()?, free_port()?, free_port()?);
        let env: Vec<(String, String)> = [
            ("GROVE_TAG", TAG.to_owned()),
            ("GROVE_ADMIN_PASSWORD", "Admin".to_owned()),
            ("GROVE_CLUSTER_NAME", CLUSTER_NAME.to_owned()),
            ("GROVE_API_PORT", api_port.to_string()),
            ("GROVE_CLUSTER_PORT", cluster_port.to_string()),
            ("GROVE_MQTT_PORT", mqtt_port.to_string()),
            ("GROVE_BIND", "127.0.0.1".to_owned()),
            ("GROVE_CONTAINERD_SOCKET", socket.display().to_string()),
            ("GROVE_NAMESPACE_PREFIX", prefix.clone()),
            ("GROVE_WORKER_LOG_DIR", log_dir.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();

        let mut members = BTreeMap::new();
        let mut add = |name: String, service: String, tier: &str, api: Option<u16>, raft: Option<u16>| {
            members.insert(name, Member { service, tier: tier.to_owned(), api, raft, container: String::new(), ip: String::new() });
        };
        for i in 1..=3 {
            add(format!("root-{i}"), format!("root-{i}"), "root", Some(ROOT_API), Some(ROOT_RAFT));
            add(format!("cluster-1-{i}"), format!("cluster-{i}"), "cluster-1", Some(CLUSTER_API), Some(CLUSTER_RAFT));
        }
        let mut worker_namespaces = BTreeMap::new();
        for i in 1..=2 {
            add(format!("worker-{i}"), format!("worker-{i}"), "worker", None, None);
            worker_namespaces.insert(format!("worker-{i}"), format!("{prefix}-w{i}"));
        }
        let names: Vec<String> = worker_namespaces.values().cloned().collect();
        let mut compose = Compose {
            tool,
            project,
            env,
            socket: socket.clone(),
            worker_namespaces,
            members,
            lb_url: format!("http://127.0.0.1:{api_port}"),
            log_dir,
            paused: BTreeSet::new(),
            cut: BTreeSet::new(),
            // From here on, dropping `compose` cleans up whatever was made.
            namespaces: Some(ContainerdNamespaces { socket, names: names.clone() }),
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?,
        };
        let imported = Command::new(repo_root().join("scripts/example-image.sh")).args(&names).stdin(Stdio::null()).status()?;
        if !imported.success() {
            bail!("scripts/example-image.sh failed");
        }
        eprintln!(
            "grove-chaos: compose project {} (root balancer {}); if this run is interrupted, tear it down with `{} -p {} -f docker-compose.ha.yml down -v`",
            compose.project,
            compose.lb_url,
            compose.tool.join(" "),
            compose.project
        );
        compose.compose(&["up", "-d"]).context("docker-compose up")?;
        compose.refresh()?;
        Ok(compose)
    }

    fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new(&self.tool[0])
            .args(&self.tool[1..])
            .arg("-f")
            .arg(repo_root().join("docker-compose.ha.yml"))
            .args(["-p", &self.project])
            .args(args)
            .envs(self.env.iter().cloned())
            .current_dir(repo_root()))
    }

    fn project_label(&self) -> String {
        format!("label=com.docker.compose.project={}", self.project)
    }

    /// Read every member's container id and address (an address stays as it was while its
    /// container is down).
    fn refresh(&mut self) -> anyhow::Result<()> {
        let ids = docker(&["ps", "-aq", "--filter", &self.project_label()])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            bail!("compose project {} has no containers", self.project);
        }
        let format = r#"{{.Id}} {{index .Config.Labels "com.docker.compose.service"}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"#;
        let mut args = vec!["inspect", "-f", format];
        args.extend(ids);
        for line in docker(&args)?.lines() {
            let mut fields = line.split_whitespace();
            let (Some(id), Some(service)) = (fields.next(), fields.next()) else { continue };
            if let Some(m) = self.members.values_mut().find(|m| m.service == service) {
                m.container = id.to_owned();
                if let Some(ip) = fields.next() {
                    if !m.ip.is_empty() && m.ip != ip {
                        eprintln!("grove-chaos: {service} moved from {} to {ip}", m.ip);
                    }
                    m.ip = ip.to_owned();
                }
            }
        }
        if let Some(m) = self.members.values().find(|m| m.container.is_empty() || m.ip.is_empty()) {
            bail!("no running container (or no address) for service {}", m.service);
        }
        Ok(())
    }

    fn member(&self, name: &str) -> anyhow::Result<&Member> {
        self.members.get(name).with_context(|| format!("no member named {name}"))
    }

    fn container(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.member(name)?.container.clone())
    }

    /// The pids of members' containers on the host (0 for one that is not running), from one
    /// `docker inspect`.
    fn pids(&self, names: &[&String]) -> anyhow::Result<BTreeMap<String, u32>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut args = vec!["inspect".to_owned(), "-f".to_owned(), "{{.State.Pid}}".to_owned()];
        for n in names {
            args.push(self.container(n)?);
        }
        let out = run(Command::new("docker").args(&args))?;
        let pids: Vec<u32> = out.split_whitespace().map(str::parse).collect::<Result<_, _>>().with_context(|| format!("pids of {names:?}: {out:?}"))?;
        if pids.len() != names.len() {
            bail!("pids of {names:?}: {out:?}");
        }
        Ok(names.iter().map(|n| n.to_string()).zip(pids).collect())
    }

    /// Load filter rules into a member's network namespace in one step (`iptables-restore
    /// --noflush`): a partition takes effect at once, not rule by rule.
    fn add_rules(&self, pid: u32, rules: &[String]) -> anyhow::Result<()> {
        use std::io::Write;
        let input = format!("*filter\n{}\nCOMMIT\n", rules.join("\n"));
        let out = blocking(|| -> std::io::Result<Output> {
            let mut child = Command::new("nsenter")
                .arg(format!("--net=/proc/{pid}/ns/net"))
                .args(["iptables-restore", "--noflush"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            child.stdin.take().expect("piped stdin").write_all(input.as_bytes())?;
            child.wait_with_output()
        })
        .context("running nsenter iptables-restore")?;
        if !out.status.success() {
            bail!("iptables-restore in pid {pid}'s network namespace failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Flush INPUT and OUTPUT in a member's network namespace.
    fn flush_rules(&self, pid: u32) -> anyhow::Result<()> {
        for chain in ["INPUT", "OUTPUT"] {
            run(Command::new("nsenter").arg(format!("--net=/proc/{pid}/ns/net")).args(["iptables", "-F", chain]))?;
        }
        Ok(())
    }

    async fn ready(&self, url: &str) -> bool {
        self.http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    }

    /// What is still missing before the deployment is ready, or `None`: every replica ready,
    /// the root balancer ready, and the cluster registered and active at the root with both
    /// workers.
    pub async fn not_ready(&self) -> Option<String> {
        for (name, m) in &self.members {
            if let Some(url) = m.url() {
                if !self.ready(&url).await {
                    return Some(format!("{name} ({url}) is not ready"));
                }
            }
        }
        if !self.ready(&self.lb_url).await {
            return Some("the root balancer is not ready".into());
        }
        let clusters: Option<Value> = match self.http.get(format!("{}/api/clusters/", self.lb_url)).send().await {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        let Some(clusters) = clusters else { return Some("the root does not list its clusters".into()) };
        let Some(doc) = clusters.as_array().into_iter().flatten().find(|d| d["cluster_name"] == CLUSTER_NAME) else {
            return Some(format!("{CLUSTER_NAME} has not registered with the root"));
        };
        if doc["active"] != true {
            return Some(format!("{CLUSTER_NAME} is not active at the root"));
        }
        let workers = self.worker_namespaces.len() as u64;
        let active = doc["active_nodes"].as_u64().unwrap_or(0);
        (active < workers).then(|| format!("{CLUSTER_NAME} reports {active} of its {workers} workers"))
    }

    /// Wait until [`Self::not_ready`] answers `None`, or fail with what is missing and the
    /// tail of the logs of the containers that are not running.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let Some(missing) = self.not_ready().await else { return Ok(started.elapsed()) };
            if started.elapsed() > timeout {
                let mut tails = Vec::new();
                for (name, m) in &self.members {
                    let state = docker(&["inspect", "-f", "{{.State.Status}}", &m.container]).unwrap_or_default();
                    if state.trim() != "running" || missing.starts_with(name.as_str()) {
                        let out = output(Command::new("docker").args(["logs", "--tail", "20", &m.container]));
                        let text = out.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))).unwrap_or_default();
                        tails.push(format!("--- {name} ({}) ---\n{text}", state.trim()));
                    }
                }
                bail!("the compose deployment is not ready after {timeout:?}: {missing}\n{}", tails.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Target for Compose {
    fn topology(&self) -> &'static str {
        "compose"
    }

    fn tiers(&self) -> Vec<String> {
        vec!["root".to_owned(), "cluster-1".to_owned()]
    }

    fn members(&self, tier: &str) -> Vec<String> {
        self.members.iter().filter(|(_, m)| m.tier == tier).map(|(n, _)| n.clone()).collect()
    }

    /// Every root replica by address, and the root balancer: some traffic goes through HAProxy.
    fn root_endpoints(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.members.values().filter(|m| m.tier == "root").filter_map(Member::url).collect();
        urls.push(self.lb_url.clone());
        urls
    }

    fn member_of_endpoint(&self, url: &str) -> Option<String> {
        self.members.iter().find(|(_, m)| m.url().as_deref() == Some(url)).map(|(n, _)| n.clone())
    }

    fn watched(&self) -> Vec<Watched> {
        self.members
            .iter()
            .filter_map(|(name, m)| Some(Watched { tier: m.tier.clone(), member: name.clone(), raft_addr: format!("{}:{}", m.ip, m.raft?) }))
            .collect()
    }

    fn kill(&mut self, member: &str) -> anyhow::Result<()> {
        self.paused.remove(member);
        self.cut.remove(member);
        docker(&["kill", &self.container(member)?]).map(drop)
    }

    fn restart(&mut self, member: &str) -> anyhow::Result<()> {
        docker(&["start", &self.container(member)?])?;
        // A restarted container may in principle get another address.
        self.refresh()
    }

    fn pause(&mut self, member: &str) -> anyhow::Result<()> {
        docker(&["pause", &self.container(member)?])?;
        self.paused.insert(member.to_owned());
        Ok(())
    }

    fn resume(&mut self, member: &str) -> anyhow::Result<()> {
        self.paused.remove(member);
        docker(&["unpause", &self.container(member)?]).map(drop)
    }

    fn partition(&mut self, sides: &[Vec<String>]) -> anyhow::Result<()> {
        // Member → the addresses it must not reach (both directions are cut: each side drops
        // the other's packets in and out).
        let mut drops: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for (i, side) in sides.iter().enumerate() {
            for other in &sides[i + 1..] {
                for a in side {
                    for b in other {
                        drops.entry(a).or_default().push(self.member(b)?.ip.clone());
                        drops.entry(b).or_default().push(self.member(a)?.ip.clone());
                    }
                }
            }
        }
        let pids = self.pids(&drops.keys().copied().collect::<Vec<_>>())?;
        for (member, peers) in &drops {
            let pid = pids[member.as_str()];
            if pid == 0 {
                continue; // not running: nothing to cut
            }
            let rules: Vec<String> = peers.iter().flat_map(|ip| [format!("-A INPUT -s {ip} -j DROP"), format!("-A OUTPUT -d {ip} -j DROP")]).collect();
            self.cut.insert((*member).clone());
            self.add_rules(pid, &rules)?;
        }
        Ok(())
    }

    fn heal(&mut self) -> anyhow::Result<()> {
        let cut = std::mem::take(&mut self.cut);
        let pids = self.pids(&cut.iter().collect::<Vec<_>>())?;
        for pid in pids.into_values() {
            // 0: not running; a container started again since has a fresh namespace anyway.
            if pid != 0 {
                self.flush_rules(pid)?;
            }
        }
        Ok(())
    }

    fn running_tasks(&self, worker: &str) -> Vec<String> {
        let Some(ns) = self.worker_namespaces.get(worker) else { return Vec::new() };
        blocking(|| grove_local::running_tasks(&self.socket, ns))
    }

    fn restore_all(&mut self) -> anyhow::Result<()> {
        self.heal()?;
        for m in std::mem::take(&mut self.paused) {
            docker(&["unpause", &self.container(&m)?])?;
        }
        let stopped: Vec<String> = {
            let mut args = vec!["inspect".to_owned(), "-f".to_owned(), "{{.State.Running}}".to_owned()];
            let names: Vec<&String> = self.members.keys().collect();
            args.extend(self.members.values().map(|m| m.container.clone()));
            let out = run(Command::new("docker").args(&args))?;
            names.into_iter().zip(out.lines()).filter(|(_, running)| running.trim() != "true").map(|(n, _)| n.clone()).collect()
        };
        for m in &stopped {
            docker(&["start", &self.container(m)?])?;
        }
        if !stopped.is_empty() {
            self.refresh()?;
        }
        Ok(())
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        // A paused container cannot be stopped.
        for m in std::mem::take(&mut self.paused) {
            if let Ok(c) = self.container(&m) {
                let _ = docker(&["unpause", &c]);
            }
        }
        if let Err(e) = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]) {
            eprintln!("grove-chaos: compose down: {e:#}");
        }
        // Whatever `down` left (it failed half-way, or the project was never fully up).
        let label = self.project_label();
        let leftovers = |kind: &str| -> Vec<String> {
            let listed = match kind {
                "container" => docker(&["ps", "-aq", "--filter", &label]),
                _ => docker(&[kind, "ls", "-q", "--filter", &label]),
            };
            listed.unwrap_or_default().split_whitespace().map(str::to_owned).collect()
        };
        for (kind, remove) in [("container", ["rm", "-f"]), ("volume", ["volume", "rm"]), ("network", ["network", "rm"])] {
            let left = leftovers(kind);
            if !left.is_empty() {
                eprintln!("grove-chaos: removing the {kind}s `down` left: {left:?}");
                let mut args: Vec<&str> = remove.to_vec();
                args.extend(left.iter().map(String::as_str));
                let _ = docker(&args);
            }
        }
        // Stopping the workers leaves their instances in containerd.
        let names = self.namespaces.as_ref().map(|n| n.names.clone()).unwrap_or_default();
        blocking(|| drop(self.namespaces.take()));
        for ns in &names {
            blocking(|| remove_namespace(&self.socket, ns));
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// Remove a containerd namespace that [`ContainerdNamespaces`] could not: containerd collects
/// snapshots and content in the background, and a namespace holding any cannot be removed.
/// Removes them itself and retries for a while.
fn remove_namespace(socket: &Path, ns: &str) {
    let ctr = |args: &[&str]| -> String {
        let out = Command::new("ctr").arg("-a").arg(socket).args(args).stdin(Stdio::null()).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctr(&["namespaces", "ls", "-q"]).lines().any(|l| l.trim() == ns) {
        if Instant::now() > deadline {
            eprintln!("grove-chaos: containerd namespace {ns} could not be removed (ctr -n {ns} snapshots/content ls)");
            return;
        }
        for key in ctr(&["-n", ns, "snapshots", "ls"]).lines().skip(1).filter_map(|l| l.split_whitespace().next()) {
            ctr(&["-n", ns, "snapshots", "rm", key]);
        }
        for blob in ctr(&["-n", ns, "content", "ls", "-q"]).lines() {
            ctr(&["-n", ns, "content", "rm", blob.trim()]);
        }
        ctr(&["namespaces", "rm", ns]);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Build Grove's images with `scripts/build-images.sh` from the binaries in `bin_dir`, unless
/// every image exists and is newer than the binaries.
fn build_images(bin_dir: &Path) -> anyhow::Result<()> {
    let modified = |bin: &str| std::fs::metadata(bin_dir.join(bin)).and_then(|m| m.modified()).ok();
    let stale: Vec<&str> = IMAGES
        .into_iter()
        .filter(|name| match image_created(&format!("grove/{name}:{TAG}")) {
            None => true,
            // HAProxy comes from Debian's archive, not from a binary of ours.
            Some(_) if *name == "haproxy" => false,
            Some(created) => modified(&format!("grove-{name}")).is_some_and(|b| b > created),
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    eprintln!("grove-chaos: building images {stale:?} (tag {TAG}) from {}", bin_dir.display());
    let status = blocking(|| {
        Command::new(repo_root().join("scripts/build-images.sh"))
            .args(["--only", &stale.join(","), "--bin-dir"])
            .arg(bin_dir)
            .args(["--tag", TAG, "--strict"])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .status()
    })?;
    if !status.success() {
        bail!("scripts/build-images.sh failed ({status})");
    }
    Ok(())
}

/// When a local image was created; `None` when it does not exist. An unreadable date counts
/// as new (no rebuild).
fn image_created(image: &str) -> Option<SystemTime> {
    let out = Command::new("docker").args(["image", "inspect", "-f", "{{.Created}}", image]).stdin(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(parse_utc(String::from_utf8_lossy(&out.stdout).trim()).unwrap_or_else(SystemTime::now))
}

/// `2026-11-28T09:47:12.123456789Z` (Docker's UTC timestamps) as a time.
fn parse_utc(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date.split('-').map(str::parse).collect::<Result<_, _>>().ok()?;
    let time = time.trim_end_matches('Z').split('.').next()?;
    let t: Vec<i64> = time.split(':').map(str::parse).collect::<Result<_, _>>().ok()?;
    let (&[y, m, day], &[h, min, sec]) = (&d[..], &t[..]) else { return None };
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + min * 60 + sec).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_parse() {
        let t = parse_utc("2026-11-28T09:47:12.123456789Z").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_795_859_232);
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(SystemTime::UNIX_EPOCH));
        assert_eq!(parse_utc("yesterday"), None);
    }
}
