//! The cluster dispatcher, on the root leader only: delivers every committed placement that its
//! cluster has not acknowledged (deploys) and every undeploy the root still owes a cluster,
//! over the cluster tier's gRPC, and commits each acknowledgement.
//!
//! What to send is a pure function of the replicated state ([`pending`]), so a newly elected
//! leader resumes exactly the dispatches that were committed but not acknowledged. Everything
//! owed to one cluster travels together: one `Cluster.Dispatch` call carries up to
//! [`MAX_BATCH`] dispatches (a few calls per cluster in flight), and the cluster commits them
//! concurrently, so a burst of placements costs a few calls and log entries instead of one round
//! each. Dispatches are idempotent on the cluster side (job id + instance number), so one
//! delivered twice (the old leader died between the cluster's answer and the commit of the
//! acknowledgement, or a call failed after some of it was committed) has the effect of one.
//! Failed dispatches are retried with a per-dispatch exponential backoff; calls to clusters the
//! root considers lost wait until they report again.

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

/// Most dispatches in one call.
pub const MAX_BATCH: usize = 256;
/// Most bytes of job documents in one call (a single larger document still goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Calls in flight to one cluster at once.
const MAX_CALLS_PER_CLUSTER: usize = 4;
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deploy,
    Undeploy,
}

/// One dispatch the leader owes a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub kind: Kind,
    pub dispatch: Dispatch,
    /// The cluster tier's gRPC endpoints.
    pub endpoints: Vec<String>,
}

type Key = (Kind, Dispatch);

