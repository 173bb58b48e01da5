//! The link to the root tier, on the leader only (`proto/proto/cluster.proto`, service `Root`).
//!
//! 1. Register with the first root endpoint that answers (any root replica; a replica that
//!    cannot serve the call fails it and the next endpoint is tried, round after round with
//!    back-off up to 5 s). Registration is an upsert by cluster name, so the id is stable; it is
//!    committed so every replica shows it.
//! 2. Open the `Report` stream and send a full report at once (the root resynchronises from
//!    it), then the instance status changes as soon as they are committed (looked for every
//!    100 ms) with the aggregate, at least every `root_report_interval_ms`, and every `root_full_report_interval_ms` a full report.
//! 3. When the stream fails or this replica stops leading, start again from 1. The cluster
//!    keeps scheduling and healing while the root is away; the next full report carries
//!    everything that happened meanwhile.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use grove_core::status::Status;
use grove_proto::auth::with_bearer;
use grove_proto::cluster::root_client::RootClient;
use grove_proto::cluster::{Aggregate, ClusterReport, InstanceStatus, RegisterRequest};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

use crate::soft::LeaderView;
use crate::state::{ClusterCommand, ClusterState, Desired};
use crate::Shared;

/// The root's view of one instance, as last reported.
pub fn instance_statuses(state: &ClusterState) -> HashMap<String, InstanceStatus> {
    state
        .instances
        .iter()
        .filter(|(_, i)| i.desired == Desired::Running)
        .map(|(key, i)| {
            let worker = state.workers.get(&i.worker_id);
            let host_ip = worker.map(|w| w.info.ip.clone()).unwrap_or_default();
            let host_port = worker.and_then(|w| w.info.port.trim().parse().ok()).unwrap_or(if worker.is_some() { 50011 } else { 0 });
            let status = InstanceStatus {
                job_id: i.job_id.clone(),
                instance_number: i.instance_number,
                status: i.status.clone(),
                status_detail: i.status_detail.clone(),
                worker_id: i.worker_id.clone(),
                publicip: i.publicip.clone(),
                host_ip,
                host_port,
            };
            (key.clone(), status)
        })
        .collect()
}

/// Oakestra's cluster aggregate over active workers: means of percentages (zeros skipped),
/// sums of capacities, the union of runtimes, addons, CSI drivers and GPU drivers.
pub fn aggregate(state: &ClusterState, view: &LeaderView) -> Aggregate {
    let mut a = Aggregate::default();
    let (mut cpu, mut cpu_n, mut mem, mut mem_n) = (0.0, 0u32, 0.0, 0u32);
    let push = |list: &mut Vec<String>, v: &str| {
        if !v.is_empty() && !list.iter().any(|x| x == v) {
            list.push(v.to_owned());
        }
    };
    for w in state.workers.values().filter(|w| !w.lost) {
        let d = view.workers.get(&w.id).and_then(|l| l.dynamic.as_ref());
        let (cpu_percent, memory_percent) = d.map_or((w.info.cpu_percent, w.info.memory_percent), |d| (d.cpu_percent, d.memory_percent));
        if cpu_percent > 0.0 {
            cpu += cpu_percent;
            cpu_n += 1;
        }
        if memory_percent > 0.0 {
            mem += memory_percent;
            mem_n += 1;
        }
        a.vcpus += d.map_or(w.info.vcpus, |d| d.vcpus);
        a.memory_mb += d.map_or(w.info.memory, |d| d.memory);
        a.vgpus += d.map_or(w.info.vgpus, |d| d.vgpus);
        for v in &w.info.virtualization {
            push(&mut a.virtualization, v);
        }
        for v in &w.info.supported_addons {
            push(&mut a.supported_addons, v);
        }
        for c in &w.info.csi_drivers {
            push(&mut a.csi_drivers, &c.csi_driver_name);
        }
        push(&mut a.gpu_drivers, d.map_or(&w.info.gpu_driver, |d| &d.gpu_driver));
        a.active_nodes += 1;
    }
    a.cpu_percent = if cpu_n > 0 { cpu / f64::from(cpu_n) } else { 0.0 };
    a.memory_percent = if mem_n > 0 { mem / f64::from(mem_n) } else { 0.0 };
    a
}

