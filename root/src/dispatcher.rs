//! The cluster dispatcher, on the root leader only: delivers every committed placement that its
//! cluster has not acknowledged (`Deploy`) and every undeploy the root still owes a cluster
//! (`Undeploy`), over the cluster tier's gRPC, and commits each acknowledgement.
//!
//! What to send is a pure function of the replicated state ([`pending`]), so a newly elected
//! leader resumes exactly the dispatches that were committed but not acknowledged. Calls are
//! idempotent on the cluster side (job id + instance number), so a dispatch delivered twice
//! (the old leader died between the cluster's answer and the commit of the acknowledgement) has
//! the effect of one. Failed calls are retried with a per-dispatch exponential backoff; calls
//! to clusters the root considers lost wait until they report again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use grove_proto::auth::with_bearer;
use grove_proto::cluster as pb;
use grove_raft::Replica;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::state::{Dispatch, RootCommand, RootState};

/// Most calls in flight at once (over all clusters).
const MAX_IN_FLIGHT: usize = 64;
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deploy,
    Undeploy,
}

/// One call the leader owes a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub kind: Kind,
    pub dispatch: Dispatch,
    /// The cluster tier's gRPC endpoints.
    pub endpoints: Vec<String>,
}

impl Work {
    fn key(&self) -> (Kind, Dispatch) {
        (self.kind, self.dispatch.clone())
    }
}

/// Every dispatch owed to an active cluster that has endpoints (pure).
pub fn pending(state: &RootState) -> Vec<Work> {
    let reachable = |cluster_id: &str| state.clusters.get(cluster_id).filter(|c| c.active && !c.endpoints.is_empty()).map(|c| c.endpoints.clone());
    let mut out = Vec::new();
    for (job_id, job) in &state.jobs {
        for inst in job.instances.values().filter(|i| !i.cluster_id.is_empty() && !i.deploy_acked) {
            if let Some(endpoints) = reachable(&inst.cluster_id) {
                out.push(Work {
                    kind: Kind::Deploy,
                    dispatch: Dispatch { cluster_id: inst.cluster_id.clone(), job_id: job_id.clone(), instance_number: inst.instance_number },
                    endpoints,
                });
            }
        }
    }
    for d in &state.pending_undeploys {
        if let Some(endpoints) = reachable(&d.cluster_id) {
            out.push(Work { kind: Kind::Undeploy, dispatch: d.clone(), endpoints });
        }
    }
    out
}

/// What a deploy sends: the job document (contract §2.6) with only this instance, `_id` a
/// string, as JSON. `None` when the instance is gone.
pub fn deploy_document(state: &RootState, d: &Dispatch) -> Option<String> {
    let job = state.jobs.get(&d.job_id)?;
    job.instances.contains_key(&d.instance_number).then(|| job.downstream_document(Some(d.instance_number)).to_string())
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// How often the leader looks for owed dispatches.
    pub interval: Duration,
    /// Bound on one call (connect + answer) to one endpoint.
    pub call_timeout: Duration,
    /// Sent as `authorization: Bearer …` when set.
    pub cluster_token: Option<String>,
}

/// Backoff of one dispatch that failed.
struct Retry {
    next: Instant,
    delay: Duration,
}