impl Work {
    fn key(&self) -> Key {
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

/// Split one cluster's owed work into calls (pure): at most [`MAX_BATCH`] dispatches and
/// [`MAX_BATCH_BYTES`] of documents each, in order. `document` gives a deploy's job document
/// (`None`: the instance is gone, nothing to send); undeploys carry none.
pub fn batches(work: Vec<Work>, mut document: impl FnMut(&Dispatch) -> Option<String>) -> Vec<Vec<(Work, String)>> {
    let mut out: Vec<Vec<(Work, String)>> = Vec::new();
    let mut bytes = 0;
    for w in work {
        let doc = match w.kind {
            Kind::Deploy => match document(&w.dispatch) {
                Some(doc) => doc,
                None => continue,
            },
            Kind::Undeploy => String::new(),
        };
        let full = out.last().is_none_or(|b| b.len() >= MAX_BATCH || (!b.is_empty() && bytes + doc.len() > MAX_BATCH_BYTES));
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += doc.len();
        out.last_mut().expect("a batch was just pushed").push((w, doc));
    }
    out
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

/// The outcome of one call: per dispatch, the index of the endpoint that accepted it or why it
/// was not.
type CallResult = (String, Vec<(Key, Result<usize, String>)>);

/// Run until `stop`.
pub async fn run(replica: Replica<RootState>, settings: DispatchSettings, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channels: HashMap<String, Channel> = HashMap::new();
    // The endpoint of each cluster that answered last, tried first.
    let mut preferred: BTreeMap<String, usize> = BTreeMap::new();
    let mut retries: HashMap<Key, Retry> = HashMap::new();
    let mut in_flight: HashSet<Key> = HashSet::new();
    let mut calls_to: HashMap<String, usize> = HashMap::new();
    let mut calls: JoinSet<CallResult> = JoinSet::new();
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
                for (cluster_id, outcomes) in finished.into_iter().flatten() {
                    if let Some(n) = calls_to.get_mut(&cluster_id) {
                        *n = n.saturating_sub(1);
                    }
                    for (key, outcome) in outcomes {
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
                }
                if !(deploys.is_empty() && undeploys.is_empty()) {
                    // A lost acknowledgement only means one more (idempotent) dispatch.
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
            calls_to.clear();
            continue;
        }
        let work = replica.read_local(pending);
        let owed: HashSet<Key> = work.iter().map(Work::key).collect();
        retries.retain(|k, _| owed.contains(k));
        let now = Instant::now();
        let mut by_cluster: BTreeMap<String, Vec<Work>> = BTreeMap::new();
        for w in work {
            let key = w.key();
            if in_flight.contains(&key) || retries.get(&key).is_some_and(|r| r.next > now) {
                continue;
            }
            by_cluster.entry(w.dispatch.cluster_id.clone()).or_default().push(w);
        }
        for (cluster_id, work) in by_cluster {
            let free = MAX_CALLS_PER_CLUSTER.saturating_sub(calls_to.get(&cluster_id).copied().unwrap_or(0));
            if free == 0 {
                continue;
            }
            let names = work[0].endpoints.clone();
            let work: Vec<Work> = work.into_iter().take(free * MAX_BATCH).collect();
            let batches = replica.read_local(|s| batches(work, |d| deploy_document(s, d)));
            // The cluster's endpoints in the order to try them, the one that answered last first.
            let first = preferred.get(&cluster_id).copied().unwrap_or(0);
            let endpoints: Vec<(usize, Channel)> = (0..names.len())
                .map(|i| (first + i) % names.len())
                .filter_map(|i| channel(&mut channels, &names[i], settings.call_timeout).map(|c| (i, c)))
                .collect();
            for batch in batches.into_iter().take(free) {
                in_flight.extend(batch.iter().map(|(w, _)| w.key()));
                *calls_to.entry(cluster_id.clone()).or_default() += 1;
                let (timeout, token, names, endpoints, cluster_id) =
                    (settings.call_timeout, settings.cluster_token.clone(), names.clone(), endpoints.clone(), cluster_id.clone());
                calls.spawn(async move {
                    let outcomes = call(batch, &names, endpoints, timeout, token.as_deref()).await;
                    (cluster_id, outcomes)
                });
            }
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

/// Send one batch, trying each endpoint in turn until one answers; per dispatch, the index of
/// the endpoint that accepted it, or why it was not accepted.
async fn call(batch: Vec<(Work, String)>, names: &[String], endpoints: Vec<(usize, Channel)>, timeout: Duration, token: Option<&str>) -> Vec<(Key, Result<usize, String>)> {
    let mut request = pb::DispatchBatch::default();
    let (mut deploy_keys, mut undeploy_keys) = (Vec::new(), Vec::new());
    for (w, document) in batch {
        let d = &w.dispatch;
        match w.kind {
            Kind::Deploy => {
                request.deploys.push(pb::DeployRequest { job_id: d.job_id.clone(), instance_number: d.instance_number, job_json: document });
                deploy_keys.push(w.key());
            }
            Kind::Undeploy => {
                request.undeploys.push(pb::UndeployRequest { job_id: d.job_id.clone(), instance_number: d.instance_number });
                undeploy_keys.push(w.key());
            }
        }
    }
    let mut reasons = Vec::new();
    for (index, channel) in endpoints {
        let name = &names[index];
        let mut client = pb::cluster_client::ClusterClient::new(channel);
        match tokio::time::timeout(timeout, client.dispatch(with_bearer(request.clone(), token))).await {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                if reply.deploys.len() != deploy_keys.len() || reply.undeploys.len() != undeploy_keys.len() {
                    reasons.push(format!(
                        "{name}: answered {} deploys and {} undeploys of {} and {}",
                        reply.deploys.len(),
                        reply.undeploys.len(),
                        deploy_keys.len(),
                        undeploy_keys.len()
                    ));
                    continue;
                }
                let acks = reply.deploys.into_iter().chain(reply.undeploys);
                return deploy_keys
                    .into_iter()
                    .chain(undeploy_keys)
                    .zip(acks)
                    .map(|(key, ack)| (key, if ack.accepted { Ok(index) } else { Err(format!("{name}: refused: {}", ack.reason)) }))
                    .collect();
            }
            Ok(Err(status)) => reasons.push(format!("{name}: {}", status.message())),
            Err(_) => reasons.push(format!("{name}: no answer within {timeout:?}")),
        }
    }
    let reason = if reasons.is_empty() { format!("no valid endpoint among {names:?}") } else { reasons.join("; ") };
    deploy_keys.into_iter().chain(undeploy_keys).map(|key| (key, Err(reason.clone()))).collect()
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
    fn owed_work_is_split_into_calls_by_count_and_size_and_gone_instances_are_left_out() {
        let work = |kind, n: u32| Work { kind, dispatch: Dispatch { cluster_id: "c1".into(), job_id: "j1".into(), instance_number: n }, endpoints: vec![] };
        let mut owed: Vec<Work> = (0..MAX_BATCH as u32 * 2 + 10).map(|n| work(Kind::Deploy, n)).collect();
        owed.push(work(Kind::Undeploy, 9999));
        // Instance 7 is gone: no document, nothing to send.
        let calls = batches(owed, |d| (d.instance_number != 7).then(|| "{}".to_string()));
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [MAX_BATCH, MAX_BATCH, 10]);
        let sent: Vec<u32> = calls.iter().flatten().map(|(w, _)| w.dispatch.instance_number).collect();
        assert!(!sent.contains(&7));
        assert_eq!(sent.len(), MAX_BATCH * 2 + 10, "every other dispatch is sent once, in order");
        assert!(sent.windows(2).all(|p| p[0] < p[1]));
        assert_eq!(calls[2].last().map(|(w, doc)| (w.kind, doc.as_str())), Some((Kind::Undeploy, "")));

        // Large documents close a call early; one larger than the bound still goes, alone.
        let big = "x".repeat(MAX_BATCH_BYTES / 2 + 1);
        let huge = "y".repeat(MAX_BATCH_BYTES + 1);
        let calls = batches((0..4).map(|n| work(Kind::Deploy, n)).collect(), |d| Some(if d.instance_number == 2 { huge.clone() } else { big.clone() }));
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1, 1]);
        let calls = batches((0..4).map(|n| work(Kind::Deploy, n)).collect(), |_| Some("z".repeat(1000)));
        assert_eq!(calls.len(), 1);
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
