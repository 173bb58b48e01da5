//! The cluster-facing gRPC service (`grove.cluster.v1.Root`, port 50052) on every root replica:
//! cluster tiers register and keep a report stream open. Every report is committed through
//! Raft (forwarded to the leader from a follower) before it is acknowledged, so the leader's
//! scheduler, dispatcher and liveness check all see the same reports whichever replica the
//! load balancer picked.

use std::net::SocketAddr;
use std::pin::Pin;

use futures::Stream;
use grove_core::status::Status as InstanceStatusKind;
use grove_proto::cluster as pb;
use grove_raft::Replica;
use serde_json::{Map, Value};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::state::{Applied, ApplyError, ClusterAggregate, InstanceReport, RootCommand, RootState};

/// Longest accepted name, location and endpoint (bytes), and most endpoints per cluster.
const MAX_FIELD: usize = 256;
const MAX_ENDPOINTS: usize = 16;

#[derive(Clone)]
pub struct ClusterService {
    replica: Replica<RootState>,
    /// Ends every open report stream when the replica stops (so the server can stop at once).
    stop: tokio::sync::watch::Receiver<bool>,
}

impl ClusterService {
    pub fn new(replica: Replica<RootState>, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        ClusterService { replica, stop }
    }

    async fn commit(&self, command: RootCommand) -> Result<Applied, Status> {
        match self.replica.write(command).await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(e)) => Err(apply_status(e)),
            Err(e) => Err(raft_status(e)),
        }
    }
}

/// The gRPC status of a refusal by the state machine.
fn apply_status(e: ApplyError) -> Status {
    match e {
        ApplyError::NotFound(m) => Status::not_found(m),
        ApplyError::Conflict(m) => Status::already_exists(m),
        ApplyError::Invalid(m) => Status::invalid_argument(m),
    }
}

/// No quorum, or a leader change in flight: the cluster retries (possibly on another replica).
fn raft_status(e: grove_raft::Error) -> Status {
    Status::unavailable(format!("the root tier cannot commit right now: {e}"))
}

/// Registration fields, checked before anything is committed.
pub fn validate_registration(r: &pb::RegisterRequest) -> Result<(), Status> {
    let name = r.cluster_name.trim();
    if name.is_empty() {
        return Err(Status::invalid_argument("cluster_name: must not be empty"));
    }
    if name.len() > MAX_FIELD || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(Status::invalid_argument(format!(
            "cluster_name: {name:?} must be at most {MAX_FIELD} characters of letters, digits, '-', '_' and '.'"
        )));
    }
    if !r.cluster_location.is_empty() && grove_core::sla::GeoPoint::parse_cluster_location(&r.cluster_location).is_none() {
        return Err(Status::invalid_argument(format!(
            "cluster_location: {:?} is not \"lat,long[,radius]\" with latitude in [-90, 90] and longitude in [-180, 180]",
            r.cluster_location
        )));
    }
    if r.endpoints.is_empty() || r.endpoints.len() > MAX_ENDPOINTS {
        return Err(Status::invalid_argument(format!("endpoints: between 1 and {MAX_ENDPOINTS} host:port entries are required")));
    }
    for (i, e) in r.endpoints.iter().enumerate() {
        let ok = e.len() <= MAX_FIELD && e.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(Status::invalid_argument(format!("endpoints[{i}]: {e:?} is not host:port")));
        }
    }
    Ok(())
}

pub fn aggregate_from(a: &pb::Aggregate) -> ClusterAggregate {
    ClusterAggregate {
        cpu_percent: a.cpu_percent,
        memory_percent: a.memory_percent,
        vcpus: a.vcpus,
        memory: a.memory_mb,
        vgpus: a.vgpus,
        virtualization: a.virtualization.clone(),
        supported_addons: a.supported_addons.clone(),
        csi_drivers: a.csi_drivers.clone(),
        gpu_drivers: a.gpu_drivers.clone(),
        active_nodes: a.active_nodes,
    }
}