/// Run until `stop`.
pub async fn run(replica: Replica<RootState>, settings: DispatchSettings, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channels: HashMap<String, Channel> = HashMap::new();
    // The endpoint of each cluster that answered last, tried first.
    let mut preferred: BTreeMap<String, usize> = BTreeMap::new();
    let mut retries: HashMap<(Kind, Dispatch), Retry> = HashMap::new();
    let mut in_flight: HashSet<(Kind, Dispatch)> = HashSet::new();
    let mut calls: JoinSet<((Kind, Dispatch), Result<usize, String>)> = JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                // Settle every call that has finished, and commit their acknowledgements as one
                // entry before the next pass (which must see them as acknowledged).
                let mut finished = vec![done];
                while let Some(more) = calls.try_join_next() {
                    finished.push(more);
                }
                let (mut deploys, mut undeploys) = (Vec::new(), Vec::new());
                for (key, outcome) in finished.into_iter().flatten() {
                    in_flight.remove(&key);
                    match outcome {
                        Ok(endpoint_index) => {
                            preferred.insert(key.1.cluster_id.clone(), endpoint_index);
                            retries.remove(&key);
                            match key.0 {
                                Kind::Deploy => deploys.push(key.1),
                                Kind::Undeploy => undeploys.push(key.1),
                            }
                        }
                        Err(reason) => {
                            let r = retries.entry(key.clone()).or_insert(Retry { next: Instant::now(), delay: FIRST_RETRY / 2 });
                            r.delay = (r.delay * 2).min(MAX_RETRY);
                            r.next = Instant::now() + r.delay;
                            tracing::warn!(kind = ?key.0, cluster = %key.1.cluster_id, job = %key.1.job_id, instance = key.1.instance_number,
                                retry_in = ?r.delay, "dispatch failed: {reason}");
                        }
                    }
                }
                if !(deploys.is_empty() && undeploys.is_empty()) {
                    // A lost acknowledgement only means one more (idempotent) call.
                    if let Err(e) = replica.write(RootCommand::Acknowledge { deploys, undeploys }).await {
                        tracing::debug!("acknowledgements not committed: {e}");
                    }
                }
            }
            _ = stop.changed() => {
                calls.abort_all();
                return;
            }
        }
        if !replica.is_leader() {
            // Soft state only: a later leadership starts from the replicated state again.
            calls.abort_all();
            in_flight.clear();
            retries.clear();
            continue;
        }
        let work = replica.read_local(pending);
        let owed: HashSet<(Kind, Dispatch)> = work.iter().map(Work::key).collect();
        retries.retain(|k, _| owed.contains(k));
        let now = Instant::now();
        for w in work {
            if in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            let key = w.key();
            if in_flight.contains(&key) || retries.get(&key).is_some_and(|r| r.next > now) {
                continue;
            }
            let first = preferred.get(&w.dispatch.cluster_id).copied().unwrap_or(0);
            let endpoints: Vec<(usize, Channel)> = (0..w.endpoints.len())
                .map(|i| (first + i) % w.endpoints.len())
                .filter_map(|i| channel(&mut channels, &w.endpoints[i], settings.call_timeout).map(|c| (i, c)))
                .collect();
            let document = match w.kind {
                Kind::Deploy => match replica.read_local(|s| deploy_document(s, &w.dispatch)) {
                    Some(doc) => doc,
                    None => continue,
                },
                Kind::Undeploy => String::new(),
            };
            in_flight.insert(key.clone());
            let (timeout, token) = (settings.call_timeout, settings.cluster_token.clone());
            calls.spawn(async move {
                let outcome = call(&w, &document, endpoints, timeout, token.as_deref()).await;
                (key, outcome)
            });
        }
    }
}

/// A lazily connecting channel per endpoint (reused across calls); `None` for an endpoint that
/// is not a valid `host:port`.
pub(crate) fn channel(channels: &mut HashMap<String, Channel>, endpoint: &str, timeout: Duration) -> Option<Channel> {
    if let Some(c) = channels.get(endpoint) {
        return Some(c.clone());
    }
    let e = Endpoint::from_shared(format!("http://{endpoint}")).ok()?.connect_timeout(timeout).timeout(timeout);
    let c = e.connect_lazy();
    channels.insert(endpoint.to_owned(), c.clone());
    Some(c)
}

