//! Benchmark, not a test (ignored by default): worker fan-in on one three-replica cluster tier.
//!
//! `GROVE_BENCH_WORKERS=5000 cargo nextest run -p grove-cluster --run-ignored only b90`
//! (or `cargo test -p grove-cluster --test b90_fanin -- --ignored --nocapture`).
//!
//! Three `grove-cluster` processes with default timings (6 s liveness); N simulated workers in
//! this process, each with its own MQTT connection (spread over the three brokers), registering
//! over HTTP and then reporting `information` and `jobs/resources` every 2 s like a Node Engine.
//! Measures the CPU of each replica process over a steady window (from /proc), then silences
//! workers that hold instances and measures the time until each instance is deployed on
//! another worker (detection + re-placement + delivery), p50/p99.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{deploy, node_json, ProcCluster};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

const PERIOD: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Sim {
    /// Instances each worker runs.
    running: Mutex<BTreeMap<String, Vec<(String, u32)>>>,
    /// When each (job, instance) was last deployed, and on which worker.
    deployed: Mutex<BTreeMap<(String, u32), (String, Instant)>>,
    /// Workers told to go silent.
    silent: Mutex<std::collections::BTreeSet<String>>,
    /// When each silenced worker sent its last report (its death, as the cluster can see it).
    died: Mutex<BTreeMap<String, Instant>>,
    connected: AtomicUsize,
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime is field 14 overall, i.e. [11]; stime [12].
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn worker(id: String, host: String, broker: (String, u16), sim: Arc<Sim>) {
    let mut opts = MqttOptions::new(format!("{id}-ne"), broker.0, broker.1);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    // Spread the reports over the period.
    let offset = Duration::from_millis(rand_ms(&id));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, PERIOD);
    let mut info = node_json(&host);
    info["id"] = json!(id);
    let info = info.to_string();
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            polled = eventloop.poll() => match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    sim.connected.fetch_add(1, Ordering::Relaxed);
                    for t in ["deploy", "delete"] {
                        let _ = client.try_subscribe(format!("nodes/{id}/control/{t}"), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    let key = (v["job_name"].as_str().unwrap_or_default().to_owned(), v["instance_number"].as_u64().unwrap_or(0) as u32);
                    let deploy = p.topic.ends_with("/deploy");
                    {
                        let mut r = sim.running.lock().unwrap();
                        let list = r.entry(id.clone()).or_default();
                        list.retain(|k| *k != key);
                        if deploy {
                            list.push(key.clone());
                            sim.deployed.lock().unwrap().insert(key.clone(), (id.clone(), Instant::now()));
                        }
                    }
                    let status = if deploy { "CREATED" } else { "UNDEPLOYED" };
                    let body = json!({"sname": key.0, "status": status, "status_detail": "", "instance": key.1, "publicip": "127.0.0.1"});
                    let _ = client.try_publish(format!("nodes/{id}/job"), QoS::AtLeastOnce, false, body.to_string());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            },
            _ = tick.tick() => {
                if sim.silent.lock().unwrap().contains(&id) {
                    sim.died.lock().unwrap().insert(id.clone(), last_report);
                    let _ = client.try_disconnect();
                    return;
                }
                last_report = Instant::now();
                let _ = client.try_publish(format!("nodes/{id}/information"), QoS::AtLeastOnce, false, info.clone());
                let services: Vec<Value> = sim.running.lock().unwrap().get(&id).cloned().unwrap_or_default().iter()
                    .map(|(j, n)| json!({"cpu_percent": "0.10", "memory_percent": "0.5000", "disk": "0", "logs": "", "job_name": j, "virtualization": "docker", "instance": n}))
                    .collect();
                let _ = client.try_publish(format!("nodes/{id}/jobs/resources"), QoS::AtLeastOnce, false, json!({"services": services}).to_string());
            }
        }
    }
}

