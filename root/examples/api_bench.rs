//! API benchmark of the root tier (issue 3): three grove-root replicas in this process, on
//! loopback, with fsync on; N concurrent HTTP clients spread over the three replicas (as
//! behind a load balancer) run three phases one after the other — create application,
//! deploy instance, read service — and the throughput and p50/p99/max latency of each phase
//! are printed as a Markdown table.
//!
//! Oakestra's create answers the list of *all* the caller's applications, so its cost grows
//! with how many one user holds: `--users 1` (every client is the Admin, thousands of
//! applications in one list) is the worst case; `--users 64` gives every client its own user.
//!
//! ```text
//! cargo run --release -p grove-root --example api_bench -- --clients 64 --seconds 15 --users 64
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use grove_root::{Listeners, Root, RootConfig};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Replicas of the root tier.
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Users the clients act as (client c is user c mod users; 1: all are the Admin).
    #[arg(long, default_value_t = 1)]
    users: usize,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    CreateApplication,
    DeployInstance,
    ReadService,
}

fn sla(name: &str) -> Value {
    json!({"sla_version":"v2.0","customerID":"Admin","applications":[{"applicationID":"","application_name":name,
        "application_namespace":"bench","application_desc":"benchmark","microservices":[{"microserviceID":"","microservice_name":"web",
        "microservice_namespace":"bench","virtualization":"container","code":"docker.io/library/nginx:latest","memory":100,"vcpus":1,
        "port":"80"}]}]})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut listeners = Vec::new();
    for _ in 0..args.replicas {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        listeners.push(Listeners { raft: bind().await?, api: bind().await?, cluster: bind().await? });
    }
    let peers = listeners.iter().enumerate().map(|(i, l)| format!("{}={}", i + 1, l.raft.local_addr().unwrap())).collect::<Vec<_>>().join(",");
    let mut roots = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let config = RootConfig {
            id: i as u64 + 1,
            data_dir: dir.path().join(format!("r{}", i + 1)),
            raft_listen: l.raft.local_addr()?,
            api_listen: l.api.local_addr()?,
            cluster_listen: l.cluster.local_addr()?,
            peers: peers.clone(),
            // Logins are not measured; cheaper hashing only shortens creating the bench users.
            password_hash_iterations: 10_000,
            ..RootConfig::default()
        };
        roots.push(Root::start(config, l).await?);
    }
    let urls: Vec<String> = roots.iter().map(|r| format!("http://{}", r.api_addr)).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(args.clients).build()?;

    // Ready: a leader, the default admin, a token.
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let r = http.post(format!("{}/api/auth/login", urls[0])).json(&json!({"username":"Admin","password":"Admin"})).send().await;
        if let Ok(r) = r {
            if r.status().is_success() {
                let b: Value = r.json().await?;
                break b["token"].as_str().context("token")?.to_owned();
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the root tier did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One token per user: the Admin's, or users bench-1..N created by the Admin.
    let tokens: Vec<String> = if args.users <= 1 {
        vec![token]
    } else {
        let mut tokens = Vec::new();
        for u in 1..=args.users {
            let name = format!("bench-{u}");
            let r = http
                .post(format!("{}/api/auth/register", urls[0]))
                .bearer_auth(&token)
                .json(&json!({"name": name, "password": "bench", "roles": ["Application_Provider"]}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "registering {name}: {}", r.text().await?);
            let r = http.post(format!("{}/api/auth/login", urls[0])).json(&json!({"username": name, "password": "bench"})).send().await?;
            let b: Value = r.json().await?;
            tokens.push(b["token"].as_str().context("token")?.to_owned());
        }
        tokens
    };
    eprintln!("{} clients as {} user(s)", args.clients, tokens.len());
    // Services created in the first phase; the next phases deploy and read them round-robin.
    // (user index, service id): a client deploys and reads only its own user's services.
    let services: Arc<std::sync::Mutex<Vec<(usize, String)>>> = Arc::default();

    println!("| operation | clients | ops | errors | ops/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let args_clients = args.clients;
    let tokens_len = tokens.len();
    for phase in [Phase::CreateApplication, Phase::DeployInstance, Phase::ReadService] {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..args.clients {
            let (http, token, stop, errors) = (http.clone(), tokens[c % tokens.len()].clone(), stop.clone(), errors.clone());
            let created = services.clone();
            let user = c % tokens.len();
            let known: Vec<String> = services.lock().unwrap().iter().filter(|(u, _)| *u == user).map(|(_, id)| id.clone()).collect();
            let base = urls[c % urls.len()].clone();
            tasks.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let job_id = if known.is_empty() { "" } else { &known[(c / tokens_len + i as usize * (args_clients / tokens_len).max(1)) % known.len()] };
                    let req = match phase {
                        Phase::CreateApplication => http.post(format!("{base}/api/application/")).json(&sla(&format!("c{c}n{i}"))),
                        Phase::DeployInstance => http.post(format!("{base}/api/service/{job_id}/instance")),
                        Phase::ReadService => http.get(format!("{base}/api/service/{job_id}")),
                    };
                    let t0 = Instant::now();
                    let ok = match req.bearer_auth(&token).send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(body) => {
                                if let Phase::CreateApplication = phase {
                                    // The answer lists all the caller's applications (as upstream).
                                    let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
                                    let name = format!("c{c}n{i}");
                                    let app = doc.as_array().and_then(|a| a.iter().find(|app| app["application_name"] == name.as_str()));
                                    if let Some(id) = app.and_then(|app| app["microservices"][0].as_str()) {
                                        created.lock().unwrap().push((user, id.to_owned()));
                                    }
                                }
                                true
                            }
                            Err(_) => false,
                        },
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            eprintln!("{phase:?}: {status}: {}", text.chars().take(200).collect::<String>());
                            false
                        }
                        Err(e) => {
                            eprintln!("{phase:?}: {e}");
                            false
                        }
                    };
                    if ok {
                        h.record(t0.elapsed().as_micros() as u64).unwrap();
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                h
            }));
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Histogram::<u64>::new(3).unwrap();
        for t in tasks {
            all.add(t.await?).unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let log = roots[0].replica.status();
        let (jobs, max_instances, max_history) = roots[0].replica.read_local(|s| {
            let max_i = s.jobs.values().map(|j| j.instances.len()).max().unwrap_or(0);
            let max_h = s.jobs.values().flat_map(|j| j.instances.values()).map(|i| i.history.len()).max().unwrap_or(0);
            (s.jobs.len(), max_i, max_h)
        });
        eprintln!(
            "after {phase:?}: applied index {} (snapshot {:?}); {jobs} services, at most {max_instances} instances each, {max_history} status changes per instance",
            log.applied_index, log.snapshot_index
        );
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {phase:?} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            args.clients,
            all.len(),
            errors.load(Ordering::Relaxed),
            all.len() as f64 / elapsed,
            ms(0.5),
            ms(0.99),
            all.max() as f64 / 1000.0
        );
    }
    for r in roots {
        r.shutdown().await;
    }
    Ok(())
}