/// Try each endpoint in turn; the index of the one that accepted, or why none did.
async fn call(w: &Work, document: &str, endpoints: Vec<(usize, Channel)>, timeout: Duration, token: Option<&str>) -> Result<usize, String> {
    let mut reasons = Vec::new();
    for (index, channel) in endpoints {
        let mut client = pb::cluster_client::ClusterClient::new(channel);
        let d = &w.dispatch;
        let answer = match w.kind {
            Kind::Deploy => {
                let req = pb::DeployRequest { job_id: d.job_id.clone(), instance_number: d.instance_number, job_json: document.to_owned() };
                tokio::time::timeout(timeout, client.deploy(with_bearer(req, token))).await
            }
            Kind::Undeploy => {
                let req = pb::UndeployRequest { job_id: d.job_id.clone(), instance_number: d.instance_number };
                tokio::time::timeout(timeout, client.undeploy(with_bearer(req, token))).await
            }
        };
        match answer {
            Ok(Ok(ack)) if ack.get_ref().accepted => return Ok(index),
            Ok(Ok(ack)) => reasons.push(format!("{}: refused: {}", w.endpoints[index], ack.get_ref().reason)),
            Ok(Err(status)) => reasons.push(format!("{}: {}", w.endpoints[index], status.message())),
            Err(_) => reasons.push(format!("{}: no answer within {timeout:?}", w.endpoints[index])),
        }
    }
    Err(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use grove_raft::StateMachine;

    use super::*;
    use crate::state::{ClusterAggregate, NewApplication};

    fn state() -> RootState {
        let mut s = RootState::default();
        for (id, endpoints) in [("c1", vec!["10.0.0.1:10120".to_string()]), ("c2", vec![])] {
            s.apply(RootCommand::RegisterCluster {
                id: id.into(),
                name: format!("n{id}"),
                location: String::new(),
                ip: String::new(),
                port: String::new(),
                endpoints,
                at_ms: 1,
            })
            .unwrap();
            s.apply(RootCommand::ReportCluster { id: id.into(), aggregate: ClusterAggregate { vcpus: 4, memory: 4096, ..Default::default() }, at_ms: 1 })
                .unwrap();
        }
        let sla = serde_json::json!({"sla_version":"v2.0","customerID":"u","applications":[{"application_name":"a","application_namespace":"n","microservices":[
            {"microservice_name":"s","microservice_namespace":"n","virtualization":"container","code":"img"}]}]});
        let sla = grove_core::sla::parse_sla(sla.to_string().as_bytes()).unwrap();
        let app = &sla.applications[0];
        let job = grove_core::sla::derive_job("a1", "j1", app, &app.microservices[0]);
        let apps = vec![NewApplication { id: "a1".into(), application_name: "a".into(), application_namespace: "n".into(), application_desc: String::new(), jobs: vec![job] }];
        s.apply(RootCommand::CreateApplications { owner: "u".into(), apps }).unwrap();
        s
    }

    fn place(s: &mut RootState, cluster: &str) -> u32 {
        let n = match s.apply(RootCommand::RequestInstance { job_id: "j1".into(), owner: None, at_ms: 2 }).unwrap() {
            crate::state::Applied::Instance(n) => n,
            other => panic!("{other:?}"),
        };
        s.apply(RootCommand::PlaceInstance { job_id: "j1".into(), instance_number: n, cluster_id: cluster.into(), at_ms: 3 }).unwrap();
        n
    }

    #[test]
    fn unacknowledged_placements_and_owed_undeploys_are_pending() {
        let mut s = state();
        assert!(pending(&s).is_empty());
        let n0 = place(&mut s, "c1");
        let n1 = place(&mut s, "c1");
        let _unreachable = place(&mut s, "c2"); // no endpoints: nothing can be sent
        s.apply(RootCommand::RequestInstance { job_id: "j1".into(), owner: None, at_ms: 4 }).unwrap(); // not placed
        let work = pending(&s);
        assert_eq!(work.iter().map(|w| (w.kind, w.dispatch.instance_number)).collect::<Vec<_>>(), [(Kind::Deploy, n0), (Kind::Deploy, n1)]);
        // The job document carries only the dispatched instance, `_id` as a string.
        let doc: serde_json::Value = serde_json::from_str(&deploy_document(&s, &work[0].dispatch).unwrap()).unwrap();
        assert_eq!(doc["_id"], "j1");
        assert_eq!(doc["instance_list"].as_array().unwrap().len(), 1);
        assert_eq!(doc["instance_list"][0]["instance_number"], n0);
        assert_eq!(work[0].endpoints, ["10.0.0.1:10120"]);
        // Acknowledged: no longer pending. Removed: an undeploy is.
        let acked = Dispatch { cluster_id: "c1".into(), job_id: "j1".into(), instance_number: n0 };
        s.apply(RootCommand::Acknowledge { deploys: vec![acked], undeploys: vec![] }).unwrap();
        s.apply(RootCommand::RemoveInstances { job_id: "j1".into(), instance_number: n1 as i64, owner: None, at_ms: 5 }).unwrap();
        let work = pending(&s);
        assert_eq!(work.iter().map(|w| (w.kind, w.dispatch.instance_number)).collect::<Vec<_>>(), [(Kind::Undeploy, n1)]);
        assert!(deploy_document(&s, &work[0].dispatch).is_none(), "a removed instance has nothing to deploy");
    }

    #[test]
    fn nothing_is_sent_to_a_lost_cluster_until_it_reports_again() {
        let mut s = state();
        place(&mut s, "c1");
        let last = s.clusters["c1"].last_report_ms;
        s.apply(RootCommand::MarkClusterLost { id: "c1".into(), last_report_ms: last, at_ms: 9 }).unwrap();
        // The instance left c1 (waiting for a new placement); c1 owes an undeploy it cannot get yet.
        assert_eq!(s.pending_undeploys.len(), 1);
        assert!(pending(&s).is_empty());
        s.apply(RootCommand::ReportFromCluster { id: "c1".into(), aggregate: None, instances: vec![], full: false, at_ms: 10 }).unwrap();
        assert_eq!(pending(&s).iter().map(|w| w.kind).collect::<Vec<_>>(), [Kind::Undeploy]);
    }
}