/// How often the leader looks for instance changes to report to the root.
const CHANGE_CHECK: Duration = Duration::from_millis(100);

/// The changes between two views: changed or new instances, and removed ones as `UNDEPLOYED`.
pub fn changes(last: &HashMap<String, InstanceStatus>, now: &HashMap<String, InstanceStatus>) -> Vec<InstanceStatus> {
    let mut out: Vec<InstanceStatus> = now.iter().filter(|(k, v)| last.get(*k) != Some(*v)).map(|(_, v)| v.clone()).collect();
    for (k, v) in last {
        if !now.contains_key(k) {
            out.push(InstanceStatus { status: Status::Undeployed.as_str().into(), status_detail: "undeployed".into(), ..v.clone() });
        }
    }
    out.sort_by(|a, b| (&a.job_id, a.instance_number).cmp(&(&b.job_id, b.instance_number)));
    out
}

fn endpoint_url(e: &str) -> String {
    if e.contains("://") {
        e.to_owned()
    } else {
        format!("http://{e}")
    }
}

pub async fn run(shared: Shared, mut stop: watch::Receiver<bool>) {
    if shared.config.root_endpoints.is_empty() {
        tracing::info!("no root_endpoints configured: this cluster runs without a root");
        return;
    }
    let mut backoff = Duration::from_millis(250);
    let mut next = 0usize;
    loop {
        if *stop.borrow() {
            return;
        }
        if !shared.replica.is_leader() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        match session(&shared, &mut next, &mut stop).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => tracing::warn!("root link: {e}; retrying in {} ms", backoff.as_millis()),
        }
        shared.view().root_connected = false;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Register, then stream reports until the stream fails or leadership ends.
async fn session(shared: &Shared, next: &mut usize, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
    let config = &shared.config;
    let timeout = config.call_timeout();
    let endpoints = &config.root_endpoints;
    // What the root is told; a replica that announces itself later, or is replaced, means
    // registering again, or the root would never dispatch to it.
    let registered_endpoints = shared.replica.read_local(tier_endpoints);
    let mut errors = Vec::new();
    let mut registered = None;
    for i in 0..endpoints.len() {
        let at = (*next + i) % endpoints.len();
        let url = endpoint_url(&endpoints[at]);
        match register(shared, &url, timeout, registered_endpoints.clone()).await {
            Ok(r) => {
                *next = at;
                registered = Some(r);
                break;
            }
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    let Some((mut client, cluster_id)) = registered else {
        *next = (*next + 1) % endpoints.len();
        return Err(format!("no root endpoint accepted the registration ({})", errors.join("; ")));
    };
    if shared.replica.read_local(|s| s.cluster_id != cluster_id) {
        shared.replica.write(ClusterCommand::SetClusterId { id: cluster_id.clone() }).await.map_err(|e| format!("cannot commit the cluster id: {e}"))?.map_err(|e| e.to_string())?;
    }
    tracing::info!(%cluster_id, root = %endpoints[*next], "registered with the root");

    let (tx, rx) = mpsc::channel::<ClusterReport>(16);
    let mut acks = tokio::time::timeout(timeout, client.report(with_bearer(tokio_stream::wrappers::ReceiverStream::new(rx), shared.config.cluster_token.as_deref())))
        .await
        .map_err(|_| "opening the report stream timed out".to_string())?
        .map_err(|e| format!("opening the report stream: {e}"))?
        .into_inner();
    shared.view().root_connected = true;

    let mut last: HashMap<String, InstanceStatus> = HashMap::new();
    let mut sequence = 0u64;
    let mut last_full: Option<Instant> = None;
    // Changes are looked for every CHANGE_CHECK and sent at once; without changes a report (the
    // aggregate, and the root's sign of life) goes every `root_report_interval_ms`.
    let heartbeat = Duration::from_millis(config.root_report_interval_ms);
    let mut tick = tokio::time::interval(CHANGE_CHECK.min(heartbeat));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let full_every = Duration::from_millis(config.root_full_report_interval_ms);
    let mut last_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            ack = acks.message() => match ack {
                Ok(Some(a)) => tracing::debug!(sequence = a.sequence, "root acknowledged a report"),
                Ok(None) => return Err("the root closed the report stream".into()),
                Err(e) => return Err(format!("report stream: {e}")),
            },
            _ = tick.tick() => {
                if !shared.replica.is_leader() {
                    tracing::info!("no longer the leader: closing the root link");
                    return Ok(());
                }
                if shared.replica.read_local(tier_endpoints) != registered_endpoints {
                    tracing::info!("the tier's replica endpoints changed: registering with the root again");
                    return Ok(());
                }
                let full = last_full.is_none_or(|at| at.elapsed() >= full_every);
                let (now, agg) = {
                    let view = shared.view();
                    shared.replica.read_local(|s| (instance_statuses(s), aggregate(s, &view)))
                };
                let instances = if full { changes(&HashMap::new(), &now) } else { changes(&last, &now) };
                if !full && instances.is_empty() && last_sent.is_some_and(|at| at.elapsed() < heartbeat) {
                    continue;
                }
                last_sent = Some(Instant::now());
                sequence += 1;
                let report = ClusterReport { cluster_id: cluster_id.clone(), aggregate: Some(agg), instances, full, sequence };
                match tokio::time::timeout(timeout, tx.send(report)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err("the report stream closed".into()),
                    Err(_) => return Err("the root does not take reports (send timed out)".into()),
                }
                if full {
                    last_full = Some(Instant::now());
                }
                last = now;
            }
        }
    }
}

/// The gRPC endpoints of every replica that announced itself, in replica id order: what the root
/// dispatches to.
fn tier_endpoints(s: &ClusterState) -> Vec<String> {
    s.replicas.values().map(|e| e.grpc.clone()).collect()
}

async fn register(shared: &Shared, url: &str, timeout: Duration, endpoints: Vec<String>) -> Result<(RootClient<tonic::transport::Channel>, String), String> {
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("not a valid endpoint: {e}"))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(timeout)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = RootClient::new(channel);
    let request = RegisterRequest {
        cluster_name: shared.config.cluster_name.clone(),
        cluster_location: shared.config.cluster_location.clone(),
        endpoints,
        manager_port: u32::from(shared.config.api_listen.port()),
    };
    // No channel-wide timeout: it would end the long-lived report stream too.
    let reply = tokio::time::timeout(timeout, client.register(with_bearer(request, shared.config.cluster_token.as_deref())))
        .await
        .map_err(|_| "Register timed out".to_string())?
        .map_err(|e| format!("Register: {} {}", e.code(), e.message()))?
        .into_inner();
    if reply.cluster_id.is_empty() {
        return Err("Register answered without a cluster_id".into());
    }
    Ok((client, reply.cluster_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(job: &str, n: u32, s: &str) -> InstanceStatus {
        InstanceStatus { job_id: job.into(), instance_number: n, status: s.into(), ..Default::default() }
    }

    #[test]
    fn changes_list_new_changed_and_removed_instances() {
        let last: HashMap<String, InstanceStatus> =
            [("j/0".to_string(), status("j", 0, "RUNNING")), ("j/1".to_string(), status("j", 1, "RUNNING"))].into();
        let now: HashMap<String, InstanceStatus> =
            [("j/0".to_string(), status("j", 0, "RUNNING")), ("j/2".to_string(), status("j", 2, "NODE_SCHEDULED"))].into();
        let c = changes(&last, &now);
        let got: Vec<(u32, &str)> = c.iter().map(|s| (s.instance_number, s.status.as_str())).collect();
        assert_eq!(got, [(1, "UNDEPLOYED"), (2, "NODE_SCHEDULED")]);
        assert!(changes(&now, &now).is_empty());
    }
}
