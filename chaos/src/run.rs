//! One chaos run, start to verdict: bring up the topology, set up the registers, run the
//! workloads while the nemesis carries out its plan, undo every fault, wait for the system to
//! converge (liveness), read the final state from every replica, check the history and write
//! the report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};

use crate::check::{self, ReplicaView, RunningCopy, Violation};
use crate::client::{Client, Recorder};
use crate::history::{Call, Event, Fault, Op, Outcome};
use crate::nemesis::{self, Family, Nemesis};
use crate::observe::Observer;
use crate::report::{self, RunMeta};
use crate::target::{Compose, Processes, Target};
use crate::workload;

/// The example image the deployment workload runs (built by `scripts/example-image.sh`).
pub const IMAGE: &str = "grove.local/hello:1";
/// The longest election timeout of the tiers (grove-raft's default timing).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(400);
/// Instances of the steady service (never undeployed).
const STEADY_INSTANCES: usize = 2;
/// How often the write probe starts a write.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub duration: Duration,
    pub seed: u64,
    pub families: Vec<Family>,
    pub out: PathBuf,
    pub register_clients: u32,
    pub deployment_clients: u32,
    pub registers: usize,
    /// Where grove-root, grove-cluster and grove-worker are.
    pub bin_dir: PathBuf,
    /// First port of the topology's layout.
    pub base_port: u16,
    /// How long the system may take to converge after the faults stop.
    pub settle_bound: Duration,
    /// The command line that reproduces the run (for the summary).
    pub command_line: String,
}

