//! `grove-bench`: the end-to-end benchmark of issue 8. For each fleet size N it starts a fresh
//! local topology (three `grove-root` replicas, two clusters of three `grove-cluster` replicas,
//! as processes from `--bin-dir`), attaches N simulated workers (the grove-fleet load
//! generator, split over the two clusters), and measures:
//!
//! - an idle window (every worker reporting every 2 s, no deployments): leader CPU;
//! - a deploy phase: `--deployments` instances requested with `POST /api/service/<id>/instance`
//!   (`--concurrency` at a time, spread over the root replicas) until every one reads RUNNING
//!   through `GET /api/service/<id>` (one poller per service, every `--poll-ms`): deployments
//!   per second, deploy→RUNNING p50/p99, API read p50/p99 (the pollers' reads), leader CPU;
//! - every process's resident memory (VmRSS) at the end of the idle window and of the deploy phase.
//!
//! It prints a Markdown table and writes a PNG of cost per worker against N.
//!
//! ```text
//! cargo build -p grove-root -p grove-cluster -p grove-fleet
//! target/debug/grove-bench --bin-dir target/debug --workers 100,1000 --deployments 1000
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::StreamExt;
use grove_fleet::bench::procfs::{rss_kib, CpuMeter};
use grove_fleet::bench::{markdown, plot, quantile_ms, Cpu, RunResult};
use grove_fleet::{Fleet, FleetConfig};
use grove_local::{Layout, Tier, Topology};
use serde_json::{json, Value};

#[derive(Parser, Clone)]
#[command(
    name = "grove-bench",
    about = "End-to-end benchmark: 3 root replicas, 2 clusters of 3 replicas, N simulated workers (grove-fleet); deployments/s, latencies, leader CPU, memory"
)]
struct Args {
    /// Directory holding grove-root and grove-cluster (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Fleet sizes, comma-separated; one fresh topology each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    workers: Vec<usize>,
    /// Instances to deploy per fleet size.
    #[arg(long, default_value_t = 1000)]
    deployments: usize,
    /// Services the instances are spread over (one application with this many microservices).
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// `POST …/instance` requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pause between two reads of one service by its poller, ms.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Length of the idle window, s.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Simulated instance start-up time, ms.
    #[arg(long, default_value_t = 0)]
    startup_ms: u64,
    /// Give up on a deploy phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// First port of the topology's layout (see grove-local).
    #[arg(long, default_value_t = 21000)]
    base_port: u16,
    /// Where data directories and logs go (a fresh temporary directory inside it per run,
    /// removed afterwards unless --keep).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep each run's data directories and logs.
    #[arg(long)]
    keep: bool,
    /// The PNG plot of cost per worker.
    #[arg(long, default_value = "grove-bench.png")]
    plot: PathBuf,
    /// Also write the Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the directory of this binary")?
            .to_path_buf(),
    };
    if args.services == 0 || args.deployments == 0 || args.concurrency == 0 {
        bail!("--services, --deployments and --concurrency must be at least 1");
    }
    let mut results = Vec::new();
    for &n in &args.workers {
        if n < 2 {
            bail!("--workers {n}: at least 2 (one per cluster)");
        }
        eprintln!("grove-bench: N = {n} workers");
        let r = run(&args, &bin_dir, n)
            .await
            .with_context(|| format!("the run with {n} workers"))?;
        eprintln!(
            "grove-bench: N = {n}: {}/{} RUNNING, {:.0} deploys/s ({:.0}/s sustained), p50 {:.0} ms, p99 {:.0} ms",
            r.completed,
            r.deployments,
            r.deploys_per_sec(),
            r.sustained_per_sec(),
            quantile_ms(&r.deploy_latencies, 0.5),
            quantile_ms(&r.deploy_latencies, 0.99)
        );
        results.push(r);
    }
    let table = markdown(&results);
    println!("{table}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(&args.plot, plot::cost_png(&results, 1200, 480))
        .with_context(|| format!("writing {}", args.plot.display()))?;
    eprintln!("grove-bench: plot written to {}", args.plot.display());
    Ok(())
}