/// A report's instance entries as committed: every status must be one of contract §5.
pub fn instance_reports(instances: Vec<pb::InstanceStatus>) -> Result<Vec<InstanceReport>, Status> {
    instances
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if s.job_id.is_empty() {
                return Err(Status::invalid_argument(format!("instances[{i}].job_id: must not be empty")));
            }
            if s.status.parse::<InstanceStatusKind>().is_err() {
                return Err(Status::invalid_argument(format!("instances[{i}].status: {:?} is not an Oakestra status string", s.status)));
            }
            let mut fields = Map::new();
            for (key, value) in [("worker_id", &s.worker_id), ("publicip", &s.publicip), ("host_ip", &s.host_ip)] {
                if !value.is_empty() {
                    fields.insert(key.into(), Value::from(value.as_str()));
                }
            }
            if s.host_port != 0 {
                fields.insert("host_port".into(), Value::from(s.host_port));
            }
            Ok(InstanceReport { job_id: s.job_id, instance_number: s.instance_number, status: s.status, status_detail: s.status_detail, fields })
        })
        .collect()
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::ReportAck, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::root_server::Root for ClusterService {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterReply>, Status> {
        let peer_ip = request.remote_addr().map(|a| canonical_ip(a).to_string()).unwrap_or_default();
        let r = request.into_inner();
        validate_registration(&r)?;
        let command = RootCommand::RegisterCluster {
            id: crate::ids::object_id(),
            name: r.cluster_name.trim().to_owned(),
            location: r.cluster_location,
            ip: peer_ip,
            port: r.manager_port.to_string(),
            endpoints: r.endpoints,
            at_ms: crate::ids::now_ms(),
        };
        match self.commit(command).await? {
            Applied::Id(cluster_id) => {
                tracing::info!(cluster = %r.cluster_name, %cluster_id, "cluster registered");
                Ok(Response::new(pb::RegisterReply { cluster_id }))
            }
            other => Err(Status::internal(format!("registration answered {other:?}"))),
        }
    }

    type ReportStream = AckStream;

    async fn report(&self, request: Request<Streaming<pb::ClusterReport>>) -> Result<Response<AckStream>, Status> {
        let mut reports = request.into_inner();
        let service = self.clone();
        let mut stop = self.stop.clone();
        let acks = async_stream(move |tx| async move {
            loop {
                let next = tokio::select! {
                    next = reports.next() => next,
                    _ = stop.changed() => {
                        let _ = tx.send(Err(Status::unavailable("this root replica is stopping; report to another"))).await;
                        return;
                    }
                };
                let report = match next {
                    Some(Ok(r)) => r,
                    // The cluster went away; nothing to answer.
                    Some(Err(_)) | None => return,
                };
                let outcome = async {
                    let instances = instance_reports(report.instances)?;
                    let command = RootCommand::ReportFromCluster {
                        id: report.cluster_id,
                        aggregate: report.aggregate.as_ref().map(aggregate_from),
                        instances,
                        full: report.full,
                        at_ms: crate::ids::now_ms(),
                    };
                    service.commit(command).await?;
                    Ok::<_, Status>(pb::ReportAck { sequence: report.sequence })
                }
                .await;
                let stop = outcome.is_err();
                if tx.send(outcome).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(acks))
    }
}

/// A stream fed by a spawned task through a small channel (the ack stream of one report stream).
fn async_stream<F, Fut>(body: F) -> AckStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::ReportAck, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The peer's IPv4 address when it is v4-mapped (as upstream records it).
fn canonical_ip(addr: SocketAddr) -> std::net::IpAddr {
    match addr.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, location: &str, endpoints: &[&str]) -> pb::RegisterRequest {
        pb::RegisterRequest {
            cluster_name: name.into(),
            cluster_location: location.into(),
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            manager_port: 10100,
        }
    }

    #[test]
    fn registration_names_the_bad_field() {
        assert!(validate_registration(&reg("edge-1", "48.1,11.6,1000", &["10.0.0.1:10120"])).is_ok());
        assert!(validate_registration(&reg("edge-1", "", &["c1:10120", "[::1]:10121"])).is_ok());
        let cases = [
            (reg("", "", &["a:1"]), "cluster_name"),
            (reg("a b", "", &["a:1"]), "cluster_name"),
            (reg("a", "north", &["a:1"]), "cluster_location"),
            (reg("a", "91,0", &["a:1"]), "cluster_location"),
            (reg("a", "", &[]), "endpoints"),
            (reg("a", "", &["nohost"]), "endpoints[0]"),
            (reg("a", "", &["a:1", "b:0"]), "endpoints[1]"),
            (reg("a", "", &["a:99999"]), "endpoints[0]"),
        ];
        for (r, field) in cases {
            let e = validate_registration(&r).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with(field), "{field}: {}", e.message());
        }
    }

    #[test]
    fn instance_statuses_are_checked() {
        let ok = pb::InstanceStatus { job_id: "j".into(), instance_number: 2, status: "RUNNING".into(), worker_id: "w".into(), host_port: 80, ..Default::default() };
        let r = instance_reports(vec![ok.clone()]).unwrap();
        assert_eq!(r[0].fields["worker_id"], "w");
        assert_eq!(r[0].fields["host_port"], 80);
        assert!(!r[0].fields.contains_key("publicip"));
        let bad = pb::InstanceStatus { status: "ALIVE".into(), ..ok.clone() };
        let e = instance_reports(vec![ok.clone(), bad]).unwrap_err();
        assert!(e.message().starts_with("instances[1].status"), "{}", e.message());
        let e = instance_reports(vec![pb::InstanceStatus { job_id: String::new(), ..ok }]).unwrap_err();
        assert!(e.message().starts_with("instances[0].job_id"), "{}", e.message());
    }
}