fn rand_ms(seed: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(seed.as_bytes());
    h.finish() % PERIOD.as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly (see the file's documentation)"]
async fn worker_fan_in() {
    let n: usize = std::env::var("GROVE_BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let kills: usize = std::env::var("GROVE_BENCH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let pc = ProcCluster::start_with(3, "mqtt_max_connections = 20000\nmax_body_bytes = 8388608\n").await;
    let leader = pc.leader().await;
    let apis: Vec<String> = pc.running().iter().map(|id| pc.api(*id)).collect();
    let brokers = pc.brokers();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(64).build().unwrap();
    let sim = Arc::new(Sim::default());

    // Register (64 at a time); each worker connects as soon as it has its id.
    let started = Instant::now();
    {
        use futures::StreamExt;
        futures::stream::iter(0..n)
            .map(|i| {
                let http = http.clone();
                let api = apis[i % apis.len()].clone();
                let broker = brokers[i % brokers.len()].clone();
                let sim = sim.clone();
                async move {
                    loop {
                        if let Ok(r) = http.post(format!("{api}/api/node/register")).json(&node_json(&format!("sim-{i}"))).send().await {
                            if let Ok(v) = r.json::<Value>().await {
                                if let Some(id) = v["id"].as_str() {
                                    tokio::spawn(worker(id.to_owned(), format!("sim-{i}"), broker, sim));
                                    return;
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
    }
    let registered_in = started.elapsed();
    eprintln!("BENCH registered {n} workers in {:.1}s", registered_in.as_secs_f64());
    while sim.connected.load(Ordering::Relaxed) < n {
        if started.elapsed().as_secs() % 10 == 0 {
            eprintln!("BENCH {} connected", sim.connected.load(Ordering::Relaxed));
        }
        assert!(started.elapsed() < Duration::from_secs(600), "only {} of {n} connected", sim.connected.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connected_in = started.elapsed();
    eprintln!("BENCH all {n} connected after {:.1}s", connected_in.as_secs_f64());

    // Steady state: CPU per replica over 20 s, after 10 s to settle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pids: BTreeMap<u64, u32> = pc.running().iter().filter_map(|id| pc.pid(*id).map(|p| (*id, p))).collect();
    let before: BTreeMap<u64, u64> = pids.iter().map(|(id, p)| (*id, cpu_ticks(*p))).collect();
    let window = Duration::from_secs(20);
    tokio::time::sleep(window).await;
    let cpu: BTreeMap<u64, f64> = pids.iter().map(|(id, p)| (*id, (cpu_ticks(*p) - before[id]) as f64 / tck / window.as_secs_f64() * 100.0)).collect();
    let status: Value = http.get(format!("{}/api/cluster/status", pc.api(leader))).send().await.unwrap().json().await.unwrap();

    // Re-placement: one instance each on `kills` workers, then silence those workers.
    let grpc: Vec<String> = pc.running().iter().map(|id| pc.grpc(*id)).collect();
    for k in 0..kills as u32 {
        deploy(&grpc, "65f0000000000000000000bb", "bench.ns.svc.ns", k).await;
    }
    let all_placed = Instant::now();
    let holders: BTreeMap<(String, u32), String> = loop {
        let d = sim.deployed.lock().unwrap().clone();
        if d.len() == kills {
            break d.into_iter().map(|(k, (w, _))| (k, w)).collect();
        }
        assert!(all_placed.elapsed() < Duration::from_secs(120), "only {} of {kills} instances deployed", d.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    sim.silent.lock().unwrap().extend(holders.values().cloned());
    let mut times: Vec<Duration> = loop {
        let d = sim.deployed.lock().unwrap().clone();
        let died = sim.died.lock().unwrap().clone();
        let moved: Vec<Duration> = holders
            .iter()
            .filter_map(|(k, old)| d.get(k).filter(|(w, _)| w != old).map(|(_, at)| at.saturating_duration_since(died.get(old).copied().unwrap_or(killed_at))))
            .collect();
        if moved.len() == kills {
            break moved;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(120), "only {} of {kills} instances moved", moved.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    times.sort();
    // Each time counts from the worker's last report (the moment it died, as far as the cluster
    // can tell) to the deploy reaching another worker.
    println!(
        "BENCH workers={n} registered_in={:.1}s connected_in={:.1}s leader={leader} cpu%={cpu:?} leader_cpu%={:.1} status={status}\n\
         BENCH replacement kills={kills} p50={:.2}s p99={:.2}s max={:.2}s",
        registered_in.as_secs_f64(),
        connected_in.as_secs_f64(),
        cpu[&leader],
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64(),
        times.last().unwrap().as_secs_f64(),
    );
}