/// What a run found.
#[derive(Debug)]
pub struct RunResult {
    pub violations: Vec<Violation>,
    pub faults: Vec<Fault>,
    pub ops: usize,
    pub checked_register_ops: usize,
    pub out: PathBuf,
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

fn violation(checker: &str, message: String) -> Violation {
    Violation { checker: checker.into(), message, ops: Vec::new() }
}

/// Run the process topology under chaos.
pub async fn run_processes(cfg: RunConfig) -> anyhow::Result<RunResult> {
    if let Some(why) = grove_local::netns::Net::unavailable() {
        bail!("the process topology is partitioned with network namespaces: {why}");
    }
    let socket = grove_local::containerd_socket().context("the deployment workload needs containerd: no containerd socket on this machine")?;
    let pid = std::process::id();
    let layout = grove_local::Layout {
        base_port: cfg.base_port,
        clusters: 1,
        workers: 2,
        namespace_prefix: format!("grove-chaos-{pid}"),
        network: grove_local::Network::Namespaces { tag: format!("gc{}", pid % 100_000), subnet: 100 + (pid % 100) as u8 },
        ..grove_local::Layout::default()
    };
    let namespaces: Vec<String> = (0..layout.workers).map(|w| layout.worker_namespace(w)).collect();
    let imported = std::process::Command::new(scripts_dir().join("example-image.sh")).args(&namespaces).status()?;
    if !imported.success() {
        bail!("scripts/example-image.sh failed");
    }
    let _containers = grove_local::ContainerdNamespaces { socket: socket.clone(), names: namespaces };
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let dir = cfg.out.join("topology");
    let _ = std::fs::remove_dir_all(&dir);
    let mut topology = grove_local::Topology::new(layout, &dir, &cfg.bin_dir)?;
    topology.start_all()?;
    let ready = topology.wait_ready(Duration::from_secs(120)).await?;
    eprintln!("grove-chaos: topology ready in {ready:.1?}; running {:?} with seed {}", cfg.duration, cfg.seed);
    let target: Box<dyn Target> = Box::new(Processes::new(topology, Some(socket)));
    run_against(cfg, target).await
}

/// Run `docker-compose.ha.yml` under chaos (its images built from the binaries in
/// `cfg.bin_dir` when missing or stale); torn down when the run ends.
pub async fn run_compose(cfg: RunConfig) -> anyhow::Result<RunResult> {
    let compose = Compose::start(&cfg.bin_dir)?;
    let ready = compose.wait_ready(Duration::from_secs(180)).await?;
    eprintln!("grove-chaos: compose deployment ready in {ready:.1?}; running {:?} with seed {}", cfg.duration, cfg.seed);
    run_against(cfg, Box::new(compose)).await
}

/// Run the workloads and the nemesis against a ready target, then check and report.
pub async fn run_against(cfg: RunConfig, target: Box<dyn Target>) -> anyhow::Result<RunResult> {
    let started_at = utc_now();
    let recorder = Recorder::default();
    let endpoints = target.root_endpoints();
    let topology = target.topology();
    let tiers = target.tiers();
    let observer = Observer::new(target.watched(), recorder.clone())?;
    let target = Arc::new(Mutex::new(target));
    let credentials = ("Admin".to_owned(), "Admin".to_owned());
    let token = Arc::new(RwLock::new(String::new()));
    let setup = Client::new(0, Duration::from_secs(5), token.clone(), credentials.clone(), recorder.clone());
    login(&setup, &endpoints, &token).await?;
    let mut registers = workload::setup_registers(&setup, &endpoints, cfg.registers + 1).await?;
    let probe = registers.pop().expect("the probe register");
    let steady_job = workload::setup_steady(&setup, &endpoints, IMAGE, STEADY_INSTANCES).await?;

    let (stop_tx, stop) = watch::channel(false);
    // The observer outlives the clients: liveness waits on what it sees after they stop.
    let (observer_stop_tx, observer_stop) = watch::channel(false);
    let observing = tokio::spawn(observer.clone().run(observer_stop));
    let mut clients = Vec::new();
    for c in 0..cfg.register_clients {
        let client = Client::new(c + 1, Duration::from_secs(3), token.clone(), credentials.clone(), recorder.clone());
        let seed = cfg.seed.wrapping_mul(1000).wrapping_add(u64::from(c));
        clients.push(tokio::spawn(workload::register_client(client, endpoints.clone(), registers.clone(), seed, stop.clone())));
    }
    for c in 0..cfg.deployment_clients {
        let id = 100 + c + 1;
        let client = Client::new(id, Duration::from_secs(3), token.clone(), credentials.clone(), recorder.clone());
        let seed = cfg.seed.wrapping_mul(1000).wrapping_add(u64::from(id));
        clients.push(tokio::spawn(workload::deployment_client(client, endpoints.clone(), IMAGE.into(), seed, stop.clone())));
    }
    let template = Client::new(1_000_000, Duration::from_secs(3), token.clone(), credentials.clone(), recorder.clone());
    clients.push(tokio::spawn(workload::probe_writer(template, endpoints.clone(), probe.clone(), PROBE_EVERY, stop.clone())));
    // Let the workloads get going before the first fault.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let plan = nemesis::plan(cfg.seed, cfg.duration, &cfg.families, &tiers);
    let nemesis = Nemesis { target: target.clone(), observer: observer.clone(), recorder: recorder.clone(), steady_job };
    let (_nemesis_stop_tx, nemesis_stop) = watch::channel(false);
    let mut faults = nemesis.run(plan, nemesis_stop).await;
    target.lock().await.restore_all()?;
    // A little more load after the last heal, then stop the clients.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true)?;
    for c in clients {
        let _ = c.await;
    }

    let mut violations = Vec::new();
    violations.extend(liveness(&cfg, &observer, &target, &setup, &endpoints).await);
    let _ = observer_stop_tx.send(true);
    let _ = observing.await;

    // Final reads of every register through every root replica, as operations of the history.
    let reader = Client::new(9_999, Duration::from_secs(5), token.clone(), credentials.clone(), recorder.clone());
    for r in registers.iter().chain([&probe]) {
        for url in &endpoints {
            let path = format!("/api/application/{}", r.app_id);
            let op = reader
                .invoke(url, Call::Read { key: r.key.clone() }, Method::GET, &path, None, |b| b["application_desc"].as_str().map(str::to_owned))
                .await;
            if op.outcome != Outcome::Ok {
                violations.push(violation("liveness", format!("the final read of {} through {url} failed: {:?}", r.key, op.error)));
            }
        }
    }
    let views = final_views(&setup, &endpoints).await;
    let copies = running_copies(&**target.lock().await);

    let ops = recorder.ops();
    let mut initial = workload::initial_values(&registers);
    initial.extend(workload::initial_values(std::slice::from_ref(&probe)));
    let register_check = check::linearizable::check_registers(&ops, &initial, 20_000_000);
    for key in &register_check.undecided {
        violations.push(violation("linearizability", format!("register {key}: the search exceeded its budget; the history was not decided")));
    }
    violations.extend(register_check.violations);
    violations.extend(check::durability::check_durability(&ops, &views));
    violations.extend(check::safety::check_leaders(&observer.leader_samples()));
    violations.extend(check::safety::check_single_copies(&copies));
    let t = target.lock().await;
    let member_of = |url: &str| t.member_of_endpoint(url);
    violations.extend(check::safety::check_isolated_acks(&ops, &faults, &member_of, ELECTION_TIMEOUT.as_micros() as u64));
    drop(t);

    nemesis::measure_recovery(&mut faults, &ops, &observer);
    let mut events: Vec<Event> = ops.iter().cloned().map(Event::Op).collect();
    events.extend(faults.iter().cloned().map(Event::Fault));
    let meta = RunMeta {
        seed: cfg.seed,
        topology: topology.into(),
        duration_s: cfg.duration.as_secs_f64(),
        nemeses: cfg.families.iter().map(|f| format!("{f:?}").to_lowercase()).collect(),
        clients: cfg.register_clients + cfg.deployment_clients,
        started_at,
        notes: [format!("reproduce: `{}`", cfg.command_line)]
            .into_iter()
            .chain(nemesis::majority_loss_note(&faults, &ops, ELECTION_TIMEOUT.as_micros() as u64))
            .collect(),
    };
    report::write_report(&cfg.out, &meta, &events, &violations)?;
    std::fs::write(cfg.out.join("observations.json"), serde_json::to_vec(&observer.dump())?)?;
    Arc::try_unwrap(target).ok().map(|t| drop(t.into_inner()));
    Ok(RunResult { violations, faults, ops: ops.len(), checked_register_ops: register_check.checked_ops, out: cfg.out })
}

async fn login(client: &Client, endpoints: &[String], token: &Arc<RwLock<String>>) -> anyhow::Result<()> {
    let body = json!({ "username": "Admin", "password": "Admin" });
    for _ in 0..20 {
        for url in endpoints {
            let a = client.request(Method::POST, &format!("{url}/api/auth/login"), Some(&body)).await;
            if let Some(t) = a.body["token"].as_str() {
                *token.write().expect("token lock") = t.to_owned();
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("could not log in as Admin through {endpoints:?}")
}

/// After the faults: one writable leader per tier, every replica of a tier at the same state,
/// every requested instance RUNNING exactly where containerd runs it — each within the bound.
async fn liveness(cfg: &RunConfig, observer: &Observer, target: &Arc<Mutex<Box<dyn Target>>>, client: &Client, endpoints: &[String]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let deadline = Instant::now() + cfg.settle_bound;
    for tier in observer.tiers() {
        while observer.leader(&tier).is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if observer.leader(&tier).is_none() {
            violations.push(violation("liveness", format!("{tier} had no writable leader {:?} after the faults stopped", cfg.settle_bound)));
        }
    }
    // Replicas change state all the time (reports, heartbeats of workers): compare digests at
    // a moment when every replica of a tier has applied the same index.
    for tier in observer.tiers() {
        let mut compared = false;
        while !compared && Instant::now() < deadline {
            let all = observer.digests().await;
            let digests: Vec<(&String, &Value)> = all.iter().filter(|(_, (t, _))| *t == tier).map(|(m, (_, s))| (m, &s["state_digest"])).collect();
            let expected = target.lock().await.members(&tier).len();
            let indexes: BTreeSet<u64> = digests.iter().filter_map(|(_, d)| d["applied_index"].as_u64()).collect();
            if digests.len() == expected && indexes.len() == 1 {
                compared = true;
                let hashes: BTreeSet<&str> = digests.iter().filter_map(|(_, d)| d["hash"].as_str()).collect();
                if hashes.len() != 1 {
                    violations.push(violation("liveness", format!("{tier}: replicas at the same applied index hold different states: {digests:?}")));
                }
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if !compared {
            violations.push(violation("liveness", format!("{tier}: its replicas never reached the same applied index within {:?}", cfg.settle_bound)));
        }
    }
    // Every instance the root holds is RUNNING, and containerd runs exactly those.
    loop {
        let wanted = requested_instances(client, endpoints).await;
        let running: BTreeSet<(String, u32)> = running_copies(&**target.lock().await).into_iter().map(|c| (c.service, c.instance)).collect();
        let last = match wanted {
            Some((all_running, instances)) if all_running && instances == running => break,
            Some((_, instances)) => format!("the root wants {instances:?} RUNNING; containerd runs {running:?}"),
            None => "the root does not answer".to_owned(),
        };
        if Instant::now() >= deadline {
            violations.push(violation("liveness", format!("instances did not converge within {:?}: {last}", cfg.settle_bound)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    violations
}

/// Every instance of every service at the root as (job name, instance number), and whether
/// all of them are RUNNING.
async fn requested_instances(client: &Client, endpoints: &[String]) -> Option<(bool, BTreeSet<(String, u32)>)> {
    for url in endpoints {
        let a = client.request(Method::GET, &format!("{url}/api/services/"), None).await;
        let Some(jobs) = a.body.as_array() else { continue };
        let mut all_running = true;
        let mut set = BTreeSet::new();
        for job in jobs {
            let name = job["job_name"].as_str().unwrap_or_default().to_owned();
            for i in job["instance_list"].as_array().into_iter().flatten() {
                all_running &= i["status"] == "RUNNING";
                set.insert((name.clone(), i["instance_number"].as_u64().unwrap_or(0) as u32));
            }
        }
        return Some((all_running, set));
    }
    None
}

/// What every root replica holds at the end: application names and each service's instances.
async fn final_views(client: &Client, endpoints: &[String]) -> Vec<ReplicaView> {
    let mut views = Vec::new();
    for (r, url) in endpoints.iter().enumerate() {
        let apps = client.request(Method::GET, &format!("{url}/api/applications/"), None).await.body;
        let jobs = client.request(Method::GET, &format!("{url}/api/services/"), None).await.body;
        let mut view = ReplicaView { replica: format!("root-{}", r + 1), ..ReplicaView::default() };
        for a in apps.as_array().into_iter().flatten() {
            view.apps.insert(a["application_name"].as_str().unwrap_or_default().to_owned());
        }
        for j in jobs.as_array().into_iter().flatten() {
            let id = j["_id"]["$oid"].as_str().or(j["_id"].as_str()).unwrap_or_default().to_owned();
            let numbers = j["instance_list"].as_array().into_iter().flatten().filter_map(|i| i["instance_number"].as_u64()).map(|n| n as u32);
            view.instances.insert(id, numbers.collect());
        }
        views.push(view);
    }
    views
}

/// Every Grove instance containerd runs, by worker.
fn running_copies(target: &dyn Target) -> Vec<RunningCopy> {
    let mut copies = Vec::new();
    for worker in target.members("worker") {
        for task in target.running_tasks(&worker) {
            if let Some((job, n)) = task.rsplit_once(".instance.") {
                if let Ok(instance) = n.parse() {
                    copies.push(RunningCopy { service: job.to_owned(), instance, worker: worker.clone() });
                }
            }
        }
    }
    copies
}

/// The wall clock as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The ops of a history by outcome, for a one-line progress message.
pub fn tally(ops: &[Op]) -> BTreeMap<&'static str, usize> {
    let mut t = BTreeMap::new();
    for o in ops {
        let k = match o.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        };
        *t.entry(k).or_default() += 1;
    }
    t
}