/// One fleet size on a fresh topology.
async fn run(args: &Args, bin_dir: &std::path::Path, n: usize) -> anyhow::Result<RunResult> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("grove-bench-")
        .tempdir_in(&parent)?;
    let layout = Layout {
        base_port: args.base_port,
        workers: 0,
        namespace_prefix: "grove-bench".into(),
        ..Layout::default()
    };
    let mut topo = Topology::new(layout.clone(), dir.path(), bin_dir)?;
    topo.start_all()?;
    let result = measure(args, &layout, &topo, n).await;
    if result.is_err() || args.keep {
        eprintln!("grove-bench: logs in {}", dir.path().join("logs").display());
    }
    topo.stop_all();
    if args.keep || result.is_err() {
        let _ = dir.keep();
    }
    result
}

async fn measure(
    args: &Args,
    layout: &Layout,
    topo: &Topology,
    n: usize,
) -> anyhow::Result<RunResult> {
    // `wait_ready` needs `&mut`; poll `not_ready` instead so the topology stays shared.
    let ready_by = Instant::now() + Duration::from_secs(120);
    while let Some(missing) = topo.not_ready().await {
        if Instant::now() > ready_by {
            bail!("topology not ready after 120 s: {missing}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let clusters = layout.clusters as usize;

    // Attach the fleet, split over the clusters.
    let started = Instant::now();
    let configs: Vec<FleetConfig> = (0..layout.clusters)
        .map(|c| FleetConfig {
            cluster_endpoints: layout.cluster_urls(c),
            brokers: (0..layout.cluster_replicas)
                .map(|r| ("127.0.0.1".to_owned(), layout.cluster_mqtt(c, r)))
                .collect(),
            workers: n / clusters + usize::from((c as usize) < n % clusters),
            prefix: format!("bench-c{}-", c + 1),
            startup: Duration::from_millis(args.startup_ms),
            register_timeout: Duration::from_secs(600),
            ..FleetConfig::default()
        })
        .collect();
    let fleets: Vec<Fleet> =
        futures::future::try_join_all(configs.iter().cloned().map(Fleet::start)).await?;
    let registered_in = started.elapsed();
    eprintln!(
        "grove-bench: {n} workers registered in {:.1} s",
        registered_in.as_secs_f64()
    );
    let connect_timeout = Duration::from_secs(60 + n as u64 / 20);
    for f in &fleets {
        f.wait_connected(connect_timeout).await?;
    }
    let connected_in = started.elapsed();
    eprintln!(
        "grove-bench: all connected after {:.1} s",
        connected_in.as_secs_f64()
    );
    let active_by = Instant::now() + connect_timeout;
    loop {
        let docs = topo.clusters_at_root().await.unwrap_or_default();
        let active: Vec<u64> = (0..layout.clusters)
            .map(|c| {
                docs.iter()
                    .find(|d| d["cluster_name"] == Layout::cluster_name(c).as_str())
                    .and_then(|d| d["active_nodes"].as_u64())
                    .unwrap_or(0)
            })
            .collect();
        if active
            .iter()
            .zip(&configs)
            .all(|(a, c)| *a as usize >= c.workers)
        {
            break;
        }
        if Instant::now() > active_by {
            bail!(
                "the root sees {active:?} active workers per cluster, expected {:?}",
                configs.iter().map(|c| c.workers).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let roots = layout.root_urls();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let token = login(&http, &roots).await?;
    let services = create_services(&http, &roots[0], &token, args.services).await?;

    let root_leader = topo
        .leader(Tier::Root)
        .await
        .context("no single root leader")?;
    let mut cluster_leaders = Vec::new();
    for c in 0..layout.clusters {
        cluster_leaders.push(
            topo.leader(Tier::Cluster(c))
                .await
                .with_context(|| format!("no single leader in {}", Layout::cluster_name(c)))?,
        );
    }
    let pid = |name: &str| {
        topo.members
            .get(name)
            .and_then(|m| m.pid())
            .with_context(|| format!("{name} is not running"))
    };
    let leaders: Vec<String> = std::iter::once(root_leader.clone())
        .chain(cluster_leaders.iter().cloned())
        .collect();

    // Idle window.
    let meters: Vec<CpuMeter> = leaders
        .iter()
        .map(|l| pid(l).and_then(|p| CpuMeter::start(p).context("reading /proc")))
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle: Vec<f64> = meters
        .iter()
        .map(|m| m.percent().map(|(p, _)| p).unwrap_or(f64::NAN))
        .collect();
    eprintln!("grove-bench: idle CPU of {leaders:?}: {idle:.1?} %");
    let idle_rss: Vec<(String, u64)> = topo.members.iter().filter_map(|(name, m)| Some((name.clone(), m.pid().and_then(rss_kib)?))).collect();
    eprintln!("grove-bench: idle RSS KiB: {idle_rss:?}");

    // Deploy phase.
    let meters: Vec<CpuMeter> = leaders
        .iter()
        .map(|l| pid(l).and_then(|p| CpuMeter::start(p).context("reading /proc")))
        .collect::<Result<_, _>>()?;
    let phase = Phase::default();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    let posters = async {
        futures::stream::iter(0..args.deployments)
            .map(|i| {
                let (http, token, phase) = (&http, &token, &phase);
                let svc = i % services.len();
                let url = format!(
                    "{}/api/service/{}/instance",
                    roots[i % roots.len()],
                    services[svc]
                );
                async move {
                    let at = Instant::now();
                    match post_instance(http, &url, token).await {
                        Ok(number) => {
                            phase
                                .posted
                                .lock()
                                .expect("poisoned")
                                .insert((svc, number), at);
                        }
                        Err(e) => {
                            eprintln!("grove-bench: {e:#}");
                            *phase.post_errors.lock().expect("poisoned") += 1;
                        }
                    }
                }
            })
            .buffer_unordered(args.concurrency)
            .collect::<Vec<()>>()
            .await;
        *phase.posting_done.lock().expect("poisoned") = true;
    };
    let pollers = futures::future::join_all(services.iter().enumerate().map(|(svc, id)| {
        poll(
            &http,
            &roots,
            &token,
            svc,
            id,
            &phase,
            args.poll_ms,
            deadline,
            args.deployments,
        )
    }));
    let _ = tokio::join!(posters, pollers);
    let wall = phase
        .last_running
        .lock()
        .expect("poisoned")
        .map(|t| t.duration_since(t0))
        .unwrap_or_default();
    let deploy: Vec<f64> = meters
        .iter()
        .map(|m| m.percent().map(|(p, _)| p).unwrap_or(f64::NAN))
        .collect();

    let mut rss = Vec::new();
    for (name, m) in &topo.members {
        if let Some(k) = m.pid().and_then(rss_kib) {
            rss.push((name.clone(), k));
        }
    }
    if let Some(k) = rss_kib(std::process::id()) {
        rss.push(("grove-bench".into(), k));
    }

    let posted = phase.posted.lock().expect("poisoned").clone();
    let running = phase.running.lock().expect("poisoned").clone();
    let mut deploy_latencies: Vec<Duration> = posted
        .iter()
        .filter_map(|(k, at)| running.get(k).map(|r| r.saturating_duration_since(*at)))
        .collect();
    deploy_latencies.sort();
    let mut running_at: Vec<Duration> = posted
        .keys()
        .filter_map(|k| running.get(k).map(|r| r.saturating_duration_since(t0)))
        .collect();
    running_at.sort();
    eprintln!(
        "grove-bench: status first read, from POST, p50 / p99 ms: {}",
        stages(&phase, &posted)
    );
    let mut read_latencies = phase.reads.lock().expect("poisoned").clone();
    read_latencies.sort();
    if deploy_latencies.len() < args.deployments {
        let statuses = phase.statuses.lock().expect("poisoned").clone();
        eprintln!(
            "grove-bench: only {} of {} instances read RUNNING within {} s ({} POST errors); last statuses: {statuses:?}",
            deploy_latencies.len(),
            args.deployments,
            args.timeout_secs,
            *phase.post_errors.lock().expect("poisoned")
        );
    }
    for f in &fleets {
        eprintln!("grove-bench: fleet {}: {:?}", f.config().prefix, f.stats());
    }
    for f in fleets {
        f.shutdown(Duration::from_secs(5)).await;
    }
    Ok(RunResult {
        workers: n,
        clusters,
        deployments: args.deployments,
        completed: deploy_latencies.len(),
        wall,
        running_at,
        deploy_latencies,
        read_latencies,
        registered_in,
        connected_in,
        root_leader,
        root_cpu: Cpu {
            idle: idle[0],
            deploy: deploy[0],
        },
        cluster_cpu: (1..leaders.len())
            .map(|i| Cpu {
                idle: idle[i],
                deploy: deploy[i],
            })
            .collect(),
        cluster_leaders,
        rss_kib: rss,
        idle_rss_kib: idle_rss,
        idle_window: Duration::from_secs(args.idle_secs),
    })
}

/// What the deploy phase's tasks share.
#[derive(Default)]
struct Phase {
    /// (service index, instance number) → when its POST was sent.
    posted: Mutex<HashMap<(usize, u64), Instant>>,
    /// (service index, instance number) → when a read first showed it RUNNING.
    running: Mutex<HashMap<(usize, u64), Instant>>,
    last_running: Mutex<Option<Instant>>,
    reads: Mutex<Vec<Duration>>,
    post_errors: Mutex<usize>,
    posting_done: Mutex<bool>,
    /// Count of instances per status in each service's last read (for a failed run).
    statuses: Mutex<HashMap<String, usize>>,
    /// (service index, instance number, status) → when a read first showed that status: where
    /// the time goes between POST and RUNNING.
    first_seen: Mutex<HashMap<(usize, u64, String), Instant>>,
}

#[allow(clippy::too_many_arguments)]
async fn poll(
    http: &reqwest::Client,
    roots: &[String],
    token: &str,
    svc: usize,
    id: &str,
    phase: &Phase,
    poll_ms: u64,
    deadline: Instant,
    total: usize,
) {
    let mut k = svc;
    loop {
        let done = {
            let posted = phase.posted.lock().expect("poisoned").len();
            let errors = *phase.post_errors.lock().expect("poisoned");
            let running = phase.running.lock().expect("poisoned").len();
            *phase.posting_done.lock().expect("poisoned")
                && running >= posted.min(total - errors.min(total))
        };
        if done || Instant::now() > deadline {
            return;
        }
        let url = format!("{}/api/service/{id}", roots[k % roots.len()]);
        k += 1;
        let at = Instant::now();
        let doc: Option<Value> = match http.get(&url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        let now = Instant::now();
        if let Some(doc) = doc {
            phase.reads.lock().expect("poisoned").push(now - at);
            let mut statuses: HashMap<String, usize> = HashMap::new();
            let mut newly = Vec::new();
            for i in doc["instance_list"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let status = i["status"].as_str().unwrap_or("?").to_owned();
                if let Some(n) = i["instance_number"].as_u64() {
                    phase
                        .first_seen
                        .lock()
                        .expect("poisoned")
                        .entry((svc, n, status.clone()))
                        .or_insert(now);
                }
                if let (Some(n), "RUNNING") = (i["instance_number"].as_u64(), status.as_str()) {
                    newly.push((svc, n));
                }
                *statuses.entry(status).or_default() += 1;
            }
            {
                let mut running = phase.running.lock().expect("poisoned");
                let before = running.len();
                for key in newly {
                    running.entry(key).or_insert(now);
                }
                if running.len() > before {
                    *phase.last_running.lock().expect("poisoned") = Some(now);
                }
            }
            let mut all = phase.statuses.lock().expect("poisoned");
            for (s, c) in statuses {
                *all.entry(format!("svc{svc}:{s}")).or_default() = c;
            }
        }
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
    }
}

/// For each status an instance went through: p50 and p99 of its first read after the POST.
fn stages(phase: &Phase, posted: &HashMap<(usize, u64), Instant>) -> String {
    let mut by_status: HashMap<String, Vec<Duration>> = HashMap::new();
    for ((svc, n, status), at) in phase.first_seen.lock().expect("poisoned").iter() {
        if let Some(t0) = posted.get(&(*svc, *n)) {
            by_status
                .entry(status.clone())
                .or_default()
                .push(at.saturating_duration_since(*t0));
        }
    }
    let mut rows: Vec<(String, f64, f64, usize)> = by_status
        .into_iter()
        .map(|(s, mut v)| {
            v.sort();
            (s, quantile_ms(&v, 0.5), quantile_ms(&v, 0.99), v.len())
        })
        .collect();
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    rows.iter()
        .map(|(s, p50, p99, n)| format!("{s} {p50:.0} / {p99:.0} (n={n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn post_instance(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<u64> {
    let r = http
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = r.status();
    let body: Value = r
        .json()
        .await
        .with_context(|| format!("POST {url}: unreadable answer"))?;
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}: {body}");
    }
    body["instance_number"]
        .as_u64()
        .with_context(|| format!("POST {url}: no instance_number in {body}"))
}

/// Log in as the bootstrap admin, at any root replica, retrying for a minute: password hashing
/// in a debug build on a loaded machine can take longer than one call's timeout.
async fn login(http: &reqwest::Client, roots: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut k = 0usize;
    loop {
        let root = &roots[k % roots.len()];
        k += 1;
        let attempt = async {
            let r: Value = http
                .post(format!("{root}/api/auth/login"))
                .timeout(Duration::from_secs(30))
                .json(&json!({"username": "Admin", "password": "Admin"}))
                .send()
                .await
                .with_context(|| format!("login at {root}"))?
                .json()
                .await
                .with_context(|| format!("login at {root}: unreadable answer"))?;
            r["token"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("login at {root} answered no token: {r}"))
        };
        match attempt.await {
            Ok(token) => return Ok(token),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(e) => eprintln!("grove-bench: {e:#}; retrying"),
        }
    }
}

/// One application with `count` microservices; returns their ids.
async fn create_services(
    http: &reqwest::Client,
    root: &str,
    token: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let microservices: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "microserviceID": "", "microservice_name": format!("svc{i}"), "microservice_namespace": "bench",
                "virtualization": "container", "code": "docker.io/library/busybox:latest", "cmd": ["sleep", "3600"],
                "memory": 16, "vcpus": 1, "vgpus": 0, "vtpus": 0, "bandwidth_in": 0, "bandwidth_out": 0, "storage": 0,
                "state": "", "port": "", "added_files": [], "constraints": [], "connectivity": []
            })
        })
        .collect();
    let sla = json!({
        "sla_version": "v2.0", "customerID": "Admin",
        "applications": [{
            "applicationID": "", "application_name": "bench", "application_namespace": "bench",
            "application_desc": "grove-bench load", "microservices": microservices
        }]
    });
    let r = http
        .post(format!("{root}/api/application/"))
        .bearer_auth(token)
        .json(&sla)
        .send()
        .await
        .context("creating the application")?;
    let status = r.status();
    let apps: Value = r
        .json()
        .await
        .context("creating the application: unreadable answer")?;
    if !status.is_success() {
        bail!("creating the application: HTTP {status}: {apps}");
    }
    let app = apps
        .as_array()
        .and_then(|a| a.iter().find(|a| a["application_name"] == "bench"))
        .with_context(|| format!("no application \"bench\" in {apps}"))?;
    let ids: Vec<String> = app["microservices"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if ids.len() != count {
        bail!(
            "the application has {} services, expected {count}: {app}",
            ids.len()
        );
    }
    Ok(ids)
}
